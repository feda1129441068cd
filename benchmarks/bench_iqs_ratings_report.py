"""Markdown tables of ``bench_iqs_ratings.py``'s result (no computation here)."""

from __future__ import annotations

from typing import Any

SCHEME_TEXT = {
    "majority": "strict majority of the scan's raters; doubtful majorities and ties left out",
    "any_exclude": "exclude if any rater excluded; accept only if all raters accepted",
    "r3_doubtful_exclude": "rater 3 (DS030: its one rater), doubtful = exclude (mriqc-learn's training script)",
    "r3_doubtful_accept": "rater 3 (DS030: its one rater), doubtful = accept (MRIQC 0.x mriqc_clf)",
}


def _pm(summary: dict[str, float], key: str) -> str:
    return f"{summary[key + '_mean']:.3f} ± {summary[key + '_sd']:.3f}"


def _loso_row(label: str, summary: dict[str, float], cross: dict[str, Any]) -> str:
    return (f"| {label} | {summary['folds']} | {_pm(summary, 'auc')} | {summary['pooled_auc']:.3f} | "
            f"{_pm(summary, 'accuracy')} | {_pm(summary, 'balanced_accuracy')} | "
            f"{summary['accept_all_accuracy_mean']:.3f} | {cross['auc']:.3f} | {cross['accuracy']:.3f} | "
            f"{cross['balanced_accuracy']:.3f} | {cross['accept_all_accuracy']:.3f} |")


def model_table(result: dict[str, Any]) -> list[str]:
    """One row per scheme and model: LOSO on ABIDE, then ABIDE -> DS030."""
    lines = ["| scheme / model | LOSO folds | AUC (mean ± SD over sites) | pooled AUC | accuracy | "
             "balanced acc. | accept-all acc. | DS030 AUC | DS030 acc. | DS030 bal. acc. | "
             "DS030 accept-all |", "|" + "---|" * 11]
    for scheme, part in result["schemes"].items():
        if "mriqc" in part:
            lines.append(_loso_row(f"`{scheme}` MRIQC classifier (wheel's pipeline)",
                                   part["mriqc"]["summary"], part["mriqc"]["cross_dataset"]))
        for name, fit in part["logistic"].items():
            lines.append(_loso_row(f"`{scheme}` logistic, {name} ({len(fit['features'])} IQMs)",
                                   fit["summary"], fit["cross_dataset"]))
    return lines


def label_table(result: dict[str, Any]) -> list[str]:
    lines = ["| scheme | rule | ABIDE exclude / accept / left out | DS030 exclude / accept / left out |",
             "|---|---|---|---|"]
    for scheme, part in result["schemes"].items():
        a, d = part["labels"]["abide"], part["labels"]["ds030"]
        lines.append(f"| `{scheme}` | {SCHEME_TEXT[scheme]} | {a['exclude']} / {a['accept']} / "
                     f"{a['left_out']} | {d['exclude']} / {d['accept']} / {d['left_out']} |")
    return lines


def weight_table(weights: dict[str, Any]) -> list[str]:
    lines = ["| our measure | MRIQC IQM | match | higher is worse | LOSO AUC alone | sites agreeing | "
             "DS030 AUC alone (ABIDE direction) | coef., all ten | coef., consistent model | "
             "LOSO folds keeping it | weight |",
             "|" + "---|" * 11]
    for ours, row in weights["measures"].items():
        lines.append(f"| `{ours}` | `{row['iqm']}` | {row['match']} | {'yes' if row['higher_is_worse'] else 'no'} "
                     f"| {row['loso_auc_alone']:.3f} | {row['sites_agreeing']} | {row['ds030_auc_alone']:.3f} | "
                     f"{row['coef_all_ten']:+.3f} | {row['coef']:+.3f} | {row['folds_keeping']} | "
                     f"{row['weight']:.2f} |")
    return lines


def top_single(result: dict[str, Any], scheme: str, count: int = 12) -> list[str]:
    single = result["schemes"][scheme]["single"]
    ranked = sorted(single.items(), key=lambda kv: -abs(kv[1]["auc"] - 0.5))[:count]
    lines = ["| IQM | pooled AUC (> 0.5: higher is worse) | per-site AUC median [min, max] | "
             "sites agreeing | DS030 AUC |", "|---|---|---|---|---|"]
    for col, s in ranked:
        lines.append(f"| `{col}` | {s['auc']:.3f} | {s['auc_site_median']:.3f} [{s['auc_site_min']:.2f}, "
                     f"{s['auc_site_max']:.2f}] | {s['sites_agreeing']}/{s['sites']} | {s['ds030_auc']:.3f} |")
    return lines


def markdown(result: dict[str, Any], weights: dict[str, Any]) -> str:
    agree = result["agreement"]
    kappas = ", ".join(f"{k.replace('~', ' vs ')} κ = {v:.2f} (n = {agree[k + '_n']})"
                       for k, v in agree.items() if not k.endswith("_n"))
    parts = ["## Labels", "", *label_table(result), "", f"Rater agreement on ABIDE (three levels): {kappas}.",
             "", "## Exclude vs accept: leave-one-site-out on ABIDE, and trained on ABIDE tested on DS030", "",
             *model_table(result), "",
             f"MRIQC classifier: the wheel's production pipeline, selection steps at "
             f"{result['selector_trees']} trees (wheel: 1000).", "",
             f"## Our measures, `{weights['scheme']}` labels", "", *weight_table(weights), "",
             f"## Strongest single IQMs, `{weights['scheme']}` labels", "",
             *top_single(result, weights["scheme"])]
    return "\n".join(parts)
