"""How a NIfTI header and data block are turned into intensities and geometry.

Pure functions of a nibabel header and an array (no file access; reading is
:mod:`curate.io`).  They make unusual but legitimate files behave like
ordinary ones, and say what they changed so the manifest can record it:

* **Intensities** -- complex data becomes its magnitude (the MR image a
  scanner shows; the real part alone can be zero), every numeric type becomes
  float32, and colour (RGB/RGBA) data is refused: it is a rendering, not a
  scanner intensity.
* **Affine** -- the NIfTI-1 standard's order (sform when its code is set,
  else qform, else the voxel sizes alone, "method 1"), except that a transform
  that is not one (singular, non-finite, an invalid quaternion) is passed over
  for the next one instead of breaking every later stage.
* **Voxel sizes** -- ``pixdim`` when it agrees with the affine; the affine's
  column lengths when ``pixdim`` is zero, non-finite or contradicts it (the
  affine is what places the voxels).
* **Dimensions** -- a 2D image (or 1D) is a 3D volume of one slice, as the
  NIfTI standard reads missing dimensions, and length-1 dimensions after the
  third are dropped (a 4D image of one volume is a 3D image).
"""

from __future__ import annotations

import numpy as np

#: Largest condition number of a voxel-to-world matrix still taken as a transform
#: (0.1 x 0.1 x 10 mm voxels give 100; a singular or collapsed matrix gives >1e15).
MAX_AFFINE_CONDITION = 1e6
#: Relative difference between ``pixdim`` and the affine's column lengths above
#: which the header's voxel sizes are taken to be wrong.
ZOOM_RTOL = 0.01


class NotIntensities(ValueError):
    """Voxel data that are not scanner intensities (e.g. RGB colour)."""


