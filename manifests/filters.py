"""Row filters shared by every consumer of a manifest (reports, pre-training).

Filters work on Arrow tables with pyarrow compute, so a 100k-row manifest is
filtered without building Python objects per row.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from manifests.io import read_table


@dataclass(frozen=True, slots=True)
class Selection:
    """Which rows of a manifest to use.

    Parameters
    ----------
    included
        Keep only included rows (``True``), only excluded ones (``False``) or all (``None``).
    modalities, datasets
        Keep rows whose ``modality`` / ``dataset`` is listed; ``None`` keeps all.
    max_iqs
        Keep rows with ``iqs <= max_iqs``; rows without a score are dropped when set.
    exclude_anonymization
        Drop rows whose ``anonymization`` is one of these (e.g. ``("skull_stripped",)``).
    require_array
        Keep only rows that have a pre-training array.
    """

    included: bool | None = True
    modalities: tuple[str, ...] | None = None
    datasets: tuple[str, ...] | None = None
    max_iqs: float | None = None
    exclude_anonymization: tuple[str, ...] = ()
    require_array: bool = False


def apply(table: pa.Table, selection: Selection) -> pa.Table:
    """Return the rows of ``table`` that ``selection`` keeps."""
    mask = pa.array([True] * table.num_rows, pa.bool_())
    if selection.included is not None:
        mask = pc.and_(mask, pc.equal(table["included"], selection.included))
    if selection.modalities is not None:
        mask = pc.and_(mask, pc.is_in(table["modality"], pa.array(selection.modalities, pa.string())))
    if selection.datasets is not None:
        mask = pc.and_(mask, pc.is_in(table["dataset"], pa.array(selection.datasets, pa.string())))
    if selection.max_iqs is not None:
        mask = pc.and_(mask, pc.less_equal(table["iqs"], selection.max_iqs))
    if selection.exclude_anonymization:
        bad = pc.is_in(table["anonymization"], pa.array(selection.exclude_anonymization, pa.string()))
        mask = pc.and_(mask, pc.invert(pc.fill_null(bad, False)))
    if selection.require_array:
        mask = pc.and_(mask, pc.is_valid(table["array_path"]))
    return table.filter(pc.fill_null(mask, False))


def select(
    manifest_dir: Path | str,
    *,
    included: bool | None = True,
    modalities: Iterable[str] | None = None,
    datasets: Iterable[str] | None = None,
    max_iqs: float | None = None,
    exclude_anonymization: Iterable[str] = (),
    require_array: bool = False,
) -> pa.Table:
    """Read a manifest folder and return the selected rows.

    Examples
    --------
    Keep scored T1w images of quality 2.5 or better::

        table = select("out/manifests", max_iqs=2.5, modalities=["T1w"])
    """
    selection = Selection(
        included=included,
        modalities=tuple(modalities) if modalities is not None else None,
        datasets=tuple(datasets) if datasets is not None else None,
        max_iqs=max_iqs,
        exclude_anonymization=tuple(exclude_anonymization),
        require_array=require_array,
    )
    return apply(read_table(manifest_dir), selection)
