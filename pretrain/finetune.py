"""The fine-tuning side of an nnssl checkpoint: network from the plan, weights by key mapping.

What nnU-Net's fork (``nnUNetv2_train_pretrained``, its ``PretrainedTrainer``) does with a
``checkpoint_final.pth`` from ``pretrain export --format nnssl``, written here so that the
export is tested against it without nnU-Net installed:

1. build the network from ``nnssl_adaptation_plan["architecture_plans"]`` alone (class,
   kwargs, the kwargs naming classes), with the task's input channels and classes;
2. take from ``network_weights`` the keys under the plan's ``key_to_encoder`` and
   ``key_to_stem``, strip those prefixes and load them strictly into the network's own
   encoder and stem (``network.key_to_encoder`` / ``key_to_stem``);
3. when the task has more input channels than pre-training (1), repeat the stem's input
   convolution weights (``keys_to_in_proj``) once per channel and divide them by the
   channel count, so an input of identical channels gives the pre-trained stem's output.

Class names come from the plan, which is read from a file: they are looked up in a
fixed table of the classes our export writes, never imported by name.

Examples
--------
>>> from pretrain.export import adaptation_plan
>>> net = network_from_plan(adaptation_plan("tiny", 32), num_classes=3, input_channels=2)
>>> type(net).__name__, net.encoder.stem.convs[0].conv.in_channels
('ResidualEncoderUNet', 2)
"""

from __future__ import annotations

from typing import Any

import torch
from dynamic_network_architectures.architectures.unet import ResidualEncoderUNet
from torch import nn

#: The classes an nnssl plan written by ``pretrain export`` may name.
ALLOWED_CLASSES: dict[str, type] = {
    "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet": ResidualEncoderUNet,
    "torch.nn.modules.conv.Conv3d": nn.Conv3d,
    "torch.nn.modules.instancenorm.InstanceNorm3d": nn.InstanceNorm3d,
    "torch.nn.modules.activation.LeakyReLU": nn.LeakyReLU,
    "torch.nn.modules.dropout.Dropout3d": nn.Dropout3d,
}


def _resolve(name: str) -> type:
    if name not in ALLOWED_CLASSES:
        raise ValueError(f"the plan names {name!r}, which is not one of the classes this reader builds "
                         f"({sorted(ALLOWED_CLASSES)})")
    return ALLOWED_CLASSES[name]


def network_from_plan(plan: dict[str, Any], num_classes: int, input_channels: int = 1,
                      deep_supervision: bool = False) -> nn.Module:
    """The network ``plan["architecture_plans"]`` describes, for a task (nnU-Net initialisation)."""
    arch = plan["architecture_plans"]
    kwargs = dict(arch["arch_kwargs"])
    for key in arch["arch_kwargs_requiring_import"]:
        if kwargs[key] is not None:
            kwargs[key] = _resolve(kwargs[key])
    cls = _resolve(arch["arch_class_name"])
    net = cls(input_channels=input_channels, num_classes=num_classes, deep_supervision=deep_supervision, **kwargs)
    net.apply(cls.initialize)
    return net


def _under(weights: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries below ``prefix`` (a module path), with the prefix and its dot removed."""
    return {k[len(prefix) + 1:]: v for k, v in weights.items() if k.startswith(prefix + ".")}


def load_pretrained(network: nn.Module, checkpoint: dict[str, Any], input_channels: int = 1) -> None:
    """Load an nnssl checkpoint's encoder and stem into ``network`` (module docstring, steps 2-3).

    Raises
    ------
    RuntimeError
        From ``load_state_dict`` when a key is missing or unexpected or a shape differs.
    """
    plan = checkpoint["nnssl_adaptation_plan"]
    weights = checkpoint["network_weights"]
    encoder = _under(weights, plan["key_to_encoder"])
    stem = _under(weights, plan["key_to_stem"])
    trained = int(plan["pretrain_num_input_channels"])
    if input_channels > trained:  # as the fork: weights x C along the input axis, / C
        names = [key[len(plan["key_to_stem"]) + 1:] + ".weight" for key in plan["keys_to_in_proj"]]
        repeated = stem[names[0]].repeat(1, input_channels, 1, 1, 1) / input_channels
        for name in names:
            stem[name] = repeated
    network.get_submodule(network.key_to_encoder).load_state_dict(encoder)
    network.get_submodule(network.key_to_stem).load_state_dict(stem)
