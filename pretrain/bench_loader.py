"""``pretrain bench-loader OUTPUT``: the loader side by side with its baselines, in one run.

Prints one markdown table, every number measured in this run on this machine:

* raw 3D crop reads (no augmentation) on the same crops from our blosc2 arrays,
  from the source NIfTI with nibabel (full load + slice; needs ``--source``) and
  from an uncompressed memory-mapped copy (the practical limit; page cache warm);
* array write time per image (compress + write, same blosc2 settings as the file)
  and array size against the source NIfTI size recorded in the manifest;
* augmented samples per second: our loader vs nnssl's way
  (:mod:`pretrain.bench_nnssl`), each with ``--workers`` DataLoader workers and in
  one process, and the augmentation alone on CPU and (when present) on a GPU;
* peak memory per loader worker;
* loader workers per GPU for a ResEnc-L MAE at batch 8: ``ceil(demand / per-worker
  samples/s)``, with the GPU demand measured with ``--gpu-samples-per-s`` given, or
  an explicitly stated assumption.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import blosc2
import numpy as np
import torch
from torch.utils.data import DataLoader

import manifests

from pretrain.augment import region_masks, resample, rotation_matrix, sample_grid, source_window
from pretrain.bench_nnssl import NnsslWayDataset, baseline_name
from pretrain.data import CropDataset, ImageEntry, _worker_init, select_entries, single_threaded_blosc2
from pretrain.data_io import open_array, to_float32

#: Assumed GPU demand when none is given: ResEnc-L MAE, batch 8 of 160^3, ~1 step/s (A100, bf16).
ASSUMED_SAMPLES_PER_S = 8.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pretrain bench-loader", description=__doc__.splitlines()[0])
    p.add_argument("output", type=Path, metavar="OUTPUT", help="a `curate build` output with arrays")
    p.add_argument("--source", type=Path, help="SOURCE root the manifest's source_path is relative to")
    p.add_argument("--patch-size", type=int, default=160)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--seconds", type=float, default=30.0, help="total time for the throughput runs")
    p.add_argument("--crops", type=int, default=12, help="raw crops per read method")
    p.add_argument("--gpu-samples-per-s", type=float, help="measured GPU demand for the worker estimate")
    p.add_argument("--balance-only", action="store_true",
                   help="only compare balance = image and dataset (pretrain.bench_balance)")
    return p


@contextlib.contextmanager
def _one_torch_thread() -> Iterator[None]:
    """Run the block with one torch thread (our float16 -> float32 conversion uses torch).

    Two intra-op threads on a shared 2-core machine made each conversion ~8 ms instead of
    ~1 ms (threads waiting on a descheduled peer), and a loader worker has one thread anyway.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _median_ms(times: list[float]) -> float:
    return 1000.0 * statistics.median(times) if times else float("nan")


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _uncompressed_copies(entries: list[ImageEntry], tmp: Path) -> dict[str, tuple[Path, Path, Path]]:
    """``.npy`` copies per image: float32 image, stored-dtype image, packed masks."""
    paths: dict[str, tuple[Path, Path, Path]] = {}
    for entry in entries:
        handle = open_array(Path(entry.path))
        stored = handle.image[...]
        paths[entry.image_id] = tuple(tmp / f"{entry.image_id}_{kind}.npy" for kind in ("f32", "stored", "msk"))
        for path, data in zip(paths[entry.image_id], (to_float32(stored), stored, handle.masks[...])):
            np.save(path, data)
    return paths


def _mmap_read(image: Path, masks: Path, window: tuple[slice, ...]) -> tuple[np.ndarray, np.ndarray]:
    return to_float32(np.array(np.load(image, mmap_mode="r")[window])), np.array(np.load(masks, mmap_mode="r")[window])


