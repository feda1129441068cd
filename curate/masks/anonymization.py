"""Which anonymization an image went through, and the mask of what it removed or altered.

Classes: ``none``, ``defaced``, ``face_blurred``, ``skull_stripped``
(:class:`manifests.schema.Anonymization`).  ``anon_mask == 1`` marks voxels
whose content anonymization removed or altered; air around an intact head is
*not* anonymization, so an intact scan gets an empty mask.

Methods (template-free, on a ~2 mm RAS copy of the image; see :mod:`.geometry`)
------------------------------------------------------------------------------
* **Zero signal ("void").**  Defacing and skull-stripping tools set removed
  voxels to the image minimum (usually exactly 0), while real air holds
  Rician noise.  Voids are the voxels at the minimum value.
* **Skull-stripped**: the anatomy is brain-sized (``strip_*_volume_ml``), lies
  inside the field of view (except at its inferior face), sits in an almost entirely void background, and
  its depth profile (median intensity against distance from the surface, in
  the upper head) lacks the dark skull band between two brighter layers that
  every intact head shows in T1, T2, PD and FLAIR (cortical bone gives no
  signal).  The anon mask is a predicted head envelope minus the brain: the
  brain dilated by a scalp+skull shell, joined to the brain's axial footprint
  extruded downwards (face and neck), minus anatomy.
* **Defaced**: large *flat* faces of the head surface that border void,
  facing anterior or inferior, found by RANSAC on the boundary voxels whose own
  normals agree with the plane (so a plane crossing a curved scalp does not
  count) and away from the field-of-view edge (a head cropped by the FOV is not
  defaced).  The anon mask is the prism beyond each cut face (its footprint on
  the plane, up to ``cut_depth_mm`` deep), restricted to void voxels.  Flat cuts
  are the signature of quickshear, FSL/afni plane cuts and of pydeface's
  template mask (two planes).  A convex hull of the remaining head would not
  do: a planar cut is itself a face of that hull.
* **Face-blurred**: blurring removes noise texture.  The block RMS of the
  Laplacian (see :class:`.geometry.CoarseGrid`) is compared to its median over the cranium; when most tissue in the
  face zone (anterior 30% of the head, 110-200 mm below the vertex) is smooth
  while the cranium is not, the image is face-blurred and the smooth region
  around the face (tissue and nearby air, excluding void) is the anon mask.

Templates (pydeface, MNI) were not used: they would add a registration to the
3 s budget and ship only with optional packages.

Failure modes
-------------
* Images with a zeroed background *and* a flat-surfaced anatomy in the face
  zone (a phantom with flat faces) can be called defaced; the mask then covers
  air only, never anatomy.
* Defacing tools that replace the face with noise or a smooth "reface" instead
  of zeros leave no void: such images are called ``none`` (or ``face_blurred``).
* Blur detection needs noise: noise-free or heavily denoised images carry no
  texture to lose, and blurred faces in them are not detected.
* Skull-stripped images with a non-zero background, or partial strips that
  keep the skull, are not called skull-stripped.  Infants' or atrophic brains
  outside the volume range are missed.
* The envelope of a skull-stripped brain is a geometric guess; very large or
  small heads, or fields of view that stop at the brain, over- or under-cover.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from manifests.schema import Anonymization

from curate.config import MasksConfig
from curate.masks.geometry import CoarseGrid, coarse_grid, contact_points, find_planes, plane_prism

__all__ = ["AnonResult", "detect_anonymization"]


@dataclass(frozen=True, slots=True)
class AnonResult:
    """Outcome of :func:`detect_anonymization`."""

    kind: str
    confidence: float
    mask: np.ndarray = field(repr=False)
    evidence: dict[str, float] = field(default_factory=dict)


def _head_width_mm(grid: CoarseGrid) -> float:
    xs = np.flatnonzero(grid.anatomy.any(axis=(1, 2)))
    return float((xs[-1] - xs[0] + 1) * grid.mm[0]) if xs.size else 0.0


def _touches_edge(mask: np.ndarray) -> bool:
    """Whether a RAS mask reaches the FOV edge anywhere but its inferior face.

    (A brain stem running out of the bottom of the FOV is normal for a brain.)
    """
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()
                or mask[:, :, -1].any())


def skull_dip(grid: CoarseGrid, depth_mm: float = 30.0, cranium_mm: float = 80.0) -> float:
    """Darkest layer within 2-16 mm of the upper head surface, relative to the layers around it.

    Values well below 1 mean a dark (skull) band between brighter scalp and
    brain; about 1 or more means no such band.  ``1.0`` when undecidable.
    """
    anat = grid.anatomy
    zs = np.flatnonzero(anat.any(axis=(0, 1)))
    if zs.size == 0:
        return 1.0
    depth = ndimage.distance_transform_edt(anat, sampling=grid.mm)
    upper = np.zeros_like(anat)
    upper[:, :, max(0, zs[-1] - int(cranium_mm / grid.mm[2])):] = True
    step = float(grid.mm.min())
    edges = np.arange(0.0, depth_mm + step, step)
    sel = anat & upper & (depth <= depth_mm)
    bins = np.digitize(depth[sel], edges) - 1
    values = grid.mean[sel]
    profile = np.array([np.median(values[bins == b]) if np.any(bins == b) else np.nan
                        for b in range(len(edges) - 1)])
    centres = edges[:-1] + step / 2
    band = np.flatnonzero((centres >= 2.0) & (centres <= 16.0) & np.isfinite(profile))
    ratios = [1.0]
    for low in band:
        before, after = profile[:low], profile[low + 1:]
        if np.isfinite(before).any() and np.isfinite(after).any():
            rim = min(np.nanmax(before), np.nanmax(after))
            ratios.append(float(profile[low] / max(rim, 1e-12)))
    return min(ratios)


def _void_background(grid: CoarseGrid) -> float:
    outside = ~grid.anatomy
    return float(grid.void[outside].mean()) if outside.any() else 0.0


def _strip_envelope(grid: CoarseGrid, cfg: MasksConfig) -> np.ndarray:
    brain = grid.anatomy
    shell = ndimage.distance_transform_edt(~brain, sampling=grid.mm) <= cfg.strip_shell_mm
    footprint = brain.any(axis=2)
    foot_dist = ndimage.distance_transform_edt(footprint, sampling=grid.mm[:2])
    footprint = foot_dist > cfg.strip_footprint_margin_mm
    zs = np.flatnonzero(brain.any(axis=(0, 1)))
    z_low = max(0, zs[0] - int(cfg.strip_neck_mm / grid.mm[2]))
    below = np.zeros_like(brain)
    column_top = np.where(brain.any(axis=2), brain.argmax(axis=2), 0)
    z_index = np.arange(brain.shape[2])[None, None, :]
    below[:] = footprint[:, :, None] & (z_index >= z_low) & (z_index <= column_top[:, :, None])
    return (shell | below) & ~brain


def _face_zone(grid: CoarseGrid) -> tuple[np.ndarray, np.ndarray]:
    """Boolean (face zone, cranium zone) on the coarse grid."""
    anat = grid.anatomy
    zs = np.flatnonzero(anat.any(axis=(0, 1)))
    top = zs[-1]
    cranium_low = max(0, top - int(100.0 / grid.mm[2]))
    ys = np.flatnonzero(anat[:, :, cranium_low:].any(axis=(0, 2)))
    front, back = ys[-1], ys[0]
    y_index = np.arange(anat.shape[1])[None, :, None]
    z_index = np.arange(anat.shape[2])[None, None, :]
    face = (y_index >= front - 0.3 * (front - back)) & (z_index <= top - 110.0 / grid.mm[2]) \
        & (z_index >= top - 200.0 / grid.mm[2])
    cranium = z_index >= top - 70.0 / grid.mm[2]
    shape = anat.shape
    return np.broadcast_to(face, shape), np.broadcast_to(cranium, shape)


def _blur_evidence(grid: CoarseGrid, cfg: MasksConfig) -> tuple[float, float, np.ndarray]:
    """(face smooth fraction, cranium smooth fraction, smooth-region mask)."""
    core = ndimage.binary_erosion(grid.anatomy, iterations=1)
    face, cranium = _face_zone(grid)
    ref_values = grid.texture()[core & cranium]
    if ref_values.size < 50 or (core & face).sum() < 50:
        return 0.0, 1.0, np.zeros_like(core)
    reference = float(np.median(ref_values))
    smooth = grid.texture() < cfg.blur_smooth_ratio * max(reference, 1e-12)
    return float(smooth[core & face].mean()), float(smooth[core & cranium].mean()), smooth


def _blur_region(grid: CoarseGrid, smooth: np.ndarray) -> np.ndarray:
    face, _ = _face_zone(grid)
    near = ndimage.distance_transform_edt(~grid.anatomy, sampling=grid.mm) <= 10.0
    candidate = smooth & near & ~grid.void
    labels, n = ndimage.label(candidate)
    if n == 0:
        return candidate
    hits = np.unique(labels[face & candidate])
    region = np.isin(labels, hits[hits > 0])
    region = ndimage.binary_closing(region, iterations=2)
    return ndimage.binary_fill_holes(region) & near


def _cut_planes(grid: CoarseGrid, cfg: MasksConfig) -> tuple[list, np.ndarray]:
    points, normals = contact_points(grid.anatomy, grid.void)
    if len(points) == 0:
        return [], np.zeros((0, 3))
    pts_mm = points * grid.mm
    # keep boundary facing anterior or inferior (where faces are cut)
    facing = (normals[:, 1] > 0.3) | (normals[:, 2] < -0.3)
    pts_mm, normals = pts_mm[facing], normals[facing]
    if len(pts_mm) < 3:
        return [], pts_mm
    pixel = float(np.prod(np.sort(grid.mm)[:2]))
    planes = find_planes(pts_mm, normals, pixel, cfg.cut_tolerance_mm, cfg.cut_min_area_mm2,
                         cfg.cut_min_width_mm)
    planes = [p for p in planes if p.normal[1] > 0.3 or p.normal[2] < -0.3]
    return planes, pts_mm


def _confidence(score: float, threshold: float) -> float:
    """Map a score's distance past its threshold to 0.5..1 (and below to 0.5..0)."""
    ratio = score / max(threshold, 1e-12)
    return float(np.clip(0.5 + 0.5 * np.tanh(2.0 * (ratio - 1.0)), 0.0, 1.0))


