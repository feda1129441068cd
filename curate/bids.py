"""BIDS parsing: entities, sidecar inheritance and participants.tsv.

Entity names and patterns come from pybids' own configuration (``bids.json``),
read once and compiled, so we follow pybids' definitions without paying for a
``BIDSLayout`` database per dataset (see ``benchmarks/bench_index.py``).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from curate.io import strip_nifti_suffix

_SIDE_SUFFIXES = (".json", ".bval", ".bvec")


@lru_cache(maxsize=1)
def entity_patterns() -> tuple[tuple[str, re.Pattern[str]], ...]:
    """(name, compiled pattern) for every entity in pybids' BIDS config.

    The file is located without importing :mod:`bids` (whose import pulls in
    SQLAlchemy and takes about a second).
    """
    spec = importlib.util.find_spec("bids")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("pybids is required to parse BIDS entities")
    config = Path(list(spec.submodule_search_locations)[0]) / "layout" / "config" / "bids.json"
    data = json.loads(config.read_text(encoding="utf-8"))
    wanted = [e for e in data["entities"] if e["name"] not in ("extension", "suffix", "datatype")]
    return tuple((e["name"], re.compile(e["pattern"])) for e in wanted)


def parse_entities(rel_path: str) -> dict[str, str]:
    """BIDS entities of a path relative to the dataset root, plus ``suffix`` and ``datatype``.

    Examples
    --------
    >>> e = parse_entities("sub-01/ses-2/anat/sub-01_ses-2_acq-mprage_run-1_T1w.nii.gz")
    >>> e["subject"], e["session"], e["acquisition"], e["run"], e["suffix"], e["datatype"]
    ('01', '2', 'mprage', '1', 'T1w', 'anat')
    """
    path = "/" + rel_path
    entities: dict[str, str] = {}
    for name, pattern in entity_patterns():
        match = pattern.search(path)
        if match:
            entities[name] = match.group(1)
    stem = strip_nifti_suffix(rel_path.rsplit("/", 1)[-1])
    for ext in _SIDE_SUFFIXES:
        if stem.endswith(ext):
            stem = stem[: -len(ext)]
    entities["suffix"] = stem.rsplit("_", 1)[-1]
    parts = rel_path.split("/")
    if len(parts) >= 2:
        entities["datatype"] = parts[-2]
    return entities


def _key_values(stem: str) -> tuple[dict[str, str], str]:
    pieces = stem.split("_")
    pairs = dict(p.split("-", 1) for p in pieces[:-1] if "-" in p)
    return pairs, pieces[-1]


def inherited_files(rel_path: str, sidecars_by_dir: dict[str, list[str]], ext: str) -> list[str]:
    """Files with extension ``ext`` that apply to ``rel_path`` by the inheritance principle.

    Returned from the top of the dataset down, so later files override earlier ones.

    Examples
    --------
    >>> side = {"": ["T1w.json"], "sub-01/anat": ["sub-01_T1w.json", "sub-01_T2w.json"]}
    >>> inherited_files("sub-01/anat/sub-01_T1w.nii.gz", side, ".json")
    ['T1w.json', 'sub-01/anat/sub-01_T1w.json']
    """
    image_pairs, suffix = _key_values(strip_nifti_suffix(rel_path.rsplit("/", 1)[-1]))
    parts = rel_path.split("/")[:-1]
    dirs = [""] + ["/".join(parts[: i + 1]) for i in range(len(parts))]
    found: list[str] = []
    for directory in dirs:
        candidates = []
        for name in sidecars_by_dir.get(directory, ()):
            if not name.endswith(ext):
                continue
            pairs, side_suffix = _key_values(name[: -len(ext)])
            if side_suffix != suffix:
                continue
            if all(image_pairs.get(k) == v for k, v in pairs.items()):
                candidates.append((len(pairs), name))
        for _, name in sorted(candidates):
            found.append(f"{directory}/{name}" if directory else name)
    return found


def merge_sidecars(root: Path, rel_paths: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Merge JSON sidecars (later overrides earlier); returns (metadata, warnings)."""
    from curate.io import read_json

    merged: dict[str, Any] = {}
    warnings: list[str] = []
    for rel in rel_paths:
        data, warning = read_json(root / rel)
        if warning:
            warnings.append(warning)
        merged.update(data)
    return merged, warnings


def _as_age(value: str | None) -> float | None:
    if value is None:
        return None
    text = value.strip().lower().rstrip("y").strip()
    try:
        age = float(text)
    except ValueError:
        return None
    return age if math.isfinite(age) else None


_SEX = {"m": "M", "male": "M", "f": "F", "female": "F", "o": "O", "other": "O"}


def read_participants(root: Path) -> tuple[dict[str, dict[str, str]], list[str]]:
    """participants.tsv as ``{subject label without 'sub-': row}``; never raises."""
    path = root / "participants.tsv"
    if not path.is_file():
        return {}, []
    try:
        with open(path, encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return {}, [f"participants.tsv unreadable: {type(exc).__name__}"]
    table: dict[str, dict[str, str]] = {}
    for row in rows:
        pid = (row.get("participant_id") or "").strip()
        if pid:
            table[pid.removeprefix("sub-")] = {k: v for k, v in row.items() if k is not None}
    return table, []


def participant_fields(row: dict[str, str] | None) -> dict[str, Any]:
    """``age``, ``sex`` and the full row as JSON for one participant."""
    if not row:
        return {}
    lowered = {k.lower(): v for k, v in row.items()}
    sex = (lowered.get("sex") or lowered.get("gender") or "").strip().lower()
    return {
        "age": _as_age(lowered.get("age")),
        "sex": _SEX.get(sex),
        "participant_json": json.dumps(row, sort_keys=True, ensure_ascii=False),
    }
