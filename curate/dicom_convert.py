"""Conversion of one DICOM series to NIfTI with dcm2niix, the converter the field trusts.

dcm2niix may write more than one image for a series:

* ``<name>_Tilt_1`` (gantry tilt corrected) or ``<name>_Eq_1`` (unequal slice
  spacing resampled) beside the raw stack: the corrected image is kept, with
  the raw stack's JSON sidecar (and bval/bvec) when it has none of its own;
* several different images (``_e2``, ``_ph``, ``_ADC``, ``_i00002`` ...): the
  index already splits series by echo, magnitude/phase and original/derived
  (:func:`curate.dicom.split_series`), so what remains is rare (Philips DWI
  series whose ADC volume dcm2niix writes apart as ``_ADC``); the image under
  the plain name is kept (else the largest) and the row says which others
  dcm2niix wrote.

When dcm2niix fails, the reason given is its own error line, with the
private link names it saw replaced by the source files, and the transfer
syntax when the files are compressed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from curate.dicom_geometry import PYDICOM_ERRORS
from curate.errors import out_of_space
from curate.io import UnreadableImage

#: Name parts dcm2niix adds to a geometry-corrected copy of the raw stack.
_CORRECTED = re.compile(r"_(Tilt|Eq)_\d+")
#: Words that make a dcm2niix output line worth quoting as the reason it failed.
_TELLING = (("error", "unsupported", "not supported", "unable", "corrupt", "not large enough",
             "no valid dicom"), ("warning",))
#: Transfer syntaxes met in exports, by UID, named for messages.
_SYNTAXES = {
    "1.2.840.10008.1.2": "implicit VR little endian", "1.2.840.10008.1.2.1": "explicit VR little endian",
    "1.2.840.10008.1.2.2": "explicit VR big endian", "1.2.840.10008.1.2.1.99": "deflated",
    "1.2.840.10008.1.2.4.50": "JPEG baseline", "1.2.840.10008.1.2.4.51": "JPEG extended",
    "1.2.840.10008.1.2.4.57": "JPEG lossless", "1.2.840.10008.1.2.4.70": "JPEG lossless SV1",
    "1.2.840.10008.1.2.4.80": "JPEG-LS lossless", "1.2.840.10008.1.2.4.81": "JPEG-LS near-lossless",
    "1.2.840.10008.1.2.4.90": "JPEG 2000 lossless", "1.2.840.10008.1.2.4.91": "JPEG 2000",
    "1.2.840.10008.1.2.4.201": "HTJ2K lossless", "1.2.840.10008.1.2.4.202": "HTJ2K lossless RPCL",
    "1.2.840.10008.1.2.4.203": "HTJ2K", "1.2.840.10008.1.2.4.110": "JPEG XL lossless",
    "1.2.840.10008.1.2.4.112": "JPEG XL", "1.2.840.10008.1.2.5": "RLE lossless",
}


@dataclass(frozen=True, slots=True)
class Conversion:
    """The NIfTI written for a series, and anything the manifest row should note about it."""

    path: Path
    note: str | None = None


def dcm2niix_binary() -> str:
    """Path of the dcm2niix executable shipped by the ``dcm2niix`` wheel (or on PATH)."""
    try:
        import dcm2niix

        if Path(dcm2niix.bin).exists():
            return str(dcm2niix.bin)
    except ImportError:
        pass
    found = shutil.which("dcm2niix")
    if found is None:
        raise UnreadableImage("dcm2niix is not installed")
    return found


def pick_output(images: list[Path], name: str) -> tuple[Path, str | None]:
    """The image of a series among dcm2niix's outputs, and a note when it had to choose.

    Examples
    --------
    >>> pick_output([Path("x.nii.gz"), Path("x_Tilt_1.nii.gz")], "x")
    (PosixPath('x_Tilt_1.nii.gz'), None)
    """
    if len(images) == 1:
        return images[0], None
    corrected = [p for p in images if _CORRECTED.search(p.name)]
    if corrected and len(corrected) == len(images) - 1:
        return max(corrected, key=lambda p: len(_CORRECTED.findall(p.name))), None
    # The plain name first (Philips DWI: the series, not its _ADC), then the largest.
    ranked = sorted(images, key=lambda p: (_stem(p) != name, -p.stat().st_size, p.name))
    kept = _stem(ranked[0])[len(name):] or "the series' own"
    others = ", ".join(_stem(p)[len(name):] for p in ranked[1:])
    return ranked[0], f"dcm2niix wrote {len(images)} images for this series; kept {kept}, not {others}"


def _stem(path: Path) -> str:
    return path.name[: -len(".nii.gz")]


def _move_outputs(image: Path, dst: Path, out_dir: Path, name: str) -> None:
    """Move ``image`` and its sidecars to ``out_dir/name.*`` (raw stack's sidecars as fallback).

    The image moves last: a build that finds it finds its sidecars too.
    """
    stem = _stem(image)
    moves = {p.name[len(stem):]: p for p in dst.glob(stem + ".*") if p != image}
    base = _CORRECTED.sub("", stem)
    for suffix in (".json", ".bval", ".bvec"):
        if suffix not in moves and (dst / f"{base}{suffix}").exists():
            moves[suffix] = dst / f"{base}{suffix}"
    for suffix, produced in moves.items():
        os.replace(produced, out_dir / f"{name}{suffix}")
    os.replace(image, out_dir / f"{name}.nii.gz")


def failure_reason(output: str, returncode: int, links: dict[str, str], syntax: str | None) -> str:
    """A one-line reason for a failed conversion, in the source's own file names."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    telling = [line for words in _TELLING for line in lines if any(w in line.lower() for w in words)]
    line = (telling or lines[-1:] or ["no output"])[0]
    for link, source in links.items():
        line = line.replace(link, source)
    reason = f"dcm2niix failed (exit {returncode}): {line}"
    if syntax and syntax not in ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"):
        reason += f" [transfer syntax {_SYNTAXES.get(syntax, 'unknown')} ({syntax})]"
    return reason


def _transfer_syntax(path: Path) -> str | None:
    """The transfer syntax UID of one file, or ``None`` when it cannot be read."""
    import pydicom

    try:
        meta = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=[], force=True).file_meta
    except PYDICOM_ERRORS:
        return None
    syntax = getattr(meta, "TransferSyntaxUID", None)
    return None if syntax is None else str(syntax)


