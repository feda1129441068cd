"""Peak memory of a ``curate build`` worker on a normal image and on decompression bombs.

Run (a few minutes; the bombs are written once into the cache folder)::

    PYTHONPATH=. python benchmarks/bench_bombs.py [--cache /work/cache/bombs]

Each case is one ``curate build SOURCE OUTPUT --workers 1`` (the build runs in
the process, so its peak RSS is the worker's) in a fresh interpreter; the peak
of its child processes (dcm2niix) is reported beside it, and so are the bytes
left in OUTPUT and the most bytes the temporary conversion folder held.

* ``normal``: nilearn's MNI152 T1 padded to 256^3, int16 ``.nii.gz``: every stage.
* ``nifti_bomb``: a ``.nii.gz`` of about 20 MB whose 1024^3 float32 voxels take
  4 GiB (zeros, a 160^3 block of noise, so it is no ``empty`` image).
* ``dicom_bomb``: 96 deflated 4096 x 4096 int16 slices, 3 GiB of pixel data in
  about 3 MB of files; the headers say so.
* ``dicom_liar``: 96 deflated files whose headers say 256 x 256 (12 MiB in all)
  but whose pixel data hold 32 MiB each, 3 GiB once inflated; the header check
  passes it and the inflation must stop at ``max_series_bytes`` (run with
  ``max_series_bytes = 256 MiB`` so as not to write 2 GiB here).

With the defaults (``max_image_bytes = max_series_bytes = 2 GiB``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

CASES = ("normal", "nifti_bomb", "dicom_bomb", "dicom_liar")
DEFLATED = "1.2.840.10008.1.2.1.99"


def _normal(folder: Path) -> None:
    import nibabel as nib
    from nilearn.datasets import load_mni152_template

    img = load_mni152_template(resolution=1)
    data = np.asarray(img.dataobj, dtype=np.float32)
    out = np.zeros((256, 256, 256), np.int16)
    offset = [(256 - n) // 2 for n in data.shape]
    out[tuple(slice(o, o + n) for o, n in zip(offset, data.shape))] = np.round(data / data.max() * 1000)
    nib.save(nib.Nifti1Image(out, img.affine), folder / "t1.nii.gz")


def _nifti_bomb(folder: Path) -> None:
    """Streamed: header, then 1024 slices of 1024^2 float32, never the whole array in memory."""
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_shape((1024, 1024, 1024))
    header.set_data_dtype(np.float32)
    header.set_zooms((1.0, 1.0, 1.0))
    header.set_sform(np.eye(4), code=1)
    rng = np.random.default_rng(0)
    # named like a T1w so that triage lets it through to the read stage
    with gzip.open(folder / "t1.nii.gz", "wb", compresslevel=1) as handle:
        handle.write(header.binaryblock + b"\0" * 4)
        for k in range(1024):
            plane = np.zeros((1024, 1024), np.float32)
            if 432 <= k < 592:
                plane[432:592, 432:592] = rng.random((160, 160), dtype=np.float32) * 1000
            handle.write(plane.tobytes(order="F"))


def _deflated_series(folder: Path, n: int, declared: int, stored: int) -> None:
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    uid = generate_uid()
    pixels = bytes(stored * stored * 2)
    for i in range(n):
        ds = pydicom.dcmread(get_testdata_file("MR_small.dcm"))
        ds.Rows = ds.Columns = declared
        ds.PixelData = pixels
        ds.ImagePositionPatient = [0.0, 0.0, float(i)]
        ds.ImageOrientationPatient = [1.0, 0, 0, 0, 1.0, 0]
        ds.SliceThickness, ds.InstanceNumber = 1.0, i + 1
        ds.SeriesInstanceUID, ds.SOPInstanceUID = uid, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = DEFLATED
        ds.SeriesDescription, ds.ImageType = "T1 MPRAGE", ["ORIGINAL", "PRIMARY", "M", "NONE"]
        ds.save_as(folder / f"IM{i:04d}.dcm", enforce_file_format=True)


def make(case: str, cache: Path) -> Path:
    """The source folder of ``case`` (built once)."""
    folder = cache / case
    if (folder / ".done").exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    if case == "normal":
        _normal(folder)
    elif case == "nifti_bomb":
        _nifti_bomb(folder)
    elif case == "dicom_bomb":
        _deflated_series(folder, 96, 4096, 4096)
    else:
        _deflated_series(folder, 96, 256, 4096)
    (folder / ".done").touch()
    return folder


def _tree_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def _watch(folder: Path, stop: threading.Event, peak: list[int]) -> None:
    """The most bytes the temporary conversion folders under ``folder`` held, polled."""
    while not stop.wait(0.05):
        try:
            peak[0] = max(peak[0], sum(_tree_bytes(p) for p in folder.rglob(".convert-*")))
        except OSError:
            pass


def run_one(case: str, source: Path, out: Path) -> dict[str, object]:
    """Build ``source`` in this process and report what it cost."""
    from curate.cli import main
    from manifests.io import read_records

    shutil.rmtree(out, ignore_errors=True)
    args = ["build", str(source), str(out), "--workers", "1", "-q"]
    if case == "dicom_liar":
        config = out.parent / f"{case}.toml"
        config.write_text(f"[read]\nmax_series_bytes = {256 * 1024**2}\n")
        args += ["--config", str(config)]
    if case.startswith("dicom"):
        args += ["--source-kind", "dicom"]
    stop, peak = threading.Event(), [0]
    watcher = threading.Thread(target=_watch, args=(out, stop, peak), daemon=True)
    watcher.start()
    start = time.perf_counter()
    code = main(args)
    seconds = time.perf_counter() - start
    stop.set()
    watcher.join()
    rows = [r for r in read_records(out / "manifests") if r.derived_from is None]
    return {
        "case": case, "exit": code, "seconds": round(seconds, 1),
        "source_mb": round(_tree_bytes(source) / 1e6, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0),
        "children_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 0),
        "temp_peak_mb": round(peak[0] / 1e6, 1),
        "output_mb": round(_tree_bytes(out) / 1e6, 1),
        "rows": [(r.included, list(r.exclusion_reasons), r.exclusion_detail) for r in rows],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("/work/cache/bombs"))
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--one", choices=CASES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, make(args.one, args.cache), args.cache / "out" / args.one)))
        return
    for case in args.cases:
        make(case, args.cache)
        proc = subprocess.run([sys.executable, __file__, "--cache", str(args.cache), "--one", case],
                              capture_output=True, text=True, check=False)
        line = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-2000:]
        print(line, flush=True)


if __name__ == "__main__":
    main()
