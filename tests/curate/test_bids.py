"""BIDS entities, sidecar inheritance, participants and discovery rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from curate import bids
from curate.discover import walk_bids


def test_entities_follow_pybids_definitions() -> None:
    from bids.layout import parse_file_entities

    path = "sub-01/ses-pre/anat/sub-01_ses-pre_acq-mprage_rec-norm_run-2_T1w.nii.gz"
    ours = bids.parse_entities(path)
    theirs = parse_file_entities("/" + path)
    for name in ("subject", "session", "acquisition", "reconstruction", "run", "suffix", "datatype"):
        assert str(theirs[name]) == ours[name], name


def test_sidecar_inheritance_nearest_file_overrides(tmp_path: Path) -> None:
    (tmp_path / "sub-01" / "anat").mkdir(parents=True)
    (tmp_path / "T1w.json").write_text(json.dumps({"RepetitionTime": 2.0, "Manufacturer": "GE"}))
    (tmp_path / "sub-01" / "anat" / "sub-01_T1w.json").write_text(json.dumps({"RepetitionTime": 2.3}))
    (tmp_path / "sub-01" / "anat" / "sub-01_T2w.json").write_text(json.dumps({"RepetitionTime": 9.9}))
    (tmp_path / "sub-01" / "anat" / "sub-01_T1w.nii.gz").write_bytes(b"")
    found = walk_bids(tmp_path)
    files = bids.inherited_files("sub-01/anat/sub-01_T1w.nii.gz", found.sidecars_by_dir, ".json")
    meta, warnings = bids.merge_sidecars(tmp_path, files)
    assert meta == {"RepetitionTime": 2.3, "Manufacturer": "GE"}
    assert warnings == []


def test_sidecar_for_other_entities_does_not_apply() -> None:
    side = {"sub-01/anat": ["sub-01_acq-fast_T1w.json"]}
    assert bids.inherited_files("sub-01/anat/sub-01_acq-slow_T1w.nii.gz", side, ".json") == []


def test_invalid_sidecar_gives_a_warning_not_an_error(tmp_path: Path) -> None:
    (tmp_path / "x_T1w.json").write_text("{oops")
    meta, warnings = bids.merge_sidecars(tmp_path, ["x_T1w.json"])
    assert meta == {} and "unreadable" in warnings[0]


def test_participants_age_and_sex_are_normalised(tmp_path: Path) -> None:
    (tmp_path / "participants.tsv").write_text(
        "participant_id\tage\tsex\tgroup\nsub-01\t34\tfemale\tpatient\nsub-02\tn/a\tM\tcontrol\n")
    table, warnings = bids.read_participants(tmp_path)
    one = bids.participant_fields(table["01"])
    two = bids.participant_fields(table["02"])
    assert (one["age"], one["sex"]) == (34.0, "F")
    assert (two["age"], two["sex"]) == (None, "M")
    assert json.loads(one["participant_json"])["group"] == "patient"
    assert warnings == []


def test_walk_skips_derivatives_sourcedata_code_and_dot_folders(tmp_path: Path) -> None:
    for rel in ["sub-01/anat/sub-01_T1w.nii.gz", "derivatives/x/sub-01/anat/sub-01_T1w.nii.gz",
                "sourcedata/sub-01/anat/sub-01_T1w.nii.gz", "code/sub-01_T1w.nii.gz",
                ".git/annex/sub-01_T1w.nii.gz", "sub-01/anat/.hidden_T1w.nii.gz"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    assert walk_bids(tmp_path).images == ["sub-01/anat/sub-01_T1w.nii.gz"]


@pytest.mark.parametrize("path", [
    "sub-01/anat/sub-01_run-abc_run-3_T1w.nii.gz",
    "sub-03/anat/sub-03_mt-on_part-mag_echo-2_flip-1_inv-2_MPM.nii.gz",
    "sub-x+y/anat/sub-x+y_T2w.nii",
    "sub-01/ses-1/dwi/sub-01_ses-1_dir-AP_dwi.nii.gz",
    "sub-01/func/sub-01_task-rest_chunk-1_space-MNI_bold.nii.gz",
    "sub-01/anat/sub-01_ce-gad_trc-FDG_stain-x_rec-mag_mod-T1w_defacemask.nii.gz",
    "sub-02/fmap/sub-02_phasediff.nii.gz",
])
def test_every_entity_agrees_with_pybids(path: str) -> None:
    from bids.layout import parse_file_entities

    theirs = {k: str(v) for k, v in parse_file_entities("/" + path).items()
              if k not in ("extension", "datatype")}
    ours = bids.parse_entities(path)
    assert {k: ours.get(k) for k in theirs} == theirs


def test_sidecar_listing_is_parsed_once_for_all_extensions() -> None:
    side = {"": ["dwi.json", "dwi.bval"],
            "sub-01/dwi": ["sub-01_dwi.bval", "sub-01_dwi.bvec", "sub-01_acq-b_dwi.json", "sub-01_T1w.json"]}
    index = bids.SidecarIndex(side)
    found = index.applying_to("sub-01/dwi/sub-01_acq-b_dwi.nii.gz")
    assert found == {".json": ["dwi.json", "sub-01/dwi/sub-01_acq-b_dwi.json"],
                     ".bval": ["dwi.bval", "sub-01/dwi/sub-01_dwi.bval"],
                     ".bvec": ["sub-01/dwi/sub-01_dwi.bvec"]}
    assert index.applying_to("sub-01/dwi/sub-01_acq-c_dwi.nii.gz")[".json"] == ["dwi.json"]
