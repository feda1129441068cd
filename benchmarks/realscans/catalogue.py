"""The real-scan catalogue: where each scan comes from and what is known about it.

One :class:`ScanSpec` per scan. ``kind`` says how the file is reached:

* ``pip`` — a file inside an installed Python package (``locator = "package:rel/path"``);
* ``deb`` — a file installed by a Debian package (``locator`` is its absolute path);
* ``git`` — a NIfTI/MGH file in a repository snapshot made by ``fetch``
  (``locator = "owner/name:path"``);
* ``git-dicom`` — a DICOM series folder in such a snapshot, converted with dcm2niix.

Only ``pip`` and ``deb`` scans can be in the CI subset (CI reaches PyPI and Debian only).
Face, skull and modality labels were set by looking at the three mid-planes of every scan;
``background`` is measured by the builder (see :func:`background_kind`).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Repository snapshots used, and the licence stated in each.
REPO_LICENCES = {
    "neurolabusc/dcm_qa_xa30": "BSD-2-Clause (repository LICENSE)",
    "neurolabusc/dcm_qa_decubitus": "BSD-2-Clause (repository LICENSE)",
    "niivue/niivue-demo-images": "BSD-2-Clause (repository LICENSE)",
    "niivue/niivue": "BSD-2-Clause (repository LICENSE)",
    "neurolabusc/dcm_qa_philips_enh": "BSD-2-Clause (repository LICENSE)",
    "neurolabusc/VolumeRenderingData": "MIT (repository LICENSE)",
}
FACES = ("intact", "partial", "defaced", "none")
SKULLS = ("intact", "stripped", "none")

CHRIS = "CC BY-NC 4.0 (niivue-demo-images README: acquired by C. Rorden, McCausland Center)"


@dataclass(frozen=True, slots=True)
class ScanSpec:
    """One scan of the corpus and its known properties (see the module docstring)."""

    id: str
    source: str  # independent source key, for leave-one-source-out
    kind: str  # pip | deb | git | git-dicom
    locator: str
    licence: str
    modality: str  # T1w | T2w | FLAIR | PDw | T1w-CE | b0-EPI
    face: str  # intact | partial (field of view clips it) | defaced | none
    skull: str  # intact | stripped | none (not in the field of view)
    subject: str  # scans of one person share this key
    is_template: bool = False  # template or average of several scans
    vendor: str | None = None
    field_t: float | None = None
    brain_mask: str | None = None  # locator (same kind) of a brain image/mask on the same grid
    face_mask: str | None = None  # locator of a face mask (1 = kept, 0 = face) on the same grid
    ci: bool = False
    notes: str = ""


_NV = "niivue/niivue-demo-images"
_NVD = "niivue/niivue:packages/niivue/demos/images"
_VRD = "neurolabusc/VolumeRenderingData"
_STROKE = "MIT (VolumeRenderingData stroke/README: C-STAR, NIH P50 DC014664)"

CATALOGUE: tuple[ScanSpec, ...] = (
    # --- Debian: mricron-data (Colin27, one subject averaged over 27 scans) ---------------
    ScanSpec("colin27_head", "deb:mricron-data", "deb", "/usr/share/mricron/templates/ch2.nii.gz",
             "BSD-3-Clause (Debian mricron-data copyright); Colin27: Holmes et al. 1998",
             "T1w", face="partial", skull="intact", subject="colin27", is_template=True,
             vendor="Philips", field_t=1.5,
             brain_mask="/usr/share/mricron/templates/ch2bet.nii.gz", ci=True,
             notes="average of 27 scans of one subject; brain mask = ch2bet > 0; MNI box clips the nose"),
    ScanSpec("colin27_bet", "deb:mricron-data", "deb", "/usr/share/mricron/templates/ch2bet.nii.gz",
             "BSD-3-Clause (Debian mricron-data copyright); Colin27: Holmes et al. 1998",
             "T1w", face="none", skull="stripped", subject="colin27", is_template=True,
             vendor="Philips", field_t=1.5, ci=True, notes="BET brain extraction of colin27_head"),
    # --- pip wheels -------------------------------------------------------------------------
    ScanSpec("pydeface_mean_head", "pip:pydeface", "pip", "pydeface:data/mean_reg2mean.nii.gz",
             "MIT (pydeface)", "T1w", face="intact", skull="intact", subject="pydeface-mean",
             is_template=True, face_mask="pydeface:data/facemask.nii.gz", ci=True,
             notes="mean of registered heads shipped for defacing"),
    ScanSpec("mni152_2009a", "pip:nilearn", "pip",
             "nilearn:datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
             "BSD-3-Clause (nilearn); ICBM 2009a: (c) McConnell Brain Imaging Centre",
             "T1w", face="none", skull="stripped", subject="mni152", is_template=True, ci=True,
             notes="population template, brain only"),
    ScanSpec("nibabel_anatomical", "pip:nibabel", "pip", "nibabel:tests/data/anatomical.nii",
             "MIT (nibabel)", "T1w", face="none", skull="none", subject="nibabel-anat", ci=True,
             notes="real single-subject T1w, SPM-normalised to MNI (header), 2 mm, cropped inside the head"),
    ScanSpec("dipy_aniso_b0", "pip:dipy", "pip", "dipy:data/files/aniso_vox.nii.gz",
             "BSD-3-Clause (dipy)", "b0-EPI", face="none", skull="intact", subject="dipy-aniso",
             ci=True, notes="real single-subject EPI volume (b0-like T2 contrast), 4 x 4 x 5 mm, air"),
    # --- neurolabusc/dcm_qa_xa30: Siemens Prisma XA30 enhanced DICOM ------------------------
    ScanSpec("xa30_t1w_tfl_5", "git:dcm_qa_xa30", "git-dicom",
             "neurolabusc/dcm_qa_xa30:In/5_anat-T1w_acq-tfl", REPO_LICENCES["neurolabusc/dcm_qa_xa30"],
             "T1w", face="intact", skull="intact", subject="xa30-volunteer",
             notes="2 mm MPRAGE (tfl), enhanced DICOM"),
    ScanSpec("xa30_t1w_tfl_6", "git:dcm_qa_xa30", "git-dicom",
             "neurolabusc/dcm_qa_xa30:In/6_anat-T1w_acq-tfl", REPO_LICENCES["neurolabusc/dcm_qa_xa30"],
             "T1w", face="intact", skull="intact", subject="xa30-volunteer",
             notes="second reconstruction of the same acquisition (zero-clipped background)"),
    # --- neurolabusc/dcm_qa_decubitus: Siemens Prisma 2D sagittal T1 -----------------------
    ScanSpec("decubitus_t1_sag_hfs", "git:dcm_qa_decubitus", "git-dicom",
             "neurolabusc/dcm_qa_decubitus:In/HFS/3_t1_fl2d_sag",
             REPO_LICENCES["neurolabusc/dcm_qa_decubitus"], "T1w", face="intact", skull="intact",
             subject="decubitus-volunteer", notes="2D FLASH, 4.8 mm sagittal slices, head first supine"),
    ScanSpec("decubitus_t1_sag_hfp", "git:dcm_qa_decubitus", "git-dicom",
             "neurolabusc/dcm_qa_decubitus:In/HFP/2_t1_fl2d_sag",
             REPO_LICENCES["neurolabusc/dcm_qa_decubitus"], "T1w", face="intact", skull="intact",
             subject="decubitus-volunteer", notes="same sequence, head first prone"),
    # --- niivue/niivue-demo-images ----------------------------------------------------------
    ScanSpec("chris_t1", "git:niivue-demo-images", "git", f"{_NV}:chris_t1.nii.gz", CHRIS,
             "T1w", face="partial", skull="intact", subject="chris",
             notes="0.88 mm, uint8; the field of view clips the nose"),
    ScanSpec("chris_pd", "git:niivue-demo-images", "git", f"{_NV}:chris_PD.nii.gz", CHRIS,
             "PDw", face="partial", skull="intact", subject="chris",
             notes="2.4 mm axial slab, vertex to orbits"),
    ScanSpec("mr_gd_stripped", "git:niivue-demo-images", "git", f"{_NV}:MR_Gd.nii.gz",
             "figshare 7472168 'Skull-stripped Contrast-Enhanced MRI Datasets' (README)",
             "T1w-CE", face="none", skull="stripped", subject="mr-gd", notes="float64"),
    ScanSpec("m2208_t2w_brain", "git:niivue-demo-images", "git", f"{_NV}:M2208_T2w.nii.gz",
             REPO_LICENCES[_NV] + "; origin not stated", "T2w", face="none", skull="stripped",
             subject="m2208", notes="brain-only T2w, uint8"),
    ScanSpec("t1_head_neck", "git:niivue-demo-images", "git", f"{_NV}:register/T1_head_ext2.nii.gz",
             REPO_LICENCES[_NV] + "; origin not stated", "T1w", face="intact", skull="intact",
             subject="register-t1", notes="1.6 mm, head with neck"),
    ScanSpec("t2w_head", "git:niivue-demo-images", "git", f"{_NV}:register/T2w.nii.gz",
             REPO_LICENCES[_NV] + "; origin not stated", "T2w", face="partial", skull="intact",
             subject="register-t2", notes="2 mm axial slab down to the upper face, int16, noisy air"),
    ScanSpec("siemens_t1_mpr_1994", "git:niivue-demo-images", "git-dicom", f"{_NV}:dicom",
             REPO_LICENCES[_NV] + "; origin not stated", "T1w", face="partial", skull="intact",
             subject="dicom-1994", vendor="Siemens",
             notes="1994 MPRAGE, 512 x 512 interpolated, skin fiducial markers"),
    # --- niivue/niivue demo images ----------------------------------------------------------
    ScanSpec("freesurfer_brainmask", "git:niivue", "git", f"{_NVD}/fs/brainmask.mgz",
             REPO_LICENCES["niivue/niivue"] + "; origin not stated", "T1w", face="none",
             skull="stripped", subject="freesurfer-subject",
             notes="FreeSurfer brainmask.mgz: conformed 1 mm 256^3, intensity-normalised T1"),
    # --- neurolabusc/dcm_qa_philips_enh: Philips Ingenia Elition X, classic DICOM ----------
    ScanSpec("philips_adni_mprage", "git:dcm_qa_philips_enh", "git-dicom",
             "neurolabusc/dcm_qa_philips_enh:In/cl/1301_*",
             REPO_LICENCES["neurolabusc/dcm_qa_philips_enh"], "T1w", face="intact",
             skull="intact", subject="philips-volunteer",
             notes="ADNI sagittal 3D MPRAGE, 1 mm, gzipped classic DICOM"),
    # --- neurolabusc/VolumeRenderingData ------------------------------------------------------
    ScanSpec("stroke_t1_brain", "git:VolumeRenderingData", "git", f"{_VRD}:stroke/T1.nii.gz",
             _STROKE, "T1w", face="none", skull="stripped", subject="cstar-stroke",
             notes="chronic left-hemisphere stroke; brain-extracted, 8-bit"),
    ScanSpec("stroke_t2_brain", "git:VolumeRenderingData", "git", f"{_VRD}:stroke/T2.nii.gz",
             _STROKE, "T2w", face="none", skull="stripped", subject="cstar-stroke",
             notes="same subject as stroke_t1_brain"),
    ScanSpec("stroke_flair_brain", "git:VolumeRenderingData", "git",
             f"{_VRD}:stroke/FLAIR.nii.gz", _STROKE, "FLAIR", face="none", skull="stripped",
             subject="cstar-stroke", notes="same file as niivue's demos/images/FLAIR.nii.gz"),
    ScanSpec("seg3d_t1_head", "git:VolumeRenderingData", "git", f"{_VRD}:seg3D/MR.nii.gz",
             "MIT (Seg3DData, SCI Institute, University of Utah)", "T1w", face="partial",
             skull="intact", subject="seg3d-patient",
             notes="clinical T1w with subdural grid electrodes; cropped below the orbits, uint8"),
)


def background_kind(border_zero_fraction: float) -> str:
    """``"zero"`` when at least 95 % of the outer border voxels are exactly 0, else ``"air"``."""
    return "zero" if border_zero_fraction >= 0.95 else "air"