def detect_anonymization(data: np.ndarray, affine: np.ndarray, anatomy: np.ndarray,
                         cfg: MasksConfig) -> AnonResult:
    """Classify an image's anonymization and build its anon mask (uint8 0/1, image grid).

    Parameters
    ----------
    data
        3-D image.
    affine
        Voxel-to-world (RAS mm) affine; used for orientation and voxel size.
    anatomy
        Its anatomy mask (from :func:`curate.masks.anatomy.anatomy_mask`).
    cfg
        Thresholds.

    Raises
    ------
    ValueError
        If ``data`` is not 3-D or ``anatomy`` is not on its grid.
    """
    if data.ndim != 3 or anatomy.shape != data.shape:
        raise ValueError(f"need a 3-D image and an anatomy mask of the same shape, got "
                         f"{data.shape} and {anatomy.shape}")
    grid = coarse_grid(data, affine, anatomy, cfg.work_mm)
    empty = np.zeros(data.shape, dtype=np.uint8)
    if grid.anatomy.sum() < 100 or _head_width_mm(grid) < cfg.min_head_width_mm:
        return AnonResult(Anonymization.NONE.value, 0.5, empty, {"head": 0.0})
    evidence = _strip_evidence(grid)
    if _is_stripped(evidence, grid, cfg):
        region = _strip_envelope(grid, cfg)
        conf = _confidence(evidence["skull_dip"], cfg.strip_max_skull_dip)
        return _finish(Anonymization.SKULL_STRIPPED.value, conf, region, grid, anatomy, evidence)
    planes, pts_mm = _cut_planes(grid, cfg)
    evidence["cut_area_mm2"] = float(sum(p.area_mm2 for p in planes))
    if planes:
        region = np.zeros_like(grid.anatomy)
        for plane in planes:
            region |= plane_prism(plane, pts_mm, grid.void, grid.mm, cfg.cut_depth_mm,
                                  cfg.cut_margin_mm)
        conf = _confidence(evidence["cut_area_mm2"], cfg.cut_min_area_mm2)
        return _finish(Anonymization.DEFACED.value, conf, region, grid, anatomy, evidence)
    face_smooth, cranium_smooth, smooth = _blur_evidence(grid, cfg)
    evidence.update(face_smooth=face_smooth, cranium_smooth=cranium_smooth)
    if face_smooth >= cfg.blur_min_face_fraction and cranium_smooth <= cfg.blur_max_cranium_fraction:
        conf = _confidence(face_smooth, cfg.blur_min_face_fraction)
        return _finish(Anonymization.FACE_BLURRED.value, conf, _blur_region(grid, smooth), grid,
                       anatomy, evidence, removed=False)
    doubt = max(_confidence(face_smooth, cfg.blur_min_face_fraction),
                _confidence(evidence["cut_area_mm2"], cfg.cut_min_area_mm2))
    return AnonResult(Anonymization.NONE.value, 1.0 - doubt, empty, evidence)


