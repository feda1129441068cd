"""Files in a clinical export that are neither NIfTI nor DICOM.

Hospital and lab exports hold more than DICOM and NIfTI: Philips PAR/REC,
Analyze or NIfTI ``.hdr``/``.img`` pairs, FreeSurfer MGH, MINC, NRRD,
archives, documents.  mri-curate reads none of these, but an image is never
dropped silently: each image file in a known format gets a manifest row,
excluded as ``unreadable`` with what to do about it (convert it), and every
other file that is skipped is counted in one warning.
"""

from __future__ import annotations

import os
from pathlib import Path

from manifests.schema import ExclusionReason, ImageRecord, Modality, SourceKind, make_image_id

from curate.discover import display_path

#: Image formats met in exports, by extension: (format name, what to do).  The
#: second extension of a pair (``.rec``, ``.img``) is the data file of the first.
IMAGE_FORMATS = {
    ".par": ("Philips PAR/REC", "convert it with dcm2niix (dcm2niix handles PAR/REC) and curate the NIfTI"),
    ".hdr": ("Analyze/NIfTI .hdr/.img pair", "convert it to .nii.gz (e.g. nibabel) and curate that"),
    ".mgz": ("FreeSurfer MGH", "convert it to .nii.gz (mri_convert or nibabel) and curate that"),
    ".mgh": ("FreeSurfer MGH", "convert it to .nii.gz (mri_convert or nibabel) and curate that"),
    ".mnc": ("MINC", "convert it to .nii.gz (mnc2nii or nibabel) and curate that"),
    ".nrrd": ("NRRD", "convert it to .nii.gz (SimpleITK) and curate that"),
    ".nhdr": ("NRRD", "convert it to .nii.gz (SimpleITK) and curate that"),
    ".mha": ("MetaImage", "convert it to .nii.gz (SimpleITK) and curate that"),
    ".mhd": ("MetaImage", "convert it to .nii.gz (SimpleITK) and curate that"),
}
#: Data files that belong to a header file above: ``.rec`` to ``.par``, ``.img`` to ``.hdr``.
PAIRED_DATA = {".rec": ".par", ".img": ".hdr", ".raw": ".mhd"}
#: Suffixes of files that are never images: not offered to any reader, not counted.
NOT_IMAGES = frozenset({".txt", ".md", ".rst", ".csv", ".tsv", ".pdf", ".html", ".xml", ".log", ".py",
                        ".m", ".json", ".icc", ".dump", ".bval", ".bvec"})
#: Extension-less names that are never images (``DICOMDIR`` indexes a DICOM tree; it holds no pixels).
NOT_IMAGE_NAMES = frozenset({"dicomdir", "readme", "license", "changes"})
ARCHIVES = (".zip", ".tar", ".tgz", ".gz", ".bz2", ".xz", ".7z")


def never_an_image(rel: str) -> bool:
    """True for documents and indexes that no image reader needs to open.

    Examples
    --------
    >>> never_an_image("export/README.txt"), never_an_image("IM0001")
    (True, False)
    """
    name = os.path.basename(rel).lower()
    return os.path.splitext(name)[1] in NOT_IMAGES or name in NOT_IMAGE_NAMES


def _suffix(rel: str) -> str:
    return os.path.splitext(rel)[1].lower()


def other_format_rows(dataset: str, root: Path, rels: list[str]) -> tuple[list[ImageRecord], list[str]]:
    """Rows for the image files among ``rels`` in formats not read here, and the files left over.

    A pair (``.par``+``.rec``, ``.hdr``+``.img``) is one image with one row; a
    data file without its header file is a row of its own.
    """
    present = {rel.lower() for rel in rels}
    rows: list[ImageRecord] = []
    rest: list[str] = []
    for rel in rels:
        suffix = _suffix(rel)
        header_suffix = PAIRED_DATA.get(suffix)
        if header_suffix is not None and (rel[: -len(suffix)] + header_suffix).lower() in present:
            continue  # the data file of a pair: its header file has the row
        if suffix in IMAGE_FORMATS:
            name, action = IMAGE_FORMATS[suffix]
        elif header_suffix is not None and header_suffix in IMAGE_FORMATS:
            name, action = IMAGE_FORMATS[header_suffix]
            action = f"its {header_suffix} header file is missing; {action}"
        else:
            rest.append(rel)
            continue
        rows.append(_unread_row(dataset, root, rel, f"{name} is not read by mri-curate: {action}"))
    return rows, rest


def _unread_row(dataset: str, root: Path, rel: str, detail: str) -> ImageRecord:
    try:
        stat = os.stat(root / rel)
        size, mtime = stat.st_size, stat.st_mtime_ns
    except OSError:
        size, mtime = None, None
    return ImageRecord(
        image_id=make_image_id(dataset, rel), dataset=dataset, source_kind=SourceKind.NIFTI.value,
        source_path=display_path(rel), modality=Modality.OTHER.value, file_size_bytes=size,
        source_mtime_ns=mtime,
    ).excluded_for(ExclusionReason.UNREADABLE.value, detail=detail)


def skipped_files_warning(rels: list[str]) -> list[str]:
    """One warning counting the files skipped as neither NIfTI, DICOM nor a known image format."""
    counts: dict[str, int] = {}
    for rel in rels:
        key = _suffix(rel) or "(no extension)"
        counts[key] = counts.get(key, 0) + 1
    if not counts:
        return []
    parts = [f"{suffix} x{n}" + (" (an archive: unpack it to curate its contents)" if suffix in ARCHIVES else "")
             for suffix, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]
    total = sum(counts.values())
    return [f"{total} file{'s' if total != 1 else ''} skipped, neither an image nor a document: "
            + ", ".join(parts)]
