"""S3D, MAE and AMAES as presets of one module; AMAES's augmentation reversal in the loader."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from manifests.tomlconfig import ConfigError
from pretrain.augment import AMAES_SPATIAL, AugmentConfig, elastic_displacement, resample, region_masks, sample_grid
from pretrain.config import dump_config, load_config, load_config_text, override
from pretrain.data import CropDataset
from pretrain.intensity import AMAES, degrade
from pretrain.loss import masked_l2_loss
from pretrain.model import build_model
from pretrain.train import train
from tests.pretrain.mae_synthetic import SyntheticBatches
from tests.pretrain.test_data import IMAGES, _build

PATCH = 24
ALL_INTENSITY = dataclasses.replace(AMAES, **{f"p_{n}": 1.0 for n in (
    "additive_noise", "blur", "multiplicative_noise", "ghosting", "ringing", "lowres", "bias_field", "gamma")})
ALWAYS_SPATIAL = dataclasses.replace(AMAES_SPATIAL, p_rotation=1.0, p_scaling=1.0, p_elastic=1.0,
                                     elastic_alpha=(3000.0, 3000.0))


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory, mni_t1) -> Path:
    out = tmp_path_factory.mktemp("output")
    _build(out, mni_t1, IMAGES[:3], 0)
    return out


def _samples(output: Path, **kwargs) -> list[dict[str, torch.Tensor]]:
    ds = CropDataset(output, patch_size=PATCH, split="all", seed=4, **kwargs)
    ds.begin_epoch()
    return list(ds)


@pytest.mark.parametrize("spatial", [AugmentConfig(p_rotation=0, p_scaling=0), ALWAYS_SPATIAL],
                         ids=["crop-and-flip", "rotation-scaling-elastic"])
def test_reversal_target_is_the_spatially_augmented_crop_and_the_input_its_degradation(output, spatial):
    plain = _samples(output, augment_config=spatial, scale="unit")
    reversed_ = _samples(output, augment_config=spatial, scale="unit", intensity=ALL_INTENSITY)
    assert len(plain) == len(reversed_) == 3
    for p, r in zip(plain, reversed_):
        # the target shares every spatial transform and no intensity one: voxel for voxel the
        # crop the same generator gives without intensity augmentation
        assert torch.equal(r["target"], p["image"])
        for key in ("anon_mask", "anatomy_mask", "valid"):
            assert torch.equal(r[key], p[key])
        # the input is that target through the intensity transforms (exactly: next test)
        assert not torch.equal(r["image"], r["target"])
        assert float(r["image"][~r["valid"]].abs().sum()) == 0.0


def test_reversal_input_is_exactly_degrade_of_the_target(output):
    ds = CropDataset(output, patch_size=PATCH, split="all", seed=4, scale="unit", intensity=ALL_INTENSITY,
                     augment_config=ALWAYS_SPATIAL)
    entry = ds.entries[0]
    rng = np.random.default_rng(11)
    sample = ds.load(entry, rng)
    # replay: the same generator, spatial part without intensity, then degrade with what is left
    replay = np.random.default_rng(11)
    ds_plain = CropDataset(output, patch_size=PATCH, split="all", seed=4, scale="unit",
                           augment_config=ALWAYS_SPATIAL)
    target = ds_plain.load(entry, replay)["image"]
    expect, applied = degrade(target[0], replay, ALL_INTENSITY)
    assert len(applied) == 8
    assert torch.equal(sample["target"], target)
    assert torch.equal(sample["image"], (expect * sample["valid"][0])[None])


def test_unit_scale_puts_valid_voxels_in_zero_one(output):
    for s in _samples(output, scale="unit"):
        v = s["image"][s["valid"]]
        assert float(v.min()) == 0.0 and float(v.max()) == pytest.approx(1.0)


def test_elastic_field_has_batchgenerators_amplitude_and_shifts_sampling(mni_t1):
    alpha, sigma = 400.0, 25.0
    field = elastic_displacement(64, alpha, sigma, seed=3)
    assert field.shape == (64, 64, 64, 3)
    expect = alpha / math.sqrt(3) * (4 * math.pi * sigma**2) ** -0.75
    assert float(field.std()) == pytest.approx(expect, rel=1e-3)
    # smooth: neighbouring displacements differ by a small fraction of the field's spread
    assert float((field[1:] - field[:-1]).abs().mean()) < 0.2 * float(field.std())
    # a constant displacement of one voxel along axis 0 samples the crop one voxel further on
    volume = np.ascontiguousarray(np.asarray(mni_t1.dataobj, np.float32)[60:100, 70:110, 60:100])
    centre, p = np.array([19.5, 19.5, 19.5]), 24
    lo = np.array([0, 0, 0])
    shift = torch.zeros(p, p, p, 3)
    shift[..., 0] = 1.0
    grid = sample_grid(centre, np.eye(3), p, lo, volume.shape, displacement=shift)
    out = resample(torch.from_numpy(volume), region_masks(np.zeros(volume.shape, np.uint8)), grid)
    expect_crop = volume[9:33, 8:32, 8:32]
    assert torch.allclose(out["image"][0], torch.from_numpy(expect_crop), atol=1e-3)


def test_presets_load_and_the_file_overrides_them(tmp_path):
    amaes = load_config_text('[method]\nname = "amaes"\n')
    assert (amaes.model.sparse, amaes.model.skips, amaes.method.loss) == (False, False, "all")
    assert (amaes.masking.block_size, amaes.masking.ratio_min, amaes.masking.ratio_max) == (4, 0.6, 0.6)
    assert (amaes.optim.name, amaes.optim.lr, amaes.optim.schedule, amaes.optim.amsgrad) == ("adamw", 1e-4,
                                                                                              "cosine", True)
    assert amaes.optim.warmup_fraction == 0.05 and amaes.data.patch_size == 128
    assert (amaes.augment.spatial, amaes.augment.intensity, amaes.augment.scale) == ("amaes", "amaes", "unit")
    mae = load_config(None, method="mae")
    assert not mae.model.sparse and mae.method.loss == "masked" and mae.optim.name == "sgd"
    s3d = load_config(None)
    assert s3d.method.name == "s3d" and s3d.model.sparse and s3d.augment.intensity == "none"
    # the file's own values win over the preset; a dumped config reloads unchanged
    own = load_config_text('[method]\nname = "amaes"\nloss = "masked"\n[optim]\nlr = 3e-4\n')
    assert own.method.loss == "masked" and own.optim.lr == 3e-4 and own.optim.name == "adamw"
    (tmp_path / "c.toml").write_text(dump_config(own))
    assert load_config(tmp_path / "c.toml") == own


@pytest.mark.parametrize(("text", "message"), [
    ('[method]\nname = "byol"\n', "method.name must be one of"),
    ('[method]\nname = "s3d"\n[model]\nsparse = false\n', "needs model.sparse = true"),
    ('[method]\nname = "mae"\n[model]\nsparse = true\n', "needs model.sparse = false"),
    ('[augment]\nintensity = "strong"\n', "augment.intensity must be one of"),
    ('[optim]\nwarmup_fraction = 1.0\n', "warmup_fraction"),
    ('[optim]\nname = "lamb"\n', "optim.name must be one of"),
])
def test_bad_method_settings_are_refused(text, message):
    with pytest.raises(ConfigError, match=message):
        load_config_text(text)


def test_loss_over_the_whole_volume_counts_visible_voxels_and_still_ignores_anonymized_ones():
    pred = torch.zeros(1, 1, 2, 2, 2, requires_grad=True)
    target = torch.ones(1, 1, 2, 2, 2)
    target[..., 0, :, :] = 3.0  # the visible half is off by 3
    mask = torch.zeros_like(target)
    mask[..., 0, :, :] = 1
    anon = torch.zeros_like(target, dtype=torch.uint8)
    anon[..., 1, 0, :] = 1
    masked = masked_l2_loss(pred, target, mask, anon)
    whole = masked_l2_loss(pred, target, mask, anon, masked_only=False)
    assert float(masked.detach()) == 1.0 and float(whole.detach()) == pytest.approx((4 * 9 + 2 * 1) / 6)
    whole.backward()
    assert float(pred.grad[anon.bool()].abs().sum()) == 0.0


def test_dense_mae_without_skips_reconstructs_from_the_bottleneck_alone():
    torch.manual_seed(0)
    model = build_model("tiny", sparse=False, skips=False)
    x, mask = torch.randn(1, 1, 16, 16, 16), torch.ones(1, 1, 16, 16, 16)
    seen = []
    model.net.decoder.register_forward_pre_hook(lambda mod, args: seen.append(args[0]))
    model(x, mask)
    skips = seen[0]
    skips = [s.detach() for s in skips]
    assert all(float(s.abs().sum()) == 0.0 for s in skips[:-1]) and float(skips[-1].abs().sum()) > 0


class DegradedBatches(SyntheticBatches):
    """Synthetic batches as the AMAES loader gives them: degraded input, clean target."""

    def make(self, i: int) -> dict[str, torch.Tensor]:
        batch = super().make(i)
        rng = np.random.default_rng(i)
        batch["target"] = batch["image"]
        batch["image"] = torch.stack([degrade(im[0], rng, ALL_INTENSITY)[0][None] for im in batch["image"]])
        return batch


def test_a_tiny_amaes_run_lowers_the_loss(tmp_path):
    cfg = load_config_text('[method]\nname = "amaes"\n')
    cfg = override(cfg, model={"name": "tiny"}, data={"patch_size": 16, "batch_size": 2},
                   optim={"max_steps": 10, "lr": 3e-3, "warmup_fraction": 0.1},
                   run={"device": "cpu", "progress": False, "log_every": 1})
    train(cfg, DegradedBatches(1, 2, 16), tmp_path)
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["lr"] == pytest.approx(3e-6) and rows[1]["lr"] == pytest.approx(3e-3)  # warm-up, 1 step
    assert rows[-1]["loss"] < 0.8 * rows[0]["loss"]
    assert "name = \"amaes\"" in (tmp_path / "config.toml").read_text()
