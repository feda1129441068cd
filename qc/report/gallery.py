"""Which images the QC gallery shows, chosen from the manifest frame.

The gallery never shows all images: the ``worst_n`` and ``best_n`` by IQS
(IQS 1 is best, 5 worst), every DWI series with its derived maps side by side
(up to ``max_dwi_series``), and a seeded random sample of ``per_modality``
images of each modality.  So a 100k-row manifest needs at most a few hundred
thumbnails.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field

import pandas as pd

from manifests.schema import ExclusionReason, Modality
from qc.thumbnails import SHOWABLE_ALONE, showable

#: Column order of a DWI series row: the series, then its maps.
DWI_ORDER = ("DWI", "T2w", "FA", "MD")


def showable_mask(frame: pd.DataFrame) -> pd.Series:
    """:func:`qc.thumbnails.showable` for every row of a :func:`~qc.report.aggregate.prepare` frame, vectorised."""
    reasons = frame["reasons"].fillna("")
    # Few distinct reason combinations exist: decide each once, then look up.
    verdict = {r: bool(r) and set(r.split(", ")) <= SHOWABLE_ALONE for r in reasons.unique()}
    alone = reasons.map(verdict).astype(bool)
    dwi = (frame["modality"] == Modality.DWI.value) & (reasons == ExclusionReason.MODALITY.value)
    return frame["included"] | dwi | alone


@dataclass(slots=True)
class Gallery:
    """The rows each gallery section shows (frames with the report's columns)."""

    worst: pd.DataFrame
    best: pd.DataFrame
    dwi: list[pd.DataFrame] = field(default_factory=list)
    samples: pd.DataFrame | None = None

    def image_ids(self) -> list[str]:
        """Every image shown, each once, in section order."""
        frames = [self.worst, self.best, *self.dwi]
        if self.samples is not None:
            frames.append(self.samples)
        ids = [i for f in frames for i in f["image_id"].tolist()]
        return list(dict.fromkeys(ids))


def _by_iqs(frame: pd.DataFrame, n: int, worst: bool) -> pd.DataFrame:
    scored = frame.dropna(subset=["iqs"])
    ordered = scored.sort_values(["iqs", "image_id"], ascending=[not worst, True], kind="stable")
    return ordered.head(max(n, 0))


def split_counts(n_scored: int, worst_n: int, best_n: int) -> tuple[int, int]:
    """How many worst and best to show when fewer than ``worst_n + best_n`` images are scored.

    The scored images are shared in proportion, so both sections show some.

    Examples
    --------
    >>> split_counts(100, 12, 12), split_counts(7, 12, 12), split_counts(1, 12, 12)
    ((12, 12), (4, 3), (1, 0))
    """
    worst_n, best_n = max(worst_n, 0), max(best_n, 0)
    if n_scored >= worst_n + best_n or worst_n + best_n == 0:
        return worst_n, best_n
    worst = min(worst_n, max(1 if worst_n else 0, round(n_scored * worst_n / (worst_n + best_n) + 1e-9)))
    return worst, min(best_n, n_scored - worst)


def dwi_series(frame: pd.DataFrame, limit: int) -> list[pd.DataFrame]:
    """Per DWI series, the series row (when present) and its derived rows in :data:`DWI_ORDER`."""
    derived = frame[frame["derived_from"].notna()]
    if derived.empty or limit <= 0:
        return []
    chosen = sorted(derived["derived_from"].unique())[:limit]
    derived = derived[derived["derived_from"].isin(chosen)]
    parents = frame[frame["image_id"].isin(chosen)]
    rank = {m: i for i, m in enumerate(DWI_ORDER)}
    groups = []
    for source_id in chosen:
        members = pd.concat([parents[parents["image_id"] == source_id],
                             derived[derived["derived_from"] == source_id]], ignore_index=True)
        order = members["modality"].map(lambda m: rank.get(m, len(DWI_ORDER)))
        groups.append(members.assign(_rank=order).sort_values(["_rank", "image_id"])
                      .drop(columns="_rank").reset_index(drop=True))
    return groups


def sample_per_modality(frame: pd.DataFrame, per_modality: int, seed: int) -> pd.DataFrame:
    """A seeded random sample of up to ``per_modality`` source images per modality."""
    modality = frame.loc[frame["derived_from"].isna(), "modality"]
    if modality.empty or per_modality <= 0:
        return frame.head(0)
    # Shuffle one column, not the whole frame: this runs on 100k-row manifests.
    shuffled = modality.sample(frac=1.0, random_state=seed)
    picked = shuffled.groupby(shuffled, sort=True).head(per_modality).index
    return frame.loc[picked].sort_values(["modality", "dataset", "source_path"], kind="stable")


def select(frame: pd.DataFrame, worst_n: int, best_n: int, per_modality: int,
           max_dwi_series: int, seed: int = 0) -> Gallery:
    """Choose the gallery's images among the showable rows of ``frame``."""
    shown = frame[showable_mask(frame)] if len(frame) else frame
    worst_n, best_n = split_counts(int(shown["iqs"].notna().sum()) if len(shown) else 0,
                                   worst_n, best_n)
    worst = _by_iqs(shown, worst_n, worst=True)
    rest = shown[~shown["image_id"].isin(worst["image_id"])]
    best = _by_iqs(rest, best_n, worst=False)
    return Gallery(worst=worst, best=best, dwi=dwi_series(shown, max_dwi_series),
                   samples=sample_per_modality(shown, per_modality, seed))


def _caption(row: pd.Series) -> str:
    parts = [str(row["modality"]), str(row["dataset"])]
    if pd.notna(row.get("iqs")):
        parts.append(f"IQS {float(row['iqs']):.2f}")
    if row.get("reasons"):
        parts.append(f"excluded: {row['reasons']}")
    return " \u00b7 ".join(parts)


def thumb_figure(row: pd.Series, available: set[str], thumbs_dir: str) -> str:
    """One gallery tile: the thumbnail (click for a larger view) or a placeholder."""
    caption = _caption(row)
    title = html.escape(str(row["source_path"]), quote=True)
    badges = "".join(f'<span class="badge">{name}</span>' for name, column in
                     (("anon", "anon_mask_path"), ("anat", "anatomy_mask_path"))
                     if isinstance(row.get(column), str) and row.get(column))
    if row["image_id"] in available:
        src = f"{thumbs_dir}/{row['image_id']}.png"
        full = html.escape(f"{caption} \u2014 {row['source_path']}", quote=True)
        body = (f'<img class="thumb" src="{html.escape(src, quote=True)}" alt="{title}" '
                f'data-caption="{full}" data-image-id="{row["image_id"]}">')
    else:
        body = f'<div class="missing" data-image-id="{row["image_id"]}">no thumbnail</div>'
    style = ' class="iqs-bad"' if "iqs" in str(row.get("reasons") or "").split(", ") else ""
    return (f'<figure title="{title}">{body}<figcaption{style}>{html.escape(caption)}{badges}'
            "</figcaption></figure>")


def _tiles(frame: pd.DataFrame, available: set[str], thumbs_dir: str) -> str:
    return "".join(thumb_figure(row, available, thumbs_dir) for _, row in frame.iterrows())


def gallery_html(gallery: Gallery, available: set[str], thumbs_dir: str = "thumbs") -> str:
    """The QC gallery section."""
    def block(ident: str, title: str, frame: pd.DataFrame, empty: str) -> str:
        inner = f'<div class="gallery">{_tiles(frame, available, thumbs_dir)}</div>' if len(frame) \
            else f'<p class="note">{empty}</p>'
        return f'<div id="{ident}"><h3>{title}</h3>{inner}</div>'

    scored = len(gallery.worst) + len(gallery.best)
    no_iqs = "No image has an IQS yet." if not scored else "No other image has an IQS."
    series = "".join(f'<div class="series">{_tiles(group, available, thumbs_dir)}</div>'
                     for group in gallery.dwi)
    samples = gallery.samples if gallery.samples is not None else gallery.worst.head(0)
    return (
        '<section id="gallery"><h2>QC gallery</h2><p class="note legend">Mid-slices: sagittal, '
        'coronal, axial (RAS, subject right on the right). Overlays: '
        '<span style="background:#e62828"></span>anonymization mask (changed by defacing or '
        'blurring) <span style="background:#28dc5a"></span>anatomy mask outline. Click a '
        'thumbnail for a larger view; link to one with <code>#view=IMAGE_ID</code>.</p>'
        + block("gallery-worst", f"Worst {len(gallery.worst) or ''} by IQS", gallery.worst, no_iqs)
        + block("gallery-best", f"Best {len(gallery.best) or ''} by IQS", gallery.best, no_iqs)
        + '<div id="gallery-dwi"><h3>DWI series and derived maps (T2w, FA, MD)</h3>'
        + (series or '<p class="note">No DWI-derived maps in this build.</p>') + "</div>"
        + block("gallery-sample", "Random sample per modality", samples, "No images to show.")
        + "</section>"
    )


__all__ = ["DWI_ORDER", "Gallery", "dwi_series", "gallery_html", "sample_per_modality", "select",
           "showable", "showable_mask", "split_counts", "thumb_figure"]
