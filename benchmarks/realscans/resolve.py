"""Reach the file behind a :class:`~benchmarks.realscans.catalogue.ScanSpec` and load it.

``pip`` and ``deb`` files are read where their package installed them; ``git`` and
``git-dicom`` files are read out of a bare snapshot made by ``fetch``
(``<mirror>/<owner>+<name>/repo``) with ``git cat-file``, so no work tree is needed.
A missing package, file or snapshot raises :class:`SourceMissing` with a sentence saying which.
"""

from __future__ import annotations

import fnmatch
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np

from benchmarks.realscans.catalogue import ScanSpec

MAX_FILE_BYTES = 256 * 2**20  # bound before decoding: no corpus file is near this
MAX_VOXELS = 600**3


class SourceMissing(RuntimeError):
    """The package, file or repository snapshot a scan needs is not on this machine."""


def pip_path(locator: str) -> Path:
    """Path of ``"package:rel/path"`` inside the installed package (not imported)."""
    package, rel = locator.split(":", 1)
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise SourceMissing(f"pip package {package!r} is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / rel
    if not path.is_file():
        raise SourceMissing(f"{path} is not in the installed {package}")
    return path


def pip_version(package: str) -> str:
    """Installed distribution version of ``package`` ("unknown" when it has no metadata)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"


def deb_version(path: str) -> tuple[str, str]:
    """(Debian package, version) that installed ``path``; ("unknown", "") without dpkg."""
    try:
        owner = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True, check=True)
        pkg = owner.stdout.split(":", 1)[0].strip()
        ver = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg],
                             capture_output=True, text=True, check=True).stdout
        return pkg, ver
    except (OSError, subprocess.CalledProcessError):
        return "unknown", ""


def repo_dir(mirror: Path, repo: str) -> Path:
    """Bare snapshot directory of ``owner/name`` under ``mirror``."""
    path = mirror / repo.replace("/", "+") / "repo"
    if not (path / "HEAD").is_file():
        raise SourceMissing(f"no snapshot of {repo} under {mirror} (use the fetch tool)")
    return path


def _git(repo: Path, *args: str) -> bytes:
    out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=False)
    if out.returncode != 0:
        raise SourceMissing(f"git {' '.join(args)} in {repo}: {out.stderr.decode().strip()}")
    return out.stdout


def repo_commit(mirror: Path, repo: str) -> str:
    """Commit (HEAD) of the snapshot of ``repo``."""
    return _git(repo_dir(mirror, repo), "rev-parse", "HEAD").decode().strip()


def gunzip_bounded(blob: bytes, limit: int = MAX_FILE_BYTES) -> bytes:
    """Decompress a gzip member, refusing output larger than ``limit`` bytes."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    out = inflater.decompress(blob, limit + 1)
    if len(out) > limit:
        raise ValueError(f"gzip member inflates past {limit} bytes")
    return out


def git_extract(mirror: Path, locator: str, dest: Path) -> list[Path]:
    """Copy the file or folder ``"owner/name:path"`` from the snapshot into ``dest``.

    A last path part with ``*`` selects the matching files of its folder
    (``In/cl/1301_*``); ``.gz`` files are decompressed (dcm2niix reads plain DICOM only).
    """
    repo, rel = locator.split(":", 1)
    gdir = repo_dir(mirror, repo)
    pattern = None
    if "*" in rel:
        rel, pattern = rel.rsplit("/", 1)
    listing = _git(gdir, "ls-tree", "-r", "-l", "HEAD", "--", rel).decode().splitlines()
    if pattern:
        listing = [x for x in listing
                   if fnmatch.fnmatch(x.split("\t", 1)[1].rsplit("/", 1)[-1], pattern)]
    if not listing:
        raise SourceMissing(f"{rel} is not in the snapshot of {repo}")
    files = []
    for line in listing:
        meta, name = line.split("\t", 1)
        size = meta.split()[3]
        if not size.isdigit() or int(size) > MAX_FILE_BYTES:
            raise SourceMissing(f"{repo}:{name} is absent from the snapshot (large file)")
        blob = _git(gdir, "cat-file", "blob", f"HEAD:{name}")
        target = dest / Path(name).name
        if target.suffix == ".gz" and not target.name.endswith(".nii.gz"):
            blob = gunzip_bounded(blob)
            target = target.with_suffix("")
        target.write_bytes(blob)
        files.append(target)
    return files


def dcm2niix_exe() -> str:
    """The dcm2niix binary of this environment (the pip wheel's), else one on PATH."""
    here = Path(sys.executable).parent / "dcm2niix"
    found = str(here) if here.is_file() else shutil.which("dcm2niix")
    if not found:
        raise SourceMissing("dcm2niix is not installed (pip install dcm2niix)")
    return found


def convert_dicom(folder: Path, out: Path) -> tuple[Path, dict]:
    """Convert a DICOM series folder with dcm2niix; return the largest NIfTI and its sidecar."""
    subprocess.run([dcm2niix_exe(), "-z", "y", "-b", "y", "-f", "%p_%s", "-o", str(out),
                    str(folder)], capture_output=True, check=False, timeout=600)
    niftis = sorted(out.glob("*.nii.gz"), key=lambda p: p.stat().st_size)
    if not niftis:
        raise SourceMissing(f"dcm2niix made no NIfTI from {folder}")
    sidecar = niftis[-1].with_name(niftis[-1].name[: -len(".nii.gz")] + ".json")
    meta = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    return niftis[-1], meta


def local_file(spec_kind: str, locator: str, mirror: Path, work: Path) -> Path:
    """Path of a single ``pip``/``deb``/``git`` file (``git`` files are extracted into ``work``)."""
    if spec_kind == "pip":
        return pip_path(locator)
    if spec_kind == "deb":
        if not Path(locator).is_file():
            raise SourceMissing(f"{locator} is missing (apt-get install mricron-data)")
        return Path(locator)
    if spec_kind == "git":
        return git_extract(mirror, locator, work)[0]
    raise ValueError(f"unknown kind {spec_kind!r}")


def load_volume(path: Path) -> nib.spatialimages.SpatialImage:
    """Load a NIfTI/MGH file after bounding its size; 4-D files give their first volume."""
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ValueError(f"{path} is larger than {MAX_FILE_BYTES} bytes")
    img = nib.load(path)
    if int(np.prod(img.shape[:3])) > MAX_VOXELS:
        raise ValueError(f"{path} has more than {MAX_VOXELS} voxels")
    if len(img.shape) > 3:
        img = img.slicer[..., 0]
        while len(img.shape) > 3:
            img = img.slicer[..., 0]
    return img


def as_nifti(img: nib.spatialimages.SpatialImage) -> nib.Nifti1Image:
    """A NIfTI-1 image with the on-disk dtype of ``img`` (MGH and NIfTI-2 converted)."""
    dtype = img.get_data_dtype()
    data = np.asanyarray(img.dataobj)
    out = nib.Nifti1Image(data, img.affine)
    out.set_data_dtype(dtype.newbyteorder("=") if dtype.kind in "iuf" else np.float32)
    if dtype.kind in "iu" and data.dtype.kind == "f":
        # scaled integers: let nibabel choose slope/intercept for the stored dtype
        out.header.set_slope_inter(np.nan, np.nan)
    return out


def open_spec(spec: ScanSpec, mirror: Path, work: Path) -> tuple[nib.Nifti1Image, dict, dict]:
    """(image, dcm2niix sidecar or {}, provenance) for ``spec``; raises :class:`SourceMissing`."""
    sidecar: dict = {}
    if spec.kind == "git-dicom":
        dicom_dir = Path(tempfile.mkdtemp(dir=work))
        git_extract(mirror, spec.locator, dicom_dir)
        nii_dir = Path(tempfile.mkdtemp(dir=work))
        path, sidecar = convert_dicom(dicom_dir, nii_dir)
    else:
        path = local_file(spec.kind, spec.locator, mirror, work)
    return as_nifti(load_volume(path)), sidecar, provenance(spec, mirror)


def provenance(spec: ScanSpec, mirror: Path) -> dict:
    """Where the scan came from: package and version, or repository, commit and path."""
    if spec.kind == "pip":
        package, rel = spec.locator.split(":", 1)
        return {"kind": "pip", "package": package, "version": pip_version(package), "path": rel}
    if spec.kind == "deb":
        pkg, ver = deb_version(spec.locator)
        return {"kind": "deb", "package": pkg, "version": ver, "path": spec.locator}
    repo, rel = spec.locator.split(":", 1)
    return {"kind": spec.kind, "repo": repo, "commit": repo_commit(mirror, repo), "path": rel}
