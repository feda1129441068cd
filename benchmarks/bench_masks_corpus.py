"""Anonymization class and anon masks on the real anonymization corpus (``anon_corpus.py``).

For every case: the predicted class and confidence, recall of the truth
voxels removed/altered, the share of brain voxels flagged, for intact heads the
share of head voxels flagged, and CPU seconds (single-threaded) for the masks
stage maths (what :func:`curate.stages.masks.compute_masks` runs).  Prints the confusion
matrix, per-class accuracy, per-method figures and a reliability table
(confidence bins against observed accuracy), and writes everything as JSON.

Usage::

    python benchmarks/bench_masks_corpus.py [--cache /work/cache/anon/corpus] [--out results.json]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import zlib  # noqa: E402
from collections import Counter, defaultdict  # noqa: E402
from pathlib import Path  # noqa: E402

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402

# BENCH_CODE=/path/to/checkout measures another version of the code (the baseline)
sys.path.insert(0, os.environ.get("BENCH_CODE", str(Path(__file__).resolve().parents[1])))
sys.path.insert(1, str(Path(__file__).resolve().parent))

from curate.config import MasksConfig  # noqa: E402
from curate.masks import anatomy_mask, detect_anonymization  # noqa: E402

CLASSES = ("none", "defaced", "face_blurred", "skull_stripped")
BINS = (0.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.01)


def _mask(cache: Path, stem: str, key: str) -> np.ndarray | None:
    path = cache / f"{stem}_{key}.nii.gz"
    return np.asarray(nib.load(path).dataobj) > 0 if path.exists() else None


def run_case(cache: Path, entry: dict, cfg: MasksConfig, learned: bool) -> dict:
    """Measure one case (with the learned brain mask when ``learned``)."""
    img = nib.load(cache / f"{entry['stem']}.nii.gz")
    data = np.asarray(img.dataobj, dtype=np.float32)
    zooms = tuple(float(z) for z in img.header.get_zooms()[:3])
    t0 = time.process_time()
    anatomy = anatomy_mask(data, zooms, cfg.work_mm, cfg.closing_mm, cfg.noise_k,
                           cfg.floor_multiple, cfg.min_component_fraction)
    if learned:
        from curate.masks.learned import learned_brain_mask

        brain_est = learned_brain_mask(data, img.affine)
        result = detect_anonymization(data, img.affine, anatomy, cfg, brain=brain_est)
    else:
        result = detect_anonymization(data, img.affine, anatomy, cfg)
    cpu = time.process_time() - t0
    anon = result.mask > 0
    row = dict(entry, found=result.kind, conf=round(float(result.confidence), 3), cpu_s=round(cpu, 2),
               mvox=round(data.size / 1e6, 1),
               evidence={k: round(float(v), 3) for k, v in result.evidence.items()})
    removed, head, brain = (_mask(cache, entry["stem"], k) for k in ("removed", "head", "brain"))
    if removed is not None and head is not None:
        row["removed_share"] = round(float(removed.sum() / max(head.sum(), 1)), 4)
    if removed is not None and removed.any():
        row["recall"] = round(float((anon & removed).sum() / removed.sum()), 3)
    if brain is not None and brain.any():
        kept_brain = brain & ~(removed if removed is not None else np.zeros_like(brain))
        row["brain_flagged"] = round(float((anon & kept_brain).sum() / max(kept_brain.sum(), 1)), 4)
    if entry["kind"] == "none" and head is not None:
        row["head_flagged"] = round(float((anon & head).sum() / head.sum()), 4)
    return row


def confusion(rows: list[dict]) -> list[list[int]]:
    """Rows: truth class; columns: predicted (order of :data:`CLASSES`)."""
    counts = Counter((r["kind"], r["found"]) for r in rows)
    return [[counts[(t, p)] for p in CLASSES] for t in CLASSES]


def reliability(rows: list[dict]) -> list[dict]:
    """Observed accuracy per confidence bin."""
    out = []
    for lo, hi in zip(BINS[:-1], BINS[1:]):
        sel = [r for r in rows if lo <= r["conf"] < hi]
        if sel:
            acc = float(np.mean([r["kind"] == r["found"] for r in sel]))
            out.append(dict(bin=f"[{lo:.1f}, {min(hi, 1.0):.1f}]", n=len(sel), accuracy=round(acc, 3),
                            mean_conf=round(float(np.mean([r["conf"] for r in sel])), 3)))
    return out


def per_method(rows: list[dict]) -> list[dict]:
    """Accuracy and mean recall/brain/head flagged per method family (sources pooled)."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["method"]].append(r)
    out = []
    for method, sel in groups.items():
        item = dict(method=method, kind=sel[0]["kind"], n=len(sel),
                    accuracy=round(float(np.mean([r["kind"] == r["found"] for r in sel])), 3))
        for key in ("recall", "brain_flagged", "head_flagged", "cpu_s"):
            vals = [r[key] for r in sel if key in r]
            if vals:
                item[key] = round(float(np.min(vals) if key == "recall" else np.max(vals)), 4)
        out.append(item)
    return out


