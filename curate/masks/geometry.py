"""Geometry helpers for anonymization masks: RAS reorientation, the coarse grid, cut planes.

All analysis runs on a block-averaged copy of the image reoriented to the
closest RAS axis order (a permutation and flips only, from
:func:`nibabel.orientations.io_orientation`; oblique tilts are ignored), so
"anterior" is +y and "inferior" is -z whatever the storage order.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
from scipy import ndimage

from curate.masks.anatomy import block_factors, downsample, finite, upsample

__all__ = ["CoarseGrid", "Plane", "coarse_grid", "contact_points", "find_planes", "patch_width",
           "plane_prism"]

_RAS = np.array([[0, 1], [1, 1], [2, 1]], dtype=float)


@dataclass(slots=True)
class CoarseGrid:
    """An image and its anatomy mask in RAS order on ~``work_mm`` voxels.

    Attributes
    ----------
    mean
        Block mean of the image.
    ras
        The full-resolution image in RAS order (for :meth:`texture`).
    anatomy
        Coarse anatomy mask (majority of the block).
    void
        Blocks whose voxels all hold the image's minimum value (zero signal).
    void_full
        The same at full resolution, RAS order.
    mm
        Coarse voxel size per RAS axis.
    """

    mean: np.ndarray
    ras: np.ndarray
    anatomy: np.ndarray
    void: np.ndarray
    void_full: np.ndarray
    mm: np.ndarray
    factors: tuple[int, int, int]
    ornt: np.ndarray
    full_shape: tuple[int, int, int]
    _texture: np.ndarray | None = None

    def texture(self) -> np.ndarray:
        """Block RMS of the image's discrete Laplacian (computed once, on demand).

        High-frequency content (noise, fine detail) that blurring removes;
        insensitive to smooth intensity ramps and bias fields.
        """
        if self._texture is None:
            lap = ndimage.laplace(self.ras)
            self._texture = np.sqrt(downsample(lap * lap, self.factors))
        return self._texture

    def coarse_of(self, mask: np.ndarray) -> np.ndarray:
        """A boolean mask on the image grid (storage order) on this coarse RAS grid."""
        ras = nib.orientations.apply_orientation(np.asarray(mask) > 0, self.ornt)
        return downsample(ras, self.factors) >= 0.5

    def to_image(self, coarse_mask: np.ndarray) -> np.ndarray:
        """A coarse RAS boolean mask brought back to the image grid and storage order."""
        return self.to_image_full(upsample(coarse_mask, self.factors, self.full_shape))

    def to_image_full(self, ras_array: np.ndarray) -> np.ndarray:
        """A full-resolution RAS array brought back to the image's storage order."""
        back = nib.orientations.ornt_transform(_RAS, self.ornt)
        return nib.orientations.apply_orientation(ras_array, back)


def coarse_grid(data: np.ndarray, affine: np.ndarray, anatomy: np.ndarray,
                work_mm: float) -> CoarseGrid:
    """Reorient ``data`` and ``anatomy`` to RAS and block-average them to ``work_mm``."""
    ornt = nib.orientations.io_orientation(affine)
    ras = finite(nib.orientations.apply_orientation(data, ornt))
    anat = nib.orientations.apply_orientation(anatomy, ornt) > 0
    zooms = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
    zooms_ras = np.empty(3)
    zooms_ras[ornt[:, 0].astype(int)] = zooms
    factors = block_factors(tuple(zooms_ras), work_mm)
    low = float(ras.min())
    tol = 1e-6 * max(float(ras.max()) - low, 1e-12)
    void_full = ras <= low + tol
    mean = downsample(ras, factors)
    return CoarseGrid(
        mean=mean, ras=ras, anatomy=downsample(anat, factors) >= 0.5,
        void=downsample(void_full, factors) >= 0.999, void_full=void_full,
        mm=zooms_ras * np.asarray(factors), factors=factors, ornt=ornt,
        full_shape=tuple(int(s) for s in ras.shape),  # type: ignore[arg-type]
    )


_OFFSETS = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]])


