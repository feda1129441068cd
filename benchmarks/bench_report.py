"""Benchmark: ``curate report`` on a synthetic manifest vs a naive per-row baseline.

Both sides start from the same Parquet manifest on disk and compute the same
dataset-card numbers (card, modality counts, exclusion reasons, cumulative
images per dataset, metadata counts, IQS per modality, the excluded-files
rows).  Ours reads the columns it needs with pyarrow and aggregates them
column-wise in pandas (:mod:`qc.report.aggregate`); the baseline reads typed
records (:func:`manifests.io.read_records`) and builds every table by
iterating over them in Python, as the first ``curate`` summary did.  The
numbers are checked to agree.  The last column times our whole ``curate
report`` (figures and page included) on the same manifest.

Run::

    PYTHONPATH=. python benchmarks/bench_report.py --rows 10000 100000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

import pyarrow as pa

from manifests import io as mio
from manifests.schema import ImageRecord, table_to_records
from qc.report import aggregate as agg
from qc.report.synthetic import synthetic_table

from curate.report import load_manifest, make_report


def write_manifest(table: pa.Table, output: Path, part_rows: int = 5000) -> None:
    """Write ``table`` as manifest parts, like a build does."""
    records = table_to_records(table)
    run = mio.new_run_id()
    for seq, start in enumerate(range(0, len(records), part_rows)):
        mio.write_part(output / "manifests", records[start: start + part_rows], run, seq)


def ours(output: Path) -> dict[str, object]:
    """Dataset-card numbers the way the report computes them."""
    data = agg.prepare(load_manifest(output, agg.READ_COLUMNS))
    frame = data.frame
    card = agg.card(frame)
    meta = agg.metadata(frame)
    return {
        "card": card.loc["included"].tolist() + card.loc["all indexed"].tolist(),
        "modalities": agg.modality_counts(frame)["images"].to_dict(),
        "reasons": data.reason_counts.to_dict(),
        "datasets": agg.dataset_cumulative(frame)["images"].to_dict(),
        "sex": meta["sex"].to_dict() if "sex" in meta else {},
        "iqs_n": {m: len(v) for m, v in agg.iqs_by_modality(frame).items()},
        "excluded": len(agg.excluded_rows(frame, 10**9)),
    }


def _card_naive(records: list[ImageRecord]) -> list[int]:
    out: list[int] = []
    for part in ([r for r in records if r.included], records):
        subjects = {(r.dataset, r.subject) for r in part if r.subject is not None}
        sessions = {(r.dataset, r.subject, r.session or "") for r in part if r.subject is not None}
        out += [len(part), len(subjects), len(sessions), len({r.dataset for r in part})]
    return out


def naive(output: Path) -> dict[str, object]:
    """The same numbers by iterating over typed records in Python."""
    records = mio.read_records(output / "manifests")
    modalities: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    datasets: Counter[str] = Counter()
    sex: Counter[str] = Counter()
    iqs: dict[str, list[float]] = defaultdict(list)
    excluded = []
    names = {"m": "M", "male": "M", "f": "F", "female": "F"}
    for r in records:
        modalities[r.modality] += 1
        reasons.update(r.exclusion_reasons)
        if r.iqs is not None:
            iqs[r.modality].append(r.iqs)
        if r.included:
            datasets[r.dataset] += 1
            if r.sex is not None:
                key = r.sex.strip().lower()
                sex[names.get(key, key)] += 1
        else:
            excluded.append((r.dataset, r.source_path, r.modality, ", ".join(r.exclusion_reasons),
                             r.exclusion_detail or ""))
    excluded.sort()
    return {
        "card": _card_naive(records), "modalities": dict(modalities), "reasons": dict(reasons),
        "datasets": dict(datasets), "sex": dict(sex),
        "iqs_n": {m: len(v) for m, v in iqs.items()}, "excluded": len(excluded),
    }


def _best(fn, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def run(rows: list[int], repeat: int) -> str:
    lines = ["| manifest rows | ours: read + aggregate (s) | naive per-row (s) | speed-up | "
             "ours: whole `curate report` (s) |", "|---:|---:|---:|---:|---:|"]
    for n in rows:
        with tempfile.TemporaryDirectory() as tmp:
            output = Path(tmp)
            table = synthetic_table(n, seed=0)
            write_manifest(table, output)
            t_ours, a = _best(lambda: ours(output), repeat)
            t_naive, b = _best(lambda: naive(output), repeat)
            if a != b:
                raise SystemExit(f"results differ at {n} rows:\n{a}\n{b}")
            t_report, _ = _best(lambda: make_report(output, workers=1), repeat)
            lines.append(f"| {table.num_rows:,} | {t_ours:.2f} | {t_naive:.2f} | "
                         f"{t_naive / t_ours:.1f}x | {t_report:.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    print(run(args.rows, args.repeat))


if __name__ == "__main__":
    main()
