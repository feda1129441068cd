"""A full disk stops the build with one line, leaves no temporary file, and a rerun finishes cleanly."""

from __future__ import annotations

import errno
import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from curate import pipeline
from curate.cli import main
from curate.config import CurateConfig
from curate.errors import OutOfSpace
from curate.stages.arrays import ArraysStage
from manifests.io import read_records

OPTIONS = pipeline.RunOptions(workers=1)


def _source(root: Path, mni_t1: nib.Nifti1Image) -> Path:
    data = np.asarray(mni_t1.dataobj, dtype=np.float32)[::2, ::2, ::2]
    img = nib.Nifti1Image(np.round(data / data.max() * 1000).astype(np.int16), np.diag([2.0, 2, 2, 1]))
    for patient in ("p1", "p2"):
        path = root / patient / "t1_mprage.nii.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(img, str(path))
    return root


def _temporaries(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if ".tmp" in p.name or p.name.startswith(".convert-")]


def _clean(rows) -> list[tuple]:
    return sorted((r.image_id, r.included, r.exclusion_reasons, r.warnings, r.iqs, r.array_path)
                  for r in rows)


def _full_after(limit: int, real):
    """A writer that writes ``limit`` bytes of its file, then fails as a full disk does."""
    def write(obj, filename, *args, **kwargs):
        Path(filename).write_bytes(b"\0" * limit)
        raise OSError(errno.ENOSPC, "No space left on device")
    return write


def test_full_disk_while_writing_masks_stops_the_build(tmp_path, mni_t1, monkeypatch, capsys) -> None:
    source, out = _source(tmp_path / "src", mni_t1), tmp_path / "out"
    monkeypatch.setattr(nib, "save", _full_after(4096, nib.save))
    code = main(["build", str(source), str(out), "--workers", "1", "-q"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("curate: error: no space left")
    assert "mask" in err[0] and str(out) in err[0]  # names the file it could not write
    assert _temporaries(out) == []
    assert not any("unreadable" in r.exclusion_reasons for r in read_records(out / "manifests"))
    monkeypatch.undo()
    assert main(["build", str(source), str(out), "--workers", "1", "-q"]) == 0
    clean = pipeline.build(source, tmp_path / "clean", CurateConfig(), OPTIONS)
    assert _clean(read_records(out / "manifests")) == _clean(clean.records)
    assert all(r.included and not any("internal error" in w for w in r.warnings) for r in clean.records)


def test_full_disk_while_writing_a_manifest_part(tmp_path, mni_t1, monkeypatch) -> None:
    """pyarrow loses the errno: "IOError: ... No space left on device" is still a full disk."""
    import manifests.io as mio

    source, out = _source(tmp_path / "src", mni_t1), tmp_path / "out"

    def write_table(table, where, **kwargs):
        Path(where).write_bytes(b"PAR1")
        raise OSError("IOError: Failed to write: [errno 28] No space left on device")

    monkeypatch.setattr(mio.pq, "write_table", write_table)
    with pytest.raises(OutOfSpace, match="no space left"):
        pipeline.build(source, out, CurateConfig(), OPTIONS)
    assert _temporaries(out) == []
    monkeypatch.undo()
    rerun = pipeline.build(source, out, CurateConfig(), OPTIONS)
    clean = pipeline.build(source, tmp_path / "clean", CurateConfig(), OPTIONS)
    assert _clean(rerun.records) == _clean(clean.records)
    assert all(r.included and r.array_path for r in rerun.records)


def test_rerun_drops_the_internal_error_warning_of_a_failed_stage(tmp_path, mni_t1, monkeypatch) -> None:
    """Rows of an earlier build whose stage crashed kept "internal error in stage ..." after a good rerun."""
    source, out = _source(tmp_path / "src", mni_t1), tmp_path / "out"

    def crash(self, item, ctx):
        raise RuntimeError("simulated stage bug")

    monkeypatch.setattr(ArraysStage, "run", crash)
    failed = pipeline.build(source, out, CurateConfig(), OPTIONS)
    assert all("internal error in stage arrays" in r.warnings for r in failed.records)
    monkeypatch.undo()
    rerun = pipeline.build(source, out, CurateConfig(), OPTIONS)
    assert all(r.included and r.array_path for r in rerun.records)
    assert not any(w.startswith("internal error") for r in rerun.records for w in r.warnings)


def test_dcm2niix_failing_on_a_full_disk_is_out_of_space(tmp_path, pydicom_mr, monkeypatch) -> None:
    from curate import dicom_convert

    (tmp_path / "src").mkdir()
    shutil.copy(pydicom_mr, tmp_path / "src" / "1.dcm")
    failed = subprocess.CompletedProcess([], 1, stdout="Error: Unable to write", stderr="")
    monkeypatch.setattr(dicom_convert.subprocess, "run", lambda *a, **k: failed)
    monkeypatch.setattr(dicom_convert.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 0))
    with pytest.raises(OutOfSpace, match="no space left"):  # was: unreadable, "dcm2niix failed"
        dicom_convert.convert_series(tmp_path / "src", ["1.dcm"], tmp_path / "out", "x")
    assert _temporaries(tmp_path / "out") == []


def test_full_disk_during_curate_index_is_one_line(tmp_path, mni_t1, monkeypatch, capsys) -> None:
    import manifests.io as mio

    source = _source(tmp_path / "src", mni_t1)

    def write_table(table, where, **kwargs):
        Path(where).write_bytes(b"PAR1")
        raise OSError("IOError: [errno 28] No space left on device")

    monkeypatch.setattr(mio.pq, "write_table", write_table)
    assert main(["index", str(source), str(tmp_path / "out"), "--workers", "1", "-q"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("curate: error: no space left")
    assert _temporaries(tmp_path / "out") == []
