"""The iqs stage on real images, and `curate build` with --max-iqs / --iqs-ratings in process."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from manifests.filters import select
from manifests.io import read_records
from manifests.schema import ImageRecord

from curate.cli import main
from curate.config import CurateConfig
from curate.stages import default_stages
from curate.stages.base import StageContext, WorkItem
from curate.stages.iqs import IqsStage, inferior_face, phase_axis
from qc import degrade


def _small_head(head_template: nib.Nifti1Image) -> nib.Nifti1Image:
    data = np.asarray(head_template.dataobj, np.float32)[::2, ::2, ::2]
    affine = head_template.affine.copy()
    affine[:3, :3] *= 2
    return nib.Nifti1Image(data, affine)


def _item(path: Path, modality: str = "T1w", included: bool = True) -> WorkItem:
    record = ImageRecord(image_id="x1", dataset="ds", source_kind="nifti", source_path=path.name,
                         modality=modality, included=included, phase_encoding_direction="j-")
    return WorkItem(record, str(path))


def test_stage_fills_scores_and_measures(tmp_path: Path, head_template) -> None:
    path = tmp_path / "head.nii.gz"
    nib.save(_small_head(head_template), path)
    ctx = StageContext(tmp_path, tmp_path, CurateConfig())
    [item] = IqsStage().run(_item(path), ctx)
    r = item.record
    assert 1.0 <= r.iqs <= 5.0 and r.iqs_source == "auto"
    assert all(v is not None for v in (r.iqs_noise, r.iqs_blur, r.iqs_artifact, r.qc_snr, r.qc_efc,
                                       r.qc_fwhm_mm, r.qc_ghost, r.qc_noise_sigma))
    assert r.corrupted is False and r.fov_suboptimal is False and r.qc_bad_slices == 0


def test_stage_uses_an_anatomy_mask_when_present(tmp_path: Path, head_template) -> None:
    img = _small_head(head_template)
    path = tmp_path / "head.nii.gz"
    nib.save(img, path)
    ctx = StageContext(tmp_path, tmp_path, CurateConfig())
    plain = IqsStage().run(_item(path), ctx)[0].record
    item = _item(path)
    data = np.asarray(img.dataobj)
    item.extras["anatomy_mask"] = (data > np.percentile(data, 80)).astype(np.uint8)
    masked = IqsStage().run(item, ctx)[0].record
    assert masked.qc_cjv != plain.qc_cjv  # tissue classes came from the mask
    # ... but the calibrated parts keep their own head split, so the score does not move
    # with the masks stage (a whole-head mask once raised a clean head's IQS to 2.8).
    assert (masked.iqs, masked.iqs_artifact, masked.iqs_noise, masked.iqs_blur) == (
        plain.iqs, plain.iqs_artifact, plain.iqs_noise, plain.iqs_blur)


def test_stage_scores_a_constant_image_as_corrupted(tmp_path: Path) -> None:
    path = tmp_path / "zeros.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((20, 20, 20), np.float32), np.eye(4)), path)
    [item] = IqsStage().run(_item(path), StageContext(tmp_path, tmp_path, CurateConfig()))
    assert item.record.corrupted and item.record.iqs == 5.0
    assert any(w.startswith("iqs: corrupted") for w in item.record.warnings)


def test_stage_applies_to_included_rows_only_and_is_registered() -> None:
    stage = IqsStage()
    assert stage.applies(_item(Path("a")).record)
    assert not stage.applies(_item(Path("a"), included=False).record)
    assert "iqs" in [s.name for s in default_stages(CurateConfig())]


def test_geometry_helpers() -> None:
    assert phase_axis("i-") == 0 and phase_axis("") is None
    assert inferior_face(np.eye(4)) == ((2, 0),)
    assert inferior_face(np.diag([-1.0, 1.0, -1.0, 1.0])) == ((2, 1),)


@pytest.mark.slow
def test_curate_build_max_iqs_and_ratings(tmp_path: Path, head_template) -> None:
    src = tmp_path / "src" / "ds1"
    small = _small_head(head_template)
    data = np.asarray(small.dataobj, np.float32)
    noisy = degrade.rician_noise(data, 0.16 * float(np.percentile(data[data > 60], 75)),
                                 np.random.default_rng(0))
    (src).mkdir(parents=True)
    (src / "dataset_description.json").write_text(json.dumps({"Name": "ds1", "BIDSVersion": "1.8.0"}))
    for sub, arr in (("01", data), ("02", noisy)):
        (src / f"sub-{sub}" / "anat").mkdir(parents=True)
        nib.save(nib.Nifti1Image(arr.astype(np.int16), small.affine),
                 src / f"sub-{sub}" / "anat" / f"sub-{sub}_T1w.nii.gz")
    out = tmp_path / "out"
    assert main(["build", str(tmp_path / "src"), str(out), "--workers", "1", "-q", "--max-iqs", "2.5"]) == 0
    rows = {r.subject: r for r in read_records(out / "manifests")}
    assert rows["01"].included and rows["01"].iqs <= 2.5 and rows["01"].iqs_source == "auto"
    assert not rows["02"].included and rows["02"].exclusion_reasons == ("iqs",)
    assert rows["02"].iqs > 2.5 and rows["02"].iqs_group is not None
    assert select(out / "manifests", included=None, max_iqs=2.5).num_rows == 1
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("dataset,modality,rating\nds1,T1w,1.5\n")
    assert main(["build", str(tmp_path / "src"), str(out), "--workers", "1", "-q", "--max-iqs", "2.5",
                 "--iqs-ratings", str(ratings)]) == 0
    rows = {r.subject: r for r in read_records(out / "manifests")}
    assert rows["02"].included and rows["02"].iqs == 1.5 and rows["02"].iqs_source == "human"
    assert rows["02"].iqs_noise is not None  # the automatic parts stay


def test_curate_build_rejects_a_bad_ratings_file(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "r.csv"
    bad.write_text("image_id,rating\nx,9\n")
    (tmp_path / "src").mkdir()
    assert main(["build", str(tmp_path / "src"), str(tmp_path / "out"), "-q", "--iqs-ratings", str(bad)]) == 2
    assert "outside [1, 5]" in capsys.readouterr().err


def test_stage_reads_the_anatomy_mask_file_on_a_resumed_build(tmp_path: Path, head_template) -> None:
    img = _small_head(head_template)
    path = tmp_path / "head.nii.gz"
    nib.save(img, path)
    data = np.asarray(img.dataobj)
    mask = (data > np.percentile(data, 80)).astype(np.uint8)
    nib.save(nib.Nifti1Image(mask, img.affine), tmp_path / "anat_mask.nii.gz")
    ctx = StageContext(tmp_path, tmp_path, CurateConfig())
    in_memory = _item(path)
    in_memory.extras["anatomy_mask"] = mask
    from_file = _item(path)
    from_file.record = from_file.record.replace(anatomy_mask_path="anat_mask.nii.gz")
    a = IqsStage().run(in_memory, ctx)[0].record
    b = IqsStage().run(from_file, ctx)[0].record
    assert a.qc_cjv == b.qc_cjv and a.iqs == b.iqs
