r"""Human QC ratings against image-quality measures: labels, site normalisation, LOSO scores.

Pure functions on tables (pandas in, numbers out) used by
``benchmarks/bench_iqs_ratings.py`` to ground the IQS in the expert ratings
that the ``mriqc-learn`` wheel ships: MRIQC's IQMs with accept (1) /
doubtful (0) / exclude (-1) ratings of 1,101 ABIDE T1w scans (17 sites; raters
1 and 2 rated 600 of them, rater 3 all) and 265 DS030 scans (2 sites, one
rater) [Esteban2017]_.  Needs scikit-learn (the ``test`` / ``bench`` extras);
nothing here is imported by ``curate``.

Binary target (1 = exclude, 0 = accept, NaN = left out), one of :data:`SCHEMES`
    ``majority``
        the rating a strict majority of the scan's available raters gave;
        doubtful majorities and ties are left out (the primary scheme);
    ``any_exclude``
        exclude if any rater excluded, accept only if every available rater
        accepted, else left out;
    ``r3_doubtful_exclude``
        rater 3 (DS030: its one rater), doubtful counted as exclude -- what
        ``mriqc-learn``'s own training script does;
    ``r3_doubtful_accept``
        the same rater, doubtful counted as accept -- MRIQC 0.x's ``mriqc_clf``
        mapping, behind the 2017 paper's figures.
Site normalisation
    Each feature is centred on its site's median and divided by the site's
    inter-quartile range (MRIQC's ``SiteRobustScaler``), fitted on the site's
    own scans without labels -- the held-out site included, so deploying it
    needs a batch of scans per site.  Ratio measures (SNR, CNR, CJV, FBER) are
    log-transformed first, so that a noise-over-signal ratio and its inverse are
    one feature with opposite signs.  The z-scores are clipped to
    :math:`\pm` :data:`CLIP` so that a site whose IQR is nearly 0 (QI1 is 0 on
    88 % of ABIDE) cannot hand a linear model values in the hundreds.
Leave-one-site-out (LOSO)
    Every site is held out once; a held-out site with only one class has no
    AUC and is skipped for every score (as ``mriqc-learn``'s
    ``LeavePSitesOut(robust=True)`` does).

References
----------
.. [Esteban2017] Esteban O et al., MRIQC: advancing the automatic prediction of image
   quality in MRI from unseen sites, PLoS ONE 12(9):e0184661, 2017.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score, roc_auc_score

SCHEMES = ("majority", "any_exclude", "r3_doubtful_exclude", "r3_doubtful_accept")
RATERS = ("rater_1", "rater_2", "rater_3")
#: Columns of the shipped tables that are not IQMs.
META = ("subject_id", "site", "has_ghost", *RATERS)
#: Acquisition descriptors, not quality (mriqc-learn drops them too).
GEOMETRY = tuple(f"{kind}_{ax}" for kind in ("size", "spacing") for ax in "xyz")
#: Site z-scores are clipped to +-CLIP.
CLIP = 5.0
#: IQMs that are ratios and get a log before site normalisation.
LOG_IQMS = ("snr_csf", "snr_gm", "snr_wm", "snr_total", "snrd_csf", "snrd_gm", "snrd_wm",
            "snrd_total", "cnr", "cjv", "fber")


@dataclass(frozen=True, slots=True)
class Link:
    """How one of our measures (:class:`qc.profile.Profile` / :func:`qc.iqs.measure_values`) maps to an IQM."""

    ours: str
    iqm: str
    match: str  # "formula" (same formula, our own masks) or "approximate"
    note: str


#: Our measures and the MRIQC IQM each corresponds to (as of qc/ at this commit).
LINKS = (
    Link("snr", "snr_wm", "formula", "MRIQC's SNR formula on WM; our WM is the top intensity class of "
         "the eroded head, MRIQC's is FAST's WM"),
    Link("snr_dietrich", "snrd_wm", "formula", "Dietrich SNR on WM over the air MAD; our air is the "
         "thresholded background, MRIQC's the registered-template air mask"),
    Link("cnr", "cnr", "formula", "same formula; intensity classes instead of FAST"),
    Link("cjv", "cjv", "formula", "same formula; intensity classes instead of FAST"),
    Link("efc", "efc", "formula", "same formula on the 2x work grid instead of full resolution"),
    Link("fber", "fber", "formula", "same formula; our head mask vs MRIQC's"),
    Link("nsr", "snrd_total", "approximate", "our noise part: air sigma over median head signal; "
         "MRIQC's closest is the Dietrich SNR (its inverse, after the log)"),
    Link("fwhm_mm", "fwhm_avg", "approximate", "both lag-1 AFNI-classic; ours removes the white-noise "
         "part and uses the eroded head"),
    Link("qi1", "qi_1", "approximate", "both: fraction of air voxels with structured artifact; ours a "
         "Rayleigh-tail threshold + opening, MRIQC's after its own air mask and opening"),
    Link("inu", "inu_range", "approximate", "ours: spread of a degree-2 log-intensity fit; MRIQC's: "
         "p95-p5 of the N4 bias field"),
)


def links(names: Sequence[str] | None = None) -> tuple[Link, ...]:
    """The links, all or those whose ``ours`` is in ``names``."""
    return LINKS if names is None else tuple(link for link in LINKS if link.ours in names)


def load_ratings(dataset: str) -> pd.DataFrame:
    """The ``mriqc-learn`` wheel's ``abide`` or ``ds030`` table (IQMs and raters), from the installed wheel.

    Read with ``importlib.resources`` (the wheel's own loader needs ``pkg_resources``,
    which recent setuptools no longer ship); ``n/a`` ratings become NaN.
    """
    if dataset not in ("abide", "ds030"):
        raise ValueError(f"unknown ratings dataset {dataset!r}: use 'abide' or 'ds030'")
    path = files("mriqc_learn") / "datasets" / f"{dataset}.tsv"
    return pd.read_csv(Path(str(path)), sep="\t", na_values="n/a")


def iqm_columns(frame: pd.DataFrame) -> list[str]:
    """The quality measures of a ratings table (no ids, raters or geometry)."""
    return [c for c in frame.columns if c not in META and c not in GEOMETRY]


def _votes(frame: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.Series]:
    ratings = frame[[r for r in RATERS if r in frame.columns]]
    return (ratings == -1).sum(axis=1), (ratings == 1).sum(axis=1), ratings.notna().sum(axis=1)


def binary_labels(frame: pd.DataFrame, scheme: str) -> pd.Series:
    """1 = exclude, 0 = accept, NaN = left out, under ``scheme`` (see the module docstring).

    Examples
    --------
    >>> f = pd.DataFrame({"rater_1": [-1, 1, 0, np.nan], "rater_2": [-1, 1, 1, np.nan],
    ...                   "rater_3": [1, 1, 0, -1]})
    >>> binary_labels(f, "majority").tolist()
    [1.0, 0.0, nan, 1.0]
    >>> binary_labels(f, "any_exclude").tolist()
    [1.0, 0.0, nan, 1.0]
    >>> binary_labels(f, "r3_doubtful_exclude").tolist()
    [0.0, 0.0, 1.0, 1.0]
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown label scheme {scheme!r}: one of {SCHEMES}")
    if scheme.startswith("r3_"):
        rater = frame["rater_3"] if "rater_3" in frame.columns else frame["rater_1"]
        doubtful = 1.0 if scheme == "r3_doubtful_exclude" else 0.0
        return rater.map({-1: 1.0, 0: doubtful, 1: 0.0}).astype(float)
    n_ex, n_ac, n = _votes(frame)
    if scheme == "majority":
        exclude, accept = 2 * n_ex > n, 2 * n_ac > n
    else:
        exclude, accept = n_ex > 0, (n_ac == n) & (n > 0)
    return pd.Series(np.where(exclude, 1.0, np.where(accept, 0.0, np.nan)), index=frame.index)


