"""A real OUTPUT with a heavy-tailed split over datasets, for the balance benchmark.

Copies NIfTI scans of the shared real-scan corpus (``/work/cache/realscans``, or
``--corpus``) into a folder of three BIDS datasets of 8, 3 and 1 scans, then runs
``curate build`` on it::

    python benchmarks/make_balance_output.py /work/cache/balance
    pretrain bench-loader /work/cache/balance/output --balance-only --patch-size 96 --seconds 60
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

SIZES = {"big": 8, "mid": 3, "small": 1}
MODALITIES = ("T1w", "T2w", "PDw", "FLAIR")


def make_source(corpus: Path, root: Path) -> None:
    scans = [s for s in json.loads((corpus / "corpus.json").read_text())["scans"]
             if s.get("modality") in MODALITIES and (corpus / "scans" / f"{s['id']}.nii.gz").is_file()]
    need = sum(SIZES.values())
    if len(scans) < need:
        raise SystemExit(f"the corpus has {len(scans)} usable NIfTI scans, {need} needed")
    it = iter(scans)
    for name, n in SIZES.items():
        ds = root / name
        ds.mkdir(parents=True, exist_ok=True)
        (ds / "dataset_description.json").write_text(json.dumps({"Name": name, "BIDSVersion": "1.8.0"}))
        for k in range(n):
            scan = next(it)
            anat = ds / f"sub-{k:02d}" / "anat"
            anat.mkdir(parents=True, exist_ok=True)
            shutil.copy(corpus / "scans" / f"{scan['id']}.nii.gz", anat / f"sub-{k:02d}_{scan['modality']}.nii.gz")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("root", type=Path)
    p.add_argument("--corpus", type=Path, default=Path("/work/cache/realscans"))
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args(argv)
    make_source(args.corpus, args.root / "source")
    return subprocess.call([sys.executable, "-m", "curate.cli", "build", str(args.root / "source"),
                            str(args.root / "output"), "--workers", str(args.workers), "-q"])


if __name__ == "__main__":
    raise SystemExit(main())
