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

Before anything is converted, the size of the series is read from its headers
(:func:`check_series_size`): a series above ``[read] max_series_bytes`` (or
whose image would be above ``max_image_bytes``) is refused, so neither
dcm2niix nor the inflation of a deflated series writes GBs first.  dcm2niix
writes a plain ``.nii`` for an image above 2 GB even when asked to compress;
both are found.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from curate.dicom_deflate import DEFLATED, inflate_file, is_deflated, read_deflated_header
from curate.dicom_geometry import PYDICOM_ERRORS
from curate.dicom_stack import stack_series
from curate.errors import out_of_space
from curate.io import (TooLarge, UnreadableImage, check_decoded_size, format_bytes, read_header,
                       strip_nifti_suffix)

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
    return strip_nifti_suffix(path.name)


def _suffix(path: Path) -> str:
    return path.name[len(_stem(path)):]


def _images(folder: Path) -> list[Path]:
    """dcm2niix's images in ``folder``: ``.nii.gz``, and ``.nii`` (what it writes above 2 GB)."""
    return sorted([*folder.glob("*.nii.gz"), *folder.glob("*.nii")])


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
    os.replace(image, out_dir / f"{name}{_suffix(image)}")


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
    """The transfer syntax UID of one file (its file meta only), or ``None`` when it cannot be read."""
    import pydicom

    try:
        meta = pydicom.filereader.read_file_meta_info(path)
    except PYDICOM_ERRORS:
        return None
    syntax = getattr(meta, "TransferSyntaxUID", None)
    return None if syntax is None else str(syntax)


_SIZE_TAGS = ["Rows", "Columns", "NumberOfFrames", "BitsAllocated", "SamplesPerPixel"]
#: dcm2niix's compression flag (it still writes a plain .nii above 2 GB).
COMPRESS = ("-z", "y")


def _pixel_bytes(path: Path) -> tuple[int, int]:
    """(pixel data bytes, voxels) of one file, from its header."""
    import pydicom

    read = read_deflated_header if is_deflated(path) else pydicom.dcmread
    ds = read(path, stop_before_pixels=True, specific_tags=_SIZE_TAGS, force=True)
    voxels = 1
    for keyword in ("Rows", "Columns", "NumberOfFrames", "SamplesPerPixel"):
        value = ds.get(keyword)
        voxels *= max(int(value), 1) if value not in (None, "") else 1
    return voxels * max(int(ds.get("BitsAllocated") or 16), 8) // 8, voxels


def check_series_size(root: Path, rel_files: list[str], max_series_bytes: int | None,
                      max_image_bytes: int | None) -> int:
    """The pixel data bytes of a series from its headers; :class:`TooLarge` above the limits."""
    total = voxels = 0
    for rel in rel_files:
        try:
            size, count = _pixel_bytes(root / rel)
        except PYDICOM_ERRORS:
            continue  # dcm2niix will say what is wrong with this file
        total, voxels = total + size, voxels + count
    if max_series_bytes is not None and total > max_series_bytes:
        raise TooLarge(f"DICOM series of {len(rel_files)} files holds {format_bytes(total)} of pixel data "
                       f"(from its headers), above [read] max_series_bytes = {max_series_bytes} "
                       f"({format_bytes(max_series_bytes)}); not converted")
    check_decoded_size((voxels,), 4, max_image_bytes, "the DICOM series")
    return total


def _inflate(source: Path, target: Path, rel: str, budget: int | None) -> int:
    """Rewrite a deflated file as explicit VR little endian, the syntax dcm2niix reads."""
    try:
        return inflate_file(source, target, budget if budget is not None else 1 << 62)
    except TooLarge:
        raise
    except (*PYDICOM_ERRORS, zlib.error) as exc:
        raise UnreadableImage(f"cannot inflate deflated DICOM {rel}: {exc}") from exc


