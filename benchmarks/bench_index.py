"""Benchmark ``curate index`` against pybids' BIDSLayout and bids2table on one tree.

Generates a header-only BIDS tree of N subjects x (T1w, T2w, FLAIR, DWI with
bval/bvec) plus JSON sidecars, then indexes it with each tool in its own
subprocess (so peak memory is per tool) and prints a markdown table.

``curate index`` does more than the baselines: it also reads every NIfTI
header and every sidecar, applies triage and writes the Parquet manifest.
pybids is run as the issue asks, ``BIDSLayout(validate=False,
index_metadata=False)``; bids2table indexes file names and sidecars.

Usage::

    python benchmarks/bench_index.py --subjects 3000 [--scale 28500] [--workers 2]
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

_HEADERS: dict[str, bytes] = {}


def _header_only(shape: tuple[int, ...], zooms: tuple[float, ...]) -> bytes:
    """A gzipped NIfTI-1 file holding a header and no voxel data (a 'header-only' image)."""
    key = f"{shape}{zooms}"
    if key not in _HEADERS:
        header = nib.Nifti1Header()
        header.set_data_shape(shape)
        header.set_zooms(zooms)
        header.set_data_dtype(np.int16)
        header.set_qform(np.diag([*zooms[:3], 1.0]), code=1)
        raw = header.binaryblock + b"\x00" * 4
        _HEADERS[key] = gzip.compress(raw, compresslevel=1)
    return _HEADERS[key]


def make_tree(root: Path, n_subjects: int) -> int:
    """Write the tree; returns the number of NIfTI files."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text(json.dumps({"Name": "bench", "BIDSVersion": "1.9.0"}))
    rows = ["participant_id\tage\tsex"]
    anat = {"T1w": ((176, 256, 256), (1.0, 1.0, 1.0)), "T2w": ((176, 256, 256), (1.0, 1.0, 1.0)),
            "FLAIR": ((192, 256, 48), (1.0, 1.0, 3.0))}
    dwi = _header_only((96, 96, 60, 65), (2.0, 2.0, 2.0, 1.0))
    bval = " ".join(["0"] * 5 + ["1000"] * 30 + ["2000"] * 30) + "\n"
    bvec = "\n".join(" ".join(["0.577"] * 65) for _ in range(3)) + "\n"
    sidecar = json.dumps({"RepetitionTime": 2.3, "EchoTime": 0.003, "Manufacturer": "Siemens",
                          "MagneticFieldStrength": 3, "PhaseEncodingDirection": "j-"})
    for i in range(1, n_subjects + 1):
        sub = f"sub-{i:05d}"
        rows.append(f"{sub}\t{20 + i % 60}\t{'MF'[i % 2]}")
        (root / sub / "anat").mkdir(parents=True)
        (root / sub / "dwi").mkdir()
        for suffix, (shape, zooms) in anat.items():
            (root / sub / "anat" / f"{sub}_{suffix}.nii.gz").write_bytes(_header_only(shape, zooms))
            (root / sub / "anat" / f"{sub}_{suffix}.json").write_text(sidecar)
        stem = root / sub / "dwi" / f"{sub}_dwi"
        stem.with_suffix(".nii.gz").write_bytes(dwi)
        stem.with_suffix(".bval").write_text(bval)
        stem.with_suffix(".bvec").write_text(bvec)
        stem.with_suffix(".json").write_text(sidecar)
    (root / "participants.tsv").write_text("\n".join(rows) + "\n")
    return 4 * n_subjects


_RUNNERS = {
    "curate index": """
from curate.cli import main
main(["index", ROOT, OUT, "--workers", str(WORKERS), "--quiet"])
t_end = time.perf_counter()  # counting the rows below is not part of the run
import pyarrow.parquet as pq
n = pq.ParquetDataset(OUT + "/manifests").read(columns=["image_id"]).num_rows
""",
    "curate index + summary": """
import contextlib, io
from curate.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    main(["index", ROOT, OUT, "--workers", str(WORKERS)])
t_end = time.perf_counter()
import pyarrow.parquet as pq
n = pq.ParquetDataset(OUT + "/manifests").read(columns=["image_id"]).num_rows
""",
    "pybids BIDSLayout": """
from bids import BIDSLayout, BIDSLayoutIndexer
layout = BIDSLayout(ROOT, validate=False,
                    indexer=BIDSLayoutIndexer(validate=False, index_metadata=False))
n = len(layout.get(extension=['.nii', '.nii.gz']))
""",
    "bids2table": """
from bids2table import index_dataset
table = index_dataset(ROOT)
n = table.num_rows
""",
}

_WRAPPER = """
import json, resource, time, warnings
warnings.simplefilter('ignore')
ROOT, OUT, WORKERS = {root!r}, {out!r}, {workers}
t0 = time.perf_counter()
{body}
wall = globals().get("t_end", time.perf_counter()) - t0
rss = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
          resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
print(json.dumps({{"wall": wall, "n": n, "rss_mb": rss}}))
"""


def run_tool(name: str, root: Path, out: Path, workers: int) -> dict[str, float]:
    """Run one indexer in a fresh interpreter; returns wall time, rows and peak RSS."""
    code = _WRAPPER.format(root=str(root), out=str(out), workers=workers, body=_RUNNERS[name])
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _repeated(tools: list[str], tree: Path, out: Path, workers: int, repeat: int) -> dict[str, dict]:
    """Run every tool ``repeat`` times, round-robin (so machine noise hits all alike); medians."""
    runs: dict[str, list[dict]] = {t: [] for t in tools}
    for _ in range(max(1, repeat)):
        for tool in tools:
            runs[tool].append(run_tool(tool, tree, out / tool.replace(" ", "_"), workers))
    results: dict[str, dict] = {}
    for tool, done in runs.items():
        good = [r for r in done if "error" not in r]
        if not good:
            results[tool] = done[0]
            continue
        results[tool] = {"wall": statistics.median(r["wall"] for r in good), "n": good[0]["n"],
                         "rss_mb": max(r["rss_mb"] for r in good)}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=3000)
    parser.add_argument("--scale", type=int, nargs="*", default=[],
                        help="extra subject counts to time curate index alone (linearity)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--tools", nargs="*", default=list(_RUNNERS))
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per tool, interleaved; the table shows the median wall time")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench_index_"))
    try:
        print(f"| tool | subjects | images | rows | median wall (s), {args.repeat} runs | images/s "
              f"| peak RSS (MB) | vs curate |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for n_sub in [args.subjects, *args.scale]:
            tree = work / f"tree{n_sub}"
            n_files = make_tree(tree, n_sub)
            tools = args.tools if n_sub == args.subjects else ["curate index"]
            results = _repeated(tools, tree, work / f"out{n_sub}", args.workers, args.repeat)
            ours = results.get("curate index", {}).get("wall")
            for tool, res in results.items():
                if "error" in res:
                    print(f"| {tool} | {n_sub} | {n_files} | error: {res['error'][:60]} | | | | |")
                    continue
                ratio = f"{res['wall'] / ours:.1f}x" if ours else ""
                print(f"| {tool} | {n_sub} | {n_files} | {res['n']} | {res['wall']:.1f} | "
                      f"{n_files / res['wall']:.0f} | {res['rss_mb']:.0f} | {ratio} |", flush=True)
            shutil.rmtree(tree)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
