"""blosc2 ``.b2nd`` vs zarr for the pre-training arrays, side by side on the same data.

Usage: ``python benchmarks/bench_array_format.py OUTPUT [--crops 15]`` where OUTPUT holds
arrays from ``curate build`` (e.g. ``benchmarks/make_loader_output.py``).  For each
array: write time, size, files per image (zarr counts its metadata files) and the
median time of random 160^3 crop reads (image + masks as stored, same crops for every
format, interleaved).  Same codec for
the layouts (ZSTD level 1, byte shuffle, 64^3 chunks, 32^3 blosc2 blocks); the last two
rows change only the codec of our layout.  Prints a markdown table.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import blosc2
import numpy as np


CPARAMS = {"codec": blosc2.Codec.ZSTD, "clevel": 1, "filters": [blosc2.Filter.SHUFFLE], "nthreads": 1}


def _write_b2nd(root: Path, data: np.ndarray) -> object:
    """One structured-dtype array (image f2 + masks u1 per voxel) in one .b2nd file."""
    return blosc2.asarray(data, urlpath=str(root / "a.b2nd"), mode="w", chunks=(64, 64, 64),
                          blocks=(32, 32, 32), cparams=CPARAMS)


def _write_b2z(root: Path, data: np.ndarray, name: str = "a.b2z", cparams: dict | None = None) -> object:
    """Two arrays (image, masks) in one blosc2 DictStore .b2z file: our format."""
    with blosc2.DictStore(str(root / name), mode="w") as store:
        for key in ("image", "masks"):
            store["/" + key] = blosc2.asarray(np.ascontiguousarray(data[key]), chunks=(64, 64, 64),
                                              blocks=(32, 32, 32), cparams=cparams or CPARAMS)
    store = blosc2.DictStore(str(root / name), mode="r")
    return {"image": store["/image"], "masks": store["/masks"], "_store": store}


def _write_zarr(root: Path, data: np.ndarray, sharded: bool) -> object:
    import zarr
    from zarr.codecs import BloscCodec

    group = zarr.open_group(str(root / ("s.zarr" if sharded else "z.zarr")), mode="w")
    codec = BloscCodec(cname="zstd", clevel=1, shuffle="shuffle")
    for name in ("image", "masks"):
        arr = group.create_array(name, shape=data.shape, dtype=data[name].dtype, chunks=(64, 64, 64),
                                 shards=tuple(-(-s // 64) * 64 for s in data.shape) if sharded else None,
                                 compressors=[codec])
        arr[...] = data[name]
    return group


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--crops", type=int, default=15)
    args = parser.parse_args()
    blosc2.set_nthreads(1)
    rows = {"blosc2 DictStore .b2z, 2 arrays (ours)": [], "blosc2 .b2nd, structured dtype": [],
            "zarr v3, 64^3 chunk files": [], "zarr v3, sharded": [],
            "ours with LZ4HC level 5": [], "ours with ZSTD level 3": []}
    sizes = {k: [] for k in rows}
    writes = {k: [] for k in rows}
    files = {}
    for path in sorted((args.output / "arrays").rglob("*.b2z")):
        src = blosc2.DictStore(str(path), mode="r")
        image, masks = src["/image"][...], src["/masks"][...]
        data = np.empty(image.shape, dtype=[("image", image.dtype), ("masks", masks.dtype)])
        data["image"], data["masks"] = image, masks
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            stores = {}
            writers = (lambda: _write_b2z(root, data), lambda: _write_b2nd(root, data),
                       lambda: _write_zarr(root, data, False), lambda: _write_zarr(root, data, True),
                       lambda: _write_b2z(root, data, "h.b2z", {**CPARAMS, "codec": blosc2.Codec.LZ4HC, "clevel": 5}),
                       lambda: _write_b2z(root, data, "z3.b2z", {**CPARAMS, "clevel": 3}))
            for key, fn in zip(rows, writers):
                start = time.perf_counter()
                stores[key] = fn()
                writes[key].append(time.perf_counter() - start)
            for key, pattern in zip(rows, ("a.b2z", "a.b2nd", "z.zarr", "s.zarr", "h.b2z", "z3.b2z")):
                found = [p for p in root.glob(pattern + "/**/*") if p.is_file()] or [root / pattern]
                sizes[key].append(sum(p.stat().st_size for p in found))
                files[key] = len(found)
            rng = np.random.default_rng(0)
            for _ in range(args.crops):
                lo = [int(rng.integers(0, max(1, s - 160 + 1))) for s in data.shape]
                window = tuple(slice(a, a + 160) for a in lo)
                for key, store in stores.items():
                    start = time.perf_counter()
                    if key.startswith("blosc2 .b2nd"):
                        store[window]
                    else:
                        store["image"][window], store["masks"][window]
                    rows[key].append(time.perf_counter() - start)
    print("| Format | crop read ms (median) | write s/image | MB/image | files/image |")
    print("|---|---|---|---|---|")
    for key in rows:
        print(f"| {key} | {1000 * statistics.median(rows[key]):.1f} | {statistics.median(writes[key]):.2f} | "
              f"{statistics.mean(sizes[key]) / 1e6:.1f} | {files[key]} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
