"""Assemble the real-scan corpus into a cache directory.

Usage::

    python -m benchmarks.realscans.build_corpus [--out DIR] [--mirror DIR] [--only ID ...]

``--out`` defaults to ``$MRI_CURATE_REALSCANS`` or ``/work/cache/realscans``; ``--mirror`` to
``/work/.mirror`` (snapshots made by ``fetch``). Each scan is written as ``scans/<id>.nii.gz``
(its on-disk dtype kept) with ``masks/<id>_brain.nii.gz`` / ``masks/<id>_face.nii.gz`` where a
mask ships with it, and an entry in ``corpus.json`` (rewritten atomically after every scan, so
readers can start early). A scan whose source is absent is skipped with a message. Reruns keep
the scans already built from the same provenance. ``READY`` is touched at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np

from benchmarks.realscans.catalogue import CATALOGUE, ScanSpec, background_kind
from benchmarks.realscans.resolve import SourceMissing, local_file, load_volume, open_spec

DEFAULT_OUT = Path("/work/cache/realscans")
DEFAULT_MIRROR = Path("/work/.mirror")
SCHEMA_VERSION = 1


def default_out() -> Path:
    """The cache directory: ``$MRI_CURATE_REALSCANS`` or ``/work/cache/realscans``."""
    return Path(os.environ.get("MRI_CURATE_REALSCANS", DEFAULT_OUT))


def border_zero_fraction(data: np.ndarray) -> float:
    """Fraction of exact zeros in the outer 5 % (at least 2 voxels) of each axis."""
    border = np.zeros(data.shape, dtype=bool)
    for axis, n in enumerate(data.shape):
        k = max(2, n // 20)
        lo = [slice(None)] * data.ndim
        hi = [slice(None)] * data.ndim
        lo[axis], hi[axis] = slice(0, k), slice(n - k, n)
        border[tuple(lo)] = True
        border[tuple(hi)] = True
    return float(np.mean(data[border] == 0))


def save_atomic(img: nib.Nifti1Image, path: Path) -> None:
    """Write ``img`` to ``path`` through a temporary file in the same folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.nii.gz")
    nib.save(img, tmp)
    os.replace(tmp, path)


def write_index(out: Path, entries: dict[str, dict]) -> None:
    """Rewrite ``corpus.json`` atomically (entries in catalogue order)."""
    order = {s.id: i for i, s in enumerate(CATALOGUE)}
    scans = sorted(entries.values(), key=lambda e: order.get(e["id"], len(order)))
    tmp = out / ".corpus.json.tmp"
    tmp.write_text(json.dumps({"schema": SCHEMA_VERSION, "scans": scans}, indent=1))
    os.replace(tmp, out / "corpus.json")


def save_mask(spec_kind: str, locator: str, ref: nib.Nifti1Image, path: Path,
              mirror: Path, work: Path) -> str:
    """Binarise (> 0) the mask image at ``locator`` and save it as uint8 next to the scan."""
    img = load_volume(local_file(spec_kind, locator, mirror, work))
    if img.shape[:3] != ref.shape[:3] or not np.allclose(img.affine, ref.affine, atol=1e-3):
        raise ValueError(f"mask {locator} is not on the scan's grid")
    mask = (np.asanyarray(img.dataobj) > 0).astype(np.uint8)
    save_atomic(nib.Nifti1Image(mask, ref.affine), path)
    return str(path.relative_to(path.parents[1]))


def labels(spec: ScanSpec) -> dict:
    """The entry fields that come from the catalogue (refreshed on every run)."""
    return {
        "source": spec.source, "licence": spec.licence, "modality": spec.modality,
        "face": spec.face, "skull": spec.skull, "is_template": spec.is_template,
        "subject": spec.subject, "ci": spec.ci, "notes": spec.notes,
    }


