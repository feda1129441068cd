"""``pretrain export --format nnssl``: the checkpoint nnssl's nnU-Net fine-tuning reads.

The layout's field names are nnssl's (``AdaptationPlan``, ``Plan``, ``ConfigurationPlan``,
``DynamicArchitecturePlans`` in MIC-DKFZ/nnssl) and the loading follows its nnU-Net fork
(TaWald/nnUNet, ``PretrainedTrainer.load_pretrained_weights``); :mod:`pretrain.finetune`
re-implements the latter.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pretrain.cli import main
from pretrain.config import load_config_text, override
from pretrain.export import KEYS_TO_IN_PROJ, NNSSL_ARCH_FIELDS, export_nnssl, exported_state
from pretrain.finetune import load_pretrained, network_from_plan
from pretrain.checkpoint import read_checkpoint
from pretrain.train import train
from tests.pretrain.mae_synthetic import SyntheticBatches

ADAPTATION_FIELDS = {"architecture_plans", "pretrain_plan", "pretrain_num_input_channels",
                     "recommended_downstream_patchsize", "key_to_encoder", "key_to_stem", "keys_to_in_proj",
                     "key_to_lpe"}
PLAN_FIELDS = {"dataset_name", "plans_name", "original_median_spacing_after_transp", "image_reader_writer",
               "transpose_forward", "transpose_backward", "configurations", "experiment_planner_used"}
CONFIGURATION_FIELDS = {"data_identifier", "preprocessor_name", "spacing_style", "normalization_schemes",
                        "use_mask_for_norm", "resampling_fn_data", "resampling_fn_data_kwargs",
                        "resampling_fn_mask", "resampling_fn_mask_kwargs", "spacing", "patch_size"}


@pytest.fixture(scope="module", params=["s3d", "amaes"])
def run_dir(request, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp(f"run-{request.param}")
    cfg = load_config_text(f'[method]\nname = "{request.param}"\n')
    cfg = override(cfg, model={"name": "tiny"}, data={"patch_size": 16, "batch_size": 1},
                   optim={"max_steps": 2}, run={"device": "cpu", "progress": False})
    train(cfg, SyntheticBatches(2, 1, 16), run)
    return run


@pytest.fixture(scope="module")
def exported(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("nnssl")
    assert main(["export", str(run_dir), "--format", "nnssl", "--out", str(out)]) == 0
    return out


def test_checkpoint_loads_with_weights_only_and_has_nnssl_layout(exported: Path) -> None:
    ckpt = torch.load(exported / "checkpoint_final.pth", weights_only=True)  # what the fork does
    plan = ckpt["nnssl_adaptation_plan"]
    assert set(plan) == ADAPTATION_FIELDS
    assert set(plan["architecture_plans"]) == {"arch_class_name", "arch_kwargs", "arch_kwargs_requiring_import"}
    assert tuple(plan["architecture_plans"]["arch_kwargs"]) == NNSSL_ARCH_FIELDS
    assert plan["architecture_plans"]["arch_kwargs_requiring_import"] == ["conv_op", "norm_op", "nonlin"]
    assert set(plan["pretrain_plan"]) == PLAN_FIELDS
    (config,) = plan["pretrain_plan"]["configurations"].values()
    assert set(config) == CONFIGURATION_FIELDS
    assert config["spacing"] == [1.0, 1.0, 1.0] and config["patch_size"] == [16, 16, 16]
    assert config["normalization_schemes"] == ["ZScoreNormalization"]
    assert plan["key_to_encoder"] == "encoder.stages" and plan["key_to_stem"] == "encoder.stem"
    assert plan["pretrain_num_input_channels"] == 1 and plan["key_to_lpe"] is None
    assert ckpt["trainer_name"].startswith("mri-curate_")
    # adaptation_plan.json beside it: the same plan (what the Hugging Face download checks for)
    on_disk = json.loads((exported / "adaptation_plan.json").read_text())
    assert {k: v for k, v in on_disk.items() if k != "trainer_name"} == json.loads(json.dumps(plan))


def test_network_rebuilt_from_the_plan_alone_takes_the_weights_by_key_mapping(run_dir: Path,
                                                                             exported: Path) -> None:
    ckpt = torch.load(exported / "checkpoint_final.pth", weights_only=True)
    net = network_from_plan(ckpt["nnssl_adaptation_plan"], num_classes=4)
    load_pretrained(net, ckpt)  # strict into net.encoder.stages and net.encoder.stem
    trained = exported_state(read_checkpoint(run_dir / "checkpoints" / "last.pt")["model"], with_decoder=True)
    own = net.state_dict()
    for key in [k for k in own if k.startswith(("encoder.stages.", "encoder.stem."))]:
        assert torch.equal(own[key], trained[key]), key
    # the same features as the pre-trained encoder
    from pretrain.model import build_unet

    reference = build_unet("tiny")
    reference.load_state_dict({**reference.state_dict(), **trained})
    x = torch.randn(1, 1, 16, 16, 16)
    for a, b in zip(net.encoder(x), reference.encoder(x)):
        torch.testing.assert_close(a, b)


def test_multichannel_stem_is_repeated_and_scaled(exported: Path) -> None:
    ckpt = torch.load(exported / "checkpoint_final.pth", weights_only=True)
    one = network_from_plan(ckpt["nnssl_adaptation_plan"], num_classes=2, input_channels=1)
    three = network_from_plan(ckpt["nnssl_adaptation_plan"], num_classes=2, input_channels=3)
    load_pretrained(one, ckpt, input_channels=1)
    load_pretrained(three, ckpt, input_channels=3)
    w1 = one.encoder.stem.convs[0].conv.weight
    w3 = three.encoder.stem.convs[0].conv.weight
    assert w3.shape[1] == 3 and torch.allclose(w3, w1.repeat(1, 3, 1, 1, 1) / 3)
    key = KEYS_TO_IN_PROJ[1][len("encoder.stem."):] + ".weight"  # the alias holds the same tensor
    assert torch.equal(three.encoder.stem.state_dict()[key], w3)
    # three identical channels give the single-channel network's features
    x = torch.randn(1, 1, 16, 16, 16)
    for a, b in zip(three.encoder(x.repeat(1, 3, 1, 1, 1)), one.encoder(x)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_a_plan_naming_another_class_is_refused(exported: Path) -> None:
    ckpt = torch.load(exported / "checkpoint_final.pth", weights_only=True)
    ckpt["nnssl_adaptation_plan"]["architecture_plans"]["arch_class_name"] = "os.system"
    with pytest.raises(ValueError, match="not one of the classes"):
        network_from_plan(ckpt["nnssl_adaptation_plan"], num_classes=2)


def test_nnssl_export_wants_a_directory(run_dir: Path, tmp_path: Path) -> None:
    assert main(["export", str(run_dir), "--format", "nnssl", "--out", str(tmp_path / "w.pth")]) == 2
    assert export_nnssl(run_dir, tmp_path / "d")["mri_curate"]["step"] == 2