def raw_reads(entries: list[ImageEntry], sources: dict[str, Path], patch: int, n: int,
              affines: dict[str, np.ndarray], tmp: Path) -> dict[str, list[float]]:
    """Seconds per crop on the same crops (interleaved), float32 image + uint8 masks out.

    Every method opens its file and reads the crop, timed together, one thread.

    ``ours``: our file; ``nifti``: nibabel full load + slice; ``mmap``: an
    uncompressed float32 ``.npy`` memory map (the usual uncompressed cache);
    ``mmap_stored``: an uncompressed memory map of the stored dtype (float16),
    converted to float32 the way we convert: the limit for our exact data;
    ``ours_stored``: our file, float16 kept (conversion left to later, e.g. the GPU).
    """
    import nibabel as nib

    rng = np.random.default_rng(0)
    times: dict[str, list[float]] = {"ours": [], "ours_stored": [], "nifti": [], "mmap": [], "mmap_stored": []}
    mm = _uncompressed_copies(entries, tmp)
    for i in range(n):
        entry = entries[i % len(entries)]
        handle = open_array(Path(entry.path))
        shape = np.array(handle.shape)
        lo = np.array([rng.integers(0, max(1, s - patch + 1)) for s in shape])
        hi = np.minimum(lo + patch, shape)
        window = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        # open + read, as the loader does per sample (and as the baselines open their files)
        times["ours"].append(_timed(lambda: open_array(Path(entry.path)).read(lo, hi)))
        times["ours_stored"].append(_timed(lambda: open_array(Path(entry.path)).read_stored(lo, hi)))
        f32, stored, msk = mm[entry.image_id]
        times["mmap"].append(_timed(lambda: _mmap_read(f32, msk, window)))
        times["mmap_stored"].append(_timed(lambda: _mmap_read(stored, msk, window)))
        src = sources.get(entry.image_id)
        if src is not None and src.is_file():
            v = np.linalg.inv(nib.load(str(src)).affine) @ affines[entry.image_id] @ np.array([*lo, 1.0])
            start = np.clip(np.rint(v[:3]).astype(int), 0, None)
            win = tuple(slice(int(s), int(s) + patch) for s in start)
            times["nifti"].append(_timed(lambda: np.asarray(nib.load(str(src)).dataobj, np.float32)[win]))
    return times


def _same_settings(array: blosc2.NDArray, data: np.ndarray) -> blosc2.NDArray:
    """``data`` compressed like ``array`` (codec, level, filters, chunks, blocks), one thread."""
    cp = array.cparams
    cparams = {"codec": cp.codec, "clevel": cp.clevel, "filters": list(cp.filters),
               "filters_meta": list(cp.filters_meta), "nthreads": 1}
    return blosc2.asarray(data, chunks=array.chunks, blocks=array.blocks, cparams=cparams)


def write_stats(entries: list[ImageEntry], sizes: dict[str, int | None], tmp: Path,
                limit: int = 3) -> tuple[list[float], list[float]]:
    """Per-image write seconds (each array with its file's blosc2 settings) and array/source size ratios."""
    writes: list[float] = []
    ratios: list[float] = []
    for entry in entries[:limit]:
        handle = open_array(Path(entry.path))
        arrays = {"/image": (handle.image, handle.image[...]), "/masks": (handle.masks, handle.masks[...])}
        target = tmp / f"rewrite_{entry.image_id}.b2z"

        def write() -> None:
            with blosc2.DictStore(str(target), mode="w") as store:
                for key, (array, data) in arrays.items():
                    store[key] = _same_settings(array, data)

        writes.append(_timed(write))
        target.unlink(missing_ok=True)
    for entry in entries:
        size = sizes.get(entry.image_id)
        if size:
            ratios.append(Path(entry.path).stat().st_size / size)
    return writes, ratios


class _MemoryWatch:
    """Polls the resident memory (RSS and unique USS) of this process's children."""

    def __init__(self) -> None:
        self.peak_rss = 0
        self.peak_uss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.wait(0.25):
            for child in me.children():
                try:
                    info = child.memory_full_info()
                except (psutil.Error, OSError):
                    continue
                self.peak_rss = max(self.peak_rss, info.rss)
                self.peak_uss = max(self.peak_uss, info.uss)

    def __enter__(self) -> "_MemoryWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def throughput(dataset: torch.utils.data.IterableDataset, batch: int, workers: int,
               seconds: float) -> tuple[float, _MemoryWatch]:
    """Augmented samples per second over ``seconds`` (after the first batch), and worker memory.

    ``workers=0`` runs in this process on one thread (torch and blosc2), which is
    what one loader worker gets, so it is the per-worker rate.
    """
    threads = torch.get_num_threads()
    if workers == 0:
        _worker_init(0)
    try:
        return _throughput(dataset, batch, workers, seconds)
    finally:
        torch.set_num_threads(threads)


