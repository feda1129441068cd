"""Pre-training settings: one frozen dataclass tree loaded from TOML, dumped into ``RUN/``.

Defaults are the final S3D configuration (Wald et al., "Revisiting MAE pre-training for
3D medical image segmentation", Sec. 4): ResEnc-L, 160^3 patches, block masks aligned with
the 5^3 bottleneck, masking ratio ~ U[0.6, 0.9], SGD with Nesterov momentum 0.99,
lr 1e-2, weight decay 3e-5, poly decay (0.9), 250k steps, gradient clipping 12.
Changing one number is a TOML edit or a CLI flag, never a subclass.

``[method] name`` picks one of three methods of the same module: ``s3d`` (the defaults),
``mae`` (nnssl's dense MAE: the plain U-Net on the masked input) or ``amaes`` (AMAES:
dense MAE with input-only intensity augmentations, 4^3 tokens at ratio 0.6, the loss on
the whole volume, AdamW with warm-up then cosine decay, [0, 1] intensities).  A method
is a preset: ``pretrain/presets/<name>.toml`` is read first and the file's own values
override it, so a dumped ``RUN/config.toml`` (every value explicit) reloads unchanged.

Examples
--------
>>> cfg = load_config_text('[optim]\\nlr = 0.001\\n[model]\\nname = "tiny"\\n')
>>> cfg.optim.lr, cfg.optim.momentum, cfg.model.name
(0.001, 0.99, 'tiny')
>>> load_config_text('[optim]\\nlr = "fast"\\n')
Traceback (most recent call last):
...
manifests.tomlconfig.ConfigError: optim.lr must be float, got 'fast'
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from manifests import tomlconfig
from manifests.filters import Selection
from manifests.schema import Anonymization, Modality
from manifests.tomlconfig import ConfigError

MODEL_NAMES = ("resenc-l", "tiny")
BALANCE = ("image", "subject", "dataset")
MODALITY_NAMES = tuple(m.value for m in Modality)
ANONYMIZATION_NAMES = tuple(a.value for a in Anonymization)
METHODS = ("s3d", "mae", "amaes")
PRESETS = Path(__file__).resolve().parent / "presets"


class PretrainError(RuntimeError):
    """A run that cannot start or go on (no device, no data, missing component)."""


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Network choice and S3D sparsification switches.

    ``name`` picks the architecture: ``resenc-l`` (nnU-Net ResEnc-L) or ``tiny`` (a 3-stage
    ResEnc U-Net for CPU smoke runs).  ``mask_token`` and ``densify`` switch the two S3D
    additions; sparse convolutions and masked normalization are always on for ``sparse``.
    """

    name: str = "resenc-l"
    sparse: bool = True
    mask_token: bool = True
    densify: bool = True
    skips: bool = True  # dense MAE only: false feeds the decoder zeros for every skip (AMAES)


@dataclass(frozen=True, slots=True)
class MaskingConfig:
    """Random block masking.

    ``block_size`` ``None`` aligns blocks with the bottleneck (block = total encoder stride,
    32 for ResEnc-L: 160^3 patch -> 5^3 grid); 16 gives the finer option.  The ratio is
    drawn per batch from U[``ratio_min``, ``ratio_max``]; equal bounds give a fixed ratio.
    """

    block_size: int | None = None
    ratio_min: float = 0.6
    ratio_max: float = 0.9


@dataclass(frozen=True, slots=True)
class OptimConfig:
    """SGD with Nesterov momentum and poly learning-rate decay (nnU-Net defaults).

    ``name = "adamw"`` (with ``amsgrad``, ``eps``; ``momentum``/``nesterov`` unused) and
    ``schedule = "cosine"`` give AMAES's recipe; the first ``warmup_fraction`` of
    ``max_steps`` ramps the rate linearly from 1/1000 of ``lr`` before either schedule.
    """

    lr: float = 1e-2
    momentum: float = 0.99
    nesterov: bool = True
    weight_decay: float = 3e-5
    poly_exponent: float = 0.9
    max_steps: int = 250_000
    grad_clip: float = 12.0
    name: str = "sgd"
    schedule: str = "poly"
    warmup_fraction: float = 0.0
    amsgrad: bool = False
    eps: float = 1e-8


