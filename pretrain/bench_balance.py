"""``pretrain bench-loader OUTPUT --balance-only``: what balanced sampling costs, side by side.

Two measurements, each interleaved (image balance, then dataset balance, in turn)
so machine load hits both alike:

* loader throughput on OUTPUT's real arrays: augmented samples/s and process CPU
  seconds per sample in one process (one thread, as a loader worker), and samples/s
  with ``--workers`` loader workers.  ``dataset, alpha 1`` draws the same mix of images
  as ``image`` through the weighted-draw path, so their ratio is the cost of the
  machinery; ``dataset, alpha 0`` changes the mix (smaller datasets' images come up
  more often), so its per-sample cost also reflects those images' sizes;
* the per-epoch index work at OpenMind's scale: 114k images in 800 datasets with
  heavy-tailed sizes; a seeded permutation (image) against the weights plus seeded
  weighted draws (dataset).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

import manifests

from pretrain.data import CropDataset, ImageEntry, _worker_init
from pretrain.sampling import balance_weights, epoch_order

ROUNDS = 6

MODES = {"image": ("image", 0.0), "dataset, alpha 1": ("dataset", 1.0), "dataset, alpha 0": ("dataset", 0.0)}


def _in_process(ds: CropDataset, seconds: float) -> tuple[float, float]:
    """(samples/s, CPU s/sample) of one endless pass over ``ds`` in this process."""
    n, wall0, cpu0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - wall0 < seconds:
        for _ in ds:
            n += 1
            if time.perf_counter() - wall0 >= seconds:
                break
        else:
            ds.begin_epoch()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return n / wall, cpu / max(n, 1)


def loader_rounds(args: argparse.Namespace, rounds: int = ROUNDS) -> dict[str, dict[str, list[float]]]:
    """Interleaved throughput rounds per balance mode."""
    from pretrain.bench_loader import _Endless, throughput

    _worker_init(0)
    sel = manifests.Selection(included=True)
    sets = {m: CropDataset(args.output, patch_size=args.patch_size, selection=sel, split="all", balance=b,
                           balance_alpha=a) for m, (b, a) in MODES.items()}
    out: dict[str, dict[str, list[float]]] = {m: {"rate1": [], "cpu": [], "rateW": []} for m in MODES}
    slot = args.seconds / (rounds * len(MODES) * 2)
    for _ in range(rounds):
        for m, ds in sets.items():
            ds.begin_epoch()
            rate, cpu = _in_process(ds, slot)
            out[m]["rate1"].append(rate)
            out[m]["cpu"].append(cpu)
            rate_w, _ = throughput(_Endless(ds), args.batch_size, args.workers, slot)
            out[m]["rateW"].append(rate_w)
    return out


def heavy_tailed_entries(n_images: int = 114_000, n_datasets: int = 800, seed: int = 0) -> list[ImageEntry]:
    """``n_images`` entries over ``n_datasets`` with Zipf-like sizes (the largest ~ 1/6 of all)."""
    sizes = 1.0 / np.arange(1, n_datasets + 1)
    counts = np.maximum(1, np.round(sizes / sizes.sum() * n_images)).astype(int)
    rng = np.random.default_rng(seed)
    return [ImageEntry(f"{d}-{k}", f"ds{d}/s{rng.integers(1 << 30)}", "", f"ds{d}")
            for d, c in enumerate(counts) for k in range(c)]


def _median_ms(fn: Callable[[], object], repeats: int = 7) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * statistics.median(times)


def index_cost(entries: list[ImageEntry]) -> dict[str, float]:
    """Median ms per epoch of the index work: permutation vs weights + weighted draws."""
    n = len(entries)
    weights = balance_weights(entries, "dataset", 0.0)
    return {
        "image": _median_ms(lambda: epoch_order(n, seed=0, epoch=1)),
        "dataset": _median_ms(lambda: epoch_order(n, seed=0, epoch=1, weights=weights)),
        "weights": _median_ms(lambda: balance_weights(entries, "dataset", 0.0), repeats=3),
    }


def run(args: argparse.Namespace) -> list[str]:
    """Measure and return the markdown lines."""
    loader = loader_rounds(args)
    entries = heavy_tailed_entries()
    cost = index_cost(entries)
    med = {m: {k: statistics.median(v) for k, v in loader[m].items()} for m in MODES}
    n_ds = len({e.dataset for e in entries})
    names = list(MODES)

    def row(label: str, key: str, spec: str) -> str:
        values = " | ".join(format(med[m][key], spec) for m in names)
        ratios = " | ".join(f"{med[m][key] / med['image'][key]:.2f}" for m in names[1:])
        return f"| {label} | {values} | {ratios} |"

    return [
        f"Patch {args.patch_size}^3, batch {args.batch_size}, {args.workers} workers; medians of {ROUNDS} "
        f"interleaved rounds of {args.seconds / (ROUNDS * len(MODES) * 2):.1f} s per measure.",
        "",
        f"| Measure | {' | '.join(names)} | {' | '.join(f'{m} / image' for m in names[1:])} |",
        "|---|" + "---|" * (2 * len(names) - 1),
        row("samples/s, 1 process (1 thread)", "rate1", ".2f"),
        row("CPU s per sample, 1 process", "cpu", ".4f"),
        row(f"samples/s, {args.workers} workers", "rateW", ".2f"),
        "",
        f"Epoch order at OpenMind's scale ({len(entries):,} images, {n_ds} datasets, median of 7): "
        f"permutation {cost['image']:.1f} ms, weighted draws {cost['dataset']:.1f} ms, weights "
        f"{cost['weights']:.0f} ms (once per manifest read).",
    ]
