"""QC thumbnails: mid-slice mosaics of a volume with mask overlays, as PNG bytes.

Pure rendering, no file access: arrays in, PNG bytes out.  A mosaic shows the
three orthogonal mid-slices (sagittal, coronal, axial) of the volume turned to
RAS+ (so every image looks the same way up whatever its voxel order), each
panel resampled to square display pixels from the voxel spacing.  Overlays
follow the masks convention of the manifest:

* ``anon_mask == 1`` (changed by anonymization) is tinted red;
* ``anatomy_mask == 1`` (subject tissue) is outlined in green.

Which images get a thumbnail at all is :func:`showable`: the rule the build
stage and the report's gallery share.

Examples
--------
>>> import numpy as np
>>> png = mosaic_png(np.random.default_rng(0).random((20, 24, 16)), np.eye(4), panel_px=32)
>>> png[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
True
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from nibabel.orientations import apply_orientation, io_orientation
from PIL import Image
from scipy import ndimage

from manifests.schema import ExclusionReason, Modality

#: Overlay colours (RGB).
ANON_RGB = np.array([230, 40, 40], dtype=np.float32)
ANATOMY_RGB = np.array([40, 220, 90], dtype=np.uint8)
#: Panel order in a mosaic.
ORIENTATIONS = ("sagittal", "coronal", "axial")


@dataclass(frozen=True, slots=True)
class ThumbnailStyle:
    """How a thumbnail looks (the settings that change its pixels)."""

    panel_px: int = 160
    low_percentile: float = 0.5
    high_percentile: float = 99.5
    overlay_alpha: float = 0.45


def to_ras(volume: np.ndarray, affine: np.ndarray, zooms: tuple[float, ...]) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Flip and permute the first three axes of ``volume`` to RAS+ order.

    Returns the reoriented volume and the voxel spacing along its new axes.  An
    affine that gives no orientation (non-finite, or a zero column) leaves the
    voxel order as it is.
    """
    matrix = np.asarray(affine, dtype=float)
    ornt = io_orientation(matrix) if np.isfinite(matrix).all() else np.full((3, 2), np.nan)
    if np.isnan(ornt).any():  # a broken affine: show the voxel axes as they are
        ornt = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])
    spacing = [abs(float(z)) if np.isfinite(z) and z != 0 else 1.0
               for z in (tuple(zooms) + (1.0, 1.0, 1.0))[:3]]
    turned = apply_orientation(volume, ornt)
    new_spacing = [1.0, 1.0, 1.0]
    for source_axis, (target_axis, _flip) in enumerate(ornt):
        new_spacing[int(target_axis)] = spacing[source_axis]
    return turned, (new_spacing[0], new_spacing[1], new_spacing[2])


def window_limits(volume: np.ndarray, low: float, high: float,
                  max_samples: int = 1_000_000) -> tuple[float, float]:
    """The ``low``/``high`` percentiles of the finite non-zero voxels (subsampled when large).

    Examples
    --------
    >>> window_limits(np.array([0.0, 1.0, 2.0, 3.0]), 0.0, 100.0)
    (1.0, 3.0)
    """
    values = np.asarray(volume, dtype=np.float32).ravel()
    step = max(1, values.size // max_samples)
    sample = values[::step]
    foreground = sample[np.isfinite(sample) & (sample != 0)]
    if foreground.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(foreground, [low, high]))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def window(plane: np.ndarray, limits: tuple[float, float]) -> np.ndarray:
    """Scale intensities to 0..1 between ``limits`` (non-finite values become 0).

    Examples
    --------
    >>> window(np.array([0.0, 1.0, 2.0, 3.0]), (1.0, 3.0)).tolist()
    [0.0, 0.0, 0.5, 1.0]
    """
    lo, hi = limits
    values = np.nan_to_num(np.asarray(plane, dtype=np.float32), nan=lo, posinf=lo, neginf=lo)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0)


