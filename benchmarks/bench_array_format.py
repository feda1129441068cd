"""Storage candidates for the pre-training arrays, side by side on the same data and the same crops.

Usage: ``python benchmarks/bench_array_format.py OUTPUT [--crops 12]`` where OUTPUT is a
``curate build`` output with arrays (e.g. from ``benchmarks/make_loader_output.py``).
Every stored image (float16) and its packed masks are rewritten in each candidate
layout; then the same random 160^3 crops are read from every candidate, interleaved,
one thread (blosc2 and torch), unless a row says otherwise; blosc2 files are opened
memory-mapped, as the loader opens them.  Columns:

* crop ms, stored: image (float16) + masks as stored;
* crop ms, float32: float32 image + masks, what the loader needs: for our layout
  ``ArrayHandle.read``'s slab-by-slab decode and convert
  (:func:`pretrain.data_io.decode_float32`), for the others the stored read then
  :func:`pretrain.data_io.to_float32`;
* write s/image, size against the source ``.nii.gz`` (median over images; the
  manifest's ``file_size_bytes``), MB and files per image.

Prints a markdown table.  The uncompressed ``.npy`` rows are the memory-mapped limit
(page cache warm), not candidates.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import blosc2
import numpy as np
import torch

import manifests
from pretrain.data_io import decode_float32, to_float32

C, F = blosc2.Codec, blosc2.Filter
Window = tuple[slice, ...]


@dataclass(frozen=True)
class Candidate:
    """One storage layout; ``kind`` is b2z (our two-array DictStore), b2nd, zarr, zarr-sharded or npy."""

    name: str
    kind: str = "b2z"
    codec: blosc2.Codec = C.LZ4HC
    clevel: int = 1
    image_filter: blosc2.Filter = F.SHUFFLE
    masks_codec: blosc2.Codec = C.BLOSCLZ
    masks_clevel: int = 5
    masks_filter: blosc2.Filter = F.NOFILTER
    blocks: tuple[int, int, int] = (32, 32, 64)
    chunks: tuple[int, int, int] = (64, 64, 64)
    mantissa_bits: int = 10
    threads: int = 1
    zarr: dict = field(default_factory=dict)


CANDIDATES = [
    Candidate("v1 defaults: ZSTD-1 + shuffle on both arrays, 32^3 blocks", codec=C.ZSTD, clevel=1,
              masks_codec=C.ZSTD, masks_clevel=1, masks_filter=F.SHUFFLE, blocks=(32, 32, 32)),
    Candidate("ZSTD-1 image, masks BLOSCLZ unfiltered", codec=C.ZSTD, clevel=1),
    Candidate("**LZ4HC-1 + shuffle, masks BLOSCLZ unfiltered, 32x32x64 (ours)**"),
    Candidate("LZ4HC-3", clevel=3),
    Candidate("LZ4HC-5", clevel=5),
    Candidate("LZ4HC-9", clevel=9),
    Candidate("LZ4-5", codec=C.LZ4, clevel=5),
    Candidate("BLOSCLZ-5", codec=C.BLOSCLZ, clevel=5),
    Candidate("LZ4HC-1 + bitshuffle", image_filter=F.BITSHUFFLE),
    Candidate("LZ4HC-1, 16^3 blocks", blocks=(16, 16, 16)),
    Candidate("LZ4HC-1, 32^3 blocks", blocks=(32, 32, 32)),
    Candidate("LZ4HC-1, 8x32x64 blocks", blocks=(8, 32, 64)),
    Candidate("lossy: float16 rounded to 8 mantissa bits, LZ4HC-1", mantissa_bits=8),
    Candidate("ours with 2 blosc2 threads (not like for like)", threads=2),
    Candidate("blosc2 .b2nd, one structured array, LZ4HC-1", kind="b2nd"),
    Candidate("zarr v3, 64^3 chunk files, blosc LZ4HC-1", kind="zarr"),
    Candidate("zarr v3, sharded, blosc LZ4HC-1", kind="zarr-sharded"),
    Candidate("uncompressed .npy memory map, float32 image (limit)", kind="npy", zarr={"dtype": "float32"}),
    Candidate("uncompressed .npy memory map, float16 image (limit)", kind="npy"),
]


def round_mantissa(image: np.ndarray, bits: int) -> np.ndarray:
    """float16 rounded (half to even) to ``bits`` of its 10 mantissa bits: relative error <= 2^-(bits+1).

    blosc2's TRUNC_PREC filter rejects float16 (it handles 4- and 8-byte floats), hence this.
    """
    if bits >= 10:
        return image
    drop = 10 - bits
    u = image.view(np.uint16).astype(np.uint32)
    u = (u + (1 << (drop - 1)) - 1 + ((u >> drop) & 1)) >> drop << drop
    return u.astype(np.uint16).view(np.float16)


def _cparams(codec: blosc2.Codec, clevel: int, filt: blosc2.Filter) -> dict:
    return {"codec": codec, "clevel": clevel, "filters": [filt], "nthreads": 1}


def write(cand: Candidate, root: Path, image: np.ndarray, masks: np.ndarray) -> Path:
    """Write one image in the candidate layout under ``root``; returns the file or folder."""
    image = round_mantissa(image, cand.mantissa_bits)
    if cand.kind == "b2z":
        path = root / "a.b2z"
        with blosc2.DictStore(str(path), mode="w") as store:
            store["/image"] = blosc2.asarray(image, chunks=cand.chunks, blocks=cand.blocks,
                                             cparams=_cparams(cand.codec, cand.clevel, cand.image_filter))
            store["/masks"] = blosc2.asarray(masks, chunks=cand.chunks, blocks=cand.blocks,
                                             cparams=_cparams(cand.masks_codec, cand.masks_clevel, cand.masks_filter))
        return path
    if cand.kind == "b2nd":
        data = np.empty(image.shape, dtype=[("image", image.dtype), ("masks", masks.dtype)])
        data["image"], data["masks"] = image, masks
        blosc2.asarray(data, urlpath=str(root / "a.b2nd"), mode="w", chunks=cand.chunks, blocks=cand.blocks,
                       cparams=_cparams(cand.codec, cand.clevel, cand.image_filter))
        return root / "a.b2nd"
    if cand.kind == "npy":
        np.save(root / "image.npy", image.astype(cand.zarr.get("dtype", image.dtype)))
        np.save(root / "masks.npy", masks)
        return root
    return _write_zarr(cand, root, image, masks)


def _write_zarr(cand: Candidate, root: Path, image: np.ndarray, masks: np.ndarray) -> Path:
    import zarr
    from zarr.codecs import BloscCodec

    path = root / "a.zarr"
    group = zarr.open_group(str(path), mode="w")
    for name, data, shuffle in (("image", image, "shuffle"), ("masks", masks, "noshuffle")):
        codec = BloscCodec(cname=cand.codec.name.lower(), clevel=cand.clevel, shuffle=shuffle)
        shards = tuple(-(-s // c) * c for s, c in zip(data.shape, cand.chunks)) if cand.kind == "zarr-sharded" else None
        arr = group.create_array(name, shape=data.shape, dtype=data.dtype, chunks=cand.chunks, shards=shards,
                                 compressors=[codec])
        arr[...] = data
    return path


def reader(cand: Candidate, path: Path) -> tuple[Callable[[Window], tuple[np.ndarray, np.ndarray]],
                                                 Callable[[Window], np.ndarray]]:
    """Functions reading one window: as stored ``(image, masks)``, and the image as float32.

    For our layout the float32 read is the loader's (:func:`pretrain.data_io.decode_float32`,
    slab by slab); for the others it is the stored read then :func:`pretrain.data_io.to_float32`.
    """
    if cand.kind == "b2z":
        store = blosc2.DictStore(str(path), mode="r", mmap_mode="r", dparams=blosc2.DParams(nthreads=cand.threads))
        image, masks = store["/image"], store["/masks"]
        return (lambda w: (image[w], masks[w])), (lambda w: (decode_float32(image, w), masks[w]))
    stored = _stored_reader(cand, path)
    return stored, (lambda w: (lambda im, m: (to_float32(im), m))(*stored(w)))


def _stored_reader(cand: Candidate, path: Path) -> Callable[[Window], tuple[np.ndarray, np.ndarray]]:
    if cand.kind == "b2nd":
        arr = blosc2.open(str(path), mode="r", mmap_mode="r")

        def structured(w: Window) -> tuple[np.ndarray, np.ndarray]:
            region = arr[w]
            return np.ascontiguousarray(region["image"]), np.ascontiguousarray(region["masks"])
        return structured
    if cand.kind == "npy":
        return lambda w: (np.array(np.load(path / "image.npy", mmap_mode="r")[w]),
                          np.array(np.load(path / "masks.npy", mmap_mode="r")[w]))
    import zarr

    group = zarr.open_group(str(path), mode="r")
    return lambda w: (group["image"][w], group["masks"][w])


def _files(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]


def _source_sizes(output: Path) -> dict[str, int]:
    """Array file name -> source ``.nii.gz`` size, from the manifest."""
    return {Path(r.array_path).name: r.file_size_bytes for r in manifests.read_records(output / "manifests")
            if r.array_path and r.file_size_bytes}


def _write_all(root: Path, image: np.ndarray, masks: np.ndarray, source_size: int | None,
               stats: dict[str, dict[str, list[float]]]) -> list[Callable]:
    """Write ``image``/``masks`` in every candidate layout under ``root``; returns one reader each."""
    readers = []
    for k, cand in enumerate(CANDIDATES):
        folder = root / str(k)
        folder.mkdir()
        start = time.perf_counter()
        path = write(cand, folder, image, masks)
        s = stats[cand.name]
        s["write"].append(time.perf_counter() - start)
        s["bytes"].append(sum(p.stat().st_size for p in _files(path)))
        s["files"].append(len(_files(path)))
        if source_size and cand.kind != "npy":
            s["ratio"].append(s["bytes"][-1] / source_size)
        readers.append(reader(cand, path))
    return readers


def measure(arrays: list[Path], crops: int, sizes: dict[str, int]) -> dict[str, dict[str, list[float]]]:
    """Write every candidate for every array, then time the same crops on all of them, interleaved."""
    stats = {c.name: {"stored": [], "f32": [], "write": [], "ratio": [], "bytes": [], "files": []}
             for c in CANDIDATES}
    rng = np.random.default_rng(0)
    for array in arrays:
        src = blosc2.DictStore(str(array), mode="r")
        image, masks = src["/image"][...].astype(np.float16), src["/masks"][...]
        with tempfile.TemporaryDirectory(prefix="bench-array-format-") as tmp:
            readers = _write_all(Path(tmp), image, masks, sizes.get(array.name), stats)
            for _ in range(crops):
                lo = [int(rng.integers(0, max(1, d - 160 + 1))) for d in image.shape]
                window = tuple(slice(a, a + 160) for a in lo)
                for cand, read in zip(CANDIDATES, readers):
                    _time_crop(read, window, stats[cand.name])
    return stats


def _time_crop(read: tuple[Callable, Callable], window: Window, s: dict[str, list[float]]) -> None:
    for key, fn in zip(("stored", "f32"), read):
        start = time.perf_counter()
        fn(window)
        s[key].append(time.perf_counter() - start)


def table(stats: dict[str, dict[str, list[float]]]) -> list[str]:
    """The markdown table, one row per candidate."""
    med = statistics.median
    lines = ["| Candidate | crop ms, stored (median) | crop ms, float32 (median) | write s/image | "
             "size / source .nii.gz | MB/image | files/image |",
             "|---|---|---|---|---|---|---|"]
    for name, s in stats.items():
        ratio = f"{med(s['ratio']):.2f}" if s["ratio"] else ""
        lines.append(f"| {name} | {1000 * med(s['stored']):.1f} | {1000 * med(s['f32']):.1f} | "
                     f"{med(s['write']):.2f} | {ratio} | {statistics.mean(s['bytes']) / 1e6:.1f} | "
                     f"{max(s['files'])} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--crops", type=int, default=12, help="random 160^3 crops per image")
    args = parser.parse_args()
    blosc2.set_nthreads(1)
    torch.set_num_threads(1)
    arrays = sorted((args.output / "arrays").rglob("*.b2z"))
    if not arrays:
        print(f"bench_array_format: no .b2z arrays under {args.output / 'arrays'}")
        return 2
    stats = measure(arrays, args.crops, _source_sizes(args.output))
    print(f"{len(arrays)} images, {args.crops} crops each; blosc2 {blosc2.__version__}, torch {torch.__version__}")
    print("\n".join(table(stats)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
