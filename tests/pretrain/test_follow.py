"""``pretrain --follow`` against a live ``curate build`` subprocess on real images."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from pretrain import cli
from pretrain.data import CropDataset

ROOT = Path(__file__).resolve().parents[2]


class _Enough(Exception):
    """Ends the run once the build is over and one full pass has used its last rows."""


def _source(root: Path, mni_t1: nib.Nifti1Image, head: nib.Nifti1Image) -> Path:
    """Four real T1w images: MNI152, pydeface's head, a crop and a mirror of MNI152."""
    data = np.asarray(mni_t1.dataobj, np.float32)
    scaled = np.round(data / data.max() * 1000).astype(np.int16)
    images = {"mni": scaled, "mnicrop": scaled[20:180, 20:210, 10:180], "mniflip": scaled[::-1]}
    src = root / "src"
    src.mkdir()
    for name, array in images.items():
        nib.save(nib.Nifti1Image(np.ascontiguousarray(array), mni_t1.affine), str(src / f"sub-{name}_T1w.nii.gz"))
    nib.save(nib.Nifti1Image(np.asarray(head.dataobj), head.affine), str(src / "sub-head_T1w.nii.gz"))
    return src


@pytest.mark.slow
def test_follow_trains_while_a_build_runs_and_samples_images_that_arrive_later(
        tmp_path: Path, mni_t1, head_template, monkeypatch, capsys) -> None:
    src, out, run = _source(tmp_path, mni_t1, head_template), tmp_path / "out", tmp_path / "run"
    (tmp_path / "curate.toml").write_text("[execution]\nbuild_batch_size = 1\n")  # one part per image
    (tmp_path / "pretrain.toml").write_text("[data]\nval_fraction = 0.0\naugment = false\n")
    passes: list[dict] = []
    loaded: list[str] = []
    begin, load = CropDataset.begin_epoch, CropDataset.load

    def recording_begin(self: CropDataset) -> None:
        if passes and passes[-1]["follow_after"] is False:
            raise _Enough  # the pass after the build ended has been trained on
        begin(self)
        passes.append({"ids": {e.image_id for e in self.entries}, "follow_after": self.follow})

    def recording_load(self: CropDataset, entry, rng):
        assert Path(entry.path).is_file()  # never a row whose array is not written
        loaded.append(entry.image_id)
        return load(self, entry, rng)

    monkeypatch.setattr(CropDataset, "begin_epoch", recording_begin)
    monkeypatch.setattr(CropDataset, "load", recording_load)
    monkeypatch.setattr(cli, "make_source", _fast_poll(cli.make_source))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    build = subprocess.Popen([sys.executable, "-m", "curate.cli", "build", str(src), str(out), "--workers", "1",
                              "--config", str(tmp_path / "curate.toml"), "-q"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        with pytest.raises(_Enough):
            cli.main([str(out), "--run-dir", str(run), "--follow", "--config", str(tmp_path / "pretrain.toml"),
                      "--model", "tiny", "--patch-size", "16", "--batch-size", "1", "--workers", "0",
                      "--max-steps", "100000", "--device", "cpu", "--no-progress"])
        assert build.wait(timeout=600) == 0, build.stdout.read()
    finally:
        build.kill()
    assert "waiting for `curate build` to write arrays" in capsys.readouterr().err
    first, last = passes[0]["ids"], passes[-1]["ids"]
    assert len(last) == 4 and first < last  # the run began before the build had all images
    later = last - first
    assert later & set(loaded)  # images that arrived after the start were trained on
    assert all(p["follow_after"] for p in passes[:-1]) and passes[-1]["follow_after"] is False
    assert (run / "metrics.jsonl").stat().st_size > 0


def _fast_poll(make_source):
    def wrapped(cfg, output, rank, world_size, poll_s: float = 10.0):
        return make_source(cfg, output, rank, world_size, poll_s=0.2)
    return wrapped
