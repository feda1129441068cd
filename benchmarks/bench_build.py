"""Build throughput: ``curate build`` with 1 and 2 workers side by side, and nnssl's preprocessing.

Makes a BIDS tree of N copies of real structural scans (the real-scan corpus
when it is built, else the images pip packages ship), then in one run:

* ``curate build --workers 1`` and ``--workers 2`` on it (fresh OUTPUT each,
  a subprocess each, so CPU time and peak memory are the build's own);
* the preprocessing-only way nnssl prepares the same images (crop to non-zero,
  z-score, resample to 1 mm, blosc2 ZSTD level 8), one process, one thread;
* the cost of the per-stage timing table (its clock and its Parquet parts).

Reports images/hour/core, parallel efficiency, system-time share, CPU-s per
image and peak memory of the largest worker.  Run it on an idle machine; it
says how busy the machine was.

    python benchmarks/bench_build.py --images 200
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]


def real_scans() -> list[Path]:
    """Structural scans of the real-scan corpus when present, else pip-shipped heads."""
    corpus = Path(os.environ.get("MRI_CURATE_REALSCANS", "/work/cache/realscans")) / "corpus.json"
    if corpus.is_file():
        entries = json.loads(corpus.read_text())
        entries = entries.get("scans", entries) if isinstance(entries, dict) else entries
        paths = [corpus.parent / e["path"] for e in entries
                 if not e.get("is_template") and (corpus.parent / e["path"]).is_file()]
        if paths:
            return paths
    from nilearn.datasets import load_mni152_template
    import pydeface

    head = Path(pydeface.__file__).parent / "data" / "mean_reg2mean.nii.gz"
    tmp = Path(tempfile.mkdtemp()) / "mni.nii.gz"
    nib.save(load_mni152_template(resolution=1), tmp)
    return [head, tmp]


def make_tree(root: Path, scans: list[Path], n: int) -> None:
    """``root/sub-XXXX/anat/sub-XXXX_T1w.nii.gz``, copies of ``scans`` in turn."""
    (root / "dataset_description.json").parent.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text('{"Name": "bench", "BIDSVersion": "1.9.0"}')
    for i in range(n):
        anat = root / f"sub-{i:04d}" / "anat"
        anat.mkdir(parents=True)
        source = scans[i % len(scans)]
        suffix = ".nii.gz" if source.name.endswith(".gz") else ".nii"
        shutil.copyfile(source, anat / f"sub-{i:04d}_T1w{suffix}")


_WRAPPER = """
import json, resource, sys
from curate.cli import main
code = main(sys.argv[1:])
me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"driver_cpu_s": me.ru_utime + me.ru_stime, "driver_rss_gb": me.ru_maxrss / 2**20,
                  "workers_cpu_s": kids.ru_utime + kids.ru_stime, "worker_rss_gb": kids.ru_maxrss / 2**20}))
sys.exit(code)
"""


def run_build(source: Path, output: Path, workers: int) -> dict[str, float]:
    """One ``curate build`` in a subprocess: wall, user/system CPU, driver vs workers, peak RSS.

    ``worker_rss_gb`` is the largest single worker process (``ru_maxrss`` of
    the driver's children); with one worker the build runs in the driver.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", _WRAPPER, "build", str(source), str(output),
                           "--workers", str(workers), "--quiet"], check=True, cwd=REPO,
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    split = json.loads(done.stdout.strip().splitlines()[-1])
    return {"wall_s": wall, "user_s": after.ru_utime - before.ru_utime,
            "sys_s": after.ru_stime - before.ru_stime, **split}


