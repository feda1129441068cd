"""The build end to end: every image a row, resume, config changes, Dask execution."""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

import nibabel as nib
import numpy as np
import pytest

from curate import pipeline
from curate.config import CurateConfig, load_config_text
from curate.demo import make_paths
from curate.stages import default_stages
from curate.stages.base import StageContext, WorkItem
from manifests.io import list_parts, read_records


def _source_images(root: Path) -> set[str]:
    out = set()
    for dirpath, dirnames, files in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in ("derivatives",) and not d.startswith(".")]
        out.update(os.path.relpath(os.path.join(dirpath, f), root) for f in files
                   if f.endswith((".nii", ".nii.gz")))
    return out


def test_every_demo_image_gets_exactly_one_row(demo_source: Path, tmp_path: Path) -> None:
    bids = make_paths(demo_source)["bids"]
    result = pipeline.build(bids, tmp_path / "out", CurateConfig(), pipeline.RunOptions(workers=1))
    source_rows = [r for r in result.records if r.derived_from is None]
    assert {r.source_path for r in source_rows} == _source_images(bids)
    assert len({r.image_id for r in result.records}) == len(result.records)
    assert all(r.exclusion_reasons for r in result.records if not r.included)
    assert not any(r.source_path.startswith("derivatives") for r in result.records)
    on_disk = read_records(tmp_path / "out" / "manifests")
    assert sorted(r.image_id for r in on_disk) == sorted(r.image_id for r in result.records)
    assert (tmp_path / "out" / "curate_config.toml").exists()


class CountingStage:
    """A stage that counts its runs, to observe what a rebuild re-runs."""

    name: ClassVar[str] = "counting"
    version: ClassVar[str] = "1"
    requires: ClassVar[tuple[str, ...]] = ("read",)
    columns: ClassVar[tuple[str, ...]] = ("qc_snr",)
    reasons: ClassVar[tuple[str, ...]] = ()

    def __init__(self, log: Path, factor: float = 1.0) -> None:
        self.log, self.factor = log, factor

    def settings(self, config: CurateConfig) -> float:
        return self.factor

    def applies(self, record) -> bool:
        return record.included

    def run(self, item: WorkItem, ctx: StageContext) -> list[WorkItem]:
        with open(self.log, "a") as handle:
            handle.write(item.record.image_id + "\n")
        item.record = item.record.replace(qc_snr=self.factor)
        return [item]


def _two_subjects(root: Path, mni_t1: nib.Nifti1Image) -> None:
    data = np.asarray(mni_t1.dataobj, dtype=np.float32)
    img = nib.Nifti1Image(np.round(data / data.max() * 1000).astype(np.int16), mni_t1.affine)
    (root).mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.9.0"}')
    for sub in ("01", "02"):
        path = root / f"sub-{sub}" / "anat" / f"sub-{sub}_T1w.nii.gz"
        path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(img, str(path))


def _runs(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def test_rerun_resumes_and_reprocesses_only_what_changed(tmp_path, mni_t1) -> None:
    root, out, log = tmp_path / "ds", tmp_path / "out", tmp_path / "runs.txt"
    _two_subjects(root, mni_t1)
    options = pipeline.RunOptions(workers=1)
    stages = lambda f=1.0: [*default_stages(CurateConfig()), CountingStage(log, f)]  # noqa: E731
    first = pipeline.build(root, out, CurateConfig(), options, stages=stages())
    assert first.processed == 2 and len(_runs(log)) == 2
    second = pipeline.build(root, out, CurateConfig(), options, stages=stages())
    assert (second.processed, second.reused) == (0, 2) and len(_runs(log)) == 2
    touched = root / "sub-02" / "anat" / "sub-02_T1w.nii.gz"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    third = pipeline.build(root, out, CurateConfig(), options, stages=stages())
    assert third.processed == 1 and len(_runs(log)) == 3
    fourth = pipeline.build(root, out, CurateConfig(), options, stages=stages(2.0))
    assert fourth.processed == 2 and len(_runs(log)) == 5
    assert {r.qc_snr for r in read_records(out / "manifests")} == {2.0}
    assert len(list_parts(out / "manifests")) == 1


def test_changed_read_setting_reruns_read_and_its_dependants(tmp_path, mni_t1) -> None:
    root, out, log = tmp_path / "ds", tmp_path / "out", tmp_path / "runs.txt"
    _two_subjects(root, mni_t1)
    options = pipeline.RunOptions(workers=1)
    cfg = CurateConfig()
    pipeline.build(root, out, cfg, options, stages=[*default_stages(cfg), CountingStage(log)])
    changed = load_config_text("[read]\nmin_finite_fraction = 0.5\n")
    pipeline.build(root, out, changed, options, stages=[*default_stages(changed), CountingStage(log)])
    assert len(_runs(log)) == 4  # counting requires read, so it ran again


def test_multi_worker_dask_build_matches_single_process(demo_source, tmp_path) -> None:
    bids = make_paths(demo_source)["bids"]
    one = pipeline.build(bids, tmp_path / "one", CurateConfig(), pipeline.RunOptions(workers=1))
    two = pipeline.build(bids, tmp_path / "two", CurateConfig(), pipeline.RunOptions(workers=2))
    strip = lambda rs: sorted((r.image_id, r.included, r.exclusion_reasons) for r in rs)  # noqa: E731
    assert strip(one.records) == strip(two.records)


def test_index_on_the_process_scheduler_matches_in_process(demo_source, tmp_path) -> None:
    bids = make_paths(demo_source)["bids"]
    small = load_config_text("[execution]\nindex_batch_size = 3\nsmall_collection = 0\n")
    a = pipeline.index(bids, tmp_path / "a", CurateConfig(), pipeline.RunOptions(workers=1))
    b = pipeline.index(bids, tmp_path / "b", small, pipeline.RunOptions(workers=2))
    assert len(b.batches) > 1
    assert sorted(map(repr, a.records)) == sorted(map(repr, b.records))


def test_build_runs_on_a_running_distributed_scheduler(demo_source, tmp_path) -> None:
    from distributed import LocalCluster

    nifti = make_paths(demo_source)["nifti"]
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        result = pipeline.build(nifti, tmp_path / "out", CurateConfig(),
                                pipeline.RunOptions(scheduler=cluster.scheduler_address))
    assert sum(r.included for r in result.records) >= 2


def test_participant_label_selects_subjects(demo_source, tmp_path) -> None:
    bids = make_paths(demo_source)["bids"]
    rows = pipeline.index(bids, tmp_path / "out", CurateConfig(),
                          pipeline.RunOptions(workers=1, participant_labels=("sub-01", "03"))).records
    assert {r.subject for r in rows} == {"01", "03"}


def test_unusable_source_raises_source_error(tmp_path) -> None:
    with pytest.raises(pipeline.SourceError):
        pipeline.index(tmp_path / "missing", tmp_path / "out", CurateConfig(), pipeline.RunOptions())


def test_clinical_nifti_subjects_come_from_patient_folders(demo_source, tmp_path) -> None:
    rows = pipeline.index(make_paths(demo_source)["nifti"], tmp_path / "out", CurateConfig(),
                          pipeline.RunOptions(workers=1)).records
    assert {r.subject for r in rows} == {"patient7", "patient8"}
    assert all(r.source_kind == "nifti" for r in rows)
