"""Directory links: every real folder is walked once, loops are reported, never followed forever."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from curate.discover import bids_roots, walk_bids, walk_plain
from manifests.io import read_records

ROOT = Path(__file__).resolve().parents[2]


def _image(path: Path) -> Path:
    """An (unread) file with a NIfTI name: the walk looks at names only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def _bids(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.9.0"}')
    return root


def test_link_to_its_own_folder_gives_one_row_and_a_loop_warning(tmp_path: Path) -> None:
    _image(tmp_path / "pat" / "t1.nii.gz")
    os.symlink(".", tmp_path / "pat" / "loop")
    found = walk_plain(tmp_path, keep_all=True)
    assert found.images == ["pat/t1.nii.gz"]
    assert any("pat/loop" in w and "loop" in w.split(":", 1)[1] for w in found.walk_warnings)


def test_two_self_links_end_and_give_one_row(tmp_path: Path) -> None:
    """``a -> .`` and ``b -> .`` made ``curate index`` run forever (2^40 paths); run it in a child process."""
    source, out = tmp_path / "src", tmp_path / "out"
    _image(source / "pat" / "t1.nii.gz")
    os.symlink(".", source / "pat" / "a")
    os.symlink(".", source / "pat" / "b")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "curate.cli", "index", str(source), str(out), "-q",
                           "--workers", "1"], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert [r.source_path for r in read_records(out / "manifests")] == ["pat/t1.nii.gz"]
    assert proc.stderr.count("loop") >= 2  # both links reported


def test_mutual_links_walk_each_folder_once_under_its_real_name(tmp_path: Path) -> None:
    _image(tmp_path / "x" / "x.nii.gz")
    _image(tmp_path / "y" / "y.nii.gz")
    os.symlink("../y", tmp_path / "x" / "a_to_y")  # sorts before y: still walked as y/, not x/a_to_y/
    os.symlink("../x", tmp_path / "y" / "to_x")
    found = walk_plain(tmp_path, keep_all=False)
    assert found.images == ["x/x.nii.gz", "y/y.nii.gz"]
    warned = " ".join(found.walk_warnings)
    assert "x/a_to_y" in warned and "y/to_x" in warned


def test_deep_folders_with_a_link_back_to_the_top_and_a_chain_of_links(tmp_path: Path) -> None:
    source = tmp_path / "src"
    deep = source.joinpath(*[f"d{i}" for i in range(60)])
    _image(deep / "deep.nii.gz")
    os.symlink(os.path.relpath(source, deep), deep / "up")  # 60 levels down, back to SOURCE
    outside = _image(tmp_path / "store" / "real" / "kept.nii.gz").parent  # a link may leave SOURCE
    target = outside
    for i in range(10):  # l9 -> l8 -> ... -> l0 -> store/real
        link = tmp_path / "store" / f"l{i}"
        os.symlink(target, link)
        target = link
    os.symlink(target, source / "linked")
    found = walk_plain(source, keep_all=False)
    assert found.images == ["d0/" + "/".join(f"d{i}" for i in range(1, 60)) + "/deep.nii.gz",
                            "linked/kept.nii.gz"]
    assert any("/up" in w and "loop" in w for w in found.walk_warnings)


def test_bids_dataset_link_loops_and_duplicate_roots(tmp_path: Path) -> None:
    ds = _bids(tmp_path / "group" / "ds1")
    _image(ds / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    os.symlink("..", ds / "sub-01" / "anat" / "back")
    os.symlink(".", tmp_path / "group" / "again")  # the same datasets below another name
    assert walk_bids(ds).images == ["sub-01/anat/sub-01_T1w.nii.gz"]
    assert bids_roots(tmp_path) == [tmp_path / "group" / "ds1"]


@pytest.mark.parametrize("skipped", ["derivatives", "sourcedata"])
def test_link_into_a_skipped_bids_folder_is_not_walked(tmp_path: Path, skipped: str) -> None:
    ds = _bids(tmp_path / "ds")
    _image(ds / "sub-01" / "anat" / "sub-01_T1w.nii.gz")
    _image(ds / skipped / "sub-01" / "anat" / "sub-01_desc-x_T1w.nii.gz")
    os.symlink(f"../../{skipped}", ds / "sub-01" / "anat" / "extra")
    assert walk_bids(ds).images == ["sub-01/anat/sub-01_T1w.nii.gz"]
