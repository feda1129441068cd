"""Plot of the fitted IQS calibration: component and total score against each degradation level."""

from __future__ import annotations

import json
import math
from pathlib import Path

from qc.iqs import COMPONENTS, combine, component, load_calibration


def scores_at(values: dict[str, float], family: dict) -> tuple[dict[str, float], float]:
    """Component scores and the IQS (no flags) of one measured image."""
    parts = {c: component(values, family["components"][c]) if c in family["components"] else math.nan
             for c in COMPONENTS}
    return parts, combine(list(parts.values()), fov_suboptimal=False, corrupted=False)


def plot(calibration_path: Path, raw_path: Path, out: Path) -> None:
    """Write a grid of small plots, one per (family, degradation), to ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    calibration = load_calibration(calibration_path)
    raw = json.loads(raw_path.read_text(encoding="utf-8"))
    panels = [(fam, name, spec) for fam, degs in raw.items() for name, spec in degs.items()]
    cols = 3
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, (fam, name, spec) in zip(axes.ravel(), panels):
        family = calibration.families[fam]
        for image, series in spec["values"].items():
            comp, total = [], []
            for values in series:
                parts, iqs = scores_at(values, family)
                comp.append(parts[spec["component"]])
                total.append(iqs)
            ax.plot(spec["levels"], comp, "o-", label=f"{image}: iqs_{spec['component']}")
            ax.plot(spec["levels"], total, "s--", alpha=0.6, label=f"{image}: iqs")
        ax.set_title(f"{fam}: {name}", fontsize=8)
        ax.set_ylim(0.8, 5.2)
        ax.set_xlabel("severity", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    for ax in axes.ravel()[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"IQS calibration {calibration.version}: scores of degraded real images", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
