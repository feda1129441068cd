"""BIDS entities, sidecar inheritance, participants and discovery rules."""

from __future__ import annotations

import json
from pathlib import Path

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
