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
* **Skull-stripped**: the anatomy is brain-sized (``strip_*_volume_ml``), its
  vertex lies inside the field of view, and there is no scalp/skull layer
  outside it: its depth profile (median intensity against distance from the
  surface, in the upper head) lacks the dark skull band between two brighter
  layers that every intact head shows in T1, T2, PD and FLAIR (cortical bone
  gives no signal).  Neither a void background nor a brain clear of the FOV
  edges is required (real extractions are cropped to the brain; some releases
  fill the air with noise).  With a learned brain mask (:mod:`.learned`) the
  skull test becomes "anatomy outside the brain <= ``strip_max_outside_brain``
  of the brain's volume".  The anon mask is a predicted head envelope minus the
  anatomy: the brain dilated by a scalp+skull shell, joined to the brain's axial
  footprint extruded downwards (face and neck); void voxels only when the
  envelope is void.
* **Defaced**: large *flat* faces of the head surface that border void,
  facing anterior or inferior, found by RANSAC on the boundary voxels whose own
  normals agree with the plane (so a plane crossing a curved scalp does not
  count) and away from the field-of-view edge (a head cropped by the FOV is not
  defaced).  Faces against void are sought first; when there are none, faces
  against any air (defacing followed by a noise-filled background).  The anon
  mask is the prism beyond each cut face (its footprint on the plane, up to
  ``cut_depth_mm`` deep), restricted to the void (or air) it was found against.