def intensities(raw: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """Voxel values as float32 and the notes on what was changed.

    Raises
    ------
    NotIntensities
        For structured (RGB / RGBA colour) data.

    Examples
    --------
    >>> data, notes = intensities(np.array([3 + 4j, 1j], np.complex64))
    >>> data.tolist(), notes
    ([5.0, 1.0], ('complex data: magnitude used',))
    """
    array = np.asanyarray(raw)
    if array.dtype.fields is not None:
        names = ",".join(array.dtype.names or ())
        raise NotIntensities(f"colour data ({names}) is a rendering, not MR intensities")
    if np.iscomplexobj(array):
        return np.abs(array).astype(np.float32), ("complex data: magnitude used",)
    return np.asarray(array, dtype=np.float32), ()


def clip_outliers(data: np.ndarray, spans: float) -> tuple[np.ndarray, int]:
    """``data`` with voxels beyond ``spans`` x the 0.1-99.9 percentile range clipped, and their count.

    A single hot voxel (a failed fit in a T1 map, a FLT_MAX fill value)
    otherwise sets every histogram range and standard deviation downstream:
    the head mask, the tissue classes, the z-score that flattens every other
    voxel to ~0.  Ordinary MR intensities stay within a few such ranges of the
    bulk, so they are untouched; so is an image whose percentile range is empty.

    Examples
    --------
    >>> data = np.concatenate([np.linspace(0.0, 100.0, 1000), [1e9]])
    >>> out, n = clip_outliers(data, 10.0)
    >>> n, float(out.max()) < 1200.0, float(out[500]) == float(data[500])
    (1, True, True)
    """
    if spans <= 0 or data.size == 0:
        return data, 0
    sample = data.ravel(order="K")[:: max(1, data.size // 1_000_000)].astype(np.float64)  # no copy
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return data, 0
    low, high = np.percentile(sample, (0.1, 99.9))
    if high <= low:
        return data, 0
    reach = spans * float(high - low)
    lower, upper = float(low) - reach, float(high) + reach
    # one comparison at a time: no copy of a large volume beyond a boolean temporary
    outside = int(np.count_nonzero(data < lower)) + int(np.count_nonzero(data > upper))
    if outside == 0:
        return data, 0
    return np.clip(data, lower, upper).astype(data.dtype, copy=False), outside


def as_volume(data: np.ndarray) -> np.ndarray:
    """``data`` with at least three axes and no length-1 axes after the third.

    A 2D image is one slice; a 5D header of shape ``(x, y, z, 1, 1)`` is a 3D
    volume, and ``(x, y, z, 1, n)`` (volumes in the fifth dimension, as some
    converters write a diffusion series) is a 4D series of ``n`` volumes.

    Examples
    --------
    >>> as_volume(np.zeros((4, 5))).shape, as_volume(np.zeros((4, 5, 6, 2))).shape
    ((4, 5, 1), (4, 5, 6, 2))
    >>> as_volume(np.zeros((4, 5, 6, 1, 1))).shape, as_volume(np.zeros((4, 5, 6, 1, 3))).shape
    ((4, 5, 6), (4, 5, 6, 3))
    """
    shape = data.shape + (1,) * max(0, 3 - data.ndim)
    return data.reshape(shape[:3] + tuple(n for n in shape[3:] if n != 1))


def is_transform(affine: np.ndarray | None) -> bool:
    """True when ``affine`` (4 x 4) maps voxels to millimetres one-to-one.

    Examples
    --------
    >>> is_transform(np.diag([2.0, 2.0, 2.0, 1.0])), is_transform(np.diag([1.0, 1.0, 0.0, 1.0]))
    (True, False)
    """
    if affine is None:
        return False
    matrix = np.asarray(affine, dtype=float)[:3, :3]
    if not np.isfinite(affine).all():
        return False
    try:
        return bool(np.linalg.cond(matrix) < MAX_AFFINE_CONDITION)
    except np.linalg.LinAlgError:
        return False


def best_affine(header) -> tuple[np.ndarray, tuple[str, ...]]:  # type: ignore[no-untyped-def]
    """The voxel-to-world affine of a nibabel NIfTI header, and notes on any fallback.

    Follows nibabel's ``get_best_affine`` (sform, qform, then voxel sizes) but
    skips a coded transform that is not a valid one.
    """
    notes: list[str] = []
    sform, s_code = header.get_sform(coded=True)
    if s_code > 0:
        if is_transform(sform):
            return np.asarray(sform, dtype=float), ()
        notes.append("sform is not a valid transform (singular or non-finite)")
    q_code = int(header["qform_code"])
    if q_code > 0:
        try:
            qform = header.get_qform()
        except ValueError as exc:  # nibabel: invalid quaternion
            qform = None
            notes.append(f"qform is not a valid transform ({exc})")
        if is_transform(qform):
            return np.asarray(qform, dtype=float), (*notes, "qform used") if notes else ()
        if qform is not None:
            notes.append("qform is not a valid transform (singular or non-finite)")
    base = header.get_base_affine()
    if not is_transform(base):
        unit = header.copy()
        unit.set_zooms((1.0,) * len(header.get_zooms()))
        base = unit.get_base_affine()
        notes.append("voxel sizes unusable, 1 mm assumed")
    if notes:
        notes.append("orientation unknown: voxel axes taken as LAS (NIfTI method 1)")
    return np.asarray(base, dtype=float), tuple(notes)


def voxel_sizes(header_zooms: tuple[float, ...], shape: tuple[int, ...],
                affine: np.ndarray) -> tuple[tuple[float, ...], tuple[str, ...]]:
    """Voxel sizes of the axes :func:`as_volume` keeps: ``pixdim`` unless it contradicts ``affine``.

    ``shape`` is the header's data shape.  The spatial sizes are padded to
    three axes from the affine; the sizes of later axes of length > 1 (time)
    are kept as the header has them.

    Examples
    --------
    >>> voxel_sizes((0.0, 2.0, 2.0), (4, 4, 4), np.diag([2.0, 2.0, 2.0, 1.0]))[0]
    (2.0, 2.0, 2.0)
    >>> voxel_sizes((1.0, 1.0), (4, 4), np.diag([1.0, 1.0, 3.0, 1.0]))
    ((1.0, 1.0, 3.0), ())
    >>> voxel_sizes((2.0, 2.0, 2.0, 1.0, 9.0), (4, 4, 4, 1, 6), np.diag([2.0, 2.0, 2.0, 1.0]))[0]
    (2.0, 2.0, 2.0, 9.0)
    """
    lengths = np.sqrt((np.asarray(affine, dtype=float)[:3, :3] ** 2).sum(axis=0))
    spatial = [float(z) for z in header_zooms[:3]]
    notes: tuple[str, ...] = ()
    usable = all(np.isfinite(z) and z > 0 for z in spatial)
    if not usable or not np.allclose(spatial, lengths[:len(spatial)], rtol=ZOOM_RTOL, atol=0):
        if len(spatial):
            shown = ", ".join(f"{z:g}" for z in spatial)
            notes = (f"header voxel size ({shown}) disagrees with the affine; affine's "
                     f"({', '.join(f'{v:.4g}' for v in lengths[:len(spatial)])}) used",)
        spatial = [float(v) for v in lengths[:len(spatial)]]
    spatial += [float(v) for v in lengths[len(spatial):3]]
    rest = tuple(float(z) for n, z in zip(shape[3:], header_zooms[3:]) if n != 1)
    return (*spatial, *rest), notes


__all__ = ["MAX_AFFINE_CONDITION", "NotIntensities", "ZOOM_RTOL", "as_volume", "best_affine",
           "clip_outliers", "intensities", "is_transform", "voxel_sizes"]