def _throughput(dataset: torch.utils.data.IterableDataset, batch: int, workers: int,
                seconds: float) -> tuple[float, _MemoryWatch]:
    """Time an endless ``dataset`` (workers are forked before the memory-watch thread starts:
    forking while another thread holds a lock can deadlock the children)."""
    loader = DataLoader(dataset, batch_size=batch, num_workers=workers, worker_init_fn=_worker_init,
                        prefetch_factor=2 if workers else None)
    it = iter(loader)
    next(it)  # workers started and warm
    with _MemoryWatch() as watch:
        samples, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            samples += next(it)["image"].shape[0]
        rate = samples / (time.perf_counter() - start)
    del it
    return rate, watch


def augmentation_only(entry: ImageEntry, patch: int, device: str, n: int = 4) -> float:
    """Seconds per rotated+scaled sample of our resampling alone (region already in memory)."""
    handle = open_array(Path(entry.path))
    centre = (np.array(handle.shape) - 1) / 2.0
    matrix = rotation_matrix((0.3, -0.2, 0.4)) * 1.2
    lo, hi = source_window(centre, matrix, patch, handle.shape)
    image, masks = handle.read(lo, hi)
    img, msk = torch.from_numpy(image).to(device), region_masks(masks).to(device)

    def once() -> None:
        resample(img, msk, sample_grid(centre, matrix, patch, lo, image.shape, device))

    once()
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n):
        once()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / n


def _manifest_info(output: Path, source: Path | None) -> tuple[dict, dict, dict]:
    sizes, sources, affines = {}, {}, {}
    for r in manifests.read_records(output / "manifests"):
        if r.array_path is None:
            continue
        sizes[r.image_id] = r.file_size_bytes
        if source is not None:
            sources[r.image_id] = source / r.source_path
        if r.array_affine:
            affines[r.image_id] = np.reshape(r.array_affine, (4, 4))
    return sizes, sources, affines


def _row(measure: str, ours: str, baseline: str, which: str, ratio: str, target: str) -> str:
    return f"| {measure} | {ours} | {baseline} | {which} | {ratio} | {target} |"


def _fmt(value: float, spec: str = ".1f") -> str:
    return "n/a" if value is None or math.isnan(value) else format(value, spec)