* **Refaced with noise** (class ``defaced``): most of the face zone far rougher
  than the cranium (block RMS of the Laplacian above ``reface_rough_ratio``
  times the cranium's median); the rough region at the face is the anon mask.  Flat cuts
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

Confidence: each rule has a signed margin in units of its own scale (> 0: the
rule holds); the class called gets ``0.5 + 0.48 tanh(margin)``, lowered to the
value for (margin - best rival margin) when another rule came close; ``none``
gets ``0.5 + 0.48 tanh(-best rival margin)``.

Failure modes
-------------
* Images with a zeroed background *and* a flat-surfaced anatomy in the face
  zone (a phantom with flat faces) can be called defaced; the mask then covers
  air only, never anatomy.
* Refacing with a *smooth* fill or a template's (average, smooth) face cannot
  be told from face blurring by texture: it is called ``face_blurred`` or, when
  under the smoothness threshold, ``none`` with a low confidence.
* Blur detection needs noise: noise-free or heavily denoised images carry no
  texture to lose, and blurred faces in them are not detected.
* Partial strips that keep much of the skull and scalp look intact.  Infants'
  or atrophic brains outside the volume range are missed.
* The envelope of a skull-stripped brain is a geometric guess; very large or
  small heads, or fields of view that stop at the brain, over- or under-cover.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from manifests.schema import Anonymization

from curate.config import MasksConfig
from curate.masks.evidence import (background_stats, face_zone, head_width_mm, skull_dip,
                                   texture_zones, top_cut, volume_ml)
from curate.masks.geometry import CoarseGrid, coarse_grid, contact_points, find_planes, plane_prism

__all__ = ["AnonResult", "detect_anonymization"]


@dataclass(frozen=True, slots=True)
class AnonResult:
    """Outcome of :func:`detect_anonymization`."""

    kind: str
    confidence: float
    mask: np.ndarray = field(repr=False)
    evidence: dict[str, float] = field(default_factory=dict)


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


def _texture_region(grid: CoarseGrid, blocks: np.ndarray) -> np.ndarray:
    """The smooth (or rough) blocks connected to the face zone, tissue and nearby air."""
    face, _ = face_zone(grid)
    near = ndimage.distance_transform_edt(~grid.anatomy, sampling=grid.mm) <= 10.0
    candidate = blocks & near & ~grid.void
    labels, n = ndimage.label(candidate)
    if n == 0:
        return candidate
    hits = np.unique(labels[face & candidate])
    region = np.isin(labels, hits[hits > 0])
    region = ndimage.binary_closing(region, iterations=2)
    # within 10 mm of the face zone: smooth deep tissue (a low-noise brain) is not the face
    around = ndimage.distance_transform_edt(~face, sampling=grid.mm) <= 10.0
    return ndimage.binary_fill_holes(region) & near & around


def _cut_planes(grid: CoarseGrid, cfg: MasksConfig) -> tuple[list, np.ndarray, np.ndarray]:
    """Cut faces against void (zero-filled defacing) or, failing that, against any air.

    Returns the planes, the boundary points (mm) and the voxels a prism may cover.
    """
    planes, pts_mm = _planes_against(grid, cfg, grid.void)
    if planes:
        return planes, pts_mm, grid.void
    planes, pts_mm = _planes_against(grid, cfg, ~grid.anatomy)
    return planes, pts_mm, ~grid.anatomy


def _planes_against(grid: CoarseGrid, cfg: MasksConfig, outside: np.ndarray) -> tuple[list, np.ndarray]:
    points, normals = contact_points(grid.anatomy, outside)
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




def _confidence(margin: float) -> float:
    """Map a rule's margin (in units of its scale; > 0 means the rule holds) to 0.5..0.98."""
    return float(0.5 + 0.48 * np.tanh(margin))


def _strip_margin(ev: dict[str, float], cfg: MasksConfig) -> float:
    """Signed margin of the skull-stripped rule (> 0: stripped)."""
    if ev["top_cut"] > 0.05:  # a brain's vertex lies inside the field of view; a limb's does not
        return -1.0
    m_vol = min(ev["volume_ml"] - cfg.strip_min_volume_ml,
                cfg.strip_max_volume_ml - ev["volume_ml"]) / cfg.strip_volume_scale_ml
    if "outside_brain" in ev:  # a learned brain mask: how much anatomy lies outside it
        m_brain = (cfg.strip_max_outside_brain - ev["outside_brain"]) / cfg.strip_outside_scale
        return min(m_vol, m_brain)
    m_dip = (ev["skull_dip"] - cfg.strip_max_skull_dip) / cfg.strip_dip_scale
    return min(m_vol, m_dip)


def _removed_only(grid: CoarseGrid, region: np.ndarray) -> np.ndarray:
    """Full-resolution RAS voxels that may hold removed content: void ones when the region is void.

    (Zero-filled removal leaves void; a noise-filled one does not.)
    """
    if region.any() and float(grid.void[region].mean()) >= 0.5:
        return grid.void_full
    return np.ones(grid.full_shape, dtype=bool)


def detect_anonymization(data: np.ndarray, affine: np.ndarray, anatomy: np.ndarray,
                         cfg: MasksConfig, brain: np.ndarray | None = None) -> AnonResult:
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
    brain
        Optional brain mask on the image grid from a learned extractor
        (:mod:`curate.masks.learned`); makes the skull-stripped rule compare the
        anatomy with the brain instead of reading the skull layer.

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
    if grid.anatomy.sum() < 100 or head_width_mm(grid) < cfg.min_head_width_mm:
        return AnonResult(Anonymization.NONE.value, 0.5, empty, {"head": 0.0})
    ev = {"volume_ml": volume_ml(grid), "skull_dip": skull_dip(grid), "top_cut": top_cut(grid),
          **background_stats(grid)}
    if brain is not None and brain.shape == data.shape:
        coarse_brain = grid.coarse_of(brain)
        ev["outside_brain"] = float((grid.anatomy & ~coarse_brain).sum() / max(coarse_brain.sum(), 1))
    margins = {Anonymization.SKULL_STRIPPED.value: _strip_margin(ev, cfg)}
    if margins[Anonymization.SKULL_STRIPPED.value] > 0:
        return _finish(Anonymization.SKULL_STRIPPED.value, margins, _strip_envelope(grid, cfg),
                       grid, anatomy, ev)
    planes, pts_mm, candidates = _cut_planes(grid, cfg)
    ev["cut_area_mm2"] = float(sum(p.area_mm2 for p in planes))
    margins["cut"] = np.log(max(ev["cut_area_mm2"], 1.0) / cfg.cut_min_area_mm2) / np.log(2.0)
    if planes:
        region = np.zeros_like(grid.anatomy)
        for plane in planes:
            region |= plane_prism(plane, pts_mm, candidates, grid.mm, cfg.cut_depth_mm,
                                  cfg.cut_margin_mm)
        return _finish(Anonymization.DEFACED.value, margins, region, grid, anatomy, ev, "cut")
    stats, smooth, rough = texture_zones(grid, cfg.blur_smooth_ratio, cfg.reface_rough_ratio)
    ev.update(stats)
    clean = stats["cranium_smooth"] <= cfg.blur_max_cranium_fraction
    margins["rough"] = (stats["face_rough"] - cfg.reface_min_face_fraction) / 0.1 \
        if stats["cranium_rough"] <= cfg.reface_max_cranium_fraction else -1.0
    margins["smooth"] = (stats["face_smooth"] - cfg.blur_min_face_fraction) / 0.1 if clean else -1.0
    if margins["rough"] > 0 and margins["rough"] >= margins["smooth"]:
        return _finish(Anonymization.DEFACED.value, margins, _texture_region(grid, rough), grid,
                       anatomy, ev, "rough", removed=False)
    if margins["smooth"] > 0:
        return _finish(Anonymization.FACE_BLURRED.value, margins, _texture_region(grid, smooth),
                       grid, anatomy, ev, "smooth", removed=False)
    return AnonResult(Anonymization.NONE.value, _none_confidence(margins), empty, ev)


def _none_confidence(margins: dict[str, float]) -> float:
    """Confidence of ``none``: how far every other rule is from holding."""
    closest = max(margins.values())
    return _confidence(-closest)


def _finish(kind: str, margins: dict[str, float], region: np.ndarray, grid: CoarseGrid,
            anatomy: np.ndarray, ev: dict[str, float], rule: str | None = None,
            removed: bool = True) -> AnonResult:
    """Bring a coarse region to the image grid, with the confidence of the rule that fired.

    For removed content (defacing, stripping) only voxels outside the anatomy
    are kept (and only void ones where the air is void); an altered (blurred,
    refaced) region may overlap the anatomy.  The confidence is the rule's,
    lowered when another rule came close too.
    """
    rule = rule or kind
    own = margins[rule]
    rivals = [m for k, m in margins.items() if k != rule]
    conf = _confidence(own)
    if rivals and max(rivals) > -1.0:
        conf = min(conf, _confidence(own - max(rivals)))
    full = grid.to_image(region)
    if removed:
        full &= grid.to_image_full(_removed_only(grid, region))
        full &= anatomy == 0
    return AnonResult(kind, conf, full.astype(np.uint8), ev)
