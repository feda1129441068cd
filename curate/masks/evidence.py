"""Measures on the coarse RAS grid that the anonymization decision is made from.

Each is template-free and unit-free (ratios, fractions, mm, ml), so the same
thresholds hold for T1, T2, PD or FLAIR, any scanner scale and any voxel size.

* :func:`skull_dip` — the darkest layer within 2-16 mm of the upper head
  surface relative to the layers around it (an intact head has scalp, dark
  bone, then brain; a stripped brain has no dark band *between* two brighter
  layers).
* :func:`background_stats` — share of the air that is exactly the image minimum
  ("void"), and whether the air is constant.
* :func:`texture_zones` — the block RMS of the Laplacian (noise and fine
  detail) in the face zone against the cranium: a blurred face is smooth, a
  noise-refaced face is rough, a real face is neither.
* :func:`face_zone` — the anterior 30 % of the head, 110-200 mm below the vertex,
  on RAS axes (so orientation comes from the affine).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from curate.masks.geometry import CoarseGrid

__all__ = ["background_stats", "face_zone", "head_width_mm", "skull_dip", "texture_zones", "top_cut",
           "volume_ml"]


def volume_ml(grid: CoarseGrid) -> float:
    """Volume of the coarse anatomy in ml."""
    return float(grid.anatomy.sum() * np.prod(grid.mm) / 1000.0)


def head_width_mm(grid: CoarseGrid) -> float:
    """Left-right extent of the coarse anatomy in mm."""
    xs = np.flatnonzero(grid.anatomy.any(axis=(1, 2)))
    return float((xs[-1] - xs[0] + 1) * grid.mm[0]) if xs.size else 0.0


def top_cut(grid: CoarseGrid) -> float:
    """Anatomy in the top axial slice over the largest axial cross-section (0: vertex inside the FOV)."""
    areas = grid.anatomy.sum(axis=(0, 1))
    return float(areas[-1] / max(areas.max(), 1))


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


def background_stats(grid: CoarseGrid, shell_mm: float = 20.0) -> dict[str, float]:
    """Void share of the air, and of the air within ``shell_mm`` of the anatomy."""
    outside = ~grid.anatomy
    if not outside.any():
        return {"void_background": 0.0, "void_near": 0.0}
    near = outside & (ndimage.distance_transform_edt(outside, sampling=grid.mm) <= shell_mm)
    return {"void_background": float(grid.void[outside].mean()),
            "void_near": float(grid.void[near].mean()) if near.any() else 0.0}


def face_zone(grid: CoarseGrid) -> tuple[np.ndarray, np.ndarray]:
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


def texture_zones(grid: CoarseGrid, smooth_ratio: float,
                  rough_ratio: float) -> tuple[dict[str, float], np.ndarray, np.ndarray]:
    """Smooth and rough shares of the face zone and the cranium, and the two block masks.

    A block is *smooth* below ``smooth_ratio`` times the cranium's median
    texture and *rough* above ``rough_ratio`` times it.
    """
    core = ndimage.binary_erosion(grid.anatomy, iterations=1)
    face, cranium = face_zone(grid)
    texture = grid.texture()
    ref_values = texture[core & cranium]
    empty = np.zeros_like(core)
    stats = {"face_smooth": 0.0, "cranium_smooth": 1.0, "face_rough": 0.0, "cranium_rough": 1.0}
    if ref_values.size < 50 or (core & face).sum() < 50:
        return stats, empty, empty
    reference = max(float(np.median(ref_values)), 1e-12)
    smooth = texture < smooth_ratio * reference
    rough = texture > rough_ratio * reference
    stats = {"face_smooth": float(smooth[core & face].mean()),
             "cranium_smooth": float(smooth[core & cranium].mean()),
             "face_rough": float(rough[core & face].mean()),
             "cranium_rough": float(rough[core & cranium].mean())}
    return stats, smooth, rough