def entry_for(spec: ScanSpec, img: nib.Nifti1Image, sidecar: dict, prov: dict) -> dict:
    """The ``corpus.json`` entry of one scan (measured fields from ``img``)."""
    data = np.asanyarray(img.dataobj)
    bzf = border_zero_fraction(data)
    return {
        "id": spec.id, **labels(spec), "provenance": prov,
        "vendor": sidecar.get("Manufacturer", spec.vendor),
        "model": sidecar.get("ManufacturersModelName"),
        "field_strength_t": sidecar.get("MagneticFieldStrength", spec.field_t),
        "voxel_size_mm": [round(float(z), 4) for z in img.header.get_zooms()[:3]],
        "shape": [int(n) for n in img.shape[:3]], "dtype": str(img.get_data_dtype()),
        "background": background_kind(bzf), "border_zero_fraction": round(bzf, 3),
        "path": f"scans/{spec.id}.nii.gz", "brain_mask": None, "face_mask": None,
    }


def build_one(spec: ScanSpec, out: Path, mirror: Path) -> dict:
    """Build one scan (and its masks) into ``out``; return its entry."""
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        work = Path(tmp)
        img, sidecar, prov = open_spec(spec, mirror, work)
        entry = entry_for(spec, img, sidecar, prov)
        save_atomic(img, out / entry["path"])
        for field, locator in (("brain_mask", spec.brain_mask), ("face_mask", spec.face_mask)):
            if locator:
                name = f"{spec.id}_{field.split('_')[0]}.nii.gz"
                entry[field] = save_mask(spec.kind, locator, img, out / "masks" / name, mirror, work)
    return entry


def load_index(out: Path) -> dict[str, dict]:
    """Entries of an existing ``corpus.json`` still catalogued and with their files there.

    Their catalogue fields are refreshed, so relabelling a scan needs no rebuild.
    """
    index = out / "corpus.json"
    if not index.is_file():
        return {}
    specs = {s.id: s for s in CATALOGUE}
    scans = json.loads(index.read_text()).get("scans", [])
    return {e["id"]: {**e, **labels(specs[e["id"]])} for e in scans
            if e.get("id") in specs and (out / e["path"]).is_file()}


def build(out: Path, mirror: Path, only: set[str] | None = None, force: bool = False) -> dict:
    """Build every catalogued scan into ``out``; return the entries by id."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "READY").unlink(missing_ok=True)
    entries = load_index(out)
    for spec in CATALOGUE:
        if only and spec.id not in only:
            continue
        if spec.id in entries and not force:
            print(f"kept    {spec.id}")
            continue
        try:
            entries[spec.id] = build_one(spec, out, mirror)
        except (SourceMissing, ValueError, OSError) as err:
            print(f"skipped {spec.id}: {err}", file=sys.stderr)
            continue
        write_index(out, entries)
        print(f"built   {spec.id}")
    write_index(out, entries)
    if not only:
        prune(out, entries)
    (out / "READY").touch()
    return entries


def prune(out: Path, entries: dict[str, dict]) -> None:
    """Delete ``scans/`` and ``masks/`` files no entry refers to (scans dropped from the catalogue)."""
    used = {e[k] for e in entries.values() for k in ("path", "brain_mask", "face_mask") if e.get(k)}
    for folder in ("scans", "masks"):
        for path in (out / folder).glob("*.nii.gz"):
            if f"{folder}/{path.name}" not in used:
                path.unlink()


def summary(entries: dict[str, dict]) -> str:
    """Counts by source, modality, face/skull state and template status."""
    lines = [f"{len(entries)} scans"]
    for key in ("source", "modality", "background", "is_template", "ci"):
        counts: dict[str, int] = {}
        for e in entries.values():
            counts[str(e[key])] = counts.get(str(e[key]), 0) + 1
        lines.append(f"{key}: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    states: dict[str, int] = {}
    for e in entries.values():
        states[f"face={e['face']}/skull={e['skull']}"] = states.get(
            f"face={e['face']}/skull={e['skull']}", 0) + 1
    lines.append("state: " + ", ".join(f"{k}: {v}" for k, v in sorted(states.items())))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=default_out())
    parser.add_argument("--mirror", type=Path, default=DEFAULT_MIRROR)
    parser.add_argument("--only", nargs="*", help="build only these ids")
    parser.add_argument("--force", action="store_true", help="rebuild scans already there")
    args = parser.parse_args(argv)
    entries = build(args.out, args.mirror, set(args.only) if args.only else None, args.force)
    print(summary(entries))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
