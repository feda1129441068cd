"""Which of our measures track human QC ratings? Leave-one-site-out on the ratings mriqc-learn ships.

Run (LR parts: seconds; MRIQC's own classifier: ~1 CPU-minute per fold at 200 selector trees)::

    PYTHONPATH=. python benchmarks/bench_iqs_ratings.py [--selector-trees 200] [--mriqc-schemes ...]

Writes ``benchmarks/results/iqs_ratings.json`` (everything), ``iqs_ratings_weights.json``
(directions and weights of our measures, for the IQS calibration) and
``bench_iqs_ratings.md`` (the tables of docs/iqs-ratings.md).  Reads only the
tables inside the installed ``mriqc-learn`` wheel; nothing is downloaded.

(a) MRIQC's classifier as the wheel builds it (:mod:`mriqc_learn_pipeline`), LOSO on ABIDE;
(b) logistic regression on site-normalised IQMs, restricted to those our
    measures correspond to (:data:`qc.ratings_eval.LINKS`), and each IQM alone;
(c) both trained on all of ABIDE and tested on DS030.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from mriqc_learn_pipeline import init_pipeline, sklearn_compat  # noqa: E402

from qc import ratings_eval as rev  # noqa: E402

RESULTS = Path(__file__).parent / "results"
IQS_MEASURES = ("nsr", "fwhm_mm", "qi1", "inu")  # the inputs of today's IQS components
PRIMARY = "majority"


def feature_sets(abide: pd.DataFrame) -> dict[str, list[str]]:
    """The IQM sets the logistic model is run on."""
    return {"ours": [lk.iqm for lk in rev.LINKS],
            "iqs_inputs": [lk.iqm for lk in rev.links(IQS_MEASURES)],
            "all_iqms": rev.iqm_columns(abide)}


def _mriqc_frame(frame: pd.DataFrame) -> pd.DataFrame:
    cols = rev.iqm_columns(frame) + [c for c in rev.GEOMETRY if c in frame.columns]
    out = frame[cols].copy()
    out["site"] = frame["site"].to_numpy()
    return out


#: The wheel's site selector fails (roc_auc_score raises) when its random 33 % split misses a
#: site; sites with fewer labelled scans than this are left out of its training parts.
MIN_SITE_ROWS = 10


def _big_sites(sites: np.ndarray, rows: np.ndarray) -> np.ndarray:
    names, counts = np.unique(sites[rows], return_counts=True)
    big = set(names[counts >= MIN_SITE_ROWS].tolist())
    return rows[np.isin(sites[rows], list(big))]


def mriqc_loso(abide: pd.DataFrame, y: pd.Series, trees: int) -> dict[str, Any]:
    """(a): the wheel's pipeline, refitted on each LOSO training part."""
    x, target = _mriqc_frame(abide), y.to_numpy(float)
    held_out, folds = np.full(len(y), np.nan), {}
    cpu = time.process_time()
    sites = abide["site"].to_numpy()
    for name, train, test in rev.loso_splits(sites, target):
        train = _big_sites(sites, train)
        np.random.seed(0)  # the selection steps' extra trees draw from numpy's global state
        with sklearn_compat():
            pipe = init_pipeline(trees).fit(x.iloc[train], target[train].astype(int))
            prob = pipe.predict_proba(x.iloc[test])[:, 1]
            predicted = pipe.predict(x.iloc[test])
        held_out[test] = prob
        folds[name] = rev.fold_scores(target[test], prob, predicted)
        print(f"  mriqc fold {json.dumps({name: folds[name]})}", flush=True)
    return {"folds": folds, "summary": rev.summarise(folds, target, held_out),
            "cpu_s": time.process_time() - cpu}


def mriqc_cross(abide: pd.DataFrame, y_a: pd.Series, ds030: pd.DataFrame, y_d: pd.Series,
                trees: int) -> dict[str, Any]:
    """(c) for MRIQC's pipeline: fit on all labelled ABIDE, score labelled DS030."""
    tr = _big_sites(abide["site"].to_numpy(), np.flatnonzero(y_a.notna().to_numpy()))
    te = y_d.notna().to_numpy()
    np.random.seed(0)
    with sklearn_compat():
        pipe = init_pipeline(trees).fit(_mriqc_frame(abide).iloc[tr], y_a.to_numpy()[tr].astype(int))
        xd = _mriqc_frame(ds030)[te]
        prob, predicted = pipe.predict_proba(xd)[:, 1], pipe.predict(xd)
    dropped = set(rev.GEOMETRY) | {"site"} | set(pipe.named_steps["site_pred"].drop or ())
    dropped |= set(pipe.named_steps["winnow"].drop or ())
    kept = [c for c in rev.iqm_columns(abide) if c not in dropped]
    return {**rev.fold_scores(y_d.to_numpy()[te], prob, predicted), "features_kept": kept}


