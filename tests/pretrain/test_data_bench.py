"""``pretrain bench-loader`` in process, on a tiny real OUTPUT, and its nnssl-way baseline."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from manifests.io import write_part
from manifests.schema import ImageRecord

from curate.config import CurateConfig
from curate.io import write_nifti
from curate.stages.arrays import ArraysStage
from curate.stages.base import StageContext, WorkItem
from pretrain import bench_loader, bench_nnssl
from pretrain.data import select_entries


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, mni_t1: nib.Nifti1Image) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("bench")
    source, output = root / "source", root / "output"
    data = np.asarray(mni_t1.dataobj, np.float32)
    rows = []
    for n, window in enumerate([(slice(50, 110), slice(60, 120), slice(40, 100)),
                                (slice(70, 120), slice(50, 110), slice(60, 110))]):
        path = source / f"sub-{n}_T1w.nii.gz"
        write_nifti(path, np.rint(data[window] * 1000), mni_t1.affine, dtype=np.int16)
        record = ImageRecord(image_id=f"i{n}", dataset="d", source_kind="nifti", modality="T1w",
                             source_path=path.name, subject=str(n), included=True,
                             file_size_bytes=path.stat().st_size)
        ctx = StageContext(source_root=source, output_root=output, config=CurateConfig())
        rows.append(ArraysStage().run(WorkItem(record=record, source_file=str(path)), ctx)[0].record)
    write_part(output / "manifests", rows, "r", 0)
    return source, output


def test_bench_loader_prints_the_table(built, capsys):
    source, output = built
    code = bench_loader.main([str(output), "--source", str(source), "--patch-size", "32", "--batch-size", "2",
                              "--workers", "0", "--seconds", "2", "--crops", "2"])
    assert code == 0
    out = capsys.readouterr().out
    for measure in ("raw crop read", "array write per image", "array size / source NIfTI",
                    "augmented samples/s", "peak memory per worker", "workers per GPU"):
        assert measure in out
    nifti_row = next(line for line in out.splitlines() if "nibabel" in line)
    assert "n/a" not in nifti_row.split("|")[3]  # the NIfTI baseline really ran


def test_bench_loader_balance_only_compares_the_modes_side_by_side(built, capsys, monkeypatch):
    from pretrain import bench_balance

    small = bench_balance.heavy_tailed_entries(2_000, 40)
    monkeypatch.setattr(bench_balance, "heavy_tailed_entries", lambda: small)
    _, output = built
    assert bench_loader.main([str(output), "--balance-only", "--patch-size", "32", "--batch-size", "2",
                              "--workers", "0", "--seconds", "1.8"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if line.startswith("| Measure"))
    assert "dataset, alpha 1 / image" in header and "dataset, alpha 0 / image" in header
    cpu_row = next(line for line in out.splitlines() if line.startswith("| CPU s per sample"))
    assert all(float(x) > 0 for x in cpu_row.strip("|").split("|")[1:4])  # every mode really ran
    assert f"{len(small):,} images, 40 datasets" in out


def test_bench_loader_rejects_a_folder_without_manifests(tmp_path, capsys):
    assert bench_loader.main([str(tmp_path)]) == 2
    assert "no manifests" in capsys.readouterr().out


def test_nnssl_initial_patch_covers_rotation_and_scaling():
    # a 30-degree turn of a 100-voxel edge spans 100 (cos 30 + sin 30) = 136.6; / 0.85 -> 161
    assert bench_nnssl.nnssl_initial_patch(100) == 161


def test_nnssl_way_yields_patch_sized_binary_samples(built):
    _, output = built
    entries = select_entries(output, None, "all", 0.0, 0)
    sample = next(iter(bench_nnssl.NnsslWayDataset(entries, 32)))
    assert sample["image"].shape == (1, 32, 32, 32) and sample["image"].dtype == torch.float32
    assert set(sample["anatomy_mask"].unique().tolist()) <= {0, 1}


def test_scipy_fallback_transform_shapes_and_masks():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(40, 40, 40)).astype(np.float32)
    seg = np.stack([image > 0, image > 1]).astype(np.int16)
    for _ in range(6):  # both the resampled and the plain-crop branch
        img, masks = bench_nnssl._scipy_transform(image, seg, 16, rng)
        assert img.shape == (16, 16, 16) and masks.shape == (2, 16, 16, 16)
        assert set(np.unique(masks)) <= {0, 1}
