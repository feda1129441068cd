"""The `pretrain` entry point, in process: train, resume, export, bench-loader, errors."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import torch

from pretrain.cli import main
from tests.pretrain.mae_synthetic import SyntheticBatches


@pytest.fixture
def fake_loader(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Stand in for pretrain.data (another branch) and record how it is called."""
    calls: list[dict] = []

    def make_loader(output_dir, **kwargs):
        calls.append({"output_dir": output_dir, **kwargs})
        return SyntheticBatches(3, kwargs["batch_size"], kwargs["patch_size"],
                                rank=kwargs["rank"], world_size=kwargs["world_size"])

    monkeypatch.setitem(sys.modules, "pretrain.data", types.SimpleNamespace(make_loader=make_loader))
    return calls


def test_train_then_resume_then_export(tmp_path: Path, fake_loader: list[dict], capsys) -> None:
    out, run = tmp_path / "out", tmp_path / "run"
    out.mkdir()
    args = [str(out), "--run-dir", str(run), "--model", "tiny", "--patch-size", "16",
            "--batch-size", "1", "--max-steps", "2", "--device", "cpu", "--max-iqs", "2.5",
            "--no-progress"]
    assert main(args) == 0
    call = fake_loader[0]
    assert call["patch_size"] == 16 and call["batch_size"] == 1
    assert call["selection"].max_iqs == 2.5 and (call["rank"], call["world_size"]) == (0, 1)
    assert 'name = "tiny"' in (run / "config.toml").read_text()
    # Resume with a longer schedule: the run's own config is reused, flags override it.
    assert main([str(out), "--run-dir", str(run), "--resume", "--max-steps", "3",
                 "--device", "cpu", "--no-progress"]) == 0
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps[-1] == 3
    assert main(["export", str(run), "--out", str(tmp_path / "w.pth"), "--with-decoder"]) == 0
    saved = torch.load(tmp_path / "w.pth", weights_only=True)
    assert saved["pretrain"]["step"] == 3 and saved["with_decoder"]
    assert "step 3" in capsys.readouterr().out


def test_missing_loader_module_is_a_clear_error(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "pretrain.data", None)  # import fails like an absent module
    code = main([str(tmp_path), "--run-dir", str(tmp_path / "r"), "--device", "cpu", "--model", "tiny"])
    assert code == 2
    assert "pretrain.data" in capsys.readouterr().err


def test_bench_loader_forwards_its_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    monkeypatch.setitem(sys.modules, "pretrain.bench_loader",
                        types.SimpleNamespace(main=lambda argv: seen.append(argv) or 0))
    assert main(["bench-loader", "OUT", "--steps", "5"]) == 0
    assert seen == [["OUT", "--steps", "5"]]


def test_bench_loader_absent_is_a_clear_error(monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "pretrain.bench_loader", None)
    assert main(["bench-loader"]) == 2
    assert "pretrain.bench_loader is not available" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["{tmp}/missing", "--run-dir", "{tmp}/r"], "not a directory"),
        (["{tmp}", "--run-dir", "{tmp}/r", "--config", "{tmp}/nope.toml"], "cannot read config"),
        (["export", "{tmp}", "--out", "{tmp}/w.pth"], "no checkpoint"),
    ],
)
def test_bad_input_gives_a_message_and_status_2(tmp_path: Path, capsys, argv, message) -> None:
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    assert message in capsys.readouterr().err


