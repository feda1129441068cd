"""Names that are markup or escape codes, odd OUTPUT names, MemoryError rows, concurrent builds."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np

from curate import nifti, pipeline
from curate.cli import main
from curate.config import CurateConfig
from curate.output import OutputLock
from manifests.io import read_records


def _source(root: Path, mni_t1: nib.Nifti1Image, name: str = "t1_mprage.nii.gz") -> Path:
    data = np.asarray(mni_t1.dataobj, dtype=np.float32)[::2, ::2, ::2]
    path = root / "p1" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.round(data / data.max() * 1000).astype(np.int16), np.diag([2.0, 2, 2, 1])),
             str(path))
    return root


def test_status_of_an_output_named_like_rich_markup(tmp_path: Path, mni_t1, capsys) -> None:
    source, out = _source(tmp_path / "src", mni_t1), tmp_path / "a[" / "b]"
    assert main(["index", str(source), str(out), "--workers", "1", "-q"]) == 0
    assert main(["status", str(out)]) == 0  # was: rich.errors.MarkupError on "[/b]"
    printed = capsys.readouterr().out.replace("\n", "")
    assert "b]" in printed and "a[/b]" in printed


def test_escape_codes_in_names_are_shown_not_sent_to_the_terminal(tmp_path: Path, mni_t1, capsys) -> None:
    evil = "x\x1b]0;pwned\x07\x1b[2J"
    assert main(["index", str(tmp_path / evil), str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err and "x\\x1b]0;pwned\\x07\\x1b[2J" in err
    source = _source(tmp_path / "src", mni_t1)
    os.symlink(".", source / "p1" / evil)  # a loop warning names the link
    assert main(["index", str(source), str(tmp_path / "out"), "--workers", "1", "-q"]) == 0
    err = capsys.readouterr().err
    assert "loop" in err and "\x1b" not in err and "\\x1b[2J" in err


def test_relative_output_starting_with_a_dash_reaches_dcm2niix_as_a_path(tmp_path: Path, pydicom_mr,
                                                                         monkeypatch) -> None:
    from curate import dicom_convert

    seen: list[list[str]] = []

    def run(argv, **kwargs):
        seen.append(list(argv))
        return subprocess.CompletedProcess(argv, 1, stdout="", stderr="")

    monkeypatch.setattr(dicom_convert.subprocess, "run", run)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "1.dcm").write_bytes(pydicom_mr.read_bytes())
    try:
        dicom_convert.convert_series(tmp_path / "src", ["1.dcm"], Path("-out/converted/ds"), "x")
    except Exception:
        pass  # the fake dcm2niix fails; only its arguments matter here
    (argv,) = seen[:1]
    paths = [a for a in argv[1:] if "/" in a]
    assert paths and all(os.path.isabs(a) for a in paths), argv
    assert not any(a.startswith("-out") for a in argv)


def test_memory_error_while_reading_says_what_happened(tmp_path: Path, mni_t1, monkeypatch) -> None:
    def out_of_memory(data):
        raise MemoryError()

    monkeypatch.setattr(nifti, "intensities", out_of_memory)
    source = _source(tmp_path / "src", mni_t1)
    (row,) = pipeline.build(source, tmp_path / "out", CurateConfig(), pipeline.RunOptions(workers=1)).records
    assert row.exclusion_reasons == ("unreadable",)
    assert "MemoryError: out of memory" in (row.exclusion_detail or "")  # was "read: data: MemoryError:"


def test_second_build_on_a_locked_output_exits_2_with_a_message(tmp_path: Path, mni_t1, capsys) -> None:
    source, out = _source(tmp_path / "src", mni_t1), tmp_path / "out"
    assert main(["index", str(source), str(out), "--workers", "1", "-q"]) == 0
    before = sorted(read_records(out / "manifests"))
    with OutputLock(out):  # another build holds OUTPUT
        for command in ("build", "index"):
            assert main([command, str(source), str(out), "--workers", "1", "-q"]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and "another curate index or build" in err[0] and str(os.getpid()) in err[0]
    assert sorted(read_records(out / "manifests")) == before
    assert main(["build", str(source), str(out), "--workers", "1", "-q"]) == 0  # free again


def test_a_lock_held_by_another_process_is_refused(tmp_path: Path, mni_t1) -> None:
    """The lock holds across processes (a second ``curate build`` started while the first runs)."""
    import sys

    source, out = _source(tmp_path / "src", mni_t1), tmp_path / "out"
    out.mkdir()
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from curate.output import OutputLock; "
         f"lock = OutputLock(Path({str(out)!r})); lock.acquire(); print('held', flush=True); time.sleep(120)"],
        env=env, cwd=root, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        second = subprocess.run([sys.executable, "-m", "curate.cli", "build", str(source), str(out), "-q"],
                                env=env, cwd=root, capture_output=True, text=True, timeout=300)
    finally:
        holder.kill()
        holder.wait()
    assert second.returncode == 2, second.stderr
    assert f"another curate index or build (pid {holder.pid})" in second.stderr
    assert not (out / "manifests").exists()
