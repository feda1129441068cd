"""OUTPUT as ``curate index`` and ``curate build`` treat it: checked, locked, swept.

* :func:`check_paths` refuses an OUTPUT that is SOURCE, lies inside it (the
  build would write into the collection and ingest its own outputs) or holds
  it, before anything is written.
* :func:`keep_earlier_rows` refuses to replace the rows of an earlier build
  with an empty index (an unmounted share, a mistyped SOURCE).
* :class:`OutputLock` is an advisory ``flock`` on ``OUTPUT/.curate.lock``: a
  second index or build on the same OUTPUT stops with a message instead of
  redoing (and overwriting) the first one's work.
* :func:`sweep_temporaries` removes the temporary files of atomic writes that
  a killed or stopped run left behind (they are hidden, never read).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from types import TracebackType

from curate.errors import OutputError

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no lock
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".curate.lock"
#: Temporary names of :mod:`curate.atomic`, :mod:`curate.array_file` and the manifest writer.
_TEMP_FILE = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp(\.nii\.gz|\.b2z)?$")
#: dcm2niix's private working folders (:mod:`curate.dicom_convert`).
_TEMP_DIR = re.compile(r"^\.convert-[a-z0-9_]{8}$")


def check_paths(source: Path, output: Path) -> None:
    """Refuse SOURCE and OUTPUT that are one folder or nest, links resolved; writes nothing.

    Raises
    ------
    OutputError
        If they overlap, or OUTPUT (or the folder it would be made in) is not a writable folder.
    """
    src, out = source.resolve(), output.resolve()
    if out == src:
        raise OutputError(f"output {output} is the source folder; OUTPUT must lie outside SOURCE "
                          "(the build would write into it inside the collection)")
    if src in out.parents:
        raise OutputError(f"output {output} is inside source {source}; choose an OUTPUT outside SOURCE "
                          "(the build would ingest its own outputs)")
    if out in src.parents:
        raise OutputError(f"source {source} is inside output {output}; choose an OUTPUT that does not "
                          "contain SOURCE")
    existing = next(p for p in (out, *out.parents) if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"output {output} is not writable: {existing} is not a writable folder")


def keep_earlier_rows(output: Path, n_indexed: int, source: Path) -> None:
    """Refuse an index of no images where OUTPUT holds the rows of an earlier run.

    Raises
    ------
    OutputError
        If ``n_indexed`` is 0 and ``OUTPUT/manifests`` holds rows.
    """
    if n_indexed:
        return
    from manifests import io as mio

    manifest_dir = output / "manifests"
    if not mio.list_parts(manifest_dir):
        return
    n_rows = mio.read_table(manifest_dir, columns=["image_id"]).num_rows
    if n_rows:
        raise OutputError(f"source {source} has no images (for this selection), and {output} holds "
                          f"{n_rows:,} rows of an earlier run; not replacing them (check SOURCE, or use "
                          "another OUTPUT)")


class OutputLock:
    """An advisory lock on OUTPUT, held from :meth:`acquire` until the ``with`` block ends.

    ``acquire`` does nothing while OUTPUT does not exist yet (nothing is
    created before SOURCE has been read); call it again once it does.
    """

    def __init__(self, output: Path) -> None:
        self.output = output
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`~curate.errors.OutputError` if another run holds it."""
        if self._fd is not None or fcntl is None or not self.output.is_dir():
            return
        path = self.output / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise OutputError(f"another curate index or build (pid {holder}) is writing to {self.output}; "
                              "wait for it to finish, or use another OUTPUT") from exc
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd

    def release(self) -> None:
        """Let the lock go (closing the file releases the ``flock``)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "OutputLock":
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def sweep_temporaries(output: Path) -> int:
    """Remove temporary files and dcm2niix work folders under ``output``; returns how many.

    Only names the atomic writers make (hidden, with a random part and
    ``.tmp``) are touched; call it while holding :class:`OutputLock`.
    """
    removed = 0
    for folder, dirs, files in os.walk(output):
        for name in [d for d in dirs if _TEMP_DIR.match(d)]:
            shutil.rmtree(os.path.join(folder, name), ignore_errors=True)
            dirs.remove(name)
            removed += 1
        for name in files:
            if _TEMP_FILE.match(name):
                try:
                    os.unlink(os.path.join(folder, name))
                    removed += 1
                except OSError:
                    pass
    return removed


__all__ = ["LOCK_NAME", "OutputLock", "check_paths", "keep_earlier_rows", "sweep_temporaries"]
