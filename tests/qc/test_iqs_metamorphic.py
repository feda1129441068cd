"""Metamorphic relations of the IQS on the real CI scans (the full corpus runs in
``benchmarks/bench_iqs_metamorphic.py``; both use :mod:`qc.metamorphic`).

Invariance: |delta IQS| <= 0.25 and no flag flip under intensity scaling, re-quantisation,
padding, background zeroing (scans with air), axis permutation and flips, an empty edge
slice, 0.8 mm resampling (scans of <= 1 mm).  Monotonicity: Rician noise, blur, ghost,
motion, bias field never lower the IQS, the matching part rises most, and the strongest
level raises the total by >= 1.  Scans over 4 M voxels are taken every second voxel (a
real scan at twice the voxel size) to keep CI within minutes.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from curate.stages.iqs import inferior_face
from qc import metamorphic as mm
from qc.iqs import combine, load_calibration, score
from qc.profile import measure_image
from tests.realscans import CI_IDS, load_ci_scan
from benchmarks.realscans.resolve import SourceMissing

pytestmark = pytest.mark.slow
MAX_VOXELS = 4_000_000


def _scan(scan_id: str) -> tuple[np.ndarray, tuple[float, float, float], object]:
    try:
        scan = load_ci_scan(scan_id)
    except SourceMissing as err:
        pytest.skip(f"{scan_id}: {err}")
    data = scan.data()
    data = data[..., 0] if data.ndim == 4 else data
    zooms = tuple(float(z) for z in scan.image.header.get_zooms()[:3])
    if data.size > MAX_VOXELS:
        data, zooms = np.ascontiguousarray(data[::2, ::2, ::2]), tuple(2 * z for z in zooms)
    return data, zooms, scan


def _score(data: np.ndarray, zooms, modality: str, faces=()) -> tuple:
    r = score(measure_image(data, zooms, skip_faces=faces), modality, load_calibration())
    return r.iqs, r.noise, r.blur, r.artifact, r.fov_suboptimal, r.corrupted


@functools.lru_cache(maxsize=1)
def _scores(scan_id: str) -> dict[str, tuple]:
    """Scores of one CI scan as is, under every applicable transform and every degradation."""
    data, zooms, scan = _scan(scan_id)
    modality = scan.modality if scan.modality in ("T1w", "T2w", "FLAIR", "PDw") else "T1w"
    faces = inferior_face(scan.image.affine)
    scores = {"clean": _score(data, zooms, modality, faces)}
    background = scan.meta.get("background") or ("zero" if scan.skull == "stripped" else "air")
    for name, transform in mm.INVARIANCES.items():
        if (name == "zero_bg" and background != "air") or (name == "res0.8" and max(zooms) > 1.05):
            continue
        moved, moved_zooms = transform(data, zooms)
        scores[f"inv/{name}"] = _score(moved, moved_zooms, modality, mm.moved_faces(name, faces))
    for series in mm.SERIES:
        for level in series.levels:
            scores[f"deg/{series.name}/{level:g}"] = _score(mm.degraded(data, series, level), zooms,
                                                            modality, faces)
    return scores


#: Relations that do not hold on every real scan yet (docs/iqs.md, "Limits"): the fixed-shape
#: synthetic bias field hardly moves the INU measure once the head mask follows the dimmed
#: part; k-space motion lowers the tissue noise scale while it raises the ghost.
KNOWN_FAILING = {"bias", "motion"}
#: Failures measured on the CI templates (2 mm copies) with calibration iqs_v2 (docs/iqs.md, Limits):
#: 2 % noise fills the structured background of Colin27 and the mean head, so the artifact part
#: falls before the noise part rises; a ghost on Colin27 / MNI152 rises < 1.
KNOWN_TEMPLATE_FAILURES = {("colin27_head", "noise"), ("colin27_head", "ghost"),
                           ("pydeface_mean_head", "noise"), ("mni152_2009a", "ghost")}
RELATIONS = ["invariance", *(s.name for s in mm.SERIES)]


def _cases() -> list:
    cases = []
    for scan_id in CI_IDS:
        for r in RELATIONS:
            known = r in KNOWN_FAILING or (scan_id, r) in KNOWN_TEMPLATE_FAILURES
            marks = pytest.mark.xfail(reason="known limit, see docs/iqs.md", strict=False) if known else ()
            cases.append(pytest.param(scan_id, r, marks=marks, id=f"{scan_id}-{r}"))
    return cases


@pytest.mark.parametrize(("scan_id", "relation"), _cases())
def test_iqs_relation_holds_on_a_real_ci_scan(scan_id: str, relation: str) -> None:
    scores = _scores(scan_id)
    if _scan(scan_id)[0].size < mm.MIN_RELATION_VOXELS:
        pytest.skip(f"{scan_id}: under {mm.MIN_RELATION_VOXELS} voxels, not held to the relations")
    assert all(math.isfinite(v[0]) for v in scores.values())
    fails = mm.check_scores(scores)
    if relation == "invariance":
        fails = [f for f in fails if not any(f.startswith(f"{s.name}:") for s in mm.SERIES)]
    else:
        fails = [f for f in fails if f.startswith(f"{relation}:")]
    assert not fails, f"{scan_id}: " + "; ".join(fails)


def test_check_scores_catches_a_drop_and_a_flag_flip() -> None:
    clean = (2.0, 2.0, 2.0, 2.0, False, False)
    scores = {"clean": clean, "inv/x10": (2.0, 2.0, 2.0, 2.0, False, True)}
    for series in mm.SERIES:
        for i, level in enumerate(series.levels):
            part = {"noise": 1, "blur": 2, "artifact": 3}[series.component]
            row = list(clean)
            row[part] = min(5.0, 2.5 + 1.25 * i)
            row[0] = combine(row[1:4], False, False)
            scores[f"deg/{series.name}/{level:g}"] = tuple(row)
    scores["deg/noise/0.04"] = (1.0, 1.0, 1.0, 1.0, False, False)
    fails = mm.check_scores(scores)
    assert any(f.startswith("x10") and "flag flip" in f for f in fails)
    assert any(f.startswith("noise: not monotone") for f in fails)
    assert not any(f.startswith("blur") for f in fails)
