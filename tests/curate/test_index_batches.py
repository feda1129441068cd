"""Index batches carry only what their images need; the batched Dask map keeps order and reports progress."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from manifests.schema import ARROW_SCHEMA, SourceKind

from curate import execution
from curate.config import TriageConfig
from curate.discover import walk_bids
from curate.index import index_batch, index_batch_table, plan_batches


def _tree(root: Path, n: int) -> None:
    (root / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.9.0"}')
    (root / "T1w.json").write_text('{"Manufacturer": "GE"}')
    rows = ["participant_id\tage"]
    for i in range(1, n + 1):
        anat = root / f"sub-{i:02d}" / "anat"
        anat.mkdir(parents=True)
        (anat / f"sub-{i:02d}_T1w.nii.gz").write_bytes(b"")
        (anat / f"sub-{i:02d}_T1w.json").write_text(f'{{"EchoTime": {i}}}')
        rows.append(f"sub-{i:02d}\t{20 + i}")
    (root / "participants.tsv").write_text("\n".join(rows) + "\n")


def test_each_batch_carries_only_its_own_sidecar_folders_and_participants(tmp_path: Path) -> None:
    _tree(tmp_path, 5)
    batches = plan_batches(walk_bids(tmp_path), SourceKind.BIDS, None, size=2)
    assert [len(b.rel_paths) for b in batches] == [2, 2, 1]
    first = batches[0]
    assert set(first.sidecars_by_dir) == {"", "sub-01/anat", "sub-02/anat"}
    assert set(first.participants) == {"01", "02"}
    rows = [r for b in batches for r in index_batch(b, TriageConfig())]
    assert [r.echo_time_s for r in rows] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert {r.manufacturer for r in rows} == {"GE"}  # inherited from the top-level sidecar
    assert [r.age for r in rows] == [21.0, 22.0, 23.0, 24.0, 25.0]


def test_participant_filter_happens_before_batching(tmp_path: Path) -> None:
    _tree(tmp_path, 5)
    batches = plan_batches(walk_bids(tmp_path), SourceKind.BIDS, frozenset({"02", "05"}), size=1)
    assert [b.rel_paths[0].split("/")[0] for b in batches] == ["sub-02", "sub-05"]


def test_batch_table_has_the_manifest_schema(tmp_path: Path) -> None:
    _tree(tmp_path, 2)
    (batch,) = plan_batches(walk_bids(tmp_path), SourceKind.BIDS, None, size=10)
    table = index_batch_table(batch, TriageConfig())
    assert table.schema.equals(ARROW_SCHEMA) and table.num_rows == 2
    assert table.column("exclusion_reasons").to_pylist() == [["unreadable", "size"]] * 2


def _square_all(batch: list[int]) -> list[int]:
    return [x * x for x in batch]


@pytest.mark.parametrize("workers, small", [(1, True), (2, False)])
def test_map_batches_keeps_order_and_counts_progress(workers: int, small: bool) -> None:
    seen: list[tuple[int, int]] = []
    batches = [[1, 2], [3], [4, 5, 6]]
    out = execution.map_batches(_square_all, batches, (), execution.RunOptions(workers=workers), small,
                                progress=lambda done, total: seen.append((done, total)))
    assert out == [[1, 4], [9], [16, 25, 36]]
    assert seen[-1] == (3, 3) and len(seen) == 3


def test_workers_are_forked_only_while_the_process_has_one_thread() -> None:
    assert execution._start_method() in ("fork", "spawn")
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert execution._start_method() == "spawn"
    finally:
        stop.set()
        thread.join()


def test_clinical_batches_carry_only_sidecars_named_like_their_images(tmp_path: Path) -> None:
    from curate.discover import walk_plain

    folder = tmp_path / "patient1"
    folder.mkdir()
    for name in ("a.nii.gz", "b.nii.gz"):
        (folder / name).write_bytes(b"")
    (folder / "a.json").write_text('{"SeriesDescription": "t1_mprage_sag"}')
    (folder / "unrelated.json").write_text("{}")
    (batch,) = plan_batches(walk_plain(tmp_path, keep_all=False), SourceKind.NIFTI, None, size=10)
    assert batch.sidecars_by_dir == {"patient1": ["a.json"]}
    a, b = index_batch(batch, TriageConfig())
    assert a.series_description == "t1_mprage_sag" and a.modality == "T1w"
    assert b.series_description is None and b.subject == "patient1"


def _beside(source: Path, name: str) -> Path:
    """An OUTPUT next to SOURCE (one inside it is refused)."""
    return source.with_name(f"{source.name}-{name}")


def test_derivative_datasets_are_never_ingested_as_raw(tmp_path: Path, capsys) -> None:
    from curate.cli import main
    from curate.config import CurateConfig
    from curate.discover import SourceError
    from curate.execution import RunOptions
    from curate.indexing import index

    for name in ("raw", "prep"):
        (tmp_path / name).mkdir()
        _tree(tmp_path / name, 2)
    (tmp_path / "prep" / "dataset_description.json").write_text(
        '{"Name": "prep", "BIDSVersion": "1.9.0", "DatasetType": "derivative"}')
    result = index(tmp_path, _beside(tmp_path, "out"), CurateConfig(), RunOptions(workers=1))
    assert set(result.table.column("dataset").to_pylist()) == {"raw"}
    assert any("prep: skipped" in w for w in result.warnings)
    assert main(["index", str(tmp_path), str(_beside(tmp_path, "out2")), "-q"]) == 0
    assert "prep: skipped, a BIDS derivative dataset" in capsys.readouterr().err
    with pytest.raises(SourceError, match="derivative"):
        index(tmp_path / "prep", tmp_path / "out3", CurateConfig(), RunOptions(workers=1))


def test_datasets_found_below_source_and_without_a_description(tmp_path: Path) -> None:
    from curate.config import CurateConfig
    from curate.execution import RunOptions
    from curate.indexing import index

    (tmp_path / "openneuro" / "ds01").mkdir(parents=True)
    _tree(tmp_path / "openneuro" / "ds01", 2)
    (tmp_path / "site2" / "copy").mkdir(parents=True)
    _tree(tmp_path / "site2" / "copy", 1)
    (tmp_path / "site2" / "copy" / "dataset_description.json").unlink()
    # sub-* folders under a derivatives/ folder beside the datasets are not a raw dataset
    (tmp_path / "derivatives" / "prep").mkdir(parents=True)
    _tree(tmp_path / "derivatives" / "prep", 1)
    result = index(tmp_path, _beside(tmp_path, "out"), CurateConfig(), RunOptions(workers=1))
    rows = result.records
    assert {r.dataset for r in rows} == {"ds01", "copy"}
    assert all(r.source_kind == "bids" and r.subject for r in rows)
    assert any("copy: no dataset_description.json" in w for w in result.warnings)


def test_clinical_sidecars_any_case_diffusion_by_gradients_and_phase_parts(tmp_path: Path, dipy_dwi,
                                                                           mni_t1) -> None:
    import json
    import shutil

    import nibabel as nib

    from curate.config import CurateConfig
    from curate.execution import RunOptions
    from curate.indexing import index

    nii, bval, bvec = dipy_dwi
    folder = tmp_path / "export" / "patient1"
    folder.mkdir(parents=True)
    # a 4D series named like nothing we know, with gradient files in upper case: a diffusion series
    shutil.copy(nii, folder / "resolve_trace.nii.gz")
    shutil.copy(bval, folder / "resolve_trace.BVAL")
    shutil.copy(bvec, folder / "resolve_trace.BVEC")
    nib.save(mni_t1, folder / "swi_pha.nii.gz")
    (folder / "swi_pha.JSON").write_text(json.dumps({"SeriesDescription": "SWI",
                                                      "ImageType": ["ORIGINAL", "PRIMARY", "P", "ND"]}))
    nib.save(mni_t1, folder / "swi_mag.nii.gz")
    (folder / "swi_mag.json").write_text(json.dumps({"SeriesDescription": "SWI",
                                                      "ImageType": ["ORIGINAL", "PRIMARY", "M", "ND"]}))
    rows = {r.source_path: r for r in index(tmp_path / "export", tmp_path / "out", CurateConfig(),
                                            RunOptions(workers=1)).records}
    dwi = rows["patient1/resolve_trace.nii.gz"]
    assert dwi.modality == "DWI" and dwi.bval_path == "patient1/resolve_trace.BVAL"
    phase, mag = rows["patient1/swi_pha.nii.gz"], rows["patient1/swi_mag.nii.gz"]
    assert phase.series_description == "SWI" and not phase.included
    assert "phase image, not magnitude" in phase.exclusion_detail
    assert mag.included, mag.exclusion_detail


def test_bids_part_phase_is_not_a_pretraining_image(tmp_path: Path, mni_t1) -> None:
    import nibabel as nib

    from curate.config import CurateConfig
    from curate.execution import RunOptions
    from curate.indexing import index

    (tmp_path / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.9.0"}')
    anat = tmp_path / "sub-01" / "anat"
    anat.mkdir(parents=True)
    for part in ("mag", "phase"):
        nib.save(mni_t1, anat / f"sub-01_part-{part}_T2starw.nii.gz")
    rows = {r.source_path.split("_")[1]: r for r in index(tmp_path, _beside(tmp_path, "out"), CurateConfig(),
                                                          RunOptions(workers=1)).records}
    assert rows["part-mag"].included, rows["part-mag"].exclusion_detail
    assert not rows["part-phase"].included and "modality" in rows["part-phase"].exclusion_reasons
