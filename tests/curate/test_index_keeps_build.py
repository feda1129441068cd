"""``curate index`` on the OUTPUT of a build keeps every stage result (the next build has nothing to redo)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from curate import pipeline
from curate.cli import main
from curate.config import CurateConfig
from manifests.io import read_records

OPTIONS = pipeline.RunOptions(workers=1)


def _dataset(root: Path, mni_t1: nib.Nifti1Image, subjects: tuple[str, ...] = ("01",)) -> None:
    data = np.asarray(mni_t1.dataobj, dtype=np.float32)[::2, ::2, ::2]
    img = nib.Nifti1Image(np.round(data / data.max() * 1000).astype(np.int16), np.diag([2.0, 2, 2, 1]))
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.9.0"}')
    for sub in subjects:
        path = root / f"sub-{sub}" / "anat" / f"sub-{sub}_T1w.nii.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(img, str(path))


def _comparable(out: Path) -> list[tuple]:
    rows = sorted(read_records(out / "manifests"), key=lambda r: r.image_id)
    return [r.replace(processed_at=None) for r in rows]


def test_build_index_build_equals_one_build(tmp_path: Path, mni_t1: nib.Nifti1Image) -> None:
    source, out = tmp_path / "ds", tmp_path / "out"
    _dataset(source, mni_t1)
    pipeline.build(source, out, CurateConfig(), OPTIONS)
    built = _comparable(out)
    assert built[0].iqs is not None and built[0].array_path and built[0].anatomy_mask_path
    assert main(["index", str(source), str(out), "-q", "--workers", "1"]) == 0
    assert _comparable(out) == built  # the index kept the stage results of the unchanged image
    again = pipeline.build(source, out, CurateConfig(), OPTIONS)
    assert (again.processed, again.reused) == (0, 1)
    assert _comparable(out) == built


def test_index_after_a_build_adds_new_images_header_only(tmp_path: Path, mni_t1: nib.Nifti1Image) -> None:
    source, out = tmp_path / "ds", tmp_path / "out"
    _dataset(source, mni_t1)
    pipeline.build(source, out, CurateConfig(), OPTIONS)
    _dataset(source, mni_t1, subjects=("01", "02"))  # sub-01 rewritten (new mtime), sub-02 new
    kept = _dataset_row(out, "01")
    new_file = source / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    assert new_file.stat().st_mtime_ns != kept.source_mtime_ns
    pipeline.index(source, out, CurateConfig(), OPTIONS)
    for sub in ("01", "02"):  # a changed or new image has header columns only: its old results are stale
        row = _dataset_row(out, sub)
        assert row.iqs is None and row.array_path is None and row.stage_fingerprints == ()
    rebuilt = pipeline.build(source, out, CurateConfig(), OPTIONS)
    assert rebuilt.processed == 2 and all(r.array_path for r in rebuilt.records)


def test_build_redoes_rows_that_lost_their_stage_results(tmp_path: Path, mni_t1: nib.Nifti1Image) -> None:
    """A manifest of header-only rows (an index made before this fix) is no finished build."""
    source, out = tmp_path / "ds", tmp_path / "out"
    _dataset(source, mni_t1)
    pipeline.index(source, tmp_path / "index_only", CurateConfig(), OPTIONS)
    (out / "manifests").mkdir(parents=True)
    for part in (tmp_path / "index_only" / "manifests").iterdir():
        part.rename(out / "manifests" / part.name)
    result = pipeline.build(source, out, CurateConfig(), OPTIONS)
    assert (result.processed, result.reused) == (1, 0)
    assert all(r.array_path and r.iqs is not None for r in read_records(out / "manifests"))


def _dataset_row(out: Path, sub: str):
    (row,) = [r for r in read_records(out / "manifests") if r.subject == sub]
    return row