def run_mriqc(abide: pd.DataFrame, ds030: pd.DataFrame, scheme: str, trees: int) -> dict[str, Any]:
    """(a) and (c) for MRIQC's classifier under one label scheme."""
    print(f"MRIQC classifier, {scheme}", flush=True)
    y_a, y_d = rev.binary_labels(abide, scheme), rev.binary_labels(ds030, scheme)
    part = mriqc_loso(abide, y_a, trees)
    part["cross_dataset"] = mriqc_cross(abide, y_a, ds030, y_d, trees)
    return part


def logistic_parts(abide: pd.DataFrame, ds030: pd.DataFrame, scheme: str) -> dict[str, Any]:
    """(b) and (c) for the logistic model and single IQMs, under one label scheme."""
    y_a, y_d = rev.binary_labels(abide, scheme), rev.binary_labels(ds030, scheme)
    out: dict[str, Any] = {"labels": {"abide": _counts(y_a), "ds030": _counts(y_d)}, "logistic": {}}
    for name, cols in feature_sets(abide).items():
        z_a = rev.site_normalise(abide, cols)
        z_d = rev.site_normalise(ds030, cols)
        folds, held = rev.loso_logistic(z_a, y_a, abide["site"])
        model, cross = rev.cross_dataset_logistic(z_a, y_a, z_d, y_d)
        out["logistic"][name] = {"features": cols, "folds": folds,
                                 "summary": rev.summarise(folds, y_a.to_numpy(float), held),
                                 "cross_dataset": cross,
                                 "coef": dict(zip(cols, model.coef_[0].tolist()))}
    out["logistic"]["ours_consistent"] = consistent_part(abide, ds030, y_a, y_d)
    iqms = rev.iqm_columns(abide)
    z_a, z_d = rev.site_normalise(abide, iqms), rev.site_normalise(ds030, iqms)
    out["single"] = {}
    for col in iqms:
        one = rev.single_measure(z_a[col], y_a, abide["site"])
        cross = rev.single_measure(z_d[col], y_d, ds030["site"])
        one["ds030_auc"] = cross["auc"]  # pooled over DS030's two sites; > 0.5: higher is worse there
        out["single"][col] = one
    return out


def consistent_part(abide: pd.DataFrame, ds030: pd.DataFrame, y_a: pd.Series,
                    y_d: pd.Series) -> dict[str, Any]:
    """The sign-consistent model on our IQMs: LOSO with selection per fold, then fitted on all ABIDE."""
    cols = [lk.iqm for lk in rev.LINKS]
    z_a, z_d = rev.site_normalise(abide, cols), rev.site_normalise(ds030, cols)
    folds, held, times_kept = rev.loso_consistent(z_a, y_a, abide["site"])
    model, kept, directions = rev.consistent_fit(z_a, y_a, abide["site"])
    te = y_d.notna().to_numpy()
    prob = model.predict_proba(z_d[kept].to_numpy(float)[te])[:, 1]
    cross = rev.fold_scores(y_d.to_numpy()[te], prob, (prob >= 0.5).astype(int))
    return {"features": kept, "folds": folds, "summary": rev.summarise(folds, y_a.to_numpy(float), held),
            "cross_dataset": cross, "coef": dict(zip(kept, model.coef_[0].tolist())),
            "folds_keeping": times_kept, "directions": directions,
            "rule": {"min_auc": rev.Selection().min_auc, "min_agree": rev.Selection().min_agree}}


def _counts(y: pd.Series) -> dict[str, int]:
    return {"exclude": int((y == 1).sum()), "accept": int((y == 0).sum()), "left_out": int(y.isna().sum())}


