"""Ratings evaluation: LOSO splits, site normalisation, a planted feature, and the shipped ABIDE ratings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qc import ratings_eval as rev


def _toy(seed: int = 0, n_per_site: int = 60) -> pd.DataFrame:
    """Four sites with their own offset and scale; ``signal`` tracks the label, ``noise*`` do not."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, site in enumerate("ABCD"):
        y = (rng.random(n_per_site) < 0.3).astype(float)
        offset, scale = 100.0 * k, 1.0 + k
        rows.append(pd.DataFrame({
            "site": site, "label": y,
            "signal": offset + scale * (2.0 * y + rng.normal(0, 1, n_per_site)),
            "noise1": offset + scale * rng.normal(0, 1, n_per_site),
            "noise2": rng.normal(0, 1, n_per_site)}))
    return pd.concat(rows, ignore_index=True)


def test_loso_never_puts_a_site_in_both_parts_and_skips_one_class_sites() -> None:
    sites = np.array(list("AAABBBCCCDDD"))
    y = np.array([0, 1, 0, 1, 1, 1, 0, 1, np.nan, 0, 1, 0])
    held = []
    for name, train, test in rev.loso_splits(sites, y):
        held.append(name)
        assert set(sites[test]) == {name}
        assert name not in set(sites[train])
        assert np.isfinite(y[train]).all() and np.isfinite(y[test]).all()
    assert held == ["A", "C", "D"]  # B has only excludes: no AUC there


def test_loso_on_the_abide_ratings_holds_each_site_out_alone() -> None:
    abide = rev.load_ratings("abide")
    y = rev.binary_labels(abide, "majority").to_numpy()
    sites = abide["site"].to_numpy()
    seen = set()
    for name, train, test in rev.loso_splits(sites, y):
        assert not set(sites[train]) & set(sites[test])
        seen.add(name)
    assert 10 <= len(seen) < len(set(sites))  # some sites have only accepts under majority


def test_site_normalise_removes_a_per_site_affine_change() -> None:
    frame = _toy()
    changed = frame.copy()
    gain = changed["site"].map({"A": 3.0, "B": 0.5, "C": 10.0, "D": 1.0})
    changed["signal"] = gain * changed["signal"] + 7.0 * gain
    cols = ["signal", "noise1"]
    pd.testing.assert_frame_equal(rev.site_normalise(frame, cols), rev.site_normalise(changed, cols))


def test_a_single_strong_feature_is_found_on_a_toy_frame() -> None:
    frame = _toy()
    cols = ["signal", "noise1", "noise2"]
    z = rev.site_normalise(frame, cols)
    folds, held = rev.loso_logistic(z, frame["label"], frame["site"])
    assert len(folds) == 4
    assert min(f["auc"] for f in folds.values()) > 0.8
    strong = rev.single_measure(z["signal"], frame["label"], frame["site"])
    assert strong["higher_is_worse"] and strong["auc"] > 0.8 and strong["sites_agreeing"] == 4
    weak = rev.single_measure(z["noise1"], frame["label"], frame["site"])
    assert abs(weak["auc"] - 0.5) < 0.15
    # Without site normalisation the site offsets swamp the signal pooled over sites.
    raw = rev.single_measure(frame["signal"], frame["label"], frame["site"])
    assert raw["auc"] < strong["auc"]


def test_label_schemes_follow_the_votes() -> None:
    abide = rev.load_ratings("abide")
    ratings = abide[list(rev.RATERS)]
    n_ex, n_ac = (ratings == -1).sum(axis=1), (ratings == 1).sum(axis=1)
    majority = rev.binary_labels(abide, "majority")
    assert (n_ex[majority == 1] > n_ac[majority == 1]).all()
    assert (n_ac[majority == 0] > n_ex[majority == 0]).all()
    any_ex = rev.binary_labels(abide, "any_exclude")
    assert (n_ex[any_ex == 0] == 0).all() and (n_ex[any_ex == 1] > 0).all()
    with pytest.raises(ValueError, match="unknown label scheme"):
        rev.binary_labels(abide, "median")


def test_our_measures_predict_held_out_sites_of_the_shipped_ratings() -> None:
    abide = rev.load_ratings("abide")
    cols = [link.iqm for link in rev.LINKS]
    y = rev.binary_labels(abide, "majority")
    folds, held = rev.loso_logistic(rev.site_normalise(abide, cols), y, abide["site"])
    summary = rev.summarise(folds, y.to_numpy(float), held)
    assert summary["folds"] >= 10
    assert summary["pooled_auc"] > 0.7
    assert summary["auc_mean"] > 0.75
    # Shuffling the labels within each site destroys it (the margin is not an artefact of the split).
    rng = np.random.default_rng(0)
    shuffled = y.groupby(abide["site"]).transform(lambda s: pd.Series(rng.permutation(s.to_numpy()), s.index))
    folds_s, held_s = rev.loso_logistic(rev.site_normalise(abide, cols), shuffled, abide["site"])
    assert rev.summarise(folds_s, shuffled.to_numpy(float), held_s)["pooled_auc"] < 0.62


def test_the_consistent_model_keeps_the_planted_feature_only() -> None:
    frame = _toy(seed=3)
    z = rev.site_normalise(frame, ["signal", "noise1", "noise2"])
    # A suppressor: a copy of the signal plus a label-free part the model can trade against it.
    z["mixed"] = z["signal"] + 3.0 * z["noise1"]
    model, kept, directions = rev.consistent_fit(z, frame["label"], frame["site"])
    assert "signal" in kept and "noise2" not in kept
    assert directions["signal"] is True
    coef = dict(zip(kept, model.coef_[0]))
    assert all((coef[c] > 0) == directions[c] for c in kept)