@dataclass(frozen=True, slots=True)
class DataConfig:
    """Patch sampling, the manifest selection handed to the loader, and sampling balance.

    Selection (:class:`manifests.Selection`): ``modalities`` / ``datasets`` keep only
    the listed ones (empty: all), ``exclude_datasets`` and ``exclude_anonymization``
    leave some out, ``max_iqs`` is the IQS limit and ``max_iqs_by_modality`` replaces
    it per modality (``{ FA = 3.5 }``); rows without a score pass a limit only with
    ``keep_unscored``.  ``balance`` draws each epoch's images so that every ``image``,
    ``subject`` or ``dataset`` group is picked with probability proportional to
    ``size ** balance_alpha`` (0: groups equally often; 1: as often as their images,
    i.e. plain image sampling).  ``follow`` keeps re-reading the manifest of a build that
    is still running (see ``pretrain --follow``).
    """

    patch_size: int = 160
    batch_size: int = 8
    workers: int = 8
    val_fraction: float = 0.05
    max_iqs: float | None = None
    augment: bool = True
    modalities: tuple[str, ...] = ()
    datasets: tuple[str, ...] = ()
    exclude_datasets: tuple[str, ...] = ()
    exclude_anonymization: tuple[str, ...] = ()
    max_iqs_by_modality: dict[str, float] = field(default_factory=dict)
    keep_unscored: bool = False
    balance: str = "image"
    balance_alpha: float = 0.0
    follow: bool = False

    def selection(self) -> Selection:
        """The :class:`manifests.Selection` these settings describe (included rows only)."""
        return Selection(
            modalities=self.modalities or None, datasets=self.datasets or None,
            exclude_datasets=self.exclude_datasets, exclude_anonymization=self.exclude_anonymization,
            max_iqs=self.max_iqs, max_iqs_by_modality=tuple(sorted(self.max_iqs_by_modality.items())),
            keep_unscored=self.keep_unscored)


@dataclass(frozen=True, slots=True)
class RunConfig:
    """Devices, numerics and bookkeeping.

    ``device`` ``auto`` picks CUDA when available.  ``bf16``, ``compile`` and
    ``channels_last`` take effect on CUDA, and on the CPU too with ``switches_on_cpu``
    (to test them without a GPU: bf16 autocast exists on CPU, but is slow there).
    """

    device: str = "auto"
    bf16: bool = True
    compile: bool = False
    channels_last: bool = True
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 1000
    progress: bool = True
    switches_on_cpu: bool = False


@dataclass(frozen=True, slots=True)
class MethodConfig:
    """The pre-training method (module docstring) and its loss region.

    ``loss`` ``masked``: masked voxels only (S3D, MAE); ``all``: the whole volume (AMAES's
    default).  The padding mask applies to both; ``anonymization_aware`` (default true)
    gives ``anon_mask == 1`` voxels zero weight too, false is OpenMind Table 7's "No" row.
    """

    name: str = "s3d"
    loss: str = "masked"
    anonymization_aware: bool = True


@dataclass(frozen=True, slots=True)
class AugmentSettings:
    """The loader's augmentation presets and intensity scale (see :mod:`pretrain.data`).

    ``spatial``: ``nnssl`` or ``amaes`` (input and target alike); ``intensity``: ``none``
    or ``amaes`` (input only: augmentation reversal); ``scale``: ``zscore`` (as stored)
    or ``unit`` ([0, 1] per crop).  ``[data] augment = false`` turns spatial ones off.
    """

    spatial: str = "nnssl"
    intensity: str = "none"
    scale: str = "zscore"


