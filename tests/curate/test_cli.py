"""The ``curate`` entry point, run in-process."""

from __future__ import annotations

from pathlib import Path

from curate.cli import main
from curate.demo import make_paths
from manifests.io import read_records


def test_index_writes_a_manifest_and_exits_zero(demo_source: Path, tmp_path: Path, capsys) -> None:
    code = main(["index", str(make_paths(demo_source)["nifti"]), str(tmp_path / "out"), "--workers", "1"])
    assert code == 0
    rows = read_records(tmp_path / "out" / "manifests")
    assert len(rows) == 5
    assert "exclusion reasons" in capsys.readouterr().out


def test_build_summary_counts_by_modality_and_reason(demo_source, tmp_path, capsys) -> None:
    code = main(["build", str(make_paths(demo_source)["bids"]), str(tmp_path / "out"), "--workers", "1"])
    out = capsys.readouterr().out
    assert code == 0
    assert "T1w" in out and "unreadable" in out and "empty" in out


def test_missing_source_is_a_one_line_error(tmp_path, capsys) -> None:
    code = main(["index", str(tmp_path / "nope"), str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("curate: error:")


def test_unwritable_output_is_a_one_line_error(demo_source, tmp_path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["index", str(make_paths(demo_source)["nifti"]), str(blocker / "out")])
    assert code == 2 and "not writable" in capsys.readouterr().err


def test_bad_config_is_a_one_line_error(demo_source, tmp_path, capsys) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[triage]\nbogus = 1\n")
    code = main(["index", str(make_paths(demo_source)["nifti"]), str(tmp_path / "out"), "--config", str(cfg)])
    assert code == 2 and "bogus" in capsys.readouterr().err


def test_config_is_applied_and_written_into_output(demo_source, tmp_path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[triage]\nmin_file_size_bytes = 1\n")
    main(["index", str(make_paths(demo_source)["nifti"]), str(tmp_path / "out"), "--config", str(cfg), "-q"])
    assert "min_file_size_bytes = 1" in (tmp_path / "out" / "curate_config.toml").read_text()
    rows = read_records(tmp_path / "out" / "manifests")
    assert not any("size" in r.exclusion_reasons for r in rows)


def test_bad_iqs_calibration_path_is_a_one_line_error(demo_source, tmp_path, capsys) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"[iqs]\ncalibration = '{tmp_path / 'missing.json'}'\n")
    code = main(["build", str(make_paths(demo_source)["nifti"]), str(tmp_path / "out"), "--config", str(cfg)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "missing.json" in err[0]
    assert not (tmp_path / "out" / "manifests").exists()


def test_arrays_folder_outside_output_is_a_one_line_error(demo_source, tmp_path, capsys) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[arrays]\nfolder = '../x'\n")
    code = main(["build", str(make_paths(demo_source)["nifti"]), str(tmp_path / "out"), "--config", str(cfg)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "arrays.folder" in err[0]
    assert not (tmp_path / "x").exists()
