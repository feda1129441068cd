"""A second converter for single-volume series that dcm2niix fails on or splits apart.

dcm2niix starts a new image whenever slices differ in values it takes to mark
a new acquisition, StudyTime and AcquisitionTime among them; some research
tools and anonymizers write a different time on every slice, and dcm2niix then
writes a one-slice image per file.  When the headers agree on one regular
geometry (the index found no missing slices, mixed orientations or matrix
sizes, and one volume), the slices are one image: SimpleITK's GDCM series
reader orders them by position along the slice normal (``gdcm::IPPSorter``)
and stacks them, and the row says so in ``warnings``.
"""

from __future__ import annotations

import os
from pathlib import Path

from curate.io import UnreadableImage, temp_beside


def _ordered_files(folder: Path, files: list[Path]) -> list[str]:
    """``files`` ordered along the slice normal by GDCM (the folder holds this series only)."""
    import SimpleITK as sitk

    ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if len(ids) == 1:
        ordered = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), ids[0])
        if len(ordered) == len(files):
            return list(ordered)
    return [str(f) for f in files]


def stack_series(folder: Path, files: list[Path], target: Path, expected_slices: int) -> Path:
    """Read ``files`` (all in ``folder``) as one volume with SimpleITK and write ``target`` (.nii.gz).

    Raises
    ------
    UnreadableImage
        When SimpleITK cannot read the slices or makes other than
        ``expected_slices`` slices of them.
    """
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(_ordered_files(folder, files))
    try:
        image = reader.Execute()
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise UnreadableImage(f"SimpleITK series reader: {first}") from exc
    if image.GetDimension() != 3 or image.GetSize()[2] != expected_slices:
        raise UnreadableImage(f"SimpleITK series reader made {image.GetSize()} of {len(files)} files, "
                              f"the headers describe {expected_slices} slices")
    tmp = temp_beside(target)
    tmp = tmp.with_name(tmp.name + ".nii.gz")  # SimpleITK picks the format from the name
    try:
        sitk.WriteImage(image, str(tmp), useCompression=True)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


__all__ = ["stack_series"]
