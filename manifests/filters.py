"""Row filters shared by every consumer of a manifest (reports, pre-training).

Filters work on Arrow tables with pyarrow compute, so a 100k-row manifest is
filtered without building Python objects per row.  :func:`apply` keeps the rows a
:class:`Selection` selects; :func:`explain` says, filter by filter, how many rows,
subjects and datasets each one dropped (for a run's start-up line).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
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
    exclude_datasets
        Drop rows whose ``dataset`` is listed (applied after ``datasets``).
    max_iqs
        Keep rows with ``iqs <= max_iqs``.
    max_iqs_by_modality
        ``(modality, limit)`` pairs that replace ``max_iqs`` for that modality
        (nnssl keeps FA up to 3.5 while the rest stop at 3).
    keep_unscored
        Whether rows without a score pass an IQS limit (by default they are dropped
        wherever a limit applies; without any limit every row passes).
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
    exclude_datasets: tuple[str, ...] = ()
    max_iqs_by_modality: tuple[tuple[str, float], ...] = ()
    keep_unscored: bool = False


Mask = Callable[[pa.Table], pa.Array]


def _in(table: pa.Table, column: str, values: Iterable[str]) -> pa.Array:
    return pc.fill_null(pc.is_in(table[column], pa.array(list(values), pa.string())), False)


def _iqs_limit(table: pa.Table, selection: Selection) -> pa.Array:
    """Per-row IQS limit (null: no limit), ``max_iqs`` unless the modality has its own."""
    limit = pa.array([selection.max_iqs] * table.num_rows, pa.float64())
    for modality, value in selection.max_iqs_by_modality:
        limit = pc.if_else(pc.fill_null(pc.equal(table["modality"], modality), False), value, limit)
    return limit


def _iqs_mask(table: pa.Table, selection: Selection) -> pa.Array:
    limit = _iqs_limit(table, selection)
    passes = pc.less_equal(table["iqs"], limit)
    unscored = pc.and_(pc.is_valid(limit), pc.is_null(table["iqs"]))
    passes = pc.if_else(unscored, selection.keep_unscored, passes)
    return pc.fill_null(pc.or_kleene(pc.is_null(limit), passes), False)


def steps(selection: Selection) -> Iterator[tuple[str, Mask]]:
    """The selection's filters in order, each as ``(reason a row is dropped, keep-mask)``."""
    s = selection
    if s.included is not None:
        yield ("excluded by curate" if s.included else "included",
               lambda t: pc.fill_null(pc.equal(t["included"], s.included), False))
    if s.modalities is not None:
        yield "modality not selected", lambda t: _in(t, "modality", s.modalities or ())
    if s.datasets is not None:
        yield "dataset not selected", lambda t: _in(t, "dataset", s.datasets or ())
    if s.exclude_datasets:
        yield "dataset left out", lambda t: pc.invert(_in(t, "dataset", s.exclude_datasets))
    if s.max_iqs is not None or s.max_iqs_by_modality:
        yield "IQS above the limit or unscored", lambda t: _iqs_mask(t, s)
    if s.exclude_anonymization:
        yield "anonymization left out", lambda t: pc.invert(_in(t, "anonymization", s.exclude_anonymization))
    if s.require_array:
        yield "no array yet", lambda t: pc.is_valid(t["array_path"])


def apply(table: pa.Table, selection: Selection) -> pa.Table:
    """Return the rows of ``table`` that ``selection`` keeps."""
    for _, keep in steps(selection):
        table = table.filter(keep(table))
    return table


@dataclass(frozen=True, slots=True)
class Counts:
    """Rows, subjects and datasets of a table (subject = ``dataset/subject``)."""

    rows: int
    subjects: int
    datasets: int

    @classmethod
    def of(cls, table: pa.Table) -> Counts:
        """Count ``table``; a row without a subject counts as its own subject."""
        keys = {(d, s if s is not None else f"image-{i}") for d, s, i in zip(
            table["dataset"].to_pylist(), table["subject"].to_pylist(), table["image_id"].to_pylist())}
        return cls(table.num_rows, len(keys), len({d for d, _ in keys}))

    def __str__(self) -> str:
        return f"{self.rows} rows, {self.subjects} subjects, {self.datasets} datasets"


def explain(table: pa.Table, selection: Selection) -> tuple[Counts, Counts, list[tuple[str, Counts]]]:
    """``(before, kept, dropped)``: counts of ``table``, of what ``selection`` keeps, and what
    each filter dropped, in order (a subject counts as dropped by a filter when that filter
    removed its last remaining row; so each column of ``dropped`` adds up with ``kept``)."""
    before = current = Counts.of(table)
    dropped = []
    for reason, keep in steps(selection):
        table = table.filter(keep(table))
        now = Counts.of(table)
        dropped.append((reason, Counts(current.rows - now.rows, current.subjects - now.subjects,
                                       current.datasets - now.datasets)))
        current = now
    return before, current, dropped


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
