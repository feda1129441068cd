"""Config as data: TOML files into frozen dataclasses, and back.

Shared by ``curate`` and ``pretrain`` (both import :mod:`manifests`), so the
two tools read and check their settings the same way: missing keys take the
dataclass defaults, unknown keys and wrongly typed values are errors that
name the setting.

Examples
--------
>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Cfg:
...     lr: float = 0.01
...     steps: int = 10
>>> load_text(Cfg, "lr = 1")
Cfg(lr=1.0, steps=10)
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import tomli_w

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration that cannot be used, with the reason."""


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"[{where}] must be a table, got {type(value).__name__}")
        return from_dict(annotation, value, where)  # type: ignore[arg-type]
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a table")
        return {_coerce(k, args[0], where): _coerce(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list")
        return tuple(_coerce(v, args[0], where) for v in value)
    if annotation is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if annotation in (int, str, bool, float) and (
            not isinstance(value, annotation) or (annotation is int and isinstance(value, bool))):
        raise ConfigError(f"{where} must be {annotation.__name__}, got {value!r}")
    return value


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from a (possibly partial) dict, rejecting unknown keys."""
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(data) - {f.name for f in dataclasses.fields(cls)})  # type: ignore[arg-type]
    if unknown:
        raise ConfigError(f"unknown setting(s) in [{where or 'top level'}]: {', '.join(unknown)}")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}".strip(".")) for k, v in data.items()}
    return cls(**kwargs)


def load_text(cls: type[T], text: str) -> T:
    """Parse TOML text into dataclass ``cls``."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}") from exc
    return from_dict(cls, data)


def load_file(cls: type[T], path: Path | str | None) -> T:
    """Load a TOML file into ``cls``; ``None`` gives the defaults."""
    if path is None:
        return cls()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror}") from exc
    return load_text(cls, text)


def to_plain(obj: Any) -> Any:
    """Nested dicts/lists of a config (``None`` left out, as TOML has no null)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if getattr(obj, f.name) is not None}
    if isinstance(obj, tuple):
        return [to_plain(v) for v in obj]
    return obj


def dump(config: Any) -> str:
    """TOML text of a config dataclass."""
    return tomli_w.dumps(to_plain(config))
