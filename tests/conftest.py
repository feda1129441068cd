"""Shared fixtures: real images that ship inside pip packages, loaded once per session.

* nilearn's MNI152 T1 template (1 mm, brain-only contrast) and its brain mask;
* pydeface's mean head template (with face) and its face mask;
* dipy's bundled DWI series with gradient tables;
* pydicom's MR test files.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest


@pytest.fixture(scope="session")
def mni_t1() -> nib.Nifti1Image:
    """MNI152 T1 template, 1 mm, 197 x 233 x 189 (nilearn)."""
    from nilearn.datasets import load_mni152_template

    img = load_mni152_template(resolution=1)
    return nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32), img.affine)


@pytest.fixture(scope="session")
def mni_brain_mask() -> nib.Nifti1Image:
    """MNI152 brain mask, 1 mm (nilearn)."""
    from nilearn.datasets import load_mni152_brain_mask

    img = load_mni152_brain_mask(resolution=1)
    return nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.uint8), img.affine)


def _pydeface_file(name: str) -> Path:
    import pydeface

    return Path(pydeface.__file__).parent / "data" / name


@pytest.fixture(scope="session")
def head_template() -> nib.Nifti1Image:
    """pydeface's mean head template, a whole head with face."""
    img = nib.load(_pydeface_file("mean_reg2mean.nii.gz"))
    return nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32), img.affine)


@pytest.fixture(scope="session")
def face_mask() -> nib.Nifti1Image:
    """pydeface's face mask on the grid of :func:`head_template`: 1 = kept, 0 = face removed."""
    img = nib.load(_pydeface_file("facemask.nii.gz"))
    return nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.uint8), img.affine)


@pytest.fixture(scope="session", params=["small_64D", "small_101D", "small_25"])
def dipy_dwi(request: pytest.FixtureRequest) -> tuple[Path, Path, Path]:
    """(nifti, bval, bvec) paths of one of dipy's bundled real DWI series."""
    from dipy.data import get_fnames

    nii, bval, bvec = get_fnames(name=request.param)
    return Path(nii), Path(bval), Path(bvec)


@pytest.fixture(scope="session")
def pydicom_mr() -> Path:
    """pydicom's MR_small.dcm test file (64 x 64, one slice)."""
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file("MR_small.dcm"))


@pytest.fixture(scope="session")
def demo_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo collection of :mod:`curate.demo` (BIDS, DICOM and NIfTI parts), built once."""
    from curate.demo import make_demo_collection

    root = tmp_path_factory.mktemp("demo_source")
    make_demo_collection(root)
    return root


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``gpu`` tests cleanly when there is no CUDA device."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


os.environ.setdefault("MPLBACKEND", "Agg")
