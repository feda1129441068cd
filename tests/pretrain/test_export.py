"""Export: nnU-Net's plain ResidualEncoderUNet loads the pre-trained weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pretrain.config import PretrainConfig, override
from pretrain.export import architecture, build_network, export_run, is_encoder_key, load_exported
from pretrain.train import train
from tests.pretrain.mae_synthetic import SyntheticBatches


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run")
    cfg = override(PretrainConfig(), model={"name": "tiny"}, data={"patch_size": 16, "batch_size": 1},
                   optim={"max_steps": 2}, run={"device": "cpu", "progress": False})
    train(cfg, SyntheticBatches(2, 1, 16), run)
    return run


def test_encoder_weights_load_strictly_into_a_plain_resenc_unet(run_dir: Path, tmp_path: Path) -> None:
    payload = export_run(run_dir, tmp_path / "w.pth")
    saved = load_exported(tmp_path / "w.pth")
    # A fine-tuning network for a 3-class task: its heads are new, its encoder is ours.
    net = build_network(saved["architecture"], num_classes=3)
    result = net.load_state_dict(saved["state_dict"], strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys and not any(is_encoder_key(k) for k in result.missing_keys)
    encoder_keys = [k for k in net.state_dict() if is_encoder_key(k)]
    assert set(encoder_keys) <= set(saved["state_dict"])
    for k in encoder_keys:
        assert torch.equal(net.state_dict()[k], payload["state_dict"][k])
    # The encoder alone also loads strictly.
    enc = {k[len("encoder."):]: v for k, v in saved["state_dict"].items() if k.startswith("encoder.")}
    net.encoder.load_state_dict(enc, strict=True)


def test_with_decoder_only_the_segmentation_heads_are_left_to_the_task(run_dir: Path,
                                                                        tmp_path: Path) -> None:
    export_run(run_dir, tmp_path / "wd.pth", with_decoder=True)
    saved = load_exported(tmp_path / "wd.pth")
    net = build_network(saved["architecture"], num_classes=5)
    result = net.load_state_dict(saved["network_weights"], strict=False)
    assert result.unexpected_keys == []
    assert result.missing_keys and all(".seg_layers." in f".{k}" for k in result.missing_keys)


def test_export_leaves_out_mask_tokens_and_densification(run_dir: Path, tmp_path: Path) -> None:
    saved = export_run(run_dir, tmp_path / "w.pth", with_decoder=True)
    assert not any("mask_token" in k or "densify" in k for k in saved["state_dict"])
    assert saved["pretrain"]["step"] == 2


def test_resenc_l_architecture_is_nnunet_resenc_l() -> None:
    arch = architecture("resenc-l")
    kw = arch["arch_kwargs"]
    assert kw["features_per_stage"] == [32, 64, 128, 256, 320, 320]
    assert kw["n_blocks_per_stage"] == [1, 3, 4, 6, 6, 6]
    assert kw["strides"][0] == [1, 1, 1] and kw["strides"][1:] == [[2, 2, 2]] * 5
    assert kw["conv_op"] == "torch.nn.modules.conv.Conv3d"
    assert kw["norm_op"] == "torch.nn.modules.instancenorm.InstanceNorm3d"


def test_a_foreign_file_is_refused(tmp_path: Path) -> None:
    torch.save({"hello": 1}, tmp_path / "x.pth")
    with pytest.raises(ValueError, match="pretrain export"):
        load_exported(tmp_path / "x.pth")


def test_a_run_without_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        export_run(tmp_path, tmp_path / "w.pth")


class _RunsACommand:
    """Unpickling this runs ``touch MARKER`` (what a crafted checkpoint would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_a_crafted_checkpoint_is_refused_on_resume_and_export_without_running_code(
        run_dir: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    import shutil
    import sys
    import types

    from pretrain.cli import main

    fake = types.SimpleNamespace(make_loader=lambda out, **kw: SyntheticBatches(2, 1, 16))
    monkeypatch.setitem(sys.modules, "pretrain.data", fake)  # a source, so that resume is reached
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    marker = tmp_path / "pwned"
    good = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    torch.save({**good, "rng": _RunsACommand(marker)}, run / "checkpoints" / "last.pt")
    out = tmp_path / "out"
    out.mkdir()
    assert main([str(out), "--run-dir", str(run), "--resume", "--device", "cpu", "--workers", "0",
                 "--no-progress"]) == 2
    assert main(["export", str(run), "--out", str(tmp_path / "w.pth")]) == 2
    err = capsys.readouterr().err
    assert not marker.exists()
    assert err.count("refused to load") == 2 and "last.pt" in err and "GLOBAL posix.system" in err
    assert all(line.startswith("pretrain: error:") for line in err.strip().splitlines()
               if "refused" in line)


def test_a_crafted_export_is_refused_without_running_code(run_dir: Path, tmp_path: Path) -> None:
    from pretrain.checkpoint import UnsafeFileError

    payload = export_run(run_dir, tmp_path / "w.pth")
    marker = tmp_path / "pwned"
    torch.save({**payload, "pretrain": _RunsACommand(marker)}, tmp_path / "evil.pth")
    with pytest.raises(UnsafeFileError, match="refused to load .*evil.pth"):
        load_exported(tmp_path / "evil.pth")
    assert not marker.exists()


@pytest.mark.parametrize(("where", "name"), [("network_class_name", "subprocess.Popen"),
                                              ("conv_op", "os.system"),
                                              ("nonlin", "builtins.eval")])
def test_an_export_naming_a_class_outside_the_registry_is_refused(run_dir: Path, tmp_path: Path,
                                                                   where: str, name: str) -> None:
    from pretrain.checkpoint import UnsafeFileError

    payload = export_run(run_dir, tmp_path / "w.pth")
    arch = {**payload["architecture"], "arch_kwargs": dict(payload["architecture"]["arch_kwargs"])}
    if where == "network_class_name":
        arch[where] = name
    else:
        arch["arch_kwargs"][where] = name
    torch.save({**payload, "architecture": arch}, tmp_path / "odd.pth")
    with pytest.raises(UnsafeFileError, match=f"{name!r} is not one pretrain builds"):
        load_exported(tmp_path / "odd.pth")
    with pytest.raises(UnsafeFileError, match="is not one pretrain builds"):
        build_network(arch, num_classes=2)