def weights(result: dict[str, Any]) -> dict[str, Any]:
    """Directions and weights of our measures from the primary scheme's ``ours`` model."""
    part = result["schemes"][PRIMARY]
    coef = part["logistic"]["ours"]["coef"]
    chosen = part["logistic"]["ours_consistent"]
    total = sum(abs(v) for v in chosen["coef"].values())
    n_folds = chosen["summary"]["folds"]
    rows = {}
    for lk in rev.LINKS:
        single = part["single"][lk.iqm]
        # nsr is the inverse of its IQM: the logged feature flips sign.
        sign = -1.0 if lk.ours == "nsr" else 1.0
        rows[lk.ours] = {"iqm": lk.iqm, "match": lk.match,
                         "higher_is_worse": bool(single["higher_is_worse"]) ^ (sign < 0),
                         "loso_auc_alone": max(single["auc"], 1 - single["auc"]),
                         "ds030_auc_alone": (single["ds030_auc"] if single["higher_is_worse"]
                                             else 1 - single["ds030_auc"]),
                         "sites_agreeing": f"{single['sites_agreeing']}/{single['sites']}",
                         "coef_all_ten": sign * coef[lk.iqm],
                         "coef": sign * chosen["coef"].get(lk.iqm, 0.0),
                         "folds_keeping": f"{chosen['folds_keeping'][lk.iqm]}/{n_folds}",
                         "weight": abs(chosen["coef"].get(lk.iqm, 0.0)) / total}
    return {"scheme": PRIMARY,
            "model": "L2 logistic regression (C=1, classes balanced) on per-site robust z-scores "
                     "(log of ratios, clipped at +-5) of the measures that are consistent alone "
                     f"(rule {chosen['rule']}) and keep their sign; fitted on all labelled ABIDE scans",
            "use": "weights are per site-IQR of the measure: they rank scans within a site or batch; "
                   "they give no absolute threshold",
            "loso_auc_pooled": chosen["summary"]["pooled_auc"],
            "loso_auc_mean": chosen["summary"]["auc_mean"],
            "ds030_auc": chosen["cross_dataset"]["auc"], "measures": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--selector-trees", type=int, default=200)
    parser.add_argument("--mriqc-schemes", nargs="*", default=["r3_doubtful_exclude", PRIMARY],
                        choices=rev.SCHEMES)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--reuse-mriqc", type=Path, nargs="*", default=None,
                        help="take the MRIQC-classifier parts from earlier JSON files")
    parser.add_argument("--mriqc-only", type=Path, default=None,
                        help="run only MRIQC's classifier and write its parts to this JSON")
    args = parser.parse_args(argv)
    abide, ds030 = rev.load_ratings("abide"), rev.load_ratings("ds030")
    if args.mriqc_only is not None:
        mriqc = {"selector_trees": args.selector_trees,
                 "schemes": {s: {"mriqc": run_mriqc(abide, ds030, s, args.selector_trees)}
                             for s in args.mriqc_schemes}}
        _write(args.mriqc_only, json.dumps(mriqc, indent=1))
        return 0
    result: dict[str, Any] = {"agreement": rev.rater_agreement(abide), "schemes": {},
                              "selector_trees": args.selector_trees}
    for scheme in rev.SCHEMES:
        result["schemes"][scheme] = logistic_parts(abide, ds030, scheme)
    for path in args.reuse_mriqc or []:
        earlier = json.loads(path.read_text(encoding="utf-8"))
        result["selector_trees"] = earlier["selector_trees"]
        for scheme, part in earlier["schemes"].items():
            if "mriqc" in part:
                result["schemes"][scheme]["mriqc"] = part["mriqc"]
    for scheme in args.mriqc_schemes if args.reuse_mriqc is None else []:
        result["schemes"][scheme]["mriqc"] = run_mriqc(abide, ds030, scheme, args.selector_trees)
    args.out.mkdir(parents=True, exist_ok=True)
    _write(args.out / "iqs_ratings.json", json.dumps(result, indent=1, default=float))
    _write(args.out / "iqs_ratings_weights.json", json.dumps(weights(result), indent=1))
    from bench_iqs_ratings_report import markdown  # noqa: E402  (tables only)

    _write(args.out / "bench_iqs_ratings.md", markdown(result, weights(result)))
    print((args.out / "bench_iqs_ratings.md").read_text())
    return 0


def _write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    tmp.replace(path)


if __name__ == "__main__":
    raise SystemExit(main())