def mid_slices(volume: np.ndarray) -> list[np.ndarray]:
    """The sagittal, coronal and axial mid-slices of a RAS+ volume, turned for display.

    Each slice is rotated so that superior (or anterior, for the axial slice)
    is at the top and the subject's right is on the right.
    """
    x, y, z = (s // 2 for s in volume.shape[:3])
    return [np.rot90(volume[x, :, :]), np.rot90(volume[:, y, :]), np.rot90(volume[:, :, z])]


def _panel_size(shape: tuple[int, int], row_mm: float, col_mm: float, height: int) -> tuple[int, int]:
    """(width, height) in display pixels for a slice with the given pixel spacing.

    At most ``4 * height`` wide; a flatter slice (the side view of a slab of a
    few slices) keeps its proportions and gets a lower panel instead of having
    its few rows stretched to the full height.

    Examples
    --------
    >>> _panel_size((100, 100), 1.0, 1.0, 50), _panel_size((1, 200), 2.0, 1.0, 50)
    ((50, 50), (200, 2))
    """
    extent_rows, extent_cols = shape[0] * row_mm, shape[1] * col_mm
    ratio = extent_cols / max(extent_rows, 1e-6)
    width = max(1, round(height * ratio))
    if width <= 4 * height:
        return width, height
    return 4 * height, max(1, min(height, round(4 * height / ratio)))


def _pad_rows(panel: np.ndarray, height: int) -> np.ndarray:
    """``panel`` centred in ``height`` rows of black (panels of a mosaic share one height)."""
    missing = height - panel.shape[0]
    if missing <= 0:
        return panel
    return np.pad(panel, ((missing // 2, missing - missing // 2), (0, 0), (0, 0)))


def _resize(plane: np.ndarray, size: tuple[int, int], nearest: bool) -> np.ndarray:
    method = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(plane.astype(np.float32), mode="F").resize(size, method))


def _spacings(spacing: tuple[float, float, float]) -> list[tuple[float, float]]:
    """(row, column) pixel spacing of each displayed mid-slice."""
    sx, sy, sz = spacing
    return [(sz, sy), (sz, sx), (sy, sx)]


def _compose(gray: np.ndarray, anon: np.ndarray | None, anatomy: np.ndarray | None,
             alpha: float) -> np.ndarray:
    """RGB uint8 panel: grey image, red tint where ``anon``, green outline of ``anatomy``."""
    rgb = np.repeat((gray * 255.0)[..., None], 3, axis=2)
    if anon is not None:
        hit = anon > 0.5
        rgb[hit] = (1.0 - alpha) * rgb[hit] + alpha * ANON_RGB
    out = np.clip(rgb, 0, 255).astype(np.uint8)
    if anatomy is not None:
        inside = anatomy > 0.5
        edge = inside & ~ndimage.binary_erosion(inside, border_value=0)
        out[edge] = ANATOMY_RGB
    return out


def _check_mask(mask: np.ndarray | None, shape: tuple[int, ...], name: str) -> np.ndarray | None:
    if mask is None:
        return None
    if tuple(mask.shape[:3]) != tuple(shape[:3]):
        raise ValueError(f"{name} shape {tuple(mask.shape)} does not match image shape {tuple(shape)}")
    return mask


def mosaic_rgb(data: np.ndarray, affine: np.ndarray, zooms: tuple[float, ...] | None = None,
               anon_mask: np.ndarray | None = None, anatomy_mask: np.ndarray | None = None,
               style: ThumbnailStyle | None = None) -> np.ndarray:
    """The three-orientation mosaic of ``data`` as an RGB uint8 array.

    A 4D series shows its first volume; a 2D image is treated as one slice.

    Raises
    ------
    ValueError
        If the image has an empty axis or a mask is not on the image's grid.
    """
    style = style or ThumbnailStyle()
    volume = np.asarray(data)
    if volume.ndim == 2:
        volume = volume[..., None]
    while volume.ndim > 3:
        volume = volume[..., 0]
    if volume.ndim != 3 or min(volume.shape) == 0:
        raise ValueError(f"cannot draw an image of shape {tuple(np.shape(data))}")
    anon = _check_mask(anon_mask, volume.shape, "anon mask")
    anatomy = _check_mask(anatomy_mask, volume.shape, "anatomy mask")
    if zooms is None:
        zooms = tuple(np.linalg.norm(np.nan_to_num(np.asarray(affine, dtype=float))[:3, :3], axis=0))
    limits = window_limits(volume, style.low_percentile, style.high_percentile)
    ras, spacing = to_ras(volume, affine, zooms)
    masks = [None if m is None else to_ras(np.asarray(m, dtype=np.float32), affine, zooms)[0]
             for m in (anon, anatomy)]
    panels = []
    planes = zip(mid_slices(ras), *(mid_slices(m) if m is not None else [None] * 3 for m in masks),
                 _spacings(spacing))
    for gray, anon_plane, anatomy_plane, (row_mm, col_mm) in planes:
        size = _panel_size(gray.shape, row_mm, col_mm, style.panel_px)
        panels.append(_pad_rows(_compose(
            _resize(window(gray, limits), size, nearest=False),
            None if anon_plane is None else _resize(anon_plane, size, nearest=True),
            None if anatomy_plane is None else _resize(anatomy_plane, size, nearest=True),
            style.overlay_alpha,
        ), style.panel_px))
    gap = np.zeros((style.panel_px, 2, 3), dtype=np.uint8)
    return np.concatenate([p for panel in panels for p in (panel, gap)][:-1], axis=1)


def png_bytes(rgb: np.ndarray) -> bytes:
    """Encode an RGB uint8 array as PNG."""
    buffer = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def mosaic_png(data: np.ndarray, affine: np.ndarray, zooms: tuple[float, ...] | None = None,
               anon_mask: np.ndarray | None = None, anatomy_mask: np.ndarray | None = None,
               style: ThumbnailStyle | None = None, panel_px: int | None = None) -> bytes:
    """:func:`mosaic_rgb` encoded as PNG bytes (``panel_px`` overrides the style's height)."""
    style = style or ThumbnailStyle()
    if panel_px is not None:
        style = ThumbnailStyle(panel_px, style.low_percentile, style.high_percentile,
                               style.overlay_alpha)
    return png_bytes(mosaic_rgb(data, affine, zooms, anon_mask, anatomy_mask, style))


#: Exclusion reasons after which an image's voxels were still read and are worth showing.
SHOWABLE_ALONE = frozenset({ExclusionReason.IQS.value})


def showable(included: bool, modality: str | None, reasons: Sequence[str]) -> bool:
    """Whether an image gets a thumbnail: included, a DWI series, or excluded only for its IQS.

    Examples
    --------
    >>> showable(False, "T1w", ("iqs",)), showable(False, "T1w", ("unreadable",))
    (True, False)
    >>> showable(False, "DWI", ("modality",))
    True
    """
    if included:
        return True
    if modality == Modality.DWI.value and tuple(reasons) == (ExclusionReason.MODALITY.value,):
        return True
    return bool(reasons) and set(reasons) <= SHOWABLE_ALONE


def thumbnail_name(image_id: str) -> str:
    """File name of an image's thumbnail inside ``OUTPUT/reports/thumbs/``."""
    return f"{image_id}.png"


__all__ = [
    "ORIENTATIONS", "SHOWABLE_ALONE", "ThumbnailStyle", "mid_slices", "mosaic_png", "mosaic_rgb", "png_bytes",
    "showable", "thumbnail_name", "to_ras", "window", "window_limits",
]
