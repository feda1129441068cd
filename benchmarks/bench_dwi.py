"""Benchmark the DWI derivation step by step, with accuracy, beside dipy's baselines.

A realistic series is simulated once (96 x 96 x 60, 2 mm, 65 volumes: 5 b0,
30 at b = 1000 and 30 at b = 2000; Rician noise, smooth bias field, three
volumes shifted by about a voxel; ground-truth FA and MD known).  Every
setting then runs in a fresh process (so its peak memory is its own) limited
to ``--threads`` threads, and the script prints markdown tables:

1. the chain per setting: time of each step, total wall, peak RSS, median
   FA error and MD relative error in tissue;
2. denoising side by side: our vectorised MP-PCA (stride 2 and 1) against
   ``dipy.denoise.localpca.mppca`` and ``patch2self`` -- time, error against
   the noise-free signal, difference from dipy's output;
3. Gibbs removal: ours against ``dipy.denoise.gibbs.gibbs_removal`` on a
   subset of volumes (dipy's full run costs minutes).

Usage::

    python benchmarks/bench_dwi.py [--threads 2] [--quick] [--with-dipy-chain]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SETTINGS: dict[str, dict] = {
    "default (MP-PCA ours, Gibbs, rigid, N4, WLS)": {},
    "keep unused shells (b = 2000 also unringed and registered)": {"drop_unused_shells": False},
    "denoise = patch2self": {"denoise": "patch2self"},
    "denoise = none": {"denoise": "none"},
    "Gibbs off": {"gibbs": False},
    "motion off": {"motion": "none"},
    "everything off (tensor fit only)": {"denoise": "none", "gibbs": False, "motion": "none",
                                         "bias": False},
}


def simulate_to(folder: Path, shape: tuple[int, int, int]) -> None:
    """Simulate the series and its truth into ``folder`` (npy files)."""
    from curate.dwi.phantom import gradient_scheme, simulate

    bvals, bvecs = gradient_scheme(5, {1000.0: 30, 2000.0: 30}, seed=11)
    kwargs = dict(shape=shape, zooms=2.0, bvals=bvals, bvecs=bvecs, bias=0.25, seed=12)
    noisy = simulate(snr=20, shifted=(9, 30, 52), shift_vox=1.0, **kwargs)
    clean = simulate(snr=None, shifted=(9, 30, 52), shift_vox=1.0, **kwargs)
    for name, value in (("data", noisy.data), ("clean", clean.data), ("bvals", bvals),
                        ("bvecs", bvecs), ("affine", noisy.affine), ("fa", noisy.fa),
                        ("md", noisy.md), ("tissue", noisy.tissue)):
        np.save(folder / f"{name}.npy", value)


def _load(folder: Path) -> dict[str, np.ndarray]:
    return {p.stem: np.load(p) for p in folder.glob("*.npy")}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker_chain(folder: Path, overrides: dict, threads: int) -> dict:
    """Run the chain once with ``overrides``; timings, accuracy, peak memory."""
    from curate.config import DwiConfig
    from curate.dwi.chain import derive

    arrays = _load(folder)
    del arrays["clean"]
    base_mb = _peak_mb()
    cfg = DwiConfig(threads=threads, **overrides)
    start, start_cpu = time.perf_counter(), time.process_time()
    result = derive(arrays["data"], (2.0, 2.0, 2.0), arrays["affine"], arrays["bvals"],
                    arrays["bvecs"], cfg)
    wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    tissue = (arrays["tissue"] > 0) & (result.brain_mask > 0)
    return {
        "ok": result.ok, "wall_s": wall, "cpu_s": cpu, "steps": result.timings_s,
        "steps_cpu": result.cpu_s, "peak_mb": _peak_mb(), "load": os.getloadavg()[0],
        "input_peak_mb": base_mb, "warnings": result.warnings,
        "fa_err": float(np.median(np.abs(result.fa - arrays["fa"])[tissue])),
        "md_err": float(np.median((np.abs(result.md - arrays["md"]) / arrays["md"])[tissue])),
        "motion_max_mm": result.motion_max_mm,
    }


def worker_denoise(folder: Path, threads: int, with_dipy: bool) -> dict:
    """Denoisers side by side on the same head mask."""
    from curate.dwi import denoise
    from curate.dwi.mask import head_mask

    arrays = _load(folder)
    data, clean, bvals = arrays["data"], arrays["clean"], arrays["bvals"]
    head = head_mask(data[..., bvals < 50].mean(axis=3))
    brain = arrays["tissue"] > 0
    runs = {
        "ours, stride 2 (default)": lambda: denoise.mppca(data, head, 2, 2, threads=threads),
        "ours, stride 1": lambda: denoise.mppca(data, head, 2, 1, threads=threads),
        "dipy patch2self": lambda: denoise.patch2self(data, bvals),
    }
    if with_dipy:
        runs["dipy mppca (baseline)"] = lambda: denoise.dipy_mppca(data, head, 2)
    outputs, rows = {}, {}
    for name, run in runs.items():
        start, start_cpu = time.perf_counter(), time.process_time()
        outputs[name] = run()
        rows[name] = {"time_s": time.perf_counter() - start,
                      "cpu_s": time.process_time() - start_cpu}
    noisy_rmse = float(np.sqrt(((data - clean)[brain] ** 2).mean()))
    reference = outputs.get("dipy mppca (baseline)")
    for name, out in outputs.items():
        ok = brain & np.isfinite(out).all(axis=-1)
        rows[name]["rmse_vs_truth"] = float(np.sqrt(((out - clean)[ok] ** 2).mean()))
        if reference is not None:
            both = ok & np.isfinite(reference).all(axis=-1)
            change = np.sqrt(((reference - data)[both] ** 2).mean())
            rows[name]["diff_vs_dipy"] = float(np.sqrt(((out - reference)[both] ** 2).mean()) / change)
    return {"noisy_rmse": noisy_rmse, "rows": rows}


def _timed(run) -> tuple[object, float, float]:
    start, start_cpu = time.perf_counter(), time.process_time()
    out = run()
    return out, time.perf_counter() - start, time.process_time() - start_cpu


def worker_gibbs(folder: Path, threads: int, n_volumes: int) -> dict:
    """Our Gibbs removal against dipy's on the first ``n_volumes`` volumes."""
    from curate.dwi.gibbs import dipy_gibbs, remove_gibbs
    from curate.dwi.mask import head_mask

    arrays = _load(folder)
    data = arrays["data"][..., :n_volumes]
    head = head_mask(arrays["data"][..., arrays["bvals"] < 50].mean(axis=3))
    runs = {
        "dipy gibbs_removal (1 process)": lambda: dipy_gibbs(data),
        "ours, 1 thread, every line": lambda: remove_gibbs(data, threads=1),
        f"ours, {threads} threads, every line": lambda: remove_gibbs(data, threads=threads),
        f"ours, {threads} threads, head lines only (default)":
            lambda: remove_gibbs(data, threads=threads, mask=head),
    }
    timings, outputs = {}, {}
    for name, run in runs.items():
        outputs[name], wall, cpu = _timed(run)
        timings[name] = (wall, cpu)
    ref, ours = outputs["dipy gibbs_removal (1 process)"], outputs["ours, 1 thread, every line"]
    diff = np.abs(ours - ref)
    return {"timings": timings, "n_volumes": n_volumes, "p99_diff": float(np.percentile(diff, 99)),
            "max_diff": float(diff.max()), "mean_change": float(np.abs(ref - data).mean())}