#: Deflated explicit VR little endian: dcm2niix cannot read it, pydicom inflates it.
DEFLATED = "1.2.840.10008.1.2.1.99"


def _inflate(source: Path, target: Path) -> None:
    """Rewrite a deflated file as explicit VR little endian (pydicom reads deflate natively)."""
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian

    ds = pydicom.dcmread(source)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.save_as(target, enforce_file_format=True)


def _run_dcm2niix(root: Path, rel_files: list[str], tmp: Path, name: str, inflate: bool,
                  timeout_s: float | None) -> tuple[subprocess.CompletedProcess[str], Path, dict[str, str]]:
    """dcm2niix on the series' files only, linked (or inflated) into a private folder."""
    src, dst = tmp / ("inflated" if inflate else "in"), tmp / "out"
    src.mkdir()
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir()
    links = {}
    for i, rel in enumerate(rel_files):
        link = src / f"{i:06d}.dcm"
        if inflate:
            try:
                _inflate(root / rel, link)
            except PYDICOM_ERRORS as exc:
                raise UnreadableImage(f"cannot inflate deflated DICOM {rel}: {exc}") from exc
        else:
            os.symlink((root / rel).resolve(), link)
        links[str(link)] = rel
    try:
        proc = subprocess.run(
            [dcm2niix_binary(), "-z", "y", "-b", "y", "-ba", "y", "-f", name, "-o", str(dst), str(src)],
            capture_output=True, text=True, errors="replace", check=False, timeout=timeout_s,
        )
    except subprocess.TimeoutExpired as exc:
        raise UnreadableImage(f"dcm2niix did not finish within {timeout_s:g} s") from exc
    return proc, dst, links


def _short_of_space(out_dir: Path, root: Path, rel_files: list[str]) -> bool:
    """Whether ``out_dir``'s file system has less room than the series' files take (at least 1 MiB)."""
    need = 0
    for rel in rel_files:
        try:
            need += os.stat(root / rel).st_size
        except OSError:
            continue
    return shutil.disk_usage(out_dir).free < max(need, 1 << 20)


def convert_series(root: Path, rel_files: list[str], out_dir: Path, name: str,
                   timeout_s: float | None = None) -> Conversion:
    """Convert one series with dcm2niix into ``out_dir/name.nii.gz`` (+ json/bval/bvec).

    The series' files are linked into a private folder first, so other series
    in the same directory are not converted with it.  Outputs appear atomically.
    A deflated series, which dcm2niix cannot read, is inflated with pydicom and
    converted again.

    Raises
    ------
    UnreadableImage
        If dcm2niix fails, writes no image or runs longer than ``timeout_s``.
    """
    out_dir = out_dir.absolute()  # dcm2niix would read a relative "-out/..." as an option
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".convert-") as tmp:
        proc, dst, links = _run_dcm2niix(root, rel_files, Path(tmp), name, False, timeout_s)
        images = sorted(dst.glob("*.nii.gz"))
        syntax = None
        if (proc.returncode != 0 or not images) and rel_files:
            syntax = _transfer_syntax(root / rel_files[0])
            if syntax == DEFLATED:
                proc, dst, links = _run_dcm2niix(root, rel_files, Path(tmp), name, True, timeout_s)
                images = sorted(dst.glob("*.nii.gz"))
        if proc.returncode != 0 or not images:
            if _short_of_space(out_dir, root, rel_files):  # dcm2niix could not write: not the series' fault
                raise out_of_space(out_dir)
            raise UnreadableImage(failure_reason(proc.stdout + proc.stderr, proc.returncode, links, syntax))
        image, note = pick_output(images, name)
        _move_outputs(image, dst, out_dir, name)
    return Conversion(out_dir / f"{name}.nii.gz", note)