def site_normalise(frame: pd.DataFrame, columns: Sequence[str], site: str = "site") -> pd.DataFrame:
    """Per-site robust z-scores ``(x - median) / IQR`` of ``columns`` (ratios logged first).

    A site whose IQR is 0 for a column gets 0 there (no spread, no signal);
    the scores are clipped to ``[-CLIP, CLIP]``.
    """
    values = frame[list(columns)].astype(float).copy()
    for col in columns:
        if col in LOG_IQMS:
            values[col] = np.log(values[col].where(values[col] > 0))
    groups = values.groupby(frame[site])
    median = groups.transform("median")
    iqr = groups.transform(lambda v: v.quantile(0.75) - v.quantile(0.25))
    return ((values - median) / iqr.where(iqr > 0)).fillna(0.0).clip(-CLIP, CLIP)


def loso_splits(sites: Sequence[str], y: Sequence[float]) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
    """``(site, train_index, test_index)`` holding out each site whose labels have both classes.

    Rows with a NaN label are in neither part.
    """
    sites = np.asarray(sites)
    y = np.asarray(y, dtype=float)
    labelled = np.isfinite(y)
    for name in sorted(set(sites[labelled].tolist())):
        test = labelled & (sites == name)
        if np.unique(y[test]).size < 2:
            continue
        yield name, np.flatnonzero(labelled & (sites != name)), np.flatnonzero(test)


