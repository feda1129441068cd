"""Denoising of raw 4D DWI: a vectorised MP-PCA, and dipy's mppca / patch2self.

MP-PCA (Veraart et al. 2016, NeuroImage 142:394) treats every local patch of
``M`` voxels x ``N`` volumes as a matrix, finds its principal components, and
drops those whose eigenvalues fit the Marchenko-Pastur distribution of pure
noise.  Overlapping patch estimates are averaged with weights
``1 / (1 + N - n_noise)`` (Manjon et al. 2013).

:func:`mppca` is the same algorithm as ``dipy.denoise.localpca.mppca`` (same
classifier, threshold and weighting) written for speed, which is why it is
not a call into dipy: dipy loops in Python over every voxel and spends most of
its time outside LAPACK.  Here patches are gathered in batches, their
covariances built with one batched matrix product, decomposed with one batched
``eigh``, classified without a Python loop, and patch centres may be taken on
a grid with ``stride`` > 1 (every voxel still lies in several patches).  With
``stride=1`` the output equals dipy's to float32 precision; the benchmark
(``benchmarks/bench_dwi.py``) shows both side by side.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

from curate.dwi.threads import one_blas_thread


def mp_noise_variance(eigvals: np.ndarray, n_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Marchenko-Pastur noise variance and number of noise components, per row.

    Parameters
    ----------
    eigvals
        (B, N) eigenvalues of patch covariances, ascending.
    n_samples
        Voxels per patch ``M``.

    Returns
    -------
    variance, n_noise
        (B,) noise variance and how many of the smallest eigenvalues it covers.
        This is the loop of dipy's ``_pca_classifier`` in closed form: the
        number of noise components is one more than the largest index ``c`` at
        which ``L[c] - L[0] <= 4 sqrt((c + 1) / M) mean(L[:c + 1])``.
    """
    L = np.asarray(eigvals, dtype=np.float64)
    if L.shape[1] > n_samples - 1:
        L = L[:, -(n_samples - 1):]
    n = L.shape[1]
    c = np.arange(n)
    means = np.cumsum(L, axis=1) / (c + 1)
    r = L - L[:, :1] - 4.0 * np.sqrt((c + 1.0) / n_samples) * means
    stop = r <= 0
    last = n - 1 - np.argmax(stop[:, ::-1], axis=1)
    last = np.where(stop.any(axis=1), last, 0)
    variance = means[np.arange(L.shape[0]), last]
    return variance, last + 1


def _centres(size: int, radius: int, stride: int) -> np.ndarray:
    """Patch-centre positions along one axis, always including both ends."""
    if size <= 2 * radius:
        return np.array([], dtype=int)
    centres = list(range(radius, size - radius, stride))
    if centres[-1] != size - radius - 1:
        centres.append(size - radius - 1)
    return np.array(centres, dtype=int)


