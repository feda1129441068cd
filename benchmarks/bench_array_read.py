"""Array-file crop reads under the caller's thread settings, idle and with the cores kept busy.

Issue 17 (0b): ``open_array(p).read(lo, hi)`` in a process with blosc2 and torch at their
default thread counts took 59 ms per 160^3 crop while another job kept the cores busy,
against 7 ms single-threaded: the decode and the float16 -> float32 copy were handed to
thread pools sized for every core.  This script reads the same random crops with

* ``before, default threads``: the earlier reader (arrays opened with the process-wide
  blosc2 thread count, one torch ``copy_`` per slab) with blosc2 and torch at their defaults;
* ``before, 1 thread``: the same with ``blosc2.set_nthreads(1)`` and ``torch.set_num_threads(1)``;
* ``now, default threads``: :meth:`pretrain.data_io.ArrayHandle.read` as it is, defaults left on,

interleaved crop by crop, idle and then with one busy-loop process per core.  Prints
median wall and process-CPU milliseconds per crop (CPU time counts every thread, so
spinning pools show up there).

Usage: ``python benchmarks/bench_array_read.py [--crops 18] [--patch 160] [--file F.b2z]``
(without ``--file`` a file is written from nilearn's MNI152 head into /work/cache or a temp dir).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import blosc2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pretrain import data_io  # noqa: E402

CORES = os.cpu_count() or 1


def make_file(directory: Path) -> Path:
    """An array file of the MNI152 template as ``curate build`` writes it."""
    from nilearn.datasets import load_mni152_template

    from curate.array_file import write_array
    from curate.arrays import prepare

    path = directory / "mni152.b2z"
    if not path.is_file():
        img = load_mni152_template(resolution=1)
        prepared = prepare(np.asarray(img.dataobj, np.float32), img.affine, None, None)
        write_array(path, prepared.image, prepared.masks, {})
    return path


def _old_read(path: Path, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The reader before this change: global blosc2 threads, one torch copy per slab."""
    handle = data_io.open_array(path)
    image = blosc2.open(str(path), mode="r", offset=_offset(path), mmap_mode="r")
    window = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    out = np.empty(tuple(int(b - a) for a, b in zip(lo, hi)), np.float32)
    target, first = torch.from_numpy(out), window[0].start
    for start, stop in data_io._slabs(first, window[0].stop, image.chunks[0], image.blocks[0]):
        slab = (slice(start, stop), *window[1:])
        buf = np.empty(tuple(s.stop - s.start for s in slab), image.dtype)
        image.get_slice_numpy(buf, ([s.start for s in slab], [s.stop for s in slab]))
        target[start - first:stop - first].copy_(torch.from_numpy(buf))
    handle.masks[window]
    return out


_OFFSETS: dict[Path, int] = {}


def _offset(path: Path) -> int:
    """Byte offset of ``image.b2nd`` inside the zip (as :func:`pretrain.data_io._open_members`)."""
    if path not in _OFFSETS:
        import zipfile

        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo("image.b2nd")
            archive.fp.seek(info.header_offset)  # type: ignore[union-attr]
            header = archive.fp.read(30)  # type: ignore[union-attr]
            _OFFSETS[path] = (info.header_offset + 30 + int.from_bytes(header[26:28], "little")
                              + int.from_bytes(header[28:30], "little"))
    return _OFFSETS[path]


def _new_read(path: Path, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return data_io.open_array(path).read(lo, hi)[0]


def _threads(n: int | None) -> None:
    blosc2.set_nthreads(n or CORES)
    torch.set_num_threads(n or CORES)


VARIANTS: dict[str, tuple[Callable, int | None]] = {
    "before, default threads": (_old_read, None),
    "before, 1 thread": (_old_read, 1),
    "now, default threads": (_new_read, None),
}


def measure(path: Path, boxes: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, tuple[float, float]]:
    """Median (wall ms, CPU ms) per variant over ``boxes``, variants interleaved per crop."""
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in VARIANTS}
    for lo, hi in boxes:
        for name, (read, threads) in VARIANTS.items():
            _threads(threads)
            t0, c0 = time.perf_counter(), time.process_time()
            read(path, lo, hi)
            times[name].append((time.perf_counter() - t0, time.process_time() - c0))
    _threads(None)
    return {k: (1e3 * statistics.median(w for w, _ in v), 1e3 * statistics.median(c for _, c in v))
            for k, v in times.items()}


def random_boxes(shape: tuple[int, ...], patch: int, n: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    size = np.minimum(patch, np.array(shape))
    out = []
    for _ in range(n):
        lo = np.array([rng.integers(0, s - p + 1) for s, p in zip(shape, size)])
        out.append((lo, lo + size))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--crops", type=int, default=18)
    ap.add_argument("--patch", type=int, default=160)
    ap.add_argument("--file", type=Path)
    args = ap.parse_args(argv)
    cache = Path("/work/cache/bench_array_read") if Path("/work/cache").is_dir() else Path(tempfile.mkdtemp())
    cache.mkdir(parents=True, exist_ok=True)
    path = args.file or make_file(cache)
    shape = data_io.open_array(path).shape
    boxes = random_boxes(shape, args.patch, args.crops)
    for lo, hi in boxes[:2]:  # the readers agree exactly
        assert np.array_equal(_old_read(path, lo, hi), _new_read(path, lo, hi))
    print(f"file {path.name} {shape}, crops {tuple(int(x) for x in boxes[0][1] - boxes[0][0])}, "
          f"{args.crops} crops, {CORES} cores, load average before: {os.getloadavg()[0]:.1f}")
    rows = {"idle": measure(path, boxes)}
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(CORES)]
    try:
        time.sleep(0.5)
        rows[f"{CORES} busy-loop processes"] = measure(path, boxes)
    finally:
        for proc in busy:
            proc.kill()
            proc.wait()
    print("| machine | reader | wall ms/crop (median) | CPU ms/crop (median) |\n|---|---|---|---|")
    for load, result in rows.items():
        for name, (wall, cpu) in result.items():
            print(f"| {load} | {name} | {wall:.1f} | {cpu:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
