"""IQS metamorphic suite over the whole real-scan corpus: a per-scan table, pass/fail per relation.

Run (one core; about 15-25 minutes for the 19-scan corpus)::

    PYTHONPATH=. python benchmarks/bench_iqs_metamorphic.py \\
        [--raw benchmarks/results/iqs_metamorphic_raw.json] [--out benchmarks/results/iqs_metamorphic.md]

Step 1 (skipped with ``--rescore`` when the raw file exists) measures every scan of the
corpus (``tests/realscans.corpus_scans``, built by ``benchmarks/realscans``) as is, under
every invariance transform and at every level of every degradation of
:mod:`qc.metamorphic` (plus the k-space spike that the calibration uses), and stores the
raw profiles.  Step 2 scores them with the packaged calibration and writes the table.
:mod:`qc.calibrate` fits the calibration from the same raw file.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from curate.stages.iqs import inferior_face  # noqa: E402
from qc import calibrate_real, metamorphic as mm  # noqa: E402
from qc.iqs import Calibration, load_calibration, score  # noqa: E402
from qc.profile import Profile, measure_image  # noqa: E402

#: Measured series: the issue's relations plus the calibration-only k-space spike.
SERIES = calibrate_real.series()


def profile_dict(profile: Profile) -> dict:
    """A JSON-able profile (NaN as null)."""
    out = dataclasses.asdict(profile)
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()}


def profile_of(raw: dict) -> Profile:
    """The :class:`Profile` back from :func:`profile_dict`."""
    values = {k: (math.nan if v is None else v) for k, v in raw.items()}
    return Profile(**values)


def applicable(name: str, entry: dict) -> bool:
    """Whether an invariance applies to a scan (zeroing needs air; 0.8 mm needs <= 1 mm voxels)."""
    if name == "zero_bg":
        return entry.get("background") == "air"
    if name == "res0.8":
        return max(entry["zooms"]) <= 1.05
    return True


def measure_scan(data: np.ndarray, zooms: tuple[float, float, float], entry: dict,
                 series: tuple[mm.Series, ...], faces: tuple[tuple[int, int], ...] = ()) -> dict:
    """Raw profiles of one scan: ``clean``, ``inv/<name>``, ``deg/<series>/<level>``.

    ``faces`` is the inferior face (left out of the truncation check, as the IQS stage does).
    """
    out = {"clean": profile_dict(measure_image(data, zooms, skip_faces=faces))}
    for name, transform in mm.INVARIANCES.items():
        if applicable(name, entry):
            moved, moved_zooms = transform(data, zooms)
            out[f"inv/{name}"] = profile_dict(measure_image(moved, moved_zooms,
                                                            skip_faces=mm.moved_faces(name, faces)))
    for s in series:
        for level in s.levels:
            out[f"deg/{s.name}/{level:g}"] = profile_dict(
                measure_image(mm.degraded(data, s, level), zooms, skip_faces=faces))
    return out


def measure_corpus(raw_path: Path, only: list[str] | None = None) -> dict:
    """Measure every corpus scan (resuming from ``raw_path``) and return ``{scan: entry}``."""
    from tests.realscans import corpus_scans

    raw = json.loads(raw_path.read_text()) if raw_path.exists() else {}
    scans = {scan.id: scan for scan in corpus_scans()}
    for scan_id in (only or list(scans)):  # in the order asked for
        scan = scans.get(scan_id)
        if scan is None or scan.id in raw:
            continue
        start = time.process_time()
        zooms = tuple(float(z) for z in scan.image.header.get_zooms()[:3])
        entry = {"source": scan.source, "modality": scan.modality, "is_template": scan.is_template,
                 "background": scan.meta.get("background"), "skull": scan.skull, "zooms": zooms,
                 "shape": list(scan.image.shape[:3])}
        data = scan.data()
        data = data[..., 0] if data.ndim == 4 else data
        entry["profiles"] = measure_scan(data, zooms, entry, SERIES, inferior_face(scan.image.affine))
        entry["cpu_s"] = time.process_time() - start
        raw[scan.id] = entry
        raw_path.write_text(json.dumps(raw) + "\n")
        print(f"{scan.id}: {entry['cpu_s']:.0f} s CPU", flush=True)
    return raw


def scores(entry: dict, calibration: Calibration) -> dict[str, tuple[float, float, float, float, bool, bool]]:
    """``{variant: (iqs, noise, blur, artifact, fov, corrupted)}`` of one scan."""
    out = {}
    for key, prof in entry["profiles"].items():
        r = score(profile_of(prof), entry["modality"], calibration)
        out[key] = (r.iqs, r.noise, r.blur, r.artifact, r.fov_suboptimal, r.corrupted)
    return out


def _fmt(v: tuple) -> str:
    parts = "/".join("-" if not math.isfinite(x) else f"{x:.1f}" for x in v[1:4])
    flags = ("F" if v[4] else "") + ("C" if v[5] else "")
    return f"{v[0]:.2f} ({parts}){' ' + flags if flags else ''}"


def table(raw: dict, calibration: Calibration) -> tuple[str, int]:
    """The markdown report and the number of scans that fail a relation."""
    inv_names = list(mm.INVARIANCES)
    lines = ["| scan | source | clean IQS (noise/blur/artifact) | " + " | ".join(inv_names) + " |",
             "|---" * (3 + len(inv_names)) + "|"]
    deg_lines = ["| scan | " + " | ".join(f"{s.name} {'/'.join(f'{lv:g}' for lv in s.levels)}"
                                        for s in mm.SERIES) + " |", "|---" * (1 + len(mm.SERIES)) + "|"]
    failures, n_fail = [], 0
    for scan_id, entry in raw.items():
        s = scores(entry, calibration)
        cells = [f"{s[f'inv/{n}'][0]:.2f}" if f"inv/{n}" in s else "n/a" for n in inv_names]
        lines.append(f"| {scan_id} | {entry['source']} | {_fmt(s['clean'])} | " + " | ".join(cells) + " |")
        deg_lines.append(f"| {scan_id} | " + " | ".join(
            " → ".join(f"{s[k][0]:.2f}" for k in ["clean"] + [f"deg/{ser.name}/{lv:g}" for lv in ser.levels])
            for ser in mm.SERIES) + " |")
        fails = mm.check_scores(s)
        if np.prod(entry["shape"]) < mm.MIN_RELATION_VOXELS:
            failures += [f"* {scan_id} (under {mm.MIN_RELATION_VOXELS} voxels, not held): {f}" for f in fails]
            continue
        n_fail += bool(fails)
        failures += [f"* {scan_id}: {f}" for f in fails]
    report = ["## Invariance (IQS as is and under each transform; F = fov flag, C = corrupted)", "",
              *lines, "", "## Monotonicity (IQS clean → each level)", "", *deg_lines, "",
              f"## Failed relations: {len(failures)} on {n_fail} of {len(raw)} scans", "", *failures]
    return "\n".join(report) + "\n", n_fail


def loso_table(raw: dict, calibration_path: Path | None) -> str:
    """Leave-one-source-out: each source's scans scored by a structural fit without that source."""
    from qc.iqs import DEFAULT_CALIBRATION

    base = json.loads(Path(calibration_path or DEFAULT_CALIBRATION).read_text())
    levels = {s.name: s.levels for s in SERIES}
    rows = calibrate_real.leave_one_source_out(raw, base, levels)
    names = [s[0] for s in calibrate_real.TARGETS]
    lines = ["| held-out source | scan | template | clean IQS | " + " | ".join(f"{n} (top)" for n in names)
             + " | clean <= 2.5 | all >= 3.5 | all but bias >= 3.5 |", "|---" * (7 + len(names)) + "|"]
    for r in rows:
        cells = [f"{r['degraded'][n]:.2f}" if n in r["degraded"] else "-" for n in names]
        lines.append(f"| {r['source']} | {r['scan']} | {'yes' if r['template'] else ''} | {r['clean']:.2f} | "
                     + " | ".join(cells) + f" | {'✓' if r['clean_ok'] else '✗'} | {'✓' if r['degraded_ok'] else '✗'} | "
                     f"{'✓' if r['degraded_ok_but_bias'] else '✗'} |")
    real = [r for r in rows if not r["template"]]
    lines += ["", f"Non-template scans: clean <= 2.5 on {sum(r['clean_ok'] for r in real)} of {len(real)}; "
              f"every strongest degradation >= 3.5 on {sum(r['degraded_ok'] for r in real)} of {len(real)}, "
              f"every one but the bias field on {sum(r['degraded_ok_but_bias'] for r in real)} of {len(real)}. "
              f"All scans: {sum(r['clean_ok'] for r in rows)} and {sum(r['degraded_ok'] for r in rows)} "
              f"of {len(rows)}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, nargs="+", default=[Path("benchmarks/results/iqs_metamorphic_raw.json")])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/iqs_metamorphic.md"))
    parser.add_argument("--calibration", type=Path, default=None)
    parser.add_argument("--rescore", action="store_true", help="only score the stored raw profiles")
    parser.add_argument("--only", nargs="*", default=None, help="scan ids to measure")
    args = parser.parse_args(argv)
    raw: dict = {}
    if args.rescore:
        for path in args.raw:
            raw.update(json.loads(path.read_text()))
    else:
        args.raw[0].parent.mkdir(parents=True, exist_ok=True)
        raw = measure_corpus(args.raw[0], args.only)
    report, n_fail = table(raw, load_calibration(args.calibration))
    report += "\n## Leave-one-source-out (structural fit without the scan's source)\n\n" + loso_table(
        raw, args.calibration)
    args.out.write_text(report, encoding="utf-8")
    print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
