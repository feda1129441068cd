"""Collection-level numbers for the dataset card, computed column-wise with pyarrow/pandas.

Everything here is one vectorised pass over the manifest, so a 100k-row
manifest aggregates in well under a second.  Functions take the frame made by
:func:`prepare` and return small pandas objects that the figures, the HTML
page and the terminal summary all share.

The curated collection is the *included* images (derived DWI maps count as
images, as in OpenMind); subjects are ``(dataset, subject)`` pairs and
sessions ``(dataset, subject, session)`` triples, a subject without session
labels counting as one session.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

#: Manifest columns the report reads (the list columns are turned into text).
COLUMNS = (
    "image_id", "dataset", "source_kind", "source_path", "modality", "subject", "session",
    "derived_from", "included", "exclusion_detail", "age", "sex", "manufacturer",
    "field_strength_t", "iqs", "anon_mask_path", "anatomy_mask_path", "converted_path",
    "derived_path",
)
#: Every manifest column the report and the terminal summary read.
READ_COLUMNS = (*COLUMNS, "exclusion_reasons")
#: Coverage marks on the cumulative-images curve (OpenMind Fig. 4).
COVERAGE_MARKS = (0.5, 0.75, 0.9)
_SEX_NAMES = {"m": "M", "male": "M", "f": "F", "female": "F", "o": "other", "other": "other"}


@dataclass(frozen=True, slots=True)
class ReportData:
    """The manifest as the report needs it.

    Attributes
    ----------
    frame
        One row per image: the :data:`COLUMNS` present in the manifest plus
        ``reasons`` (exclusion reasons joined by ``", "``, empty when included).
    reason_counts
        Images per exclusion reason, most frequent first (an image may have several).
    """

    frame: pd.DataFrame
    reason_counts: pd.Series


def prepare(table: pa.Table) -> ReportData:
    """Select the report's columns from a manifest table and count exclusion reasons."""
    present = [c for c in COLUMNS if c in table.column_names]
    frame = table.select(present).to_pandas()
    for column in COLUMNS:
        if column not in frame:
            frame[column] = None
    if "exclusion_reasons" in table.column_names and table.num_rows:
        lists = table.column("exclusion_reasons")
        frame["reasons"] = pc.binary_join(lists, ", ").to_pandas().fillna("").to_numpy()
        flat = pc.list_flatten(lists)
        counted = pc.value_counts(flat).to_pylist() if len(flat) else []
        reason_counts = pd.Series({d["values"]: d["counts"] for d in counted}, dtype="int64")
    else:
        frame["reasons"] = ""
        reason_counts = pd.Series(dtype="int64")
    frame["included"] = frame["included"].fillna(False).astype(bool)
    reason_counts = reason_counts.sort_values(ascending=False, kind="stable")
    return ReportData(frame=frame, reason_counts=reason_counts)


def _n_unique(frame: pd.DataFrame, columns: list[str]) -> int:
    keys = frame[columns].dropna(subset=["subject"])
    if "session" in columns:
        keys = keys.fillna({"session": ""})
    return int(len(keys.drop_duplicates()))


