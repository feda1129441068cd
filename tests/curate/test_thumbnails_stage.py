"""The ``thumbnails`` build stage: which rows it draws, masks from files or extras, bad masks."""

from __future__ import annotations

import io
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from manifests.schema import ImageRecord
from qc.thumbnails import ANATOMY_RGB

from curate.config import CurateConfig
from curate.io import ImageData, write_nifti
from curate.stages import default_stages
from curate.stages.base import StageContext, WorkItem
from curate.stages.thumbnails import ThumbnailStage, thumbnail_path, wants_thumbnail


def _record(**kw: object) -> ImageRecord:
    base = dict(image_id="img0001", dataset="ds", source_kind="bids",
                source_path="sub-01/anat/sub-01_T1w.nii.gz", modality="T1w", included=True)
    base.update(kw)
    return ImageRecord(**base)


def _decode(path: Path) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(path.read_bytes())).convert("RGB"))


@pytest.fixture()
def ctx(tmp_path: Path) -> StageContext:
    return StageContext(source_root=tmp_path / "src", output_root=tmp_path / "out", config=CurateConfig())


@pytest.fixture()
def t1(mni_t1: nib.Nifti1Image) -> ImageData:
    data = np.asarray(mni_t1.dataobj)[::2, ::2, ::2].copy()
    affine = mni_t1.affine.copy()
    affine[:3, :3] *= 2
    return ImageData(data=data, affine=affine, zooms=(2.0, 2.0, 2.0))


def test_stage_is_registered_last() -> None:
    assert default_stages(CurateConfig())[-1].name == "thumbnails"


def test_which_rows_get_a_thumbnail() -> None:
    assert wants_thumbnail(_record())
    assert wants_thumbnail(_record(included=False, exclusion_reasons=("iqs",)))
    assert wants_thumbnail(_record(modality="DWI", included=False, exclusion_reasons=("modality",)))
    assert not wants_thumbnail(_record(included=False, exclusion_reasons=("unreadable",)))
    assert not wants_thumbnail(_record(included=False, exclusion_reasons=("iqs", "fov")))


def test_run_writes_a_png_with_mask_overlays_read_from_files(ctx: StageContext, t1: ImageData) -> None:
    brain = (t1.data > np.percentile(t1.data, 50)).astype(np.uint8)
    anon = np.zeros_like(brain)
    anon[:, :, :10] = 1
    write_nifti(ctx.output_root / "masks/anat.nii.gz", brain, t1.affine)
    write_nifti(ctx.output_root / "masks/anon.nii.gz", anon, t1.affine)
    record = _record(anatomy_mask_path="masks/anat.nii.gz", anon_mask_path="masks/anon.nii.gz")
    item = WorkItem(record, None, image=t1)
    assert ThumbnailStage().run(item, ctx) == [item]
    rgb = _decode(thumbnail_path(ctx.output_root, record.image_id))
    assert rgb.shape[0] == CurateConfig().report.panel_px
    assert np.all(rgb == ANATOMY_RGB, axis=-1).any()
    assert (rgb[..., 0].astype(int) - rgb[..., 1].astype(int) > 40).any()


def test_masks_handed_over_in_extras_are_used(ctx: StageContext, t1: ImageData) -> None:
    brain = (t1.data > np.percentile(t1.data, 50)).astype(np.uint8)
    item = WorkItem(_record(), None, image=t1, extras={"anatomy_mask": brain})
    ThumbnailStage().run(item, ctx)
    rgb = _decode(thumbnail_path(ctx.output_root, "img0001"))
    assert np.all(rgb == ANATOMY_RGB, axis=-1).any()


def test_missing_or_misshapen_mask_is_left_out_not_fatal(ctx: StageContext, t1: ImageData,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    write_nifti(ctx.output_root / "masks/small.nii.gz", np.ones((5, 5, 5), np.uint8), np.eye(4))
    record = _record(anatomy_mask_path="masks/small.nii.gz", anon_mask_path="masks/absent.nii.gz")
    ThumbnailStage().run(WorkItem(record, None, image=t1), ctx)
    rgb = _decode(thumbnail_path(ctx.output_root, "img0001"))
    assert np.array_equal(rgb[..., 0], rgb[..., 1])  # plain grey: no overlay drawn
    assert "left out of thumbnail" in caplog.text
