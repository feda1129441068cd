"""Export pre-trained weights for nnU-Net's ResEnc-L (``ResidualEncoderUNet``).

The sparse model keeps nnU-Net's parameter names (see :mod:`pretrain.model`), so export
only strips the ``net.`` prefix and drops what fine-tuning does not use: the MAE's
1-channel segmentation heads, the mask tokens and the densification convolutions.

The file holds

* ``state_dict`` - encoder weights (``encoder.*`` and nnU-Net's duplicate
  ``decoder.encoder.*`` view of them), plus ``decoder.stages.*`` / ``decoder.transpconvs.*``
  with ``--with-decoder``;
* ``architecture`` - the network in nnU-Net v2 plans form (``network_class_name``,
  ``arch_kwargs``, ``_kw_requires_import``), without ``input_channels`` / ``num_classes``
  which the fine-tuning task decides;
* ``network_weights`` - the same tensors under the key nnU-Net v2's
  ``load_pretrained_weights`` (``nnUNetv2_train ... -pretrained_weights FILE``) reads; that
  loader expects every non-``seg_layers`` key, so export ``--with-decoder`` for it;
* ``pretrain`` - the run's config and step, for provenance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from dynamic_network_architectures.architectures.unet import ResidualEncoderUNet
from torch import nn

from pretrain.checkpoint import CHECKPOINT_NAME, UnsafeFileError, atomic_save, read_checkpoint, safe_load
from pretrain.model import unet_kwargs

FORMAT = "mri-curate-pretrained-weights/1"
NETWORK_CLASS = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
REQUIRES_IMPORT = ("conv_op", "norm_op", "dropout_op", "nonlin")
_LEFT_TO_TASK = ("input_channels", "num_classes", "deep_supervision")


def _dotted(obj: Any) -> Any:
    return None if obj is None else f"{obj.__module__}.{obj.__qualname__}"


#: The only classes an exported file may name (by their dotted names); nothing is imported
#: by a name read from a file.
NETWORKS: dict[str, type[nn.Module]] = {NETWORK_CLASS: ResidualEncoderUNet}
OPS: dict[str, type[nn.Module]] = {_dotted(c): c for c in (
    nn.Conv3d, nn.Conv2d, nn.InstanceNorm3d, nn.InstanceNorm2d, nn.BatchNorm3d, nn.BatchNorm2d,
    nn.Dropout3d, nn.Dropout2d, nn.Dropout, nn.LeakyReLU, nn.ReLU, nn.GELU)}


def _locate(name: str | None, registry: dict[str, Any], what: str) -> Any:
    if name is None:
        return None
    if not isinstance(name, str) or name not in registry:
        raise UnsafeFileError(f"{what} {str(name)[:100]!r} is not one pretrain builds "
                              f"(known: {', '.join(sorted(registry))})")
    return registry[name]


def architecture(model_name: str) -> dict[str, Any]:
    """The network description in nnU-Net v2 plans form (JSON-serialisable)."""
    kw = unet_kwargs(model_name)
    n = kw["n_stages"]
    arch = {k: v for k, v in kw.items() if k not in _LEFT_TO_TASK}
    arch.update({
        "features_per_stage": list(kw["features_per_stage"]),
        "kernel_sizes": [[k] * 3 for k in kw["kernel_sizes"]],
        "strides": [[s] * 3 for s in kw["strides"]],
        "n_blocks_per_stage": list(kw["n_blocks_per_stage"]),
        "n_conv_per_stage_decoder": list(kw["n_conv_per_stage_decoder"]),
        **{k: _dotted(kw[k]) for k in REQUIRES_IMPORT},
    })
    assert len(arch["strides"]) == n
    return {"network_class_name": NETWORK_CLASS, "arch_kwargs": arch,
            "_kw_requires_import": list(REQUIRES_IMPORT)}


def build_network(arch: dict[str, Any], num_classes: int, input_channels: int = 1,
                  deep_supervision: bool = True) -> nn.Module:
    """Instantiate the plain nnU-Net network an exported ``architecture`` describes."""
    kwargs = dict(arch["arch_kwargs"])
    for key in arch.get("_kw_requires_import", ()):
        kwargs[key] = _locate(kwargs.get(key), OPS, f"arch_kwargs.{key}")
    cls = _locate(arch["network_class_name"], NETWORKS, "network class")
    return cls(input_channels=input_channels, num_classes=num_classes,
               deep_supervision=deep_supervision, **kwargs)


def is_encoder_key(key: str) -> bool:
    """Keys of encoder weights (nnU-Net's decoder keeps a second view under ``decoder.encoder``)."""
    return key.startswith(("encoder.", "decoder.encoder."))


def exported_state(model_state: dict[str, torch.Tensor], with_decoder: bool) -> dict[str, torch.Tensor]:
    """nnU-Net-named weights from a pre-training ``state_dict``."""
    out = {}
    for key, value in model_state.items():
        if not key.startswith("net."):
            continue  # mask tokens, densification convolutions
        name = key[len("net."):]
        if is_encoder_key(name) or (with_decoder and not name.startswith("decoder.seg_layers.")):
            out[name] = value.detach().cpu().clone()
    return out


def export_run(run_dir: Path, out: Path, with_decoder: bool = False) -> dict[str, Any]:
    """Write the weights of ``RUN/checkpoints/last.pt`` to ``out``; returns the payload.

    Raises
    ------
    FileNotFoundError
        When the run has no checkpoint.
    """
    ckpt = read_checkpoint(Path(run_dir) / "checkpoints" / CHECKPOINT_NAME)
    model_name = ckpt["config"]["model"]["name"]
    state = exported_state(ckpt["model"], with_decoder)
    payload = {
        "format": FORMAT,
        "architecture": architecture(model_name),
        "state_dict": state,
        "network_weights": state,  # torch.save stores shared tensors once
        "with_decoder": with_decoder,
        "pretrain": {"config": ckpt["config"], "step": ckpt["position"]["step"]},
    }
    atomic_save(payload, Path(out))
    return payload


def load_exported(path: Path) -> dict[str, Any]:
    """Read an exported weights file (``weights_only=True``), checking its format and classes.

    Raises
    ------
    UnsafeFileError
        For a file that needs code to load or names a class outside :data:`NETWORKS` / :data:`OPS`.
    ValueError
        For a file that is not an export of ``pretrain export``.
    """
    payload = safe_load(Path(path), "weights file")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a weights file written by `pretrain export`")
    arch = payload.get("architecture")
    if not isinstance(arch, dict) or not isinstance(arch.get("arch_kwargs"), dict):
        raise ValueError(f"{path} has no network architecture")
    _locate(arch.get("network_class_name"), NETWORKS, "network class")
    for key in arch.get("_kw_requires_import", ()):
        _locate(arch["arch_kwargs"].get(key), OPS, f"arch_kwargs.{key}")
    return payload


# --- nnssl's fine-tuning checkpoint (``pretrain export --format nnssl``) ------------------------
#
# The layout of nnssl's ``checkpoint_final.pth`` (``AbstractBaseTrainer.save_checkpoint``;
# ``AdaptationPlan.serialize``) that the nnU-Net fork's ``nnUNetv2_preprocess_like_nnssl`` and
# ``nnUNetv2_train_pretrained`` read with ``torch.load(weights_only=True)``: ``network_weights``
# (the U-Net's own state-dict names) and ``nnssl_adaptation_plan``.  Plain containers only.

NNSSL_CHECKPOINT = "checkpoint_final.pth"
NNSSL_PLAN_JSON = "adaptation_plan.json"
#: Where nnU-Net's ``ResidualEncoderUNet`` keeps its encoder stages and its stem
#: (``network.key_to_encoder`` / ``key_to_stem``) and the stem's input convolution
#: (``convs.0.conv`` and its alias ``convs.0.all_modules.0``): the weights a task with more
#: input channels repeats.
KEY_TO_ENCODER = "encoder.stages"
KEY_TO_STEM = "encoder.stem"
KEYS_TO_IN_PROJ = ("encoder.stem.convs.0.conv", "encoder.stem.convs.0.all_modules.0")
#: nnssl's ``DynamicArchitecturePlans`` fields, the ``arch_kwargs`` of its plan.
NNSSL_ARCH_FIELDS = ("n_stages", "features_per_stage", "conv_op", "kernel_sizes", "strides", "n_blocks_per_stage",
                     "n_conv_per_stage_decoder", "conv_bias", "norm_op", "norm_op_kwargs", "dropout_op",
                     "dropout_op_kwargs", "nonlin", "nonlin_kwargs")


def pretrain_plan(patch_size: int, normalization: str = "ZScoreNormalization") -> dict[str, Any]:
    """nnssl's ``Plan`` of our preprocessing: 1 mm isotropic, per-image z-score, RAS, cubic patches.

    ``curate build`` resamples to 1 mm with cubic B-splines (masks nearest) and z-scores each
    image over the whole volume, which is nnssl's ``onemmiso`` configuration with
    ``ZScoreNormalization`` and no mask for normalisation.
    """
    configuration = {
        "data_identifier": "mri-curate_onemmiso",
        "preprocessor_name": "DefaultPreprocessor",
        "spacing_style": "onemmiso",
        "normalization_schemes": [normalization],
        "use_mask_for_norm": [False],
        "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_fn_mask": "resample_data_or_seg_to_shape",
        "resampling_fn_mask_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
        "spacing": [1.0, 1.0, 1.0],
        "patch_size": [patch_size] * 3,
    }
    return {"dataset_name": "mri-curate", "plans_name": "mri-curate", "experiment_planner_used": "mri-curate",
            "original_median_spacing_after_transp": [1.0, 1.0, 1.0], "image_reader_writer": "NibabelReaderWriter",
            "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
            "configurations": {"onemmiso": configuration}}


def adaptation_plan(model_name: str, patch_size: int) -> dict[str, Any]:
    """nnssl's serialised ``AdaptationPlan`` for our ResEnc U-Net pre-trained at ``patch_size``."""
    arch = architecture(model_name)
    kwargs = {k: arch["arch_kwargs"][k] for k in NNSSL_ARCH_FIELDS}
    # nnssl lists the kwargs holding a class or a string (so not dropout_op = None)
    requiring_import = [k for k in NNSSL_ARCH_FIELDS if isinstance(kwargs[k], str)]
    return {
        "architecture_plans": {"arch_class_name": arch["network_class_name"], "arch_kwargs": kwargs,
                               "arch_kwargs_requiring_import": requiring_import},
        "pretrain_plan": pretrain_plan(patch_size),
        "pretrain_num_input_channels": 1,
        "recommended_downstream_patchsize": [patch_size] * 3,
        "key_to_encoder": KEY_TO_ENCODER,
        "key_to_stem": KEY_TO_STEM,
        "keys_to_in_proj": list(KEYS_TO_IN_PROJ),
        "key_to_lpe": None,
    }


def export_nnssl(run_dir: Path, out_dir: Path) -> dict[str, Any]:
    """Write ``OUT/checkpoint_final.pth`` and ``OUT/adaptation_plan.json`` as nnssl does.

    The weights are the plain U-Net's (encoder and decoder; the MAE's segmentation heads,
    mask tokens and densification convolutions left out).  Returns the checkpoint dict.
    """
    import json

    ckpt = read_checkpoint(Path(run_dir) / "checkpoints" / CHECKPOINT_NAME)
    config = ckpt["config"]
    method = config.get("method", {}).get("name", "s3d")
    plan = adaptation_plan(config["model"]["name"], int(config["data"]["patch_size"]))
    payload = {
        "network_weights": exported_state(ckpt["model"], with_decoder=True),
        "nnssl_adaptation_plan": plan,
        "trainer_name": f"mri-curate_{method}",
        "mri_curate": {"format": FORMAT, "config": config, "step": ckpt["position"]["step"],
                       "intensity_scale": config.get("augment", {}).get("scale", "zscore")},
    }
    out_dir = Path(out_dir)
    atomic_save(payload, out_dir / NNSSL_CHECKPOINT)
    tmp = out_dir / f".{NNSSL_PLAN_JSON}.tmp"
    tmp.write_text(json.dumps({**plan, "trainer_name": payload["trainer_name"]}, indent=4), encoding="utf-8")
    tmp.replace(out_dir / NNSSL_PLAN_JSON)
    return payload
