"""Find the images in a source collection without reading them.

One fast directory walk (``os.scandir``) collects image files, JSON sidecars
and gradient files.  It visits each real folder once (device + inode): links
to folders are followed, also out of SOURCE, but a loop (``loop -> .``) or a
second name for a folder is reported in a warning instead of walked again.
BIDS roots skip ``derivatives/``, ``sourcedata/``,
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


#: A folder's identity on disk: ``(st_dev, st_ino)``.
FolderKey = tuple[int, int]


def _key(stat: os.stat_result) -> FolderKey:
    return (stat.st_dev, stat.st_ino)


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
    ``code`` ...) are not searched, and a folder reached under two names (a
    link) is searched once.

    Raises
    ------
    OSError
        If ``source`` itself cannot be listed.
    """
    seen = {_key(os.stat(source))}
    if is_bids_root(source):
        return [source]
    roots: list[Path] = []
    level = [source]
    for _ in range(max_depth):
        below: list[Path] = []
        for folder in level:
            for child in sorted(_subfolders(folder), key=Path.is_symlink):  # real names first
                if child.name in BIDS_SKIP_DIRS:
                    continue  # a derivatives/ or sourcedata/ folder beside datasets is not raw data
                try:
                    key = _key(os.stat(child))
                except OSError:
                    continue
                if key in seen:
                    continue  # a second name (a link) for a folder already searched
                seen.add(key)
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


def _link_warning(rel: str, first: str) -> str:
    """Why a directory link was not followed: a loop (it points at a folder above it) or a copy."""
    if first == "." or rel.startswith(first + "/"):
        return f"{rel}: a link back to {first} (a loop); not followed"
    return f"{rel}: the same folder as {first}, walked or skipped there; not walked again"


class _Visits:
    """Which real folders (device + inode) a walk has claimed, and under which path."""

    def __init__(self, root: Path) -> None:
        self.seen: dict[FolderKey, str] = {}
        try:
            self.seen[_key(os.stat(root))] = "."
        except OSError:
            pass

    def claim(self, key: FolderKey, rel: str) -> str | None:
        """Claim ``key`` for ``rel``; returns the path that claimed it first, or ``None``."""
        first = self.seen.setdefault(key, rel)
        return None if first == rel else first


def _walk(root: Path, skip_top: frozenset[str], found: DatasetFiles, keep_all: bool) -> None:
    """Walk ``root``, each real folder once (by device and inode), whatever links point where.

    Directory links are followed (a dataset may link to a data store outside
    SOURCE), but only after every folder reachable without a link has been
    claimed: a folder is walked under its real path, and a link to a folder
    already walked or skipped (a loop such as ``loop -> .``, a second name for
    a folder, a link into ``derivatives/``) gets a warning instead of a walk.
    """
    visits = _Visits(root)
    real, linked = [""], []
    while real or linked:
        rel_dir = real.pop() if real else linked.pop(0)
        try:
            entries = list(os.scandir(root / rel_dir if rel_dir else root))
        except OSError as exc:
            found.walk_warnings.append(f"cannot list {rel_dir or '.'}: {exc.strerror}")
            continue
        for entry in sorted(entries, key=lambda e: e.name):
            if not entry.name.startswith("."):
                _visit(entry, rel_dir, skip_top, found, keep_all, visits, real, linked)


def _visit(entry: os.DirEntry[str], rel_dir: str, skip_top: frozenset[str], found: DatasetFiles,
           keep_all: bool, visits: _Visits, real: list[str], linked: list[str]) -> None:
    """File one directory entry: queue a folder it has not seen, or record a file."""
    name = entry.name
    rel = f"{rel_dir}/{name}" if rel_dir else name
    try:
        key = _key(entry.stat()) if entry.is_dir() else None
    except OSError:
        key = None
    if key is not None:
        first = visits.claim(key, rel)
        if first is not None:
            found.walk_warnings.append(_link_warning(rel, first))
        elif not (rel_dir == "" and name in skip_top):  # skipped, but claimed: links to it are not walked
            (linked if entry.is_symlink() else real).append(rel)
        return
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