def _table(rows: list[dict], keys: list[str]) -> str:
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "–")) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def valid(row: dict) -> bool:
    """A case whose method changed at least 2 % of the head (else it was not anonymized at all).

    (dipy's median_otsu, a b0 masker, returns the whole head on T1 heads; a
    quickshear plane fitted to such a mask cuts nothing.)
    """
    return row["kind"] == "none" or row.get("removed_share", 1.0) >= 0.02


def report(rows: list[dict]) -> str:
    """Markdown summary (cases that :func:`valid` rejects are listed, not scored)."""
    dropped = [r["stem"] for r in rows if not valid(r)]
    rows = [r for r in rows if valid(r)]
    cm = confusion(rows)
    acc = np.mean([r["kind"] == r["found"] for r in rows])
    text = [f"cases: {len(rows)}; accuracy {acc:.3f}",
            "| truth \\ found | " + " | ".join(CLASSES) + " | accuracy |",
            "|---|" + "---|" * (len(CLASSES) + 1)]
    for t, line in zip(CLASSES, cm):
        n = sum(line)
        text.append(f"| {t} | " + " | ".join(map(str, line)) + f" | {line[CLASSES.index(t)] / n:.3f} |"
                    if n else f"| {t} | " + " | ".join(map(str, line)) + " | – |")
    wrong_hi = [r for r in rows if r["kind"] != r["found"] and r["conf"] >= 0.9]
    text += ["", f"wrong with confidence >= 0.9: {len(wrong_hi)} "
             f"{[(r['stem'], r['found'], r['conf']) for r in wrong_hi]}",
             f"not anonymized by their method (not scored): {dropped}", "",
             _table(reliability(rows), ["bin", "n", "accuracy", "mean_conf"]), "",
             _table(per_method(rows), ["method", "kind", "n", "accuracy", "recall", "brain_flagged",
                                       "head_flagged", "cpu_s"])]
    return "\n".join(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("/work/cache/anon/corpus"))
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--only", default="", help="substring of the case stems to run")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--learned", action="store_true", help="use deepbet's brain mask (rules+deepbet)")
    parser.add_argument("--shard", default="0/1", help="i/n: run every n-th case from the i-th")
    parser.add_argument("--follow", type=float, default=0.0,
                        help="keep measuring cases as they appear for this many seconds (corpus being built)")
    parser.add_argument("--resume", nargs="*", type=Path, default=[],
                        help="result files whose cases are not measured again")
    parser.add_argument("--merge", nargs="*", type=Path, default=None,
                        help="only print the report of these result files")
    args = parser.parse_args(argv)
    if args.merge:
        by_stem = {r["stem"]: r for path in args.merge for r in json.loads(path.read_text())}
        rows = list(by_stem.values())
        print(report(rows))
        return 0
    first, step = (int(v) for v in args.shard.split("/"))
    cfg = MasksConfig()
    rows: list[dict] = []
    for path in args.resume:  # measured already (by an earlier run of this command)
        if path.exists():
            rows += json.loads(path.read_text())
    done: set[str] = {r["stem"] for r in rows}
    stop = time.time() + args.follow
    while True:
        if args.follow:
            from anon_corpus import merge

            index = merge(args.cache)
        else:
            index = json.loads((args.cache / "index.json").read_text())
        todo = [e for e in index if e["stem"] not in done
                and zlib.crc32(e["stem"].encode()) % step == first
                and (not args.only or args.only in e["stem"])]
        for entry in todo:
            row = run_case(args.cache, entry, cfg, args.learned)
            rows.append(row)
            done.add(entry["stem"])
            if args.out:
                args.out.write_text(json.dumps(rows, indent=1))
            if args.verbose:
                print({k: row[k] for k in row if k not in ("truth_voxels",)}, flush=True)
        if time.time() >= stop:
            break
        if not todo:
            time.sleep(20)
    print(report(rows))
    print(f"\nmax RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6:.2f} GB; "
          f"max CPU {max(r['cpu_s'] for r in rows):.2f} s")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