def _denoise_batch(patches: np.ndarray, tau_factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Denoise (B, M, N) patches; return estimates and their weights."""
    n_samples, n_vols = patches.shape[1], patches.shape[2]
    mean = patches.mean(axis=1, keepdims=True)
    centred = patches - mean
    cov = np.matmul(centred.transpose(0, 2, 1), centred) / n_samples
    eigvals, eigvecs = np.linalg.eigh(cov)
    variance, _ = mp_noise_variance(eigvals, n_samples)
    tau = (tau_factor ** 2) * variance
    keep = eigvals >= tau[:, None].astype(eigvals.dtype)
    n_noise = n_vols - keep.sum(axis=1)
    kept = eigvecs * keep[:, None, :]
    projector = np.matmul(kept, kept.transpose(0, 2, 1))
    estimate = np.matmul(centred, projector) + mean
    weight = 1.0 / (1.0 + n_vols - n_noise)
    return estimate, weight.astype(np.float32)


def _plane_work(data: np.ndarray, windows: np.ndarray, plan: list[tuple[int, np.ndarray]],
                radius: int, tau_factor: float, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """Accumulate weighted patch estimates for a list of (z-centre, xy-centres) planes."""
    acc = np.zeros(data.shape, dtype=np.float32)
    weights = np.zeros(data.shape[:3], dtype=np.float32)
    size = 2 * radius + 1
    offsets = [(i, j, k) for i in range(size) for j in range(size) for k in range(size)]
    for cz, xy in plan:
        for start in range(0, len(xy), batch):
            cx, cy = xy[start:start + batch].T
            # windows[x, y, z] is the patch starting at (x, y, z): (N, size, size, size)
            block = windows[cx - radius, cy - radius, cz - radius]
            n = block.shape[0]
            patches = block.reshape(n, data.shape[3], -1).transpose(0, 2, 1)
            estimate, weight = _denoise_batch(np.ascontiguousarray(patches), tau_factor)
            estimate = estimate.reshape(n, size, size, size, data.shape[3]) * weight[:, None, None, None, None]
            for i, j, k in offsets:
                tx, ty, tz = cx - radius + i, cy - radius + j, cz - radius + k
                acc[tx, ty, tz] += estimate[:, i, j, k]
                weights[tx, ty, tz] += weight
    return acc, weights


def mppca(data: np.ndarray, mask: np.ndarray | None = None, patch_radius: int = 2,
          stride: int = 2, threads: int = 1, batch: int = 1024) -> np.ndarray:
    """MP-PCA denoising of a 4D series, vectorised over patches.

    Parameters
    ----------
    data
        (X, Y, Z, N) series.
    mask
        Voxels to denoise; patch centres are taken where the mask (dilated by
        ``stride // 2`` so every mask voxel lies in a patch) is set.  Voxels
        outside keep their input values.  ``None`` denoises everywhere.
    patch_radius
        Patches are ``2 r + 1`` voxels wide (dipy's default 2: 125 voxels).
    stride
        Spacing of patch centres; 1 reproduces dipy's ``mppca``.
    threads
        Worker threads (NumPy's batched ``eigh`` and ``matmul`` release the GIL).
    batch
        Patches decomposed at once (memory ~ batch x M x N x 4 bytes x 4).

    Returns
    -------
    numpy.ndarray
        Denoised float32 series, clipped at zero like dipy's.
    """
    data = np.ascontiguousarray(data, dtype=np.float32)
    if data.ndim != 4:
        raise ValueError(f"MP-PCA needs a 4D series, got {data.ndim}D")
    n_samples = (2 * patch_radius + 1) ** 3
    tau_factor = 1.0 + np.sqrt(data.shape[3] / n_samples)
    region = np.ones(data.shape[:3], bool) if mask is None else mask.astype(bool)
    centre_mask = ndimage.binary_dilation(region, iterations=stride // 2) if stride > 1 else region
    axes = [_centres(s, patch_radius, stride) for s in data.shape[:3]]
    if any(a.size == 0 for a in axes):
        raise ValueError(f"series {data.shape[:3]} is smaller than one patch")
    gx, gy = np.meshgrid(axes[0], axes[1], indexing="ij")
    plan = []
    for cz in axes[2]:
        sel = centre_mask[gx, gy, cz]
        if sel.any():
            plan.append((int(cz), np.stack([gx[sel], gy[sel]], axis=1)))
    size = 2 * patch_radius + 1
    windows = sliding_window_view(data, (size, size, size), axis=(0, 1, 2))
    parts = [plan[i::max(1, threads)] for i in range(max(1, threads))]
    with one_blas_thread(), ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        results = list(pool.map(
            lambda p: _plane_work(data, windows, p, patch_radius, tau_factor, batch), parts))
    acc = sum(r[0] for r in results)
    weights = sum(r[1] for r in results)
    out = data.copy()
    covered = (weights > 0) & region
    out[covered] = acc[covered] / weights[covered, None]
    np.clip(out, 0, None, out=out)
    return out


def dipy_mppca(data: np.ndarray, mask: np.ndarray | None = None, patch_radius: int = 2,
               ) -> np.ndarray:
    """dipy's ``mppca`` (the reference), voxels outside ``mask`` kept as they are."""
    from dipy.denoise.localpca import mppca as _dipy_mppca

    data = np.asarray(data, dtype=np.float32)
    out = _dipy_mppca(data, mask=mask, patch_radius=patch_radius, suppress_warning=True)
    if mask is not None:
        out[~mask.astype(bool)] = data[~mask.astype(bool)]
    return out


def patch2self(data: np.ndarray, bvals: np.ndarray, b0_threshold: float = 50.0) -> np.ndarray:
    """dipy's ``patch2self`` (self-supervised, OLS regression across volumes)."""
    from dipy.denoise.patch2self import patch2self as _patch2self

    out = _patch2self(np.asarray(data, dtype=np.float32), np.asarray(bvals, float),
                      model="ols", b0_threshold=b0_threshold, shift_intensity=True,
                      clip_negative_vals=False, verbose=False)
    return np.asarray(out, dtype=np.float32)


DENOISERS = ("mppca", "dipy_mppca", "patch2self", "none")