def card(frame: pd.DataFrame) -> pd.DataFrame:
    """Images, subjects, sessions and datasets, for all indexed images and for the included ones.

    Examples
    --------
    >>> f = pd.DataFrame({"dataset": ["a", "a", "b"], "subject": ["1", "1", "1"],
    ...                   "session": [None, None, "x"], "included": [True, False, True]})
    >>> card(f).loc["included"].tolist()
    [2, 2, 2, 2]
    """
    rows = {}
    for label, part in (("all indexed", frame), ("included", frame[frame["included"]])):
        rows[label] = {
            "images": int(len(part)),
            "subjects": _n_unique(part, ["dataset", "subject"]),
            "sessions": _n_unique(part, ["dataset", "subject", "session"]),
            "datasets": int(part["dataset"].nunique()),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def modality_counts(frame: pd.DataFrame) -> pd.DataFrame:
    """Images, included and excluded per modality, most images first."""
    if frame.empty:
        return pd.DataFrame(columns=["images", "included", "excluded"], dtype="int64")
    grouped = frame.groupby("modality", dropna=False)["included"].agg(["size", "sum"])
    out = pd.DataFrame({"images": grouped["size"].astype("int64"),
                        "included": grouped["sum"].astype("int64")})
    out["excluded"] = out["images"] - out["included"]
    out.index = out.index.fillna("unknown")
    return out.sort_values(["images"], ascending=False, kind="stable")


def dataset_cumulative(frame: pd.DataFrame) -> pd.DataFrame:
    """Included images per dataset, largest first, with the cumulative fraction.

    Columns: ``images``, ``cumulative``, ``fraction`` (of all included images).
    """
    included = frame.loc[frame["included"], "dataset"]
    per = included.value_counts().sort_values(ascending=False, kind="stable")
    out = pd.DataFrame({"images": per.astype("int64")})
    out["cumulative"] = out["images"].cumsum()
    total = max(int(out["images"].sum()), 1)
    out["fraction"] = out["cumulative"] / total
    return out


def coverage(cumulative: pd.DataFrame, marks: tuple[float, ...] = COVERAGE_MARKS) -> dict[float, int]:
    """How many of the largest datasets hold each fraction in ``marks`` of the images."""
    fractions = cumulative["fraction"].to_numpy()
    if fractions.size == 0:
        return {}
    return {m: int(np.searchsorted(fractions, m - 1e-12) + 1) for m in marks}


def _normal_sex(values: pd.Series) -> pd.Series:
    lowered = values.dropna().astype(str).str.strip().str.lower()
    return lowered.map(lambda v: _SEX_NAMES.get(v, v or "unknown"))


def _normal_manufacturer(values: pd.Series, top: int) -> pd.Series:
    first = values.dropna().astype(str).str.strip().str.split().str[0].str.upper()
    first = first[first.notna() & (first != "")]
    counts = first.value_counts()
    if len(counts) > top:
        counts = pd.concat([counts.iloc[:top], pd.Series({"other": int(counts.iloc[top:].sum())})])
    return counts


def metadata(frame: pd.DataFrame, top: int = 10) -> dict[str, pd.Series]:
    """Metadata of the included images, only where present.

    Returns ``age`` (the values), and value counts for ``sex``,
    ``field_strength_t`` (rounded to 0.1 T) and ``manufacturer`` (first word,
    upper case, the ``top`` most common and ``other``).  Empty series are left out.
    """
    part = frame[frame["included"]]
    age = pd.to_numeric(part["age"], errors="coerce").dropna()
    field = pd.to_numeric(part["field_strength_t"], errors="coerce").dropna().round(1)
    out = {
        "age": age[(age >= 0) & (age < 130)],
        "sex": _normal_sex(part["sex"]).value_counts(),
        "field_strength_t": field.map(lambda v: f"{v:g} T").value_counts(),
        "manufacturer": _normal_manufacturer(part["manufacturer"], top),
    }
    return {name: series for name, series in out.items() if len(series)}


def exclusion_table(data: ReportData) -> pd.DataFrame:
    """Images per exclusion reason and their share of the excluded images."""
    n_excluded = int((~data.frame["included"]).sum())
    out = pd.DataFrame({"images": data.reason_counts.astype("int64")})
    out["share"] = out["images"] / max(n_excluded, 1)
    return out


def excluded_rows(frame: pd.DataFrame, limit: int) -> pd.DataFrame:
    """The excluded images (dataset, file, modality, reasons, detail), first ``limit`` in file order."""
    part = frame.loc[~frame["included"], ["dataset", "source_path", "modality", "reasons",
                                          "exclusion_detail"]]
    part = part.sort_values(["dataset", "source_path"], kind="stable").head(max(limit, 0))
    return part.rename(columns={"source_path": "file", "exclusion_detail": "detail"}).fillna("")


def iqs_by_modality(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The IQS values per modality (images without an IQS left out)."""
    scored = frame[["modality", "iqs"]].dropna()
    return {str(m): group["iqs"].to_numpy(dtype=float)
            for m, group in scored.groupby("modality", sort=True)}


def iqs_summary(frame: pd.DataFrame, threshold: float | None) -> pd.DataFrame:
    """Per modality: images with an IQS, median and worst IQS, and how many lie above ``threshold``."""
    scored = frame[["modality", "iqs"]].dropna()
    if scored.empty:
        return pd.DataFrame(columns=["scored", "median", "worst", "above threshold"])
    grouped = scored.groupby("modality", sort=True)["iqs"]
    out = pd.DataFrame({"scored": grouped.size().astype("int64"), "median": grouped.median(),
                        "worst": grouped.max()})
    if threshold is not None:
        out["above threshold"] = grouped.agg(lambda v: int((v > threshold).sum())).astype("int64")
    return out


__all__ = [
    "COLUMNS", "COVERAGE_MARKS", "READ_COLUMNS", "ReportData", "card", "coverage", "dataset_cumulative",
    "exclusion_table", "excluded_rows", "iqs_by_modality", "iqs_summary", "metadata", "modality_counts",
    "prepare",
]
