"""Brain mask on the mean b0: dipy's ``median_otsu`` with lighter settings, holes filled.

dipy's defaults (median radius 4, 4 passes) cost about 16 s on a 2 mm
series; radius 2 with one pass costs about a second and, after the largest
connected component is kept and holes are filled slice by slice and in 3D,
gives a comparable brain mask on b0 images (CSF is bright there, so the
ventricles are inside the Otsu foreground).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def brain_mask(mean_b0: np.ndarray, median_radius: int = 2, numpass: int = 1,
               fill_holes: bool = True) -> np.ndarray:
    """uint8 0/1 brain mask of a mean b0 image."""
    from dipy.segment.mask import median_otsu

    _, mask = median_otsu(np.asarray(mean_b0, np.float32), median_radius=median_radius,
                          numpass=numpass)
    mask = largest_component(mask)
    if fill_holes and mask.any():
        mask = ndimage.binary_fill_holes(mask)
        for axis in range(3):
            mask = np.stack([ndimage.binary_fill_holes(s) for s in np.moveaxis(mask, axis, 0)],
                            axis=0)
            mask = np.moveaxis(mask, 0, axis)
    return mask.astype(np.uint8)


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 6-connected component of a boolean mask (empty stays empty)."""
    labels, n = ndimage.label(mask)
    if n <= 1:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def head_mask(mean_b0: np.ndarray, dilate: int = 2) -> np.ndarray:
    """A generous head mask (Otsu threshold of the smoothed image, dilated).

    Used before the brain mask exists, to restrict denoising, Gibbs removal,
    registration sampling and N4 to the object.
    """
    from skimage.filters import threshold_otsu

    smooth = ndimage.gaussian_filter(np.asarray(mean_b0, np.float32), 1.0)
    finite = smooth[np.isfinite(smooth)]
    if finite.size == 0 or finite.max() <= finite.min():
        return np.ones(mean_b0.shape, bool)
    mask = largest_component(smooth > threshold_otsu(finite) * 0.5)
    mask = ndimage.binary_fill_holes(mask)
    return ndimage.binary_dilation(mask, iterations=dilate) if dilate else mask