def _strip_evidence(grid: CoarseGrid) -> dict[str, float]:
    volume_ml = float(grid.anatomy.sum() * np.prod(grid.mm) / 1000.0)
    return {"volume_ml": volume_ml, "void_background": _void_background(grid),
            "skull_dip": skull_dip(grid), "touches_fov": float(_touches_edge(grid.anatomy))}


def _is_stripped(ev: dict[str, float], grid: CoarseGrid, cfg: MasksConfig) -> bool:
    return (cfg.strip_min_volume_ml <= ev["volume_ml"] <= cfg.strip_max_volume_ml
            and ev["void_background"] >= cfg.strip_min_void_fraction
            and ev["skull_dip"] > cfg.strip_max_skull_dip and not ev["touches_fov"])


def _finish(kind: str, conf: float, region: np.ndarray, grid: CoarseGrid, anatomy: np.ndarray,
            evidence: dict[str, float], removed: bool = True) -> AnonResult:
    """Bring a coarse region to the image grid.

    For removed content (defacing, stripping) only void voxels outside the
    anatomy are kept; an altered (blurred) region may overlap the anatomy.
    """
    full = grid.to_image(region)
    if removed:
        full &= grid.to_image_full(grid.void_full)
        full &= anatomy == 0
    return AnonResult(kind, conf, full.astype(np.uint8), evidence)