def run(args: argparse.Namespace) -> list[str]:
    """Measure everything; return the markdown table lines.

    blosc2 runs single-threaded throughout, as in a loader worker (and so that
    forking workers is safe, see :func:`pretrain.data.single_threaded_blosc2`).
    """
    single_threaded_blosc2()
    entries = select_entries(args.output, manifests.Selection(included=True), "all", 0.0, 0)
    if not entries:
        raise SystemExit(f"pretrain bench-loader: no images with arrays under {args.output}")
    sizes, sources, affines = _manifest_info(args.output, args.source)
    P, W, B = args.patch_size, args.workers, args.batch_size
    with tempfile.TemporaryDirectory(prefix="bench-loader-") as tmp:
        with _one_torch_thread():  # like a loader worker, and like the single-threaded baselines
            reads = raw_reads(entries, sources, P, args.crops, affines, Path(tmp))
        writes, ratios = write_stats(entries, sizes, Path(tmp))
    ours_ms, nifti_ms, mmap_ms, stored_ms, ours16_ms = (
        _median_ms(reads[k]) for k in ("ours", "nifti", "mmap", "mmap_stored", "ours_stored"))
    slot = args.seconds / 4
    ours_ds = CropDataset(args.output, patch_size=P, selection=manifests.Selection(included=True), split="all")
    ours_ds.begin_epoch()
    endless_ours = _Endless(ours_ds)
    nnssl_ds = NnsslWayDataset(entries, P)
    ours_w, mem = throughput(endless_ours, B, W, slot)
    nnssl_w, mem_nnssl = throughput(nnssl_ds, B, W, slot)
    ours_1, _ = throughput(endless_ours, B, 0, slot)
    nnssl_1, _ = throughput(nnssl_ds, B, 0, slot)
    aug_cpu = augmentation_only(entries[0], P, "cpu")
    aug_gpu = augmentation_only(entries[0], P, "cuda") if torch.cuda.is_available() else float("nan")
    demand = args.gpu_samples_per_s or ASSUMED_SAMPLES_PER_S
    workers_needed = math.ceil(demand / ours_1) if ours_1 > 0 else float("nan")
    nnssl_needed = math.ceil(demand / nnssl_1) if nnssl_1 > 0 else float("nan")
    gib = 1024**3
    lines = [
        f"Images: {len(entries)}; patch {P}^3; batch {B}; {W} workers; torch {torch.__version__}; "
        f"{torch.get_num_threads()} threads; baseline: {baseline_name()}.",
        "",
        "| Measure | mri-curate | Baseline | Baseline is | Ratio | Target |",
        "|---|---|---|---|---|---|",
        _row("raw crop read, ms (median)", _fmt(ours_ms), _fmt(nifti_ms), "nibabel full load + slice",
             _fmt(nifti_ms / ours_ms, ".1f") + "x faster", ">= 3x faster"),
        _row("raw crop read, ms (median)", _fmt(ours_ms), _fmt(mmap_ms, ".2f"), "uncompressed mmap (warm)",
             _fmt(ours_ms / mmap_ms, ".1f") + "x slower", "<= 2x slower"),
        _row("raw crop read, ms (median)", _fmt(ours_ms), _fmt(stored_ms, ".2f"),
             "uncompressed mmap of the stored float16 (warm)", _fmt(ours_ms / stored_ms, ".1f") + "x slower",
             "(information)"),
        _row("raw crop read, float16 kept (no conversion), ms", _fmt(ours16_ms), _fmt(mmap_ms, ".2f"),
             "uncompressed mmap (warm)", _fmt(ours16_ms / mmap_ms, ".1f") + "x slower", "(information)"),
        _row("array write per image, s", _fmt(statistics.median(writes), ".2f"), "2.4", "nnssl (issue's figure)",
             "", "< 0.5"),
        _row("array size / source NIfTI", _fmt(statistics.median(ratios) if ratios else float("nan"), ".2f"),
             "1.00", "source .nii.gz", "", "<= 1.5"),
        _row(f"augmented samples/s, {W} workers", _fmt(ours_w, ".2f"), _fmt(nnssl_w, ".2f"), "nnssl way",
             _fmt(ours_w / nnssl_w, ".1f") + "x", ">= 2x"),
        _row("augmented samples/s, 1 worker (1 thread)", _fmt(ours_1, ".2f"), _fmt(nnssl_1, ".2f"), "nnssl way",
             _fmt(ours_1 / nnssl_1, ".1f") + "x", ">= 2x"),
        _row("rotate+scale resample, ms/sample (CPU)", _fmt(aug_cpu * 1000), "", "", "", ""),
        _row("rotate+scale resample, ms/sample (GPU)", _fmt(aug_gpu * 1000),
             "" if torch.cuda.is_available() else "no CUDA device", "", "", ""),
        _row("peak memory per worker, GiB (RSS / unique)", f"{mem.peak_rss / gib:.2f} / {mem.peak_uss / gib:.2f}",
             f"{mem_nnssl.peak_rss / gib:.2f} / {mem_nnssl.peak_uss / gib:.2f}", "nnssl way", "", "< 1.5"),
        _row("workers per GPU, ResEnc-L MAE batch 8", str(workers_needed), str(nnssl_needed), "nnssl way", "",
             "<= 8"),
        "",
        f"Workers per GPU = ceil(GPU demand / one worker's samples/s), demand {demand:.1f} samples/s "
        + ("(given)." if args.gpu_samples_per_s else "(assumed: batch 8 at ~1 step/s; pass --gpu-samples-per-s)."),
    ]
    return lines


class _Endless(torch.utils.data.IterableDataset):
    """Our dataset repeated epoch after epoch (throughput runs outlast one epoch)."""

    def __init__(self, dataset: CropDataset) -> None:
        super().__init__()
        self.dataset = dataset

    def __iter__(self):  # noqa: ANN204
        while True:
            yield from self.dataset
            self.dataset.begin_epoch()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the table; returns the exit status."""
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    if not (args.output / "manifests").is_dir():
        print(f"pretrain bench-loader: error: {args.output} has no manifests/ (a `curate build` output?)")
        return 2
    if args.balance_only:
        from pretrain.bench_balance import run as run_balance

        print("\n".join(run_balance(args)))
        return 0
    print("\n".join(run(args)))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