def _spawn(args: list[str], threads: int) -> dict:
    # One BLAS thread: our code and ITK parallelise themselves, and dipy's small
    # eigendecompositions only slow down with BLAS threads (fair to the baseline).
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               MKL_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cpus = ",".join(str(c) for c in sorted(os.sched_getaffinity(0))[:threads])
    cmd = ["taskset", "-c", cpus, sys.executable, __file__, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1:] or ["failed"]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _chain_table(results: dict[str, dict], threads: int) -> str:
    steps = ["denoise", "gibbs", "motion", "bias", "mask", "tensor"]
    lines = ["| setting | " + " | ".join(f"{s} s" for s in steps)
             + " | total wall s | total CPU s | CPU s / threads | peak RSS MB "
               "| FA median abs err | MD median rel err |",
             "|---" * (len(steps) + 7) + "|"]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | error: {r['error']} |")
            continue
        cells = [f"{r['steps'].get(s, 0):.1f} ({r['steps_cpu'].get(s, 0):.1f})" for s in steps]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['wall_s']:.1f} | "
                     f"{r['cpu_s']:.1f} | {r['cpu_s'] / threads:.1f} | {r['peak_mb']:.0f} | "
                     f"{r['fa_err']:.3f} | {100 * r['md_err']:.1f} % |")
    loads = ", ".join(f"{r['load']:.1f}" for r in results.values() if "load" in r)
    lines += ["", "Step cells: wall s (CPU s of all threads).  1-minute load average of the "
              f"machine at the end of each run: {loads}."]
    return "\n".join(lines)


