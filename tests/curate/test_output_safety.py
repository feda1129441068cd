"""OUTPUT is never SOURCE, and a bad SOURCE never touches the OUTPUT of an earlier build."""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from curate.cli import main
from manifests.io import list_parts, read_records


def _nifti_source(root: Path, mni_t1: nib.Nifti1Image) -> Path:
    data = np.asarray(mni_t1.dataobj, dtype=np.float32)[::3, ::3, ::3]
    path = root / "pat1" / "t1_mprage.nii.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.round(data).astype(np.int16), np.diag([3.0, 3, 3, 1])), str(path))
    return root


def _files(out: Path) -> dict[str, tuple[bytes, int]]:
    """Content and mtime of every file in OUTPUT but the lock (which a second run takes to wait its turn)."""
    return {str(p.relative_to(out)): (p.read_bytes(), p.stat().st_mtime_ns) for p in out.rglob("*")
            if p.is_file() and p.name != ".curate.lock"}


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("curate: error:"), err
    return err[0]


@pytest.mark.parametrize("where", ["same", "inside", "linked-inside", "source-inside-output"])
@pytest.mark.parametrize("command", ["index", "build"])
def test_overlapping_source_and_output_are_refused_before_any_write(
        tmp_path: Path, mni_t1: nib.Nifti1Image, capsys, where: str, command: str) -> None:
    source = _nifti_source(tmp_path / "src", mni_t1)
    output = {"same": source, "inside": source / "out", "linked-inside": tmp_path / "link" / "out",
              "source-inside-output": tmp_path}[where]
    if where == "linked-inside":
        os.symlink(source, tmp_path / "link")  # OUTPUT's path leads into SOURCE through a link
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert main([command, str(source), str(output), "--workers", "1", "-q"]) == 2
    assert "inside" in _one_line_error(capsys)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written


def test_bad_source_leaves_an_earlier_build_untouched(tmp_path: Path, mni_t1: nib.Nifti1Image, capsys) -> None:
    source, out = _nifti_source(tmp_path / "src", mni_t1), tmp_path / "out"
    assert main(["index", str(source), str(out), "--workers", "1", "-q"]) == 0
    config = out / "curate_config.toml"
    stamp = _files(out)
    other = tmp_path / "other.toml"
    other.write_text("[triage]\nmin_file_size_bytes = 1\n")
    code = main(["index", str(tmp_path / "missing"), str(out), "--config", str(other), "-q"])
    assert code == 2 and "missing" in _one_line_error(capsys)
    assert _files(out) == stamp
    assert "min_file_size_bytes = 1" not in config.read_text()
    assert len(read_records(out / "manifests")) == 1


def test_empty_source_does_not_replace_the_rows_of_an_earlier_build(tmp_path: Path, mni_t1, capsys) -> None:
    """An unmounted share is an empty folder: it must not wipe the manifest."""
    source, out = _nifti_source(tmp_path / "src", mni_t1), tmp_path / "out"
    assert main(["index", str(source), str(out), "--workers", "1", "-q"]) == 0
    parts = list_parts(out / "manifests")
    (tmp_path / "empty").mkdir()
    assert main(["build", str(tmp_path / "empty"), str(out), "--workers", "1", "-q"]) == 2
    assert "no images" in _one_line_error(capsys)
    assert list_parts(out / "manifests") == parts and len(read_records(out / "manifests")) == 1


def test_a_missing_output_is_not_created_for_a_bad_source(tmp_path: Path, capsys) -> None:
    assert main(["build", str(tmp_path / "missing"), str(tmp_path / "out"), "-q"]) == 2
    _one_line_error(capsys)
    assert not (tmp_path / "out").exists()