@dataclass(frozen=True, slots=True)
class PretrainConfig:
    """Everything one pre-training run needs."""

    model: ModelConfig = field(default_factory=ModelConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    run: RunConfig = field(default_factory=RunConfig)
    method: MethodConfig = field(default_factory=MethodConfig)
    augment: AugmentSettings = field(default_factory=AugmentSettings)

    def __post_init__(self) -> None:
        validate(self)


def _positive(where: str, value: float, *, zero: bool = False, finite: bool = True) -> None:
    """Refuse a NaN, a negative (or, unless ``zero``, a zero) or (if ``finite``) an infinite value."""
    ok = value >= 0 if zero else value > 0  # False for NaN
    if not ok or (finite and not math.isfinite(value)):
        bound = ">= 0" if zero else "> 0"
        raise ConfigError(f"{where} must be a {'finite ' if finite else ''}number {bound}, got {value}")


def _choices(where: str, values: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ConfigError(f"{where}: unknown value(s) {', '.join(map(repr, bad))}; "
                          f"choose from {', '.join(allowed)}")


def _check_optim(o: OptimConfig) -> None:
    _positive("optim.lr", o.lr)
    if not 0.0 <= o.momentum < 1.0:
        raise ConfigError(f"optim.momentum must be in [0, 1), got {o.momentum}")
    _positive("optim.weight_decay", o.weight_decay, zero=True)
    _positive("optim.poly_exponent", o.poly_exponent, zero=True)
    _positive("optim.grad_clip", o.grad_clip)
    if o.max_steps < 1:
        raise ConfigError(f"optim.max_steps must be >= 1, got {o.max_steps}")


def _check_data(d: DataConfig) -> None:
    if d.patch_size < 1 or d.batch_size < 1:
        raise ConfigError("data.patch_size and data.batch_size must be positive")
    if d.workers < 0:
        raise ConfigError(f"data.workers must be >= 0, got {d.workers}")
    if not 0.0 <= d.val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction must be in [0, 1), got {d.val_fraction}")
    for where, value in [("data.max_iqs", d.max_iqs), *((f"data.max_iqs_by_modality.{m}", v)
                                                        for m, v in d.max_iqs_by_modality.items())]:
        if value is not None and not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number, got {value}")
    _choices("data.modalities", d.modalities, MODALITY_NAMES)
    _choices("data.max_iqs_by_modality", tuple(d.max_iqs_by_modality), MODALITY_NAMES)
    _choices("data.exclude_anonymization", d.exclude_anonymization, ANONYMIZATION_NAMES)
    _choices("data.balance", (d.balance,), BALANCE)
    if not 0.0 <= d.balance_alpha <= 1.0:
        raise ConfigError(f"data.balance_alpha must be in [0, 1], got {d.balance_alpha}")
    both = set(d.datasets) & set(d.exclude_datasets)
    if both:
        raise ConfigError(f"data.datasets and data.exclude_datasets both name {', '.join(sorted(both))}")


def validate(cfg: PretrainConfig) -> None:
    """Raise :class:`ConfigError` (one line) for values no run can use."""
    if cfg.model.name not in MODEL_NAMES:
        raise ConfigError(f"model.name must be one of {MODEL_NAMES}, got {cfg.model.name!r}")
    m = cfg.masking
    if not 0.0 <= m.ratio_min <= m.ratio_max < 1.0:
        raise ConfigError(f"masking ratios must satisfy 0 <= ratio_min <= ratio_max < 1, "
                          f"got {m.ratio_min}, {m.ratio_max}")
    if m.block_size is not None and m.block_size < 1:
        raise ConfigError(f"masking.block_size must be positive, got {m.block_size}")
    _check_optim(cfg.optim)
    _check_data(cfg.data)
    if cfg.run.device not in ("auto", "cpu", "cuda"):
        raise ConfigError(f"run.device must be 'auto', 'cpu' or 'cuda', got {cfg.run.device!r}")
    if cfg.run.checkpoint_every < 1 or cfg.run.log_every < 1:
        raise ConfigError("run.checkpoint_every and run.log_every must be positive")
    if not 0 <= cfg.run.seed < 2**63:
        raise ConfigError(f"run.seed must be in [0, 2**63), got {cfg.run.seed}")
    validate_method(cfg)


_CHOICES = {("method", "name"): METHODS, ("method", "loss"): ("masked", "all"),
            ("optim", "name"): ("sgd", "adamw"), ("optim", "schedule"): ("poly", "cosine"),
            ("augment", "spatial"): ("nnssl", "amaes"), ("augment", "intensity"): ("none", "amaes"),
            ("augment", "scale"): ("zscore", "unit")}


def validate_method(cfg: PretrainConfig) -> None:
    """The method, optimiser and augmentation settings (:func:`validate` calls it)."""
    for (section, name), allowed in _CHOICES.items():
        value = getattr(getattr(cfg, section), name)
        if value not in allowed:
            raise ConfigError(f"{section}.{name} must be one of {allowed}, got {value!r}")
    if (cfg.method.name == "s3d") != cfg.model.sparse:
        raise ConfigError(f"method {cfg.method.name!r} needs model.sparse = {str(cfg.method.name == 's3d').lower()}"
                          " (S3D is the sparse encoder; MAE and AMAES run the dense U-Net)")
    if not cfg.model.skips and cfg.model.sparse:
        raise ConfigError("model.skips = false is for the dense MAE (model.sparse = false)")
    o = cfg.optim
    if not 0.0 <= o.warmup_fraction < 1.0:
        raise ConfigError(f"optim.warmup_fraction must be in [0, 1), got {o.warmup_fraction}")
    if o.weight_decay < 0 or o.grad_clip <= 0 or not 0 < o.eps < 1:
        raise ConfigError("optim.weight_decay must be >= 0, optim.grad_clip > 0, optim.eps in (0, 1)")


def preset_dict(method: str) -> dict[str, Any]:
    """The TOML preset of ``method`` as a dict (``pretrain/presets/<method>.toml``)."""
    if method not in METHODS:
        raise ConfigError(f"method.name must be one of {METHODS}, got {method!r}")
    return tomllib.loads((PRESETS / f"{method}.toml").read_text(encoding="utf-8"))


def _merged(preset: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    out = dict(preset)
    for key, value in data.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def with_preset(data: dict[str, Any], method: str | None = None) -> dict[str, Any]:
    """``data`` (parsed TOML) over its method's preset; ``method`` overrides ``[method] name``."""
    section = data.get("method", {})
    if not isinstance(section, dict):
        raise ConfigError("[method] must be a table")
    name = method or section.get("name", "s3d")
    if not isinstance(name, str):
        raise ConfigError(f"method.name must be str, got {name!r}")
    merged = _merged(preset_dict(name), data)
    merged.setdefault("method", {})["name"] = name
    return merged


def load_config_text(text: str, method: str | None = None) -> PretrainConfig:
    """Parse TOML text into a :class:`PretrainConfig` (over its method's preset)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}") from exc
    return tomlconfig.from_dict(PretrainConfig, with_preset(data, method))


def load_config(path: Path | None, method: str | None = None) -> PretrainConfig:
    """Load a TOML file; ``None`` gives the defaults (of ``method``'s preset when given)."""
    if path is None:
        return load_config_text("", method)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    return load_config_text(text, method)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested dict of a config (``None`` values left out, as TOML has no null)."""
    return tomlconfig.to_plain(cfg)


def dump_config(cfg: PretrainConfig) -> str:
    """TOML text of ``cfg``; :func:`load_config_text` reads it back to an equal config."""
    return tomlconfig.dump(cfg)


def override(cfg: PretrainConfig, **sections: dict[str, Any]) -> PretrainConfig:
    """Return ``cfg`` with some fields replaced, e.g. ``override(cfg, optim={"lr": 1e-3})``.

    ``None`` values are ignored, so CLI flags that were not given leave the file's value.
    """
    changes = {}
    for name, values in sections.items():
        kept = {k: v for k, v in values.items() if v is not None}
        if kept:
            changes[name] = dataclasses.replace(getattr(cfg, name), **kept)
    return dataclasses.replace(cfg, **changes)
