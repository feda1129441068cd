"""Loader throughput with AMAES's augmentation reversal against the loader without it.

Usage: ``python benchmarks/bench_reversal_loader.py OUTPUT [--patch 128] [--workers 2]
[--rounds 3] [--batches 8]`` with OUTPUT from ``benchmarks/make_loader_output.py``.

Alternates rounds of the two loaders (same OUTPUT, crops, workers, batch 2):

* ``nnssl spatial``: the S3D / MAE loader (rotation, scaling, mirroring; z-scored);
* ``AMAES reversal``: AMAES's spatial set with elastic deformation, [0, 1] scaling and
  the input-only intensity augmentations (the batch then carries input and target).

Prints augmented samples per second (wall, the first batch of a round, worker start-up,
left out) and the loader workers' CPU seconds per sample (``RUSAGE_CHILDREN``: workers
are not persistent, so every round's workers have exited and been counted).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pretrain.data import make_loader  # noqa: E402

LOADERS = {"nnssl spatial": {"spatial": "nnssl", "intensity": "none", "scale": "zscore"},
           "AMAES reversal": {"spatial": "amaes", "intensity": "amaes", "scale": "unit"}}


def one_round(output: Path, options: dict, patch: int, workers: int, batches: int, seed: int) -> tuple[float, float]:
    """(samples/s after the first batch, worker CPU s per sample) of one pass of ``batches`` batches."""
    loader = make_loader(output, patch_size=patch, batch_size=2, workers=workers, split="all", seed=seed,
                         **options)
    samples, start = 0, None
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    while samples < 2 * batches:
        for batch in loader:
            if start is None:
                start = time.perf_counter()
                continue
            samples += batch["image"].shape[0]
            if samples >= 2 * batches:
                break
    wall = time.perf_counter() - start
    del loader
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    return samples / wall, cpu / (samples + 2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("output", type=Path)
    ap.add_argument("--patch", type=int, default=128)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batches", type=int, default=8)
    args = ap.parse_args(argv)
    results: dict[str, list[tuple[float, float]]] = {k: [] for k in LOADERS}
    for r in range(args.rounds):
        for name, options in LOADERS.items():
            results[name].append(one_round(args.output, options, args.patch, args.workers, args.batches, r))
            print(f"  round {r} {name}: {results[name][-1][0]:.1f} samples/s", file=sys.stderr, flush=True)
    print(f"{args.workers} workers, {args.patch}^3 crops, batch 2, {args.rounds} rounds of {args.batches} batches, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}")
    print("| loader | samples/s (median of rounds) | worker CPU s/sample (median) |\n|---|---|---|")
    for name, rows in results.items():
        print(f"| {name} | {statistics.median(r[0] for r in rows):.1f} | "
              f"{statistics.median(r[1] for r in rows):.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
