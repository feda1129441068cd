"""Clinical series names -> modality (curate/rules/modalities.toml)."""

from __future__ import annotations

import pytest

from curate.modality import load_rules, series_modality


@pytest.mark.parametrize("name, modality", [
    ("dMRI_dir98_AP", "DWI"),                 # HCP-style diffusion run: its maps were lost as "other"
    ("ep2d_diff_mddw_20_p2", "DWI"),
    ("DTI_30dir", "DWI"),
    ("gre_field_mapping_phasediff", "other"),  # a field map, not a diffusion series
    ("fmap_phase_diff", "other"),
    ("T1_MPRAGE", "T1w"),
])
def test_series_names(name: str, modality: str) -> None:
    assert series_modality([None, None, name], None, load_rules()) == modality