def test_cuda_requested_without_a_gpu_is_refused(tmp_path: Path, capsys, monkeypatch,
                                                 fake_loader: list[dict]) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main([str(tmp_path), "--run-dir", str(tmp_path / "r"), "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err


def test_an_output_without_trainable_images_says_what_it_holds(tmp_path: Path, capsys) -> None:
    from curate.indexing import write_manifest
    from manifests.schema import ImageRecord

    rows = [ImageRecord(image_id=f"i{n}", dataset="d", source_kind="nifti", source_path=f"i{n}.nii.gz",
                        modality="T1w").excluded_for("fov", detail="field of view too small")
            for n in range(3)]
    write_manifest(tmp_path, rows, "run1")
    assert main([str(tmp_path), "--run-dir", str(tmp_path / "r"), "--model", "tiny", "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "no images to pre-train on" in err and "3 manifest rows, 0 included" in err


def test_loader_workers_are_capped_at_the_cores_of_each_local_rank(monkeypatch, capsys) -> None:
    from pretrain.cli import loader_workers

    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert loader_workers(8) == 2 and "using 2" in capsys.readouterr().err
    assert loader_workers(1) == 1 and capsys.readouterr().err == ""
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert loader_workers(8) == 1


def test_selection_flags_reach_the_loader_are_recorded_and_counted(tmp_path: Path, fake_loader, capsys) -> None:
    from curate.indexing import write_manifest
    from manifests.schema import ImageRecord
    from pretrain.config import load_config

    def row(n: int, **kw) -> ImageRecord:
        base = dict(image_id=f"i{n}", dataset="d1", subject=f"s{n}", source_kind="nifti",
                    source_path=f"i{n}.nii.gz", modality="T1w", included=True, iqs=2.0,
                    array_path=f"arrays/i{n}.b2nd")
        return ImageRecord(**{**base, **kw})

    rows = [row(0), row(1, iqs=3.2), row(2, modality="FA", iqs=3.4), row(3, modality="SWI"),
            row(4, dataset="d2"), row(5, anonymization="skull_stripped"), row(6, array_path=None)]
    out, run = tmp_path / "out", tmp_path / "run"
    write_manifest(out, rows, "run1")
    args = [str(out), "--run-dir", str(run), "--model", "tiny", "--patch-size", "16", "--batch-size", "1",
            "--max-steps", "1", "--device", "cpu", "--no-progress", "--modality", "T1w", "--modality", "FA",
            "--exclude-dataset", "d2", "--exclude-anonymization", "skull_stripped", "--max-iqs", "3",
            "--max-iqs-for", "FA=3.5", "--balance", "dataset", "--balance-alpha", "0.5"]
    assert main(args) == 0
    call = fake_loader[0]
    sel = call["selection"]
    assert sel.modalities == ("T1w", "FA") and sel.exclude_datasets == ("d2",)
    assert sel.max_iqs == 3.0 and sel.max_iqs_by_modality == (("FA", 3.5),)
    assert (call["balance"], call["balance_alpha"], call["follow"]) == ("dataset", 0.5, False)
    saved = load_config(run / "config.toml").data  # the selection is recorded with the run
    assert saved.exclude_anonymization == ("skull_stripped",) and saved.max_iqs_by_modality == {"FA": 3.5}
    err = capsys.readouterr().err
    # 7 rows: SWI (modality), d2, i1 (IQS 3.2), skull-stripped and no-array dropped -> i0, i2 kept
    assert "7 rows, 7 subjects, 2 datasets in the manifest -> kept 2 rows, 2 subjects, 1 datasets" in err
    assert "modality not selected 1/1/0" in err and "dataset left out 1/1/1" in err
    assert "IQS above the limit or unscored 1/1/0" in err and "no array yet 1/1/0" in err


@pytest.mark.parametrize(("flag", "says"), [
    (["--max-iqs-for", "FA"], "MODALITY=LIMIT"), (["--balance", "site"], "--balance"),
    (["--balance-alpha", "2"], "data.balance_alpha"), (["--modality", "T1"], "data.modalities"),
    (["--workers", "-3"], "data.workers must be >= 0"), (["--max-iqs", "nan"], "data.max_iqs")])
def test_bad_selection_flags_are_refused_with_status_2(tmp_path: Path, flag: list[str], says: str,
                                                       capsys) -> None:
    code = _run_main([str(tmp_path), "--run-dir", str(tmp_path / "r"), "--device", "cpu", *flag])
    assert code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("pretrain: error:") and says in last
    assert not (tmp_path / "r").exists()  # refused before anything was written


def _run_main(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse refuses a bad choice itself (status 2)
        return int(exc.code)
