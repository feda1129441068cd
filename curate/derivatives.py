"""Paths and metadata for BIDS-derivative outputs under ``OUTPUT/derivatives/``.

Every derivative of an image lives at
``derivatives/mri-curate/<dataset>/<entities path>/<stem>_desc-<desc>_<suffix>.nii.gz``
where ``<stem>`` is the source file name without its BIDS suffix, so outputs
sort next to each other and a person can find them from the source name.
"""

from __future__ import annotations

import re
from pathlib import Path

from manifests.schema import ImageRecord

from curate.io import strip_nifti_suffix, write_json

PIPELINE_NAME = "mri-curate"
_SAFE = re.compile(r"[^A-Za-z0-9._+-]")


def _stem_and_dir(record: ImageRecord) -> tuple[str, str]:
    if record.source_kind == "bids":
        directory, _, name = record.source_path.rpartition("/")
        stem = strip_nifti_suffix(name)
        if record.suffix and stem.endswith("_" + record.suffix):
            stem = stem[: -len(record.suffix) - 1]
        return stem, directory
    subject = _SAFE.sub("", record.subject or "unknown") or "unknown"
    return f"sub-{subject}_id-{record.image_id}", f"sub-{subject}"


def derivative_path(record: ImageRecord, desc: str, suffix: str, ext: str = ".nii.gz") -> str:
    """Path, relative to OUTPUT, of one derivative of ``record``.

    Examples
    --------
    >>> r = ImageRecord(image_id="abc", dataset="ds1", source_kind="bids", modality="DWI",
    ...                 source_path="sub-01/dwi/sub-01_dwi.nii.gz", suffix="dwi")
    >>> derivative_path(r, "dtifit", "FA")
    'derivatives/mri-curate/ds1/sub-01/dwi/sub-01_desc-dtifit_FA.nii.gz'
    """
    stem, directory = _stem_and_dir(record)
    dataset = _SAFE.sub("_", record.dataset)
    desc_part = f"_desc-{desc}" if desc else ""
    parts = ["derivatives", PIPELINE_NAME, dataset] + ([directory] if directory else [])
    return "/".join(parts + [f"{stem}{desc_part}_{suffix}{ext}"])


def ensure_dataset_description(output: Path, dataset: str, version: str = "0.1.0") -> None:
    """Write the derivative ``dataset_description.json`` for ``dataset`` once."""
    root = output / "derivatives" / PIPELINE_NAME / _SAFE.sub("_", dataset)
    path = root / "dataset_description.json"
    if path.exists():
        return
    write_json(path, {
        "Name": f"mri-curate derivatives of {dataset}",
        "BIDSVersion": "1.9.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": PIPELINE_NAME, "Version": version}],
        "SourceDatasets": [{"URL": dataset}],
    })
