"""Build a small real OUTPUT for ``pretrain bench-loader``: MNI152 T1 and pydeface's head, via ``curate build``.

Usage: ``python benchmarks/make_loader_output.py bench_out/loader`` -> ``bench_out/loader/source``
(NIfTI folder) and ``bench_out/loader/output`` (manifest + arrays).  The head
(0.98 mm) is resampled to 1 mm; the MNI template is already 1 mm.  The head's
anonymization mask is pydeface's face region, handed to the arrays stage the
way the masks stage would.  Prints the arrays stage's time per image.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import nibabel as nib
import numpy as np


def make_source(root: Path) -> None:
    import pydeface
    from nilearn.datasets import load_mni152_template

    root.mkdir(parents=True, exist_ok=True)
    data_dir = Path(pydeface.__file__).parent / "data"
    shutil.copy(data_dir / "mean_reg2mean.nii.gz", root / "sub-head_T1w.nii.gz")
    mni = load_mni152_template(resolution=1)
    img = nib.Nifti1Image(np.rint(np.asarray(mni.dataobj, np.float32) * 1000).astype(np.int16), mni.affine)
    img.header.set_data_dtype(np.int16)
    nib.save(img, str(root / "sub-mni_T1w.nii.gz"))


def time_stage(source: Path) -> None:
    """Time the arrays maths and the write separately, per image."""
    import pydeface

    from curate.array_file import write_array
    from curate.arrays import prepare

    face = np.asarray(nib.load(Path(pydeface.__file__).parent / "data" / "facemask.nii.gz").dataobj) < 0.5
    for path in sorted(source.glob("*.nii.gz")):
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, np.float32)
        anon = face.astype(np.uint8) if "head" in path.name else None
        t0 = time.perf_counter()
        out = prepare(data, img.affine, None, anon)
        t1 = time.perf_counter()
        write_array(Path("/tmp") / f"_timing_{path.stem}.b2z", out.image, out.masks, {})
        t2 = time.perf_counter()
        Path(f"/tmp/_timing_{path.stem}.b2z").unlink()
        print(f"{path.name}: {data.shape} -> {out.image.shape}; prepare {t1 - t0:.2f} s, write {t2 - t1:.2f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    args = parser.parse_args()
    from curate.cli import main as curate_main

    make_source(args.root / "source")
    code = curate_main(["build", str(args.root / "source"), str(args.root / "output"), "--workers", "1", "-q"])
    time_stage(args.root / "source")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