def contact_points(anatomy: np.ndarray, void: np.ndarray, edge: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Anatomy voxels touching void, away from the array edge, with outward normals.

    Returns
    -------
    points
        ``(n, 3)`` voxel indices.
    normals
        ``(n, 3)`` unit vectors towards the void neighbours (voxel axes).
    """
    normal = np.zeros(anatomy.shape + (3,), dtype=np.float32)
    padded = np.pad(void, 1)
    n0, n1, n2 = anatomy.shape
    for off in _OFFSETS:
        shifted = padded[1 + off[0]: 1 + off[0] + n0, 1 + off[1]: 1 + off[1] + n1,
                         1 + off[2]: 1 + off[2] + n2]
        normal[shifted] += off
    inner = np.zeros_like(anatomy)
    inner[edge:-edge, edge:-edge, edge:-edge] = True
    touching = anatomy & inner & (np.abs(normal).sum(axis=-1) > 0)
    points = np.argwhere(touching)
    vectors = normal[touching]
    vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-6)
    return points, vectors


@dataclass(frozen=True, slots=True)
class Plane:
    """A cut plane in mm: ``normal @ x == offset``; ``normal`` points away from the head."""

    normal: np.ndarray
    offset: float
    inliers: np.ndarray
    area_mm2: float


def _fit(points: np.ndarray) -> tuple[np.ndarray, float]:
    centre = points.mean(axis=0)
    _, _, vt = np.linalg.svd(points - centre, full_matrices=False)
    normal = vt[-1]
    return normal, float(normal @ centre)


def patch_width(points_mm: np.ndarray) -> float:
    """Smaller in-plane extent (mm) of a flat patch, as for a uniform rectangle.

    Examples
    --------
    >>> u, v = np.meshgrid(np.arange(0, 100.0), np.arange(0, 30.0))
    >>> pts = np.stack([u.ravel(), v.ravel(), np.zeros(u.size)], axis=1)
    >>> round(patch_width(pts))
    30
    """
    centred = points_mm - points_mm.mean(axis=0)
    spread = np.linalg.svd(centred, compute_uv=False) / np.sqrt(len(points_mm))
    return float(np.sqrt(12.0) * spread[1])


def find_planes(points_mm: np.ndarray, normals: np.ndarray, pixel_mm2: float, tol_mm: float,
                min_area_mm2: float, min_width_mm: float, max_planes: int = 3,
                trials: int = 300, seed: int = 0) -> list[Plane]:
    """Large flat patches among boundary points (sequential RANSAC).

    A point is an inlier when it lies within ``tol_mm`` of the plane and its
    own outward normal is within ~25 degrees of the plane normal, so a ring where
    a plane merely crosses a curved surface does not count; only a flat face
    does.  A patch narrower than ``min_width_mm`` (the strip where a plane
    touches a cylinder such as a neck or a limb) is discarded.
    """
    rng = np.random.default_rng(seed)
    planes: list[Plane] = []
    remaining = np.ones(len(points_mm), dtype=bool)
    for _ in range(max_planes + 2):
        if len(planes) == max_planes:
            break
        idx = np.flatnonzero(remaining)
        if idx.size < 3 or idx.size * pixel_mm2 < min_area_mm2:
            break
        best: np.ndarray | None = None
        for _trial in range(trials):
            pick = idx[rng.choice(idx.size, 3, replace=False)]
            normal = np.cross(points_mm[pick[1]] - points_mm[pick[0]], points_mm[pick[2]] - points_mm[pick[0]])
            norm = np.linalg.norm(normal)
            if norm < 1e-6:
                continue
            normal /= norm
            dist = np.abs(points_mm[idx] @ normal - normal @ points_mm[pick[0]])
            ok = idx[(dist <= tol_mm) & (np.abs(normals[idx] @ normal) >= 0.9)]
            if best is None or ok.size > best.size:
                best = ok
        if best is None or best.size * pixel_mm2 < min_area_mm2:
            break
        remaining[best] = False
        if patch_width(points_mm[best]) < min_width_mm:
            continue
        normal, offset = _fit(points_mm[best])
        if float(np.mean(normals[best] @ normal)) < 0:
            normal, offset = -normal, -offset
        planes.append(Plane(normal=normal, offset=offset, inliers=best,
                            area_mm2=float(best.size * pixel_mm2)))
    return planes


def plane_prism(plane: Plane, points_mm: np.ndarray, candidates: np.ndarray, mm: np.ndarray,
                depth_mm: float, margin_mm: float) -> np.ndarray:
    """Candidate voxels beyond ``plane`` (up to ``depth_mm``) whose projection falls on its patch.

    The patch is the inliers' footprint on the plane, dilated by ``margin_mm``
    and hole-filled, so the prism is the slab of space the cut removed.
    """
    normal = plane.normal
    u = np.cross(normal, [1.0, 0.0, 0.0] if abs(normal[0]) < 0.9 else [0.0, 1.0, 0.0])
    u /= np.linalg.norm(u)
    v = np.cross(normal, u)
    step = float(mm.min())
    inl = points_mm[plane.inliers]
    pu, pv = inl @ u, inl @ v
    u0, v0 = pu.min() - margin_mm - step, pv.min() - margin_mm - step
    size = (int((pu.max() - u0 + margin_mm) / step) + 3, int((pv.max() - v0 + margin_mm) / step) + 3)
    patch = np.zeros(size, dtype=bool)
    patch[((pu - u0) / step).astype(int), ((pv - v0) / step).astype(int)] = True
    radius = max(1, int(round(margin_mm / step)))
    disk = np.hypot(*np.mgrid[-radius:radius + 1, -radius:radius + 1]) <= radius
    patch = ndimage.binary_fill_holes(ndimage.binary_closing(np.pad(patch, radius), disk)[radius:-radius, radius:-radius])
    patch = ndimage.binary_dilation(patch, disk)
    index = np.argwhere(candidates)
    grid = index * mm
    height = grid @ normal - plane.offset
    gu = np.floor((grid @ u - u0) / step).astype(int)
    gv = np.floor((grid @ v - v0) / step).astype(int)
    inside = (height > -step) & (height <= depth_mm)
    inside &= (gu >= 0) & (gu < size[0]) & (gv >= 0) & (gv < size[1])
    hit = np.zeros(len(index), dtype=bool)
    hit[inside] = patch[gu[inside], gv[inside]]
    out = np.zeros(candidates.shape, dtype=bool)
    out[tuple(index[hit].T)] = True
    return out
