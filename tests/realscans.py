"""Real scans for tests: the CI subset from installed packages, the full corpus from its cache.

The CI subset is the catalogue's ``ci=True`` scans (see ``docs/realscans.md``): files that
ship in pip packages installed by ``make test`` (nibabel, dipy, nilearn, pydeface) or in
Debian's ``mricron-data`` (installed by ``.ci/run``; its scans are left out, with a reason,
where it is absent). The full corpus is what ``python -m benchmarks.realscans.build_corpus``
built into ``$MRI_CURATE_REALSCANS`` (default ``/work/cache/realscans``).

Use::

    from tests.realscans import ci_scans, corpus_scans
    for scan in ci_scans():            # list[RealScan], read from the packages
        data = scan.data()             # float32 array of the scan's intensities
    corpus = corpus_scans()            # [] when the cache is not there

or the fixtures: ``real_scan`` (one CI scan per test, parametrised by id; a scan whose
package is missing is skipped with the reason) and ``real_scans`` (all CI scans present).
Register them in a test module with ``from tests.realscans import real_scan, real_scans``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from benchmarks.realscans.catalogue import CATALOGUE, ScanSpec
from benchmarks.realscans.resolve import SourceMissing, local_file, load_volume

DEFAULT_CACHE = Path("/work/cache/realscans")
CI_IDS: tuple[str, ...] = tuple(s.id for s in CATALOGUE if s.ci)


@dataclass(frozen=True)
class RealScan:
    """One real scan: its catalogue facts, its image, and the masks that ship with it."""

    id: str
    source: str
    modality: str
    face: str  # intact | defaced | none
    skull: str  # intact | stripped | none
    is_template: bool
    image: nib.Nifti1Image
    brain_mask: nib.Nifti1Image | None = None
    face_mask: nib.Nifti1Image | None = None  # 1 = kept, 0 = face
    meta: dict = field(default_factory=dict)

    def data(self) -> np.ndarray:
        """The intensities (scaling applied) as float32."""
        return np.asarray(self.image.dataobj, dtype=np.float32)


def _spec(scan_id: str) -> ScanSpec:
    for spec in CATALOGUE:
        if spec.id == scan_id:
            return spec
    raise KeyError(scan_id)


def _ci_mask(spec: ScanSpec, locator: str | None) -> nib.Nifti1Image | None:
    if locator is None:
        return None
    img = load_volume(local_file(spec.kind, locator, Path("/nonexistent"), Path(".")))
    return nib.Nifti1Image((np.asanyarray(img.dataobj) > 0).astype(np.uint8), img.affine)


def load_ci_scan(scan_id: str) -> RealScan:
    """Load one CI scan from its installed package; raises ``SourceMissing`` when absent."""
    spec = _spec(scan_id)
    if not spec.ci or spec.kind not in ("pip", "deb"):
        raise ValueError(f"{scan_id} is not in the CI subset")
    img = load_volume(local_file(spec.kind, spec.locator, Path("/nonexistent"), Path(".")))
    return RealScan(spec.id, spec.source, spec.modality, spec.face, spec.skull, spec.is_template,
                    img, _ci_mask(spec, spec.brain_mask), _ci_mask(spec, spec.face_mask),
                    {"licence": spec.licence, "subject": spec.subject, "notes": spec.notes})


def ci_scans(missing: list[str] | None = None) -> list[RealScan]:
    """Every CI scan whose package is installed; reasons for the others go to ``missing``."""
    scans = []
    for scan_id in CI_IDS:
        try:
            scans.append(load_ci_scan(scan_id))
        except SourceMissing as err:
            if missing is not None:
                missing.append(f"{scan_id}: {err}")
    return scans


def corpus_root() -> Path | None:
    """The built corpus directory (``$MRI_CURATE_REALSCANS`` or the default), if it has an index."""
    root = Path(os.environ.get("MRI_CURATE_REALSCANS", DEFAULT_CACHE))
    return root if (root / "corpus.json").is_file() else None


def corpus_index(root: Path | None = None) -> list[dict]:
    """The entries of ``corpus.json`` (``[]`` when there is no corpus)."""
    root = root or corpus_root()
    if root is None:
        return []
    return list(json.loads((root / "corpus.json").read_text())["scans"])


def corpus_scans(root: Path | None = None) -> list[RealScan]:
    """Every scan of the built corpus, masks included (``[]`` when there is no corpus)."""
    root = root or corpus_root()
    scans = []
    for e in corpus_index(root):
        masks = {k: nib.load(root / e[k]) if e.get(k) else None for k in ("brain_mask", "face_mask")}
        scans.append(RealScan(e["id"], e["source"], e["modality"], e["face"], e["skull"],
                              e["is_template"], nib.load(root / e["path"]), masks["brain_mask"],
                              masks["face_mask"], e))
    return scans


def downsample(img: nib.Nifti1Image, factor: int) -> nib.Nifti1Image:
    """Block-mean ``img`` by an integer ``factor`` per axis (a smaller copy for fast tests).

    Trailing voxels that do not fill a whole block are dropped, so no block is padded.
    """
    from skimage.measure import block_reduce

    if factor < 1:
        raise ValueError("factor must be >= 1")
    data = np.asarray(img.dataobj, dtype=np.float32)
    data = data[tuple(slice(0, n - n % factor) for n in data.shape)]
    small = block_reduce(data, (factor,) * 3, np.mean)
    affine = img.affine.copy()
    affine[:3, :3] = affine[:3, :3] * factor
    affine[:3, 3] += img.affine[:3, :3] @ np.full(3, (factor - 1) / 2)
    out = nib.Nifti1Image(small.astype(np.float32), affine)
    out.set_data_dtype(img.get_data_dtype().newbyteorder("="))
    return out


@pytest.fixture(scope="session", params=CI_IDS)
def real_scan(request: pytest.FixtureRequest) -> RealScan:
    """One CI real scan (parametrised over :data:`CI_IDS`); skipped if its package is absent."""
    try:
        return load_ci_scan(request.param)
    except SourceMissing as err:
        pytest.skip(f"real scan {request.param} unavailable: {err}")


@pytest.fixture(scope="session")
def real_scans() -> list[RealScan]:
    """All CI real scans present (skips only when fewer than two sources are installed)."""
    missing: list[str] = []
    scans = ci_scans(missing)
    if len({s.source for s in scans}) < 2:
        pytest.skip("fewer than two real-scan sources installed: " + "; ".join(missing))
    return scans

