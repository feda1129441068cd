"""Real-looking DICOM series for the DICOM tests, cut from the MNI152 T1 template.

Slices are sampled from nilearn's MNI152 T1 along any orientation (sagittal,
coronal, oblique, gantry-tilted) and written with pydicom's MR_small.dcm
headers; enhanced multi-frame objects and bare header records are built here too.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid
from scipy.ndimage import map_coordinates

from curate.dicom import DicomFileHeader

AXIAL = (np.array([1.0, 0, 0]), np.array([0, 1.0, 0]))
SAGITTAL = (np.array([0, 1.0, 0]), np.array([0, 0, -1.0]))
CORONAL = (np.array([1.0, 0, 0]), np.array([0, 0, -1.0]))
_C, _S = np.cos(np.deg2rad(20)), np.sin(np.deg2rad(20))
OBLIQUE = (AXIAL[0], np.array([0, _C, _S]))
LPS = np.diag([-1.0, -1.0, 1.0])
N, PIXEL, SLICE, SLICES = 72, 3.0, 4.0, 24
PRIMARY = ["ORIGINAL", "PRIMARY", "M", "NONE"]
TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


class Mni:
    """The MNI T1 template and a sampler at LPS world coordinates."""

    def __init__(self, img: nib.Nifti1Image) -> None:
        data = np.asarray(img.dataobj, dtype=np.float32)
        self.data = data / data.max() * 1000
        self.inverse = np.linalg.inv(img.affine)

    def at_ras(self, ras: np.ndarray) -> np.ndarray:
        vox = self.inverse[:3, :3] @ ras + self.inverse[:3, 3:4]
        return map_coordinates(self.data, vox, order=1, cval=0)

    def planes(self, rowdir: np.ndarray, coldir: np.ndarray, shear: float = 0.0,
               n_slices: int = SLICES) -> list[tuple[np.ndarray, np.ndarray]]:
        """(ImagePositionPatient, int16 plane) of slices centred on the brain."""
        normal = np.cross(rowdir, coldir)
        centre = np.array([0.0, 18.0, 10.0])
        r, c = np.mgrid[0:N, 0:N]
        out = []
        for k in range(n_slices):
            off = k - (n_slices - 1) / 2
            origin = (centre - (rowdir + coldir) * PIXEL * (N - 1) / 2 + normal * SLICE * off
                      + coldir * shear * off)
            lps = origin[:, None, None] + rowdir[:, None, None] * c * PIXEL + coldir[:, None, None] * r * PIXEL
            plane = self.at_ras(LPS @ lps.reshape(3, -1)).reshape(N, N)
            out.append((origin, np.round(plane).astype(np.int16)))
        return out


def write_series(folder: Path, planes, orientation, template: Path, description: str, uid: str | None = None,
           names=None, numbers=True, edit=None) -> str:
    """One series, a file per slice, headers from ``template``."""
    uid = generate_uid() if uid is None else uid
    for i, (position, plane) in enumerate(planes):
        ds = pydicom.dcmread(template)
        ds.Rows, ds.Columns = plane.shape
        ds.PixelData = plane.tobytes()
        ds.PixelSpacing, ds.SliceThickness = [PIXEL, PIXEL], SLICE
        ds.ImagePositionPatient = [round(float(v), 4) for v in position]
        ds.ImageOrientationPatient = [round(float(v), 6) for v in (*orientation[0], *orientation[1])]
        ds.SeriesInstanceUID, ds.SOPInstanceUID = uid, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesDescription, ds.ImageType, ds.PatientID = description, PRIMARY, "P001"
        ds.SmallestImagePixelValue, ds.LargestImagePixelValue = int(plane.min()), int(plane.max())
        del ds.SliceLocation
        if numbers:
            ds.InstanceNumber = i + 1
        else:
            del ds.InstanceNumber
        if edit is not None:
            edit(ds, i)
        path = folder / (names(i) if names else f"IM{i + 1:04d}.dcm")
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path, enforce_file_format=True)
    return uid


def write_enhanced(path: Path, planes, template: Path) -> None:
    """An enhanced MR object: one file, a frame per slice, geometry in functional groups."""
    ds = pydicom.dcmread(template)
    for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing", "SliceThickness",
                    "SliceLocation"):
        delattr(ds, keyword)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4.1"
    ds.NumberOfFrames, (ds.Rows, ds.Columns) = len(planes), planes[0][1].shape
    ds.PixelData = b"".join(p.tobytes() for _, p in planes)
    measures, orientation, shared = Dataset(), Dataset(), Dataset()
    measures.PixelSpacing, measures.SliceThickness = [PIXEL, PIXEL], SLICE
    orientation.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = Sequence([measures]), Sequence([orientation])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for position, _ in planes:
        frame, plane_position = Dataset(), Dataset()
        plane_position.ImagePositionPatient = [float(v) for v in position]
        frame.PlanePositionSequence = Sequence([plane_position])
        frames.append(frame)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.SeriesInstanceUID, ds.SOPInstanceUID = generate_uid(), generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesDescription, ds.ImageType = "T1 3D enhanced", PRIMARY
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def header_slice(n: int, sop: str, z: float) -> "DicomFileHeader":
    from curate.dicom import DicomFileHeader

    fields = (("Rows", 64), ("Columns", 64), ("PixelSpacing", (4.0, 4.0)), ("Modality", "MR"),
              ("SeriesDescription", "T1 MPRAGE"), ("ImageOrientationPatient", (1.0, 0, 0, 0, 1.0, 0)),
              ("ImagePositionPatient", (0.0, 0.0, z)), ("InstanceNumber", float(n)), ("SOPInstanceUID", sop))
    return DicomFileHeader(f"s/{n:03d}", 100_000, 0, "1.2.3", None, fields)


__all__ = ["AXIAL", "CORONAL", "LPS", "N", "OBLIQUE", "PIXEL", "PRIMARY", "SAGITTAL", "SLICE", "SLICES",
           "TEST_FILES", "Mni", "header_slice", "write_enhanced", "write_series"]