def nnssl_way(paths: list[Path], out: Path) -> dict[str, float]:
    """nnssl-style preprocessing only, in this process on one thread."""
    import blosc2
    import SimpleITK as sitk
    from threadpoolctl import threadpool_limits

    blosc2.set_nthreads(1)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    with threadpool_limits(1):
        for i, path in enumerate(paths):
            image = nib.load(path)
            data = np.asarray(image.dataobj, dtype=np.float32)
            nz = np.argwhere(data != 0)
            lo, hi = nz.min(0), nz.max(0) + 1
            data = data[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
            data = (data - data.mean()) / max(float(data.std()), 1e-8)
            itk = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)))
            itk.SetSpacing(tuple(float(z) for z in image.header.get_zooms()[:3]))
            size = [max(1, int(round(n * s))) for n, s in zip(itk.GetSize(), itk.GetSpacing())]
            resampled = sitk.Resample(itk, size, sitk.Transform(), sitk.sitkBSpline, itk.GetOrigin(),
                                      (1.0, 1.0, 1.0), itk.GetDirection(), 0.0, sitk.sitkFloat32)
            array = sitk.GetArrayFromImage(resampled)
            blosc2.asarray(array, urlpath=str(out / f"{i}.b2nd"), mode="w",
                           cparams={"codec": blosc2.Codec.ZSTD, "clevel": 8})
    return {"wall_s": time.perf_counter() - wall0, "cpu_s": time.process_time() - cpu0}


def timing_overhead(n_images: int, n_stages: int, batch: int, out: Path) -> float:
    """CPU seconds the per-stage clock and its Parquet parts cost for a build of this size."""
    from curate.timings import StageClock, write_part

    warm = StageClock("warm-up")  # pyarrow's one-time Parquet set-up, paid once per worker
    with warm.time("w", "w", "T1w", "w"):
        pass
    write_part(out, warm)
    started = time.process_time()
    for first in range(0, n_images, batch):
        clock = StageClock("bench")
        for i in range(first, min(n_images, first + batch)):
            for stage in range(n_stages):
                with clock.time(f"img{i}", f"sub-{i}", "T1w", f"stage{stage}"):
                    pass
        write_part(out, clock)
    return time.process_time() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--baseline-images", type=int, default=20,
                        help="images the nnssl-way baseline processes (per-image figures)")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_build_"))
    scans = real_scans()
    source = work / "source"
    if source.exists():
        shutil.rmtree(source)
    make_tree(source, scans, args.images)
    load = os.getloadavg()[0]
    runs = {}
    for workers in (1, 2):
        out = work / f"out{workers}"
        shutil.rmtree(out, ignore_errors=True)
        runs[workers] = run_build(source, out, workers)
    paths = sorted(source.glob("sub-*/anat/*.nii*"))[: args.baseline_images]
    (work / "nnssl").mkdir(exist_ok=True)
    base = nnssl_way(paths, work / "nnssl")
    overhead = timing_overhead(args.images, 5, 4, work / "timing_bench")
    one, two = runs[1], runs[2]
    rows = []
    for workers, r in runs.items():
        cpu = r["user_s"] + r["sys_s"]
        rows.append((f"curate build --workers {workers}", r["wall_s"], cpu / args.images,
                     args.images / r["wall_s"] * 3600 / workers, r["sys_s"] / max(r["user_s"], 1e-9),
                     max(r["worker_rss_gb"], r["driver_rss_gb"] if workers == 1 else 0.0)))
    rows.append(("nnssl-way preprocessing (1 thread)", base["wall_s"] / len(paths) * args.images,
                 base["cpu_s"] / len(paths), len(paths) / base["wall_s"] * 3600, float("nan"), float("nan")))
    print(f"{args.images} images from {len(scans)} real scans; load average at start {load:.1f}; "
          f"{os.cpu_count()} cores")
    print("| run | wall (s) | CPU-s / image | images/hour/core | system / user | peak RSS per worker (GB) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, wall, cpu, rate, sys_share, rss in rows:
        print(f"| {name} | {wall:.1f} | {cpu:.2f} | {rate:.0f} | {sys_share:.1%} | {rss:.2f} |")
    speedup = one["wall_s"] / two["wall_s"]
    print(f"2 workers vs 1: {speedup:.2f}x (parallel efficiency {speedup / 2:.0%}); "
          f"timing table cost {overhead:.3f} CPU-s = "
          f"{overhead / (two['user_s'] + two['sys_s']):.3%} of the 2-worker build's CPU")
    print(f"driver CPU with 2 workers: {two['driver_cpu_s']:.1f} s "
          f"({two['driver_cpu_s'] / (two['driver_cpu_s'] + two['workers_cpu_s']):.1%} of the build's CPU)")
    print(json.dumps({"runs": runs, "baseline": base, "timing_overhead_s": overhead, "load": load}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
