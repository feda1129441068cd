"""Find the images in a source collection without reading them.

One fast directory walk (``os.scandir``) collects image files, JSON sidecars
and gradient files.  BIDS roots skip ``derivatives/``, ``sourcedata/``,
``code/`` and dot-folders so a derivative is never ingested as raw data.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from curate.headers import SIDECAR_SUFFIXES, is_nifti

BIDS_SKIP_DIRS = frozenset({"derivatives", "sourcedata", "code", "stimuli", "phenotype"})
DICOM_SUFFIXES = (".dcm", ".ima", ".dicom")


class SourceError(Exception):
    """The source collection itself cannot be used."""


@dataclass(slots=True)
class DatasetFiles:
    """Files of one dataset found by the walk; paths relative to ``root``."""

    name: str
    root: Path
    images: list[str] = field(default_factory=list)
    sidecars_by_dir: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    other_files: list[str] = field(default_factory=list)
    walk_warnings: list[str] = field(default_factory=list)


#: How deep below SOURCE to look for BIDS datasets (``SOURCE/openneuro/ds000001`` is depth 2).
BIDS_SEARCH_DEPTH = 3


def holds_bids(source: Path) -> bool:
    """Whether ``source`` is, or holds, BIDS datasets (else it is a clinical export).

    Raises
    ------
    SourceError
        If ``source`` cannot be listed.
    """
    try:
        return bool(bids_roots(source))
    except OSError as exc:
        raise SourceError(f"cannot list {source}: {exc.strerror}") from exc


def _subfolders(folder: Path) -> list[Path]:
    try:
        with os.scandir(folder) as entries:
            return sorted(Path(e.path) for e in entries if not e.name.startswith(".") and e.is_dir())
    except OSError:
        return []


def has_description(folder: Path) -> bool:
    """True when ``folder`` has a ``dataset_description.json``."""
    return (folder / "dataset_description.json").is_file()


def is_bids_root(folder: Path) -> bool:
    """A BIDS dataset: a ``dataset_description.json``, or ``sub-*`` folders without one.

    Copies of BIDS datasets often lose their description; their ``sub-<label>``
    folders still say what they are (:func:`raw_bids_roots` warns about them).
    """
    return has_description(folder) or any(c.name.startswith("sub-") for c in _subfolders(folder))


def bids_roots(source: Path, max_depth: int = BIDS_SEARCH_DEPTH) -> list[Path]:
    """The BIDS datasets at or below ``source``, never one inside another, at most ``max_depth`` down.

    Folders named like BIDS' own non-raw folders (``derivatives``, ``sourcedata``,
    ``code`` ...) are not searched.

    Raises
    ------
    OSError
        If ``source`` itself cannot be listed.
    """
    os.stat(source)
    if is_bids_root(source):
        return [source]
    roots: list[Path] = []
    level = [source]
    for _ in range(max_depth):
        below: list[Path] = []
        for folder in level:
            for child in _subfolders(folder):
                if child.name in BIDS_SKIP_DIRS:
                    continue  # a derivatives/ or sourcedata/ folder beside datasets is not raw data
                (roots if is_bids_root(child) else below).append(child)
        level = below
    return sorted(roots)


def is_derivative_dataset(root: Path) -> bool:
    """True when ``root/dataset_description.json`` declares ``"DatasetType": "derivative"``.

    An unreadable description counts as raw (the walk then reports what it finds).
    """
    try:
        description = json.loads((root / "dataset_description.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(description, dict) and description.get("DatasetType") == "derivative"


def raw_bids_roots(source: Path) -> tuple[list[Path], list[str]]:
    """The raw BIDS datasets under ``source``, and a warning for each derivative one left out.

    A derivative is never ingested as raw data: a derivative dataset beside raw
    ones (fMRIPrep outputs, atlases) is skipped with a warning.

    Raises
    ------
    SourceError
        If ``source`` itself is a derivative dataset.
    """
    roots = bids_roots(source)
    if roots == [source] and is_derivative_dataset(source):
        raise SourceError(f"{source} is a BIDS derivative dataset (DatasetType 'derivative' in its "
                          "dataset_description.json), not raw data; point curate at the raw dataset")
    raw = [r for r in roots if not is_derivative_dataset(r)]
    warnings = [f"{r.name}: skipped, a BIDS derivative dataset (DatasetType 'derivative')"
                for r in roots if r not in raw]
    warnings += [f"{r.name}: no dataset_description.json; indexed as BIDS for its sub-* folders"
                 for r in raw if not has_description(r)]
    return raw, warnings


def _walk(root: Path, skip_top: frozenset[str], found: DatasetFiles, keep_all: bool) -> None:
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        try:
            entries = list(os.scandir(root / rel_dir if rel_dir else root))
        except OSError as exc:
            found.walk_warnings.append(f"cannot list {rel_dir or '.'}: {exc.strerror}")
            continue
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            rel = f"{rel_dir}/{name}" if rel_dir else name
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                if not (rel_dir == "" and name in skip_top):
                    stack.append(rel)
                continue
            if is_nifti(name):
                found.images.append(rel)
            elif name.lower().endswith(SIDECAR_SUFFIXES):  # T1.JSON from a Windows export
                found.sidecars_by_dir[rel_dir].append(name)
            elif keep_all:
                found.other_files.append(rel)


def walk_bids(root: Path) -> DatasetFiles:
    """Walk one BIDS dataset."""
    found = DatasetFiles(name=root.name, root=root)
    _walk(root, BIDS_SKIP_DIRS, found, keep_all=False)
    found.images.sort()
    return found


def walk_plain(root: Path, keep_all: bool) -> DatasetFiles:
    """Walk a clinical folder (NIfTI files, or every file for a DICOM tree)."""
    found = DatasetFiles(name=root.name, root=root)
    _walk(root, frozenset(), found, keep_all=keep_all)
    found.images.sort()
    found.other_files.sort()
    return found


def display_path(path: str) -> str:
    """A path as valid UTF-8 text (undecodable bytes become U+FFFD) for the manifest."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
