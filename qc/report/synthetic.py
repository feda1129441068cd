"""A synthetic manifest of any size, for the report's scale tests and benchmark.

Only the distributions matter (datasets of very unequal size, a mix of
modalities, exclusions, metadata present for some rows, IQS on a 1-5 scale,
DWI series with derived FA/MD/T2w rows); no image files exist behind it.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from manifests.schema import ARROW_SCHEMA, ExclusionReason, make_image_id

_MODALITIES = np.array(["T1w", "T2w", "FLAIR", "PDw", "T2starw", "angio", "SWI", "DWI", "BOLD"])
_MODALITY_P = np.array([0.34, 0.2, 0.1, 0.04, 0.04, 0.03, 0.03, 0.07, 0.15])
_MANUFACTURERS = np.array(["SIEMENS", "Siemens Healthineers", "GE MEDICAL SYSTEMS", "Philips",
                           "Philips Medical Systems", "Toshiba", "Hitachi"])
_REASONS = np.array([r.value for r in ExclusionReason if r is not ExclusionReason.MODALITY])


def _sizes(n_rows: int, n_datasets: int, rng: np.random.Generator) -> np.ndarray:
    weights = 1.0 / np.arange(1, n_datasets + 1) ** 1.1  # a few big datasets, a long tail
    return rng.choice(n_datasets, size=n_rows, p=weights / weights.sum())


def _base_columns(n_rows: int, n_datasets: int, rng: np.random.Generator, with_iqs: bool) -> dict[str, list]:
    dataset_idx = np.sort(_sizes(n_rows, n_datasets, rng))
    datasets = [f"ds{d:05d}" for d in dataset_idx]
    subjects = [f"{s:04d}" for s in rng.integers(0, max(2, n_rows // 4), n_rows)]
    sessions = np.where(rng.random(n_rows) < 0.3, "1", None)
    modality = rng.choice(_MODALITIES, size=n_rows, p=_MODALITY_P)
    paths = [f"sub-{s}/anat/sub-{s}_run-{i}_{m}.nii.gz" for i, (s, m) in enumerate(zip(subjects, modality))]
    excluded = rng.random(n_rows) < 0.12
    reasons = [[str(rng.choice(_REASONS))] if e else [] for e in excluded]
    reasons = [["modality"] if m in ("DWI", "BOLD") else r for r, m in zip(reasons, modality)]
    has_meta = rng.random(n_rows) < 0.6
    iqs = np.round(np.clip(rng.gamma(2.0, 0.6, n_rows) + 1.0, 1.0, 5.0), 2)
    return {
        "image_id": [make_image_id(d, p) for d, p in zip(datasets, paths)],
        "dataset": datasets, "source_kind": ["bids"] * n_rows, "source_path": paths,
        "modality": modality.tolist(), "subject": subjects, "session": sessions.tolist(),
        "included": [not r for r in reasons], "exclusion_reasons": reasons,
        "exclusion_detail": [f"synthetic {r[0]} failure" if r else None for r in reasons],
        "age": np.where(has_meta, np.round(rng.normal(45, 18, n_rows).clip(1, 95), 1), np.nan).tolist(),
        "sex": np.where(has_meta, rng.choice(["M", "F", "male", "female"], n_rows), None).tolist(),
        "manufacturer": np.where(has_meta, rng.choice(_MANUFACTURERS, n_rows), None).tolist(),
        "field_strength_t": np.where(has_meta, rng.choice([1.5, 3.0, 7.0], n_rows, p=[0.3, 0.65, 0.05]),
                                     np.nan).tolist(),
        "iqs": (iqs if with_iqs else np.full(n_rows, np.nan)).tolist(),
    }


def _derived_columns(base: dict[str, list], max_series: int) -> dict[str, list]:
    """FA, MD and T2w rows for the first DWI series."""
    rows: dict[str, list] = {name: [] for name in base}
    rows["derived_from"] = []
    dwi = [i for i, m in enumerate(base["modality"]) if m == "DWI"][:max_series]
    for i in dwi:
        for suffix in ("T2w", "FA", "MD"):
            for name in base:
                rows[name].append(base[name][i])
            rows["image_id"][-1] = make_image_id(base["image_id"][i], suffix)
            rows["modality"][-1] = suffix
            rows["included"][-1] = True
            rows["exclusion_reasons"][-1] = []
            rows["exclusion_detail"][-1] = None
            rows["derived_from"].append(base["image_id"][i])
    return rows


def synthetic_table(n_rows: int, seed: int = 0, n_datasets: int = 800, with_iqs: bool = True,
                    dwi_series: int = 200) -> pa.Table:
    """A manifest table with :data:`~manifests.schema.ARROW_SCHEMA` and about ``n_rows`` rows.

    Examples
    --------
    >>> t = synthetic_table(500, n_datasets=20, dwi_series=5)
    >>> t.num_rows, t.schema.equals(ARROW_SCHEMA, check_metadata=False)
    (515, True)
    """
    rng = np.random.default_rng(seed)
    base = _base_columns(n_rows, n_datasets, rng, with_iqs)
    base["age"] = [None if a != a else a for a in base["age"]]
    base["field_strength_t"] = [None if v != v else v for v in base["field_strength_t"]]
    base["iqs"] = [None if v != v else v for v in base["iqs"]]
    derived = _derived_columns(base, dwi_series)
    columns = {name: base[name] + derived[name] for name in base}
    n_total = n_rows + len(derived["image_id"])
    columns["derived_from"] = [None] * n_rows + derived["derived_from"]
    arrays = [pa.array(columns[f.name], f.type) if f.name in columns else pa.nulls(n_total, f.type)
              for f in ARROW_SCHEMA]
    return pa.Table.from_arrays(arrays, schema=ARROW_SCHEMA)


__all__ = ["synthetic_table"]
