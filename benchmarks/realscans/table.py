"""The Markdown table of ``docs/realscans.md``, made from a built ``corpus.json``.

Usage: ``python -m benchmarks.realscans.table [CORPUS_DIR] > table.md``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmarks.realscans.build_corpus import default_out

COLUMNS = ("id", "source", "provenance", "licence", "modality", "vendor / field", "voxel (mm)",
           "shape, dtype", "background", "face / skull", "template", "CI")


def _provenance(p: dict) -> str:
    if p["kind"] in ("pip", "deb"):
        return f"{p['kind']} `{p['package']}` {p['version']}: `{p['path']}`"
    return f"`{p['repo']}` @{p['commit'][:10]}: `{p['path']}`"


def row(e: dict) -> str:
    """One table row for one corpus entry."""
    vendor = " ".join(str(x) for x in (e.get("vendor"), e.get("model")) if x) or "?"
    field = f"{e['field_strength_t']} T" if e.get("field_strength_t") else "?"
    cells = (
        e["id"], e["source"], _provenance(e["provenance"]), e["licence"], e["modality"],
        f"{vendor}, {field}", " x ".join(f"{z:g}" for z in e["voxel_size_mm"]),
        f"{'x'.join(map(str, e['shape']))} {e['dtype']}",
        f"{e['background']} ({e['border_zero_fraction']:.2f})", f"{e['face']} / {e['skull']}",
        "yes" if e["is_template"] else "no", "yes" if e["ci"] else "no",
    )
    return "| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |"


def table(entries: list[dict]) -> str:
    """The whole Markdown table."""
    head = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS)
    return "\n".join([head, *(row(e) for e in entries)])


def main(argv: list[str] | None = None) -> int:
    """Print the table of the corpus in ``argv[0]`` (default: the cache directory)."""
    args = sys.argv[1:] if argv is None else argv
    root = Path(args[0]) if args else default_out()
    print(table(json.loads((root / "corpus.json").read_text())["scans"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