def _run_dcm2niix(root: Path, rel_files: list[str], tmp: Path, name: str, inflate: bool,
                  timeout_s: float | None, budget: int | None = None,
                  ) -> tuple[subprocess.CompletedProcess[str], Path, dict[str, str]]:
    """dcm2niix on the series' files only, linked (or inflated, within ``budget`` bytes) into a private folder."""
    src, dst = tmp / ("inflated" if inflate else "in"), tmp / "out"
    src.mkdir()
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir()
    links = {}
    for i, rel in enumerate(rel_files):
        link = src / f"{i:06d}.dcm"
        if inflate:
            written = _inflate(root / rel, link, rel, budget)
            budget = None if budget is None else budget - written
        else:
            os.symlink((root / rel).resolve(), link)
        links[str(link)] = rel
    try:
        proc = subprocess.run(
            [dcm2niix_binary(), *COMPRESS, "-b", "y", "-ba", "y", "-f", name, "-o", str(dst), str(src)],
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


def _slices(path: Path) -> int:
    """Slices (third axis) of a NIfTI file, from its header; 0 when unreadable."""
    try:
        shape = read_header(path).shape
    except UnreadableImage:
        return 0
    return int(shape[2]) if len(shape) > 2 else 1


def _split(images: list[Path], expected_slices: int) -> bool:
    """True when dcm2niix wrote several images, none with the slices the headers describe."""
    return len(images) > 1 and all(_slices(p) < expected_slices for p in images)


def _stack_instead(links: dict[str, str], out_dir: Path, name: str, expected_slices: int,
                   why: str) -> Conversion:
    """The series stacked by SimpleITK (:mod:`curate.dicom_stack`), with a note saying why."""
    files = [Path(link) for link in links]
    path = stack_series(files[0].parent, files, out_dir / f"{name}.nii.gz", expected_slices)
    return Conversion(path, f"{why}; converted with SimpleITK's GDCM series reader instead, slices "
                            "ordered along the slice normal")


def convert_series(root: Path, rel_files: list[str], out_dir: Path, name: str,
                   timeout_s: float | None = None, max_series_bytes: int | None = None,
                   max_image_bytes: int | None = None, expected_slices: int | None = None) -> Conversion:
    """Convert one series with dcm2niix into ``out_dir/name.nii.gz`` (or ``.nii``; + json/bval/bvec).

    The series' files are linked into a private folder first, so other series
    in the same directory are not converted with it.  Outputs appear atomically.
    A deflated series, which dcm2niix cannot read, is inflated (within
    ``max_series_bytes``) and converted again.  ``expected_slices``, given for a
    single-volume series whose headers agree on one regular geometry, lets a
    series that dcm2niix fails on, or splits into images of fewer slices, be
    stacked by SimpleITK instead (:mod:`curate.dicom_stack`).

    Raises
    ------
    UnreadableImage
        If dcm2niix fails (and stacking does too), writes no image or runs
        longer than ``timeout_s``; :class:`TooLarge` (a subclass) when the
        headers, or the inflation, go past the limits.
    """
    out_dir = out_dir.absolute()  # dcm2niix would read a relative "-out/..." as an option
    check_series_size(root, rel_files, max_series_bytes, max_image_bytes)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".convert-") as tmp:
        proc, dst, links = _run_dcm2niix(root, rel_files, Path(tmp), name, False, timeout_s)
        images = _images(dst)
        syntax = None
        if (proc.returncode != 0 or not images) and rel_files:
            syntax = _transfer_syntax(root / rel_files[0])
            if syntax == DEFLATED:
                proc, dst, links = _run_dcm2niix(root, rel_files, Path(tmp), name, True, timeout_s,
                                                 max_series_bytes)
                images = _images(dst)
        failed = proc.returncode != 0 or not images
        if failed and _short_of_space(out_dir, root, rel_files):  # a full disk is not the series' fault
            raise out_of_space(out_dir)
        if expected_slices and links and (failed or _split(images, expected_slices)):
            why = (failure_reason(proc.stdout + proc.stderr, proc.returncode, links, syntax) if failed else
                   f"dcm2niix split this series into {len(images)} images, the headers describe one "
                   f"volume of {expected_slices} slices")
            try:
                return _stack_instead(links, out_dir, name, expected_slices, why)
            except UnreadableImage as exc:
                if failed:
                    raise UnreadableImage(f"{why}; {exc}") from exc
        if failed:
            raise UnreadableImage(failure_reason(proc.stdout + proc.stderr, proc.returncode, links, syntax))
        image, note = pick_output(images, name)
        _move_outputs(image, dst, out_dir, name)
    return Conversion(out_dir / f"{name}{_suffix(image)}", note)
