"""`curate build --max-iqs 2.5` on a mixed collection: clean real scans kept, their degraded copies excluded."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from manifests.io import read_records

from curate.cli import main
from qc import metamorphic as mm
from tests.realscans import ci_scans

pytestmark = pytest.mark.slow
#: Strong degradations (the strongest level; ghost on Colin27, bias and motion are known limits, docs/iqs.md).
STRONG = {"noise": ("noise", 0.16), "blur": ("blur", 5.0)}


def _small(img: nib.Nifti1Image) -> tuple[np.ndarray, np.ndarray]:
    """Every second voxel of a scan (a real scan at twice the voxel size) and its affine."""
    data = np.asarray(img.dataobj, np.float32)
    data = data[..., 0] if data.ndim == 4 else data
    affine = img.affine.copy()
    if data.size > 4_000_000:
        data = np.ascontiguousarray(data[::2, ::2, ::2])
        affine[:3, :3] *= 2
    return data, affine


def test_max_iqs_keeps_clean_real_scans_and_drops_their_degraded_copies(tmp_path: Path) -> None:
    scans = [s for s in ci_scans() if min(s.image.shape[:3]) >= 32 and s.modality == "T1w"]
    if len(scans) < 2:
        pytest.skip("fewer than two real CI scans installed (pip + Debian mricron-data)")
    src = tmp_path / "src" / "mixed"
    src.mkdir(parents=True)
    (src / "dataset_description.json").write_text(json.dumps({"Name": "mixed", "BIDSVersion": "1.8.0"}))
    expected: dict[str, bool] = {}
    for n, scan in enumerate(scans[:3]):
        data, affine = _small(scan.image)
        versions = {"clean": data}
        versions.update({name: mm.degraded(data, next(s for s in mm.SERIES if s.name == series), level)
                         for name, (series, level) in STRONG.items()})
        for k, (name, arr) in enumerate(versions.items()):
            sub = f"{n}x{k}"
            (src / f"sub-{sub}" / "anat").mkdir(parents=True)
            nib.save(nib.Nifti1Image(arr.astype(np.float32), affine),
                     src / f"sub-{sub}" / "anat" / f"sub-{sub}_T1w.nii.gz")
            expected[sub] = name == "clean"
    out = tmp_path / "out"
    assert main(["build", str(tmp_path / "src"), str(out), "--workers", "1", "-q", "--max-iqs", "2.5"]) == 0
    rows = {r.subject: r for r in read_records(out / "manifests")}
    wrong = {sub: (rows[sub].iqs, rows[sub].exclusion_reasons) for sub, keep in expected.items()
             if rows[sub].included != keep or (not keep and rows[sub].exclusion_reasons != ("iqs",))}
    assert not wrong, f"kept/excluded the wrong way: {wrong}"
