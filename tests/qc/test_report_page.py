"""Gallery selection and the HTML page (structure, escaping, self-containment, scale)."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import pyarrow as pa

from manifests.schema import ImageRecord, records_to_table
from qc.report.aggregate import prepare
from qc.report.gallery import select, showable_mask
from qc.report.page import PageOptions, render_html, render_report
from qc.thumbnails import showable
from qc.report.synthetic import synthetic_table


class _Collect(HTMLParser):
    """Tags with attributes, and the text inside elements with an id."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _parse(page: str) -> _Collect:
    parser = _Collect()
    parser.feed(page)
    return parser


def _excluded_payload(page: str) -> dict:
    match = re.search(r'<script type="application/json" id="excluded-data">(.*?)</script>', page, re.S)
    assert match, "excluded-files data missing"
    return json.loads(match.group(1))


def test_worst_and_best_follow_iqs_and_do_not_overlap() -> None:
    data = prepare(synthetic_table(3000, seed=1, n_datasets=30))
    gallery = select(data.frame, worst_n=5, best_n=5, per_modality=2, max_dwi_series=3)
    worst, best = gallery.worst["iqs"].tolist(), gallery.best["iqs"].tolist()
    shown = data.frame[showable_mask(data.frame)].dropna(subset=["iqs"])
    assert worst == sorted(shown["iqs"], reverse=True)[:5]
    assert best == sorted(shown["iqs"])[:5]
    assert not set(gallery.worst["image_id"]) & set(gallery.best["image_id"])


def test_few_scored_images_are_shared_between_worst_and_best() -> None:
    frame = prepare(synthetic_table(3000, seed=1, n_datasets=30)).frame
    scored = frame[showable_mask(frame) & frame["iqs"].notna()].head(7)
    gallery = select(scored, worst_n=12, best_n=12, per_modality=0, max_dwi_series=0)
    assert (len(gallery.worst), len(gallery.best)) == (4, 3)
    assert gallery.worst["iqs"].min() >= gallery.best["iqs"].max()


def test_showable_vectorised_agrees_with_the_rule_per_row() -> None:
    table = synthetic_table(2000, seed=2, n_datasets=20)
    frame = prepare(table).frame
    expected = [showable(r["included"], r["modality"], r["exclusion_reasons"])
                for r in table.select(["included", "modality", "exclusion_reasons"]).to_pylist()]
    assert showable_mask(frame).tolist() == expected


def test_dwi_series_show_the_series_then_its_maps_and_sampling_is_seeded() -> None:
    frame = prepare(synthetic_table(3000, seed=4, n_datasets=30, dwi_series=10)).frame
    gallery = select(frame, 0, 0, per_modality=3, max_dwi_series=4, seed=7)
    assert len(gallery.dwi) == 4
    for group in gallery.dwi:
        assert group["modality"].tolist() == ["DWI", "T2w", "FA", "MD"]
        assert group["derived_from"].iloc[1:].nunique() == 1
    assert gallery.samples.groupby("modality").size().max() <= 3
    again = select(frame, 0, 0, per_modality=3, max_dwi_series=4, seed=7)
    assert again.samples["image_id"].tolist() == gallery.samples["image_id"].tolist()


def test_page_shows_the_counts_and_embeds_everything() -> None:
    table = synthetic_table(1500, seed=5, n_datasets=12, dwi_series=3)
    data = prepare(table)
    gallery = select(data.frame, 4, 4, 2, 3)
    page = render_html(data, gallery, available=set(gallery.image_ids()),
                       options=PageOptions(iqs_threshold=3.0, max_table_rows=50))
    tags = _parse(page).tags
    sources = [a["src"] for t, a in tags if t in ("img", "script") and a.get("src")]
    assert sources and all(s.startswith(("data:image/svg+xml;base64,", "thumbs/")) for s in sources)
    assert not [a for t, a in tags if t == "link"]  # no external stylesheet
    n_included = int(data.frame["included"].sum())
    assert re.search(rf'<tr data-key="included"><td>included</td><td class="num" data-col="images">'
                     rf"{n_included:,}</td>", page)
    payload = _excluded_payload(page)
    assert payload["total"] == int((~data.frame["included"]).sum()) and len(payload["rows"]) == 50
    thumbs = [a for t, a in tags if t == "img" and "thumb" in (a.get("class") or "")]
    assert len(thumbs) == len([i for g in [gallery.worst, gallery.best, *gallery.dwi, gallery.samples]
                               for i in g["image_id"]])
    assert 'id="iqs-table"' in page and "Images with IQS above 3 are excluded." in page


def test_manifest_text_is_escaped() -> None:
    evil = "</script><script>alert(1)</script>"
    records = [ImageRecord(image_id="a1", dataset=evil, source_kind="nifti", source_path=evil,
                           modality="T1w", included=False, exclusion_reasons=("size",),
                           exclusion_detail=evil)]
    page = render_report(records_to_table(records), available={"a1"})
    assert "<script>alert(1)" not in page
    assert _excluded_payload(page)["rows"][0][0] == evil  # intact once parsed


def test_missing_iqs_and_missing_thumbnails_are_said_not_hidden() -> None:
    table = synthetic_table(400, seed=6, n_datasets=5, with_iqs=False)
    page = render_report(table, available=set())
    assert 'id="no-iqs"' in page and "No image has an IQS yet." in page
    assert 'class="missing"' in page and 'class="thumb"' not in page


def test_gallery_stays_bounded_on_a_large_manifest() -> None:
    table = synthetic_table(20000, seed=8, n_datasets=200, dwi_series=50)
    frame = prepare(table).frame
    gallery = select(frame, worst_n=12, best_n=12, per_modality=4, max_dwi_series=8)
    n_modalities = frame["modality"].nunique()
    assert len(gallery.image_ids()) <= 12 + 12 + 4 * 8 + 4 * n_modalities
    page = render_report(table, available=set(gallery.image_ids()),
                         options=PageOptions(max_table_rows=1000))
    assert len(page) < 3_000_000
    assert isinstance(table, pa.Table)
