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
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from curate.headers import SIDECAR_SUFFIXES, read_json, strip_nifti_suffix


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


# pybids writes most entities as "<separators>key-(<value>)"; those are merged
# into one alternation scanned once per path (26 separate searches per file
# were the largest cost of an index pass).  Any other pattern is searched alone.
_KEY_VALUE = re.compile(r"^(\[[^\]]+\]\+)([A-Za-z]+)-(\(.+\))$")


@lru_cache(maxsize=1)
def _entity_scanner() -> tuple[re.Pattern[str], dict[str, str], tuple[tuple[str, re.Pattern[str]], ...]]:
    """(combined key-value pattern, group name -> entity, patterns searched alone)."""
    branches: list[str] = []
    groups: dict[str, str] = {}
    alone: list[tuple[str, re.Pattern[str]]] = []
    for i, (name, pattern) in enumerate(entity_patterns()):
        parts = _KEY_VALUE.match(pattern.pattern)
        if parts is None or re.compile(parts.group(3)).groups != 1:
            alone.append((name, pattern))
            continue
        separators, key, value = parts.groups()
        groups[f"e{i}"] = name
        branches.append(f"{separators}{re.escape(key)}-(?P<e{i}>{value[1:-1]})")
    return re.compile("|".join(branches)), groups, tuple(alone)


def parse_entities(rel_path: str) -> dict[str, str]:
    """BIDS entities of a path relative to the dataset root, plus ``suffix`` and ``datatype``.

    The first occurrence of each entity wins, as with pybids' own patterns.

    Examples
    --------
    >>> e = parse_entities("sub-01/ses-2/anat/sub-01_ses-2_acq-mprage_run-1_T1w.nii.gz")
    >>> e["subject"], e["session"], e["acquisition"], e["run"], e["suffix"], e["datatype"]
    ('01', '2', 'mprage', '1', 'T1w', 'anat')
    """
    path = "/" + rel_path
    scanner, groups, alone = _entity_scanner()
    entities: dict[str, str] = {}
    for match in scanner.finditer(path):
        group = match.lastgroup
        if group is not None and groups[group] not in entities:
            entities[groups[group]] = match.group(group)
    for name, pattern in alone:
        found = pattern.search(path)
        if found:
            entities[name] = found.group(1)
    stem = strip_nifti_suffix(rel_path.rsplit("/", 1)[-1])
    for ext in SIDECAR_SUFFIXES:
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


def folders_down_to(folder: str) -> list[str]:
    """``a/b`` -> ``["", "a", "a/b"]``: the folders whose sidecars a file in ``folder`` inherits."""
    out = [""]
    if folder:
        cut = folder.find("/")
        while cut != -1:
            out.append(folder[:cut])
            cut = folder.find("/", cut + 1)
        out.append(folder)
    return out


class SidecarIndex:
    """The sidecar files of a dataset, parsed once, for the inheritance principle.

    Parameters
    ----------
    sidecars_by_dir
        ``{folder relative to the root: [file names]}`` of ``.json``, ``.bval``
        and ``.bvec`` files, as :func:`curate.discover.walk_bids` collects them.
    """

    def __init__(self, sidecars_by_dir: dict[str, list[str]]) -> None:
        self._by_dir = sidecars_by_dir
        self._parsed: dict[str, dict[str, list[tuple[int, str, str, dict[str, str]]]]] = {}

    def _folder(self, directory: str) -> dict[str, list[tuple[int, str, str, dict[str, str]]]]:
        """``{suffix: [(n entities, name, extension, entities)]}`` of one folder, most general first."""
        parsed = self._parsed.get(directory)
        if parsed is None:
            parsed = {}
            for name in self._by_dir.get(directory, ()):
                ext = next((e for e in SIDECAR_SUFFIXES if name.endswith(e)), None)
                if ext is not None:
                    pairs, suffix = _key_values(name[: -len(ext)])
                    parsed.setdefault(suffix, []).append((len(pairs), name, ext, pairs))
            for entries in parsed.values():
                entries.sort(key=lambda e: e[:2])
            self._parsed[directory] = parsed
        return parsed

    def applying_to(self, rel_path: str) -> dict[str, list[str]]:
        """``{extension: files}`` that apply to ``rel_path``, top of the dataset first.

        Later files override earlier ones; within a folder, files with more
        entities (more specific) come later.
        """
        folder, _, name = rel_path.rpartition("/")
        image_pairs, suffix = _key_values(strip_nifti_suffix(name))
        found: dict[str, list[str]] = {ext: [] for ext in SIDECAR_SUFFIXES}
        for directory in folders_down_to(folder):
            for _, side_name, ext, pairs in self._folder(directory).get(suffix, ()):
                if all(image_pairs.get(k) == v for k, v in pairs.items()):
                    found[ext].append(f"{directory}/{side_name}" if directory else side_name)
        return found


def inherited_files(rel_path: str, sidecars_by_dir: dict[str, list[str]], ext: str) -> list[str]:
    """Files with extension ``ext`` that apply to ``rel_path`` by the inheritance principle.

    Returned from the top of the dataset down, so later files override earlier ones.

    Examples
    --------
    >>> side = {"": ["T1w.json"], "sub-01/anat": ["sub-01_T1w.json", "sub-01_T2w.json"]}
    >>> inherited_files("sub-01/anat/sub-01_T1w.nii.gz", side, ".json")
    ['T1w.json', 'sub-01/anat/sub-01_T1w.json']
    """
    return SidecarIndex(sidecars_by_dir).applying_to(rel_path)[ext]


def merge_sidecars(root: Path | str, rel_paths: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Merge JSON sidecars (later overrides earlier); returns (metadata, warnings)."""
    merged: dict[str, Any] = {}
    warnings: list[str] = []
    for rel in rel_paths:
        data, warning = read_json(os.path.join(root, rel))
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
