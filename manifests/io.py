"""Reading and writing the Parquet manifest dataset.

A manifest is a folder of Parquet parts, ``part-<run>-<seq>.parquet``.  Each
part is written to a temporary name and renamed into place, so a reader never
sees half a file and may read while a build is still writing.  The same
``image_id`` may appear in several parts (a rerun rewrites rows); readers keep
the newest row, ordered by ``processed_at`` and then by part name.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from manifests.schema import ARROW_SCHEMA, ImageRecord, records_to_table, table_to_records

if TYPE_CHECKING:
    import pandas as pd

PART_GLOB = "part-*.parquet"


def new_run_id() -> str:
    """A sortable id for one build: UTC timestamp plus a random suffix."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    return f"{stamp}-{uuid.uuid4().hex[:6]}"


def write_part(manifest_dir: Path, records: Sequence[ImageRecord], run_id: str, seq: int,
               default_processed_at: str | None = None) -> Path:
    """Atomically write ``records`` as one Parquet part and return its path.

    ``default_processed_at`` fills ``processed_at`` where a record has none.
    """
    return write_table_part(manifest_dir, records_to_table(list(records)), run_id, seq,
                            default_processed_at)


def write_table_part(manifest_dir: Path, table: pa.Table, run_id: str, seq: int,
                     default_processed_at: str | None = None) -> Path:
    """:func:`write_part` for rows already in an Arrow table with :data:`ARROW_SCHEMA`."""
    manifest_dir.mkdir(parents=True, exist_ok=True)
    final = manifest_dir / f"part-{run_id}-{seq:06d}.parquet"
    tmp = manifest_dir / f".{final.name}.{uuid.uuid4().hex[:8]}.tmp"
    if default_processed_at is not None:
        index = table.schema.get_field_index("processed_at")
        filled = pc.fill_null(table["processed_at"], default_processed_at)
        table = table.set_column(index, table.schema.field(index), filled)
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return final


def list_parts(manifest_dir: Path) -> list[Path]:
    """Finished parts in write order (hidden temporary files are never listed)."""
    return sorted(manifest_dir.glob(PART_GLOB))


def _read_part(path: Path, schema: pa.Schema = ARROW_SCHEMA) -> pa.Table | None:
    try:
        if schema is ARROW_SCHEMA:
            table = pq.read_table(path)
        else:  # older parts may lack newer columns: read those present, add the rest as nulls
            present = set(pq.read_schema(path).names)
            table = pq.read_table(path, columns=[n for n in schema.names if n in present])
    except (OSError, pa.ArrowException):
        return None  # a part removed or replaced under us by a concurrent build
    missing = [f for f in schema if f.name not in table.column_names]
    for f in missing:
        table = table.append_column(f, pa.nulls(table.num_rows, f.type))
    return table.select(schema.names).cast(schema)


def _subschema(columns: Iterable[str] | None) -> pa.Schema:
    """The schema of ``columns`` plus the two that de-duplication needs (all when ``None``)."""
    if columns is None:
        return ARROW_SCHEMA
    wanted = set(columns) | {"image_id", "processed_at"}
    return pa.schema([f for f in ARROW_SCHEMA if f.name in wanted], metadata=ARROW_SCHEMA.metadata)


def read_table(manifest_dir: Path | str, parts: Iterable[Path] | None = None,
               columns: Iterable[str] | None = None) -> pa.Table:
    """Read the manifest as one Arrow table, one row per ``image_id`` (newest wins).

    ``columns`` restricts the read to those schema columns (plus ``image_id``
    and ``processed_at``), which is much faster on large manifests.
    """
    manifest_dir = Path(manifest_dir)
    schema = _subschema(columns)
    paths = list(parts) if parts is not None else list_parts(manifest_dir)
    tables = [t for t in (_read_part(p, schema) for p in paths) if t is not None]
    if not tables:
        return schema.empty_table()
    table = pa.concat_tables(tables)
    order = pa.array(range(table.num_rows), pa.int64())
    table = table.append_column("_order", order)
    frame = table.select(["image_id", "processed_at", "_order"]).to_pandas()  # imports pandas
    frame["processed_at"] = frame["processed_at"].fillna("")
    keep = frame.sort_values(["processed_at", "_order"]).drop_duplicates("image_id", keep="last")
    return table.take(pa.array(sorted(keep["_order"].tolist()))).drop_columns(["_order"])


def read_records(manifest_dir: Path | str) -> list[ImageRecord]:
    """Read the manifest as typed records, one per image."""
    return table_to_records(read_table(manifest_dir))


def read_frame(manifest_dir: Path | str) -> "pd.DataFrame":
    """Read the manifest as a pandas DataFrame, one row per image."""
    return read_table(manifest_dir).to_pandas()


def compact(manifest_dir: Path, run_id: str) -> None:
    """Rewrite the manifest as the parts of ``run_id`` alone, dropping older parts.

    Called at the end of a successful build: every current row then lives in a
    part of this run, so older parts are redundant.
    """
    for part in list_parts(manifest_dir):
        if f"part-{run_id}-" not in part.name:
            part.unlink(missing_ok=True)


def now_iso() -> str:
    """Current UTC time, ISO 8601 with microseconds (sorts as text)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")
