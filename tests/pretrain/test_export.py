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
