"""Curation settings: frozen dataclasses loaded from TOML and dumped beside outputs.

Each stage owns one section.  A stage's fingerprint is a hash of its section,
so changing a threshold re-runs exactly the stages that read it.

Examples
--------
>>> cfg = load_config_text('[triage]\\nmin_fov_mm = 40.0\\n')
>>> cfg.triage.min_fov_mm, cfg.triage.max_spacing_mm
(40.0, 6.5)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w


class ConfigError(ValueError):
    """A configuration file that cannot be used, with the reason."""


@dataclass(frozen=True, slots=True)
class TriageConfig:
    """Header-level exclusion thresholds (OpenMind / S3D curation)."""

    min_fov_mm: float = 50.0
    max_spacing_mm: float = 6.5
    min_file_size_bytes: int = 200 * 1024
    exclude_derived_dicom_series: bool = True


@dataclass(frozen=True, slots=True)
class ReadConfig:
    """The full data read that catches corrupt or empty images."""

    enabled: bool = True
    min_finite_fraction: float = 0.01


@dataclass(frozen=True, slots=True)
class DwiConfig:
    """DWI derivation into FA, MD and mean-b0 (T2w) maps (OpenMind appendix B.2).

    Every step can be switched off; every value here is written into the
    sidecar JSON of the maps it produced.
    """

    enabled: bool = True
    #: Threads one series may use (registration, denoising); keep at 1 when
    #: Dask already runs one task per core.
    threads: int = 2
    # gradient table checks
    b0_threshold: float = 50.0
    bvec_norm_tolerance: float = 0.1
    shell_tolerance: float = 100.0
    min_dwi_volumes: int = 6
    # 1. denoising: "mppca" (ours, vectorised), "dipy_mppca", "patch2self" or "none"
    denoise: str = "mppca"
    denoise_patch_radius: int = 2
    denoise_stride: int = 2
    #: After denoising (which uses every volume), drop the volumes of shells the
    #: tensor fit does not use: they only cost Gibbs-removal and registration time.
    drop_unused_shells: bool = True
    # 2. Gibbs ringing removal along the in-plane axes
    gibbs: bool = True
    gibbs_n_points: int = 3
    # 3. motion: "rigid", "affine" or "none" (every volume to the mean b0)
    motion: str = "rigid"
    motion_shrink_factors: tuple[int, ...] = (4, 2)
    motion_smoothing_mm: tuple[float, ...] = (2.0, 1.0)
    motion_sampling: float = 0.25
    motion_iterations: int = 50
    # 4. N4 bias field on the mean b0, applied to every volume
    bias: bool = True
    bias_shrink: int = 4
    bias_iterations: tuple[int, ...] = (50, 50, 30)
    # 5. brain mask on the mean b0 (median_otsu, lighter than dipy's defaults)
    mask_median_radius: int = 2
    mask_numpass: int = 1
    mask_fill_holes: bool = True
    # 6. tensor fit on b0 + shells with b <= dti_max_b + shell_tolerance
    dti_max_b: float = 1000.0
    dti_fit_method: str = "WLS"


@dataclass(frozen=True, slots=True)
class IqsConfig:
    """Automatic image-quality score."""

    enabled: bool = True
    max_iqs: float | None = None


@dataclass(frozen=True, slots=True)
class MasksConfig:
    """Anonymization and anatomy masks."""

    enabled: bool = True


@dataclass(frozen=True, slots=True)
class ArraysConfig:
    """Pre-training arrays."""

    enabled: bool = True


@dataclass(frozen=True, slots=True)
class ExecutionConfig:
    """How work is split into Dask tasks."""

    index_batch_size: int = 512
    build_batch_size: int = 4
    small_collection: int = 2000


@dataclass(frozen=True, slots=True)
class CurateConfig:
    """Every curation setting, one section per concern."""

    triage: TriageConfig = field(default_factory=TriageConfig)
    read: ReadConfig = field(default_factory=ReadConfig)
    dwi: DwiConfig = field(default_factory=DwiConfig)
    iqs: IqsConfig = field(default_factory=IqsConfig)
    masks: MasksConfig = field(default_factory=MasksConfig)
    arrays: ArraysConfig = field(default_factory=ArraysConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"[{where}] must be a table, got {type(value).__name__}")
        return from_dict(annotation, value, where)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list")
        return tuple(_coerce(v, args[0], where) for v in value)
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, str, bool) and not isinstance(value, annotation):
        raise ConfigError(f"{where} must be {annotation.__name__}, got {value!r}")
    if annotation is int and isinstance(value, bool):
        raise ConfigError(f"{where} must be int, got {value!r}")
    return value


def from_dict(cls: type, data: dict[str, Any], where: str = "") -> Any:
    """Build dataclass ``cls`` from a (possibly partial) dict, rejecting unknown keys."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown setting(s) in [{where or 'top level'}]: {', '.join(unknown)}")
    kwargs = {
        name: _coerce(value, hints[name], f"{where}.{name}".strip("."))
        for name, value in data.items()
    }
    return cls(**kwargs)


def load_config_text(text: str) -> CurateConfig:
    """Parse TOML text into a :class:`CurateConfig`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}") from exc
    return from_dict(CurateConfig, data)


def load_config(path: Path | None) -> CurateConfig:
    """Load a TOML config file; ``None`` gives the defaults."""
    if path is None:
        return CurateConfig()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    return load_config_text(text)


def _plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if getattr(obj, f.name) is not None}
    if isinstance(obj, tuple):
        return [_plain(v) for v in obj]
    return obj


def dump_config(config: Any) -> str:
    """TOML text of a config dataclass (``None`` values are left out, as TOML has no null)."""
    return tomli_w.dumps(_plain(config))


def fingerprint(*parts: Any) -> str:
    """A short hash of JSON-serialisable parts and config dataclasses."""
    payload = json.dumps([_plain(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha1(payload.encode()).hexdigest()[:12]
