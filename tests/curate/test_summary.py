"""The terminal summary (end of a build, ``curate status``) agrees with the report's numbers."""

from __future__ import annotations

import io

from rich.console import Console

from manifests.schema import ImageRecord
from qc.report import aggregate as agg

from curate import summary


def _records() -> list[ImageRecord]:
    rows = []
    for i, (modality, reasons, iqs) in enumerate([("T1w", (), 1.5), ("T1w", ("iqs",), 4.5),
                                                  ("FLAIR", (), 2.0), ("BOLD", ("modality",), None)]):
        rows.append(ImageRecord(image_id=f"i{i}", dataset="ds", source_kind="bids",
                                source_path=f"sub-{i}/x.nii.gz", modality=modality, subject=str(i),
                                included=not reasons, exclusion_reasons=reasons, iqs=iqs))
    return rows


def test_counts_match_the_records() -> None:
    by_modality, included, reasons = summary.counts(_records())
    assert by_modality == {"T1w": 2, "FLAIR": 1, "BOLD": 1}
    assert included == {"T1w": 1, "FLAIR": 1}
    assert reasons == {"iqs": 1, "modality": 1}


def test_render_prints_card_modalities_reasons_and_iqs() -> None:
    out = io.StringIO()
    summary.render_table(summary.summary_table(_records()), Console(file=out, width=120),
                         title="demo", iqs_threshold=3.0, notes=["report: somewhere"])
    text = out.getvalue()
    assert "demo: 4 images, 2 included" in text
    assert "exclusion reasons" in text and "modality" in text
    assert "IQS by modality (1 best, 5 worst, threshold 3)" in text
    assert "report: somewhere" in text


def test_summary_table_holds_what_the_report_reads() -> None:
    table = summary.summary_table(_records())
    assert set(agg.READ_COLUMNS) <= set(table.column_names)
    assert agg.prepare(table).reason_counts.to_dict() == {"iqs": 1, "modality": 1}