def fold_scores(y: np.ndarray, score: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """AUC of ``score`` (higher = exclude), accuracy, balanced accuracy and the accept-all baseline."""
    y = np.asarray(y, dtype=int)
    return {"n": int(y.size), "n_exclude": int(y.sum()),
            "auc": float(roc_auc_score(y, score)),
            "accuracy": float(accuracy_score(y, predicted)),
            "balanced_accuracy": float(balanced_accuracy_score(y, predicted)),
            "accept_all_accuracy": float(1.0 - y.mean())}


def summarise(folds: dict[str, dict[str, float]], y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """Mean and SD over folds of each score, and the AUC of all held-out scores pooled."""
    out: dict[str, float] = {"folds": len(folds)}
    for key in ("auc", "accuracy", "balanced_accuracy", "accept_all_accuracy"):
        vals = np.array([f[key] for f in folds.values()])
        out[f"{key}_mean"], out[f"{key}_sd"] = float(vals.mean()), float(vals.std(ddof=1))
    keep = np.isfinite(score)
    out["pooled_auc"] = float(roc_auc_score(np.asarray(y)[keep].astype(int), score[keep]))
    return out


def logistic(c: float = 1.0) -> LogisticRegression:
    """The transparent model: L2 logistic regression, classes balanced (excludes are rare)."""
    return LogisticRegression(C=c, class_weight="balanced", max_iter=2000)


def loso_logistic(z: pd.DataFrame, y: pd.Series, sites: pd.Series,
                  c: float = 1.0) -> tuple[dict[str, dict[str, float]], np.ndarray]:
    """LOSO logistic regression on site-normalised features ``z``.

    Returns the per-site scores and the held-out exclude probability of every
    row (NaN for rows never held out).
    """
    x, target = z.to_numpy(float), y.to_numpy(float)
    held_out = np.full(len(y), np.nan)
    folds: dict[str, dict[str, float]] = {}
    for name, train, test in loso_splits(sites.to_numpy(), target):
        model = logistic(c).fit(x[train], target[train].astype(int))
        prob = model.predict_proba(x[test])[:, 1]
        held_out[test] = prob
        folds[name] = fold_scores(target[test], prob, (prob >= 0.5).astype(int))
    return folds, held_out


def single_measure(z: pd.Series, y: pd.Series, sites: pd.Series) -> dict[str, float]:
    """AUC of one site-normalised measure for exclude (> 0.5: higher is worse), pooled and per site.

    ``sites_agreeing`` counts the sites (with both classes) whose own AUC lies
    strictly on the same side of 0.5 as the pooled one; ``sites_tied`` those at
    exactly 0.5 (a measure constant there, like QI1 at most ABIDE sites).
    """
    keep = y.notna().to_numpy() & np.isfinite(z.to_numpy(float))
    zz, yy, ss = z.to_numpy(float)[keep], y.to_numpy(float)[keep].astype(int), sites.to_numpy()[keep]
    pooled = float(roc_auc_score(yy, zz))
    per_site = [float(roc_auc_score(yy[ss == s], zz[ss == s])) for s in sorted(set(ss.tolist()))
                if np.unique(yy[ss == s]).size == 2]
    side = pooled > 0.5
    return {"auc": pooled, "higher_is_worse": bool(side),
            "auc_site_median": float(np.median(per_site)) if per_site else math.nan,
            "auc_site_min": float(min(per_site)) if per_site else math.nan,
            "auc_site_max": float(max(per_site)) if per_site else math.nan,
            "sites": len(per_site), "sites_agreeing": int(sum(a != 0.5 and (a > 0.5) == side for a in per_site)),
            "sites_tied": int(sum(a == 0.5 for a in per_site))}


@dataclass(frozen=True, slots=True)
class Selection:
    """Which measures a consistent model keeps, from training data only."""

    min_auc: float = 0.55  # pooled AUC (in the measure's direction) a measure needs alone
    min_agree: float = 0.75  # fraction of the sites whose own AUC must be on the same side


def consistent_fit(z: pd.DataFrame, y: pd.Series, sites: pd.Series, rule: Selection = Selection(),
                   c: float = 1.0) -> tuple[LogisticRegression | None, list[str], dict[str, bool]]:
    """Logistic model on the measures that are consistent alone, with coefficients of their own sign.

    A measure is kept when, alone, its pooled AUC is at least ``rule.min_auc``
    in its direction and that direction holds at ``rule.min_agree`` of the
    sites; the model is refitted without any kept measure whose coefficient
    contradicts its direction (a suppressor of a collinear partner) until none
    does.  Returns the model (``None`` if nothing is kept), the kept columns and
    every candidate's direction (``True``: higher is worse).
    """
    directions, kept = {}, []
    for col in z.columns:
        one = single_measure(z[col], y, sites)
        directions[col] = one["higher_is_worse"]
        strength = max(one["auc"], 1.0 - one["auc"])
        if one["sites"] and strength >= rule.min_auc and one["sites_agreeing"] >= rule.min_agree * one["sites"]:
            kept.append(col)
    rows = y.notna().to_numpy()
    while kept:
        model = logistic(c).fit(z[kept].to_numpy(float)[rows], y.to_numpy()[rows].astype(int))
        wrong = [col for col, w in zip(kept, model.coef_[0]) if (w > 0) != directions[col]]
        if not wrong:
            return model, kept, directions
        kept = [col for col in kept if col not in wrong]
    return None, [], directions


def loso_consistent(z: pd.DataFrame, y: pd.Series, sites: pd.Series, rule: Selection = Selection(),
                    ) -> tuple[dict[str, dict[str, float]], np.ndarray, dict[str, int]]:
    """LOSO of :func:`consistent_fit`, the selection redone on each fold's training sites.

    Returns the per-site scores, the held-out probabilities and how many folds kept each measure.
    """
    target = y.to_numpy(float)
    held_out = np.full(len(y), np.nan)
    folds: dict[str, dict[str, float]] = {}
    times_kept = dict.fromkeys(z.columns, 0)
    for name, train, test in loso_splits(sites.to_numpy(), target):
        model, kept, _ = consistent_fit(z.iloc[train], y.iloc[train], sites.iloc[train], rule)
        for col in kept:
            times_kept[col] += 1
        prob = (model.predict_proba(z.iloc[test][kept].to_numpy(float))[:, 1] if model is not None
                else np.full(test.size, 0.5))
        held_out[test] = prob
        folds[name] = fold_scores(target[test], prob, (prob >= 0.5).astype(int))
    return folds, held_out, times_kept


def cross_dataset_logistic(z_train: pd.DataFrame, y_train: pd.Series, z_test: pd.DataFrame,
                           y_test: pd.Series, c: float = 1.0) -> tuple[LogisticRegression, dict[str, float]]:
    """Fit on one dataset's labelled rows, score the other's (both site-normalised)."""
    tr, te = y_train.notna().to_numpy(), y_test.notna().to_numpy()
    model = logistic(c).fit(z_train.to_numpy(float)[tr], y_train.to_numpy()[tr].astype(int))
    prob = model.predict_proba(z_test.to_numpy(float)[te])[:, 1]
    return model, fold_scores(y_test.to_numpy()[te], prob, (prob >= 0.5).astype(int))


def rater_agreement(frame: pd.DataFrame) -> dict[str, float]:
    """Cohen's kappa on the three-level ratings for each pair of raters who both rated a scan."""
    from sklearn.metrics import cohen_kappa_score

    out: dict[str, float] = {}
    present = [r for r in RATERS if r in frame.columns]
    for i, a in enumerate(present):
        for b in present[i + 1:]:
            both = frame[a].notna() & frame[b].notna()
            if both.sum() >= 10:
                out[f"{a}~{b}"] = float(cohen_kappa_score(frame.loc[both, a], frame.loc[both, b]))
                out[f"{a}~{b}_n"] = int(both.sum())
    return out
