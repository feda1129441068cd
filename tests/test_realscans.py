"""The real-scan catalogue, its builder and the test loader (``tests/realscans.py``)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from benchmarks.realscans import build_corpus
from benchmarks.realscans.catalogue import CATALOGUE, FACES, SKULLS, background_kind
from tests.realscans import (
    CI_IDS,
    RealScan,
    ci_scans,
    corpus_index,
    downsample,
    real_scan,  # noqa: F401  (fixture)
    real_scans,  # noqa: F401  (fixture)
)


def test_catalogue_labels_are_from_the_declared_vocabulary() -> None:
    ids = [s.id for s in CATALOGUE]
    assert len(ids) == len(set(ids))
    for spec in CATALOGUE:
        assert spec.face in FACES and spec.skull in SKULLS, spec.id
        assert spec.kind in {"pip", "deb", "git", "git-dicom"}, spec.id
        assert not spec.ci or spec.kind in {"pip", "deb"}, f"{spec.id}: CI reaches PyPI/Debian only"
        if spec.skull == "stripped":
            assert spec.face == "none", spec.id


def test_catalogue_has_many_sources_and_templates_are_a_minority() -> None:
    sources = {s.source for s in CATALOGUE}
    assert len(sources) >= 4
    assert sum(s.is_template for s in CATALOGUE) * 3 < len(CATALOGUE)
    ci_sources = {s.source for s in CATALOGUE if s.ci}
    assert len(ci_sources) >= 2


def test_border_zero_fraction_counts_only_the_outer_shell() -> None:
    data = np.zeros((40, 40, 40), dtype=np.int16)
    data[2:-2, 2:-2, 2:-2] = 5  # the outer 2-voxel shell stays zero
    assert build_corpus.border_zero_fraction(data) == 1.0
    assert background_kind(1.0) == "zero"
    data[:] = 5
    assert build_corpus.border_zero_fraction(data) == 0.0
    assert background_kind(0.0) == "air"


def test_ci_scans_are_3d_real_images_from_two_or_more_sources(real_scans: list[RealScan]) -> None:
    assert len({s.source for s in real_scans}) >= 2
    for scan in real_scans:
        data = scan.data()
        assert data.ndim == 3 and min(data.shape) >= 8, scan.id
        assert np.isfinite(data).all() and data.max() > data.min(), scan.id
        assert all(z > 0 for z in scan.image.header.get_zooms()[:3]), scan.id


def test_shipped_masks_lie_on_their_scan(real_scan: RealScan) -> None:
    data = real_scan.data()
    if real_scan.brain_mask is not None:
        mask = np.asarray(real_scan.brain_mask.dataobj) > 0
        assert mask.shape == data.shape
        # the brain is brighter than the whole field of view on average and is a minority of it
        assert data[mask].mean() > data.mean() and 0.05 < mask.mean() < 0.5
    if real_scan.face_mask is not None:
        kept = np.asarray(real_scan.face_mask.dataobj) > 0
        assert kept.shape == data.shape and 0.5 < kept.mean() < 1.0


def test_downsample_halves_the_grid_and_keeps_the_world_centre(real_scans: list[RealScan]) -> None:
    img = real_scans[0].image
    small = downsample(img, 2)
    assert small.shape == tuple(n // 2 for n in img.shape[:3])
    # voxel (0,0,0) of the small grid is the centre of the 2x2x2 block at the original origin
    centre_small = small.affine @ np.array([0, 0, 0, 1.0])
    centre_big = img.affine @ np.array([0.5, 0.5, 0.5, 1.0])
    assert np.allclose(centre_small, centre_big)
    assert np.allclose(np.asarray(small.header.get_zooms()[:3]),
                       2 * np.asarray(img.header.get_zooms()[:3]))


def test_builder_writes_scans_index_and_ready_and_skips_absent_sources(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pip_ids = [s.id for s in CATALOGUE if s.kind == "pip"][:2]
    snapshot_id = next(s.id for s in CATALOGUE if s.kind.startswith("git"))
    only = [*pip_ids, snapshot_id]
    assert build_corpus.main(["--out", str(tmp_path), "--mirror", str(tmp_path / "none"),
                              "--only", *only]) == 0
    assert f"skipped {snapshot_id}" in capsys.readouterr().err
    index = json.loads((tmp_path / "corpus.json").read_text())
    assert [e["id"] for e in index["scans"]] == pip_ids
    assert (tmp_path / "READY").is_file()
    for entry in index["scans"]:
        img = nib.load(tmp_path / entry["path"])
        assert list(img.shape[:3]) == entry["shape"] and str(img.get_data_dtype()) == entry["dtype"]
        assert entry["provenance"]["kind"] == "pip" and entry["provenance"]["version"]
        assert entry["background"] in {"air", "zero"}
    # a rerun keeps what is there
    build_corpus.main(["--out", str(tmp_path), "--mirror", str(tmp_path / "none"),
                       "--only", *pip_ids])
    assert capsys.readouterr().out.count("kept") == 2
    assert [e["id"] for e in corpus_index(tmp_path)] == pip_ids


def test_ci_loader_reports_why_a_scan_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    import tests.realscans as rs

    def absent(kind: str, locator: str, mirror: Path, work: Path) -> Path:
        raise rs.SourceMissing(f"{locator} is gone")

    monkeypatch.setattr(rs, "local_file", absent)
    missing: list[str] = []
    assert ci_scans(missing) == []
    assert len(missing) == len(CI_IDS) and all("is gone" in m for m in missing)


def test_docs_table_has_one_row_per_entry(tmp_path: Path) -> None:
    from benchmarks.realscans.table import table

    pip_ids = [s.id for s in CATALOGUE if s.kind == "pip"][:2]
    build_corpus.build(tmp_path, tmp_path / "none", set(pip_ids))
    rows = table(corpus_index(tmp_path)).splitlines()
    assert len(rows) == 2 + len(pip_ids)
    assert all(r.startswith(f"| {i} |") for r, i in zip(rows[2:], pip_ids))
