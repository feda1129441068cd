"""Per-stage timings: recorded for every stage that ran, beside the manifests, shown by ``curate status``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

from curate import pipeline, timings
from curate.cli import main
from curate.config import CurateConfig
from curate.demo import make_paths
from curate.stages import default_stages
from curate.stages.runner import producer_of
from qc.report.timings import slowest_images, stage_summary


_ORDER = [stage.name for stage in default_stages(CurateConfig())]


def _stages_run(record) -> set[str]:
    """Stages the manifest says ran on a row.

    A derived row inherits its parent's tags up to the stage that made it; only
    the stages after that one ran on the row itself.
    """
    ran = {tag.split(":", 1)[0] for tag in record.stage_fingerprints if not tag.startswith("derived:")}
    producer = producer_of(record)
    if producer:
        ran &= set(_ORDER[_ORDER.index(producer) + 1:])
    return ran


def test_every_stage_that_ran_has_a_timing(demo_source: Path, tmp_path: Path) -> None:
    bids = make_paths(demo_source)["bids"]
    out = tmp_path / "out"
    result = pipeline.build(bids, out, CurateConfig(), pipeline.RunOptions(workers=1))
    table = timings.latest(out)
    assert table is not None
    frame = table.to_pandas()
    timed = set(zip(frame["image_id"], frame["stage"]))
    expected = {(r.image_id, s) for r in result.records for s in _stages_run(r)}
    assert expected and expected <= timed
    assert (frame["wall_s"] >= 0).all() and (frame["cpu_s"] >= 0).all()
    assert frame["run_id"].nunique() == 1
    assert not (out / timings.TIMINGS_DIR / frame["run_id"].iloc[0]).exists()  # parts compacted


def test_rerun_with_nothing_to_do_keeps_the_last_timings(tmp_path: Path, mni_t1) -> None:
    from tests.curate.test_pipeline import _two_subjects

    root, out = tmp_path / "ds", tmp_path / "out"
    _two_subjects(root, mni_t1)
    pipeline.build(root, out, CurateConfig(), pipeline.RunOptions(workers=1))
    first = timings.latest(out)
    again = pipeline.build(root, out, CurateConfig(), pipeline.RunOptions(workers=1))
    assert again.processed == 0
    assert timings.latest(out).equals(first)
    assert len(first.to_pandas()["image_id"].unique()) == 2


def test_multi_worker_build_writes_timings_from_the_workers(demo_source: Path, tmp_path: Path) -> None:
    bids = make_paths(demo_source)["bids"]
    out = tmp_path / "out"
    result = pipeline.build(bids, out, CurateConfig(), pipeline.RunOptions(workers=2))
    frame = timings.latest(out).to_pandas()
    assert set(frame["image_id"]) >= {r.image_id for r in result.records if _stages_run(r)}


def test_status_prints_stage_timings(demo_source: Path, tmp_path: Path, capsys) -> None:
    bids = make_paths(demo_source)["bids"]
    out = tmp_path / "out"
    pipeline.build(bids, out, CurateConfig(), pipeline.RunOptions(workers=1))
    capsys.readouterr()
    assert main(["status", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Seconds per image, by stage" in printed and "masks / " in printed
    assert "Slowest" in printed


def test_stage_summary_percentiles_and_slowest_images() -> None:
    frame = pd.DataFrame({
        "image_id": ["a", "a", "b", "b", "c"], "source_path": ["a", "a", "b", "b", "c"],
        "modality": ["T1w"] * 5, "stage": ["read", "iqs", "read", "iqs", "read"],
        "wall_s": [1.0, 5.0, 2.0, 1.0, 3.5], "cpu_s": [1.0, 4.0, 2.0, 1.0, 2.5]})
    summary = stage_summary(frame, by_modality=False)
    assert list(summary.index) == ["read", "iqs"]  # pipeline order, not alphabetical
    assert summary.loc["read", "wall p50"] == 2.0 and summary.loc["read", "images"] == 3
    assert summary.loc["read", "wall p95"] <= 3.5 and summary.loc["iqs", "cpu total"] == 5.0
    worst = slowest_images(frame, 2)
    assert list(worst.index) == ["a", "c"] and worst.loc["a", "slowest stage"] == "iqs"


def test_limit_threads_sets_every_library_in_a_fresh_process() -> None:
    code = (
        "import numpy, blosc2, SimpleITK as sitk, threadpoolctl\n"
        "from curate.threads import limit_threads, thread_budget\n"
        "limit_threads(1)\n"
        "pools = threadpoolctl.threadpool_info()\n"
        "assert all(p['num_threads'] == 1 for p in pools), pools\n"
        "assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == 1\n"
        "assert blosc2.nthreads == 1, blosc2.nthreads\n"
        "assert thread_budget() == 1\n"
        "import os; assert os.environ['OMP_NUM_THREADS'] == '1'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).parents[2], timeout=120)
    assert done.returncode == 0, done.stderr


def test_worker_shares_never_oversubscribe_the_cores() -> None:
    from curate.threads import available_cores, worker_share

    cores = available_cores()
    for workers in range(1, cores + 1):
        assert 1 <= worker_share(workers) and workers * worker_share(workers) <= cores
    assert worker_share(cores * 4) == 1