def _denoise_table(res: dict) -> str:
    lines = [f"Noisy input RMSE against the noise-free signal (brain): {res['noisy_rmse']:.1f}", "",
             "| denoiser | wall s | CPU s | RMSE vs truth | RMS diff from dipy / dipy's change |",
             "|---|---|---|---|---|"]
    for name, row in res["rows"].items():
        diff = row.get("diff_vs_dipy")
        lines.append(f"| {name} | {row['time_s']:.1f} | {row['cpu_s']:.1f} | "
                     f"{row['rmse_vs_truth']:.2f} | "
                     f"{'-' if diff is None else f'{100 * diff:.1f} %'} |")
    return "\n".join(lines)


def _gibbs_table(res: dict) -> str:
    lines = [f"On {res['n_volumes']} volumes (96 x 96 x 60 each); ours vs dipy: 99th percentile "
             f"|diff| {res['p99_diff']:.2g}, max {res['max_diff']:.2g}, dipy's mean change "
             f"{res['mean_change']:.2f}", "",
             "| Gibbs removal | wall s | CPU s | CPU ms per slice |", "|---|---|---|---|"]
    n_slices = res["n_volumes"] * 60
    for name, (wall, cpu) in res["timings"].items():
        lines.append(f"| {name} | {wall:.1f} | {cpu:.1f} | {1000 * cpu / n_slices:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="48 x 48 x 30 instead of 96 x 96 x 60")
    parser.add_argument("--with-dipy-chain", action="store_true",
                        help="also run the whole chain with dipy's mppca (adds minutes)")
    parser.add_argument("--gibbs-volumes", type=int, default=8)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--payload", default="{}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        folder, payload = Path(args.folder), json.loads(args.payload)
        if args.worker == "chain":
            out = worker_chain(folder, payload, args.threads)
        elif args.worker == "denoise":
            out = worker_denoise(folder, args.threads, payload.get("dipy", True))
        else:
            out = worker_gibbs(folder, args.threads, payload.get("volumes", 8))
        print(json.dumps(out))
        return 0
    shape = (48, 48, 30) if args.quick else (96, 96, 60)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        simulate_to(folder, shape)
        common = ["--folder", str(folder), "--threads", str(args.threads)]
        chain = {}
        settings = dict(SETTINGS)
        if args.with_dipy_chain:
            settings["denoise = dipy mppca"] = {"denoise": "dipy_mppca"}
        for name, overrides in settings.items():
            chain[name] = _spawn(["--worker", "chain", "--payload", json.dumps(overrides), *common],
                                 args.threads)
            print(f"{name}: {chain[name].get('wall_s', chain[name])}", file=sys.stderr)
        den = _spawn(["--worker", "denoise", *common], args.threads)
        gib = _spawn(["--worker", "gibbs", "--payload", json.dumps({"volumes": args.gibbs_volumes}), *common],
                     args.threads)
    print(f"## DWI chain, {shape[0]} x {shape[1]} x {shape[2]} x 65, 2 mm, "
          f"{args.threads} threads\n")
    print(_chain_table(chain, args.threads) + "\n")
    print("## Denoising side by side\n")
    print((_denoise_table(den) if "error" not in den else f"error: {den['error']}") + "\n")
    print("## Gibbs removal side by side\n")
    print(_gibbs_table(gib) if "error" not in gib else f"error: {gib['error']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
