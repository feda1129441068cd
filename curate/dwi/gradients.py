"""Gradient-table checks: is a (bvals, bvecs) pair usable for a tensor fit?

Rules (OpenMind appendix B.2, issue 4):

* one b-value and one direction per volume, all finite, b >= 0;
* every diffusion-weighted direction has unit norm within a tolerance (then it
  is normalised) -- anything else is rejected;
* at least one b0 volume (b <= ``b0_threshold``);
* shells are found by clustering the b-values: sorted values start a new
  shell when they are more than ``shell_tolerance`` above the current shell's
  first value.

Every function here takes arrays and returns arrays or a
:class:`GradientCheck`; none raises on bad tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True)
class GradientCheck:
    """Outcome of :func:`check_gradients`.

    ``ok`` is False when the table cannot be used; ``reason`` then says why.
    ``bvecs`` is (n, 3), normalised, zero for b0 volumes.
    """

    ok: bool
    reason: str | None = None
    bvals: np.ndarray | None = field(default=None, repr=False)
    bvecs: np.ndarray | None = field(default=None, repr=False)
    b0_mask: np.ndarray | None = field(default=None, repr=False)
    shells: tuple[float, ...] = ()
    shell_index: np.ndarray | None = field(default=None, repr=False)
    notes: tuple[str, ...] = ()


def _fail(reason: str) -> GradientCheck:
    return GradientCheck(ok=False, reason=reason)


def as_n_by_3(bvecs: np.ndarray, n_volumes: int) -> np.ndarray | None:
    """``bvecs`` as (n, 3) whatever its stored orientation, or ``None`` if it is neither.

    Examples
    --------
    >>> as_n_by_3(np.zeros((3, 7)), 7).shape
    (7, 3)
    """
    vecs = np.asarray(bvecs, dtype=float)
    if vecs.ndim != 2:
        return None
    if vecs.shape == (n_volumes, 3):
        return vecs
    if vecs.shape == (3, n_volumes):
        return vecs.T.copy()
    return None


def cluster_shells(bvals: np.ndarray, b0_threshold: float, tolerance: float,
                   ) -> tuple[tuple[float, ...], np.ndarray]:
    """Shell b-values (b0 shell first, as 0) and each volume's shell index.

    Examples
    --------
    >>> shells, idx = cluster_shells(np.array([0, 5, 995, 1000, 1010, 2000, 1990]), 50, 100)
    >>> shells, idx.tolist()
    ((0.0, 1002.0, 1995.0), [0, 0, 1, 1, 1, 2, 2])
    """
    bvals = np.asarray(bvals, dtype=float)
    index = np.zeros(bvals.shape, dtype=int)
    shells: list[float] = [0.0]
    weighted = np.flatnonzero(bvals > b0_threshold)
    order = weighted[np.argsort(bvals[weighted], kind="stable")]
    start = None
    for i in order:
        if start is None or bvals[i] - start > tolerance:
            start = bvals[i]
            shells.append(0.0)
        index[i] = len(shells) - 1
    for k in range(1, len(shells)):
        shells[k] = float(np.round(bvals[index == k].mean()))
    return tuple(shells), index


def check_gradients(bvals: np.ndarray, bvecs: np.ndarray, n_volumes: int,
                    b0_threshold: float = 50.0, norm_tolerance: float = 0.1,
                    shell_tolerance: float = 100.0, min_dwi_volumes: int = 6) -> GradientCheck:
    """Validate a gradient table against the number of volumes it describes.

    Parameters
    ----------
    bvals, bvecs
        As read from ``.bval`` / ``.bvec`` (bvecs either (3, n) or (n, 3)).
    n_volumes
        Volumes in the 4D image.
    b0_threshold
        b-values at or below this are b0 volumes (s/mm^2).
    norm_tolerance
        Diffusion directions whose norm differs from 1 by more are rejected.
    shell_tolerance
        Width of a b-value shell (s/mm^2).
    min_dwi_volumes
        Fewest diffusion-weighted volumes a tensor fit may use (6 unknowns).

    Examples
    --------
    >>> check_gradients(np.array([0, 1000]), np.array([[0, 0, 0], [1, 0, 0]]), 3).reason
    'bval has 2 values and bvec 2 directions, but the image has 3 volumes'
    """
    vals = np.asarray(bvals, dtype=float).ravel()
    if vals.size != n_volumes:
        n_vec = np.asarray(bvecs).size // 3
        return _fail(f"bval has {vals.size} values and bvec {n_vec} directions, "
                     f"but the image has {n_volumes} volumes")
    vecs = as_n_by_3(bvecs, n_volumes)
    if vecs is None:
        return _fail(f"bvec has shape {np.shape(bvecs)}, expected 3 x {n_volumes}")
    if not np.isfinite(vals).all():
        return _fail("non-finite b-values")
    if (vals < 0).any():
        return _fail("negative b-values")
    b0 = vals <= b0_threshold
    notes: tuple[str, ...] = ()
    finite = np.isfinite(vecs).all(axis=1)
    if not finite[~b0].all():
        return _fail(f"{int((~finite[~b0]).sum())} diffusion directions are not finite")
    if not finite.all():  # e.g. dipy's small_64D: "nan nan nan" for the b0; direction unused
        notes = (f"{int((~finite).sum())} b0 direction(s) not finite (unused, set to 0)",)
        vecs = np.where(finite[:, None], vecs, 0.0)
    if not b0.any():
        return _fail(f"no b0 volume (no b-value <= {b0_threshold:g})")
    if int((~b0).sum()) < min_dwi_volumes:
        return _fail(f"only {int((~b0).sum())} diffusion-weighted volumes "
                     f"(a tensor fit needs {min_dwi_volumes})")
    norms = np.linalg.norm(vecs, axis=1)
    bad = ~b0 & (np.abs(norms - 1.0) > norm_tolerance)
    if bad.any():
        if np.all(norms[~b0] == 0):
            return _fail("all diffusion directions are zero vectors")
        return _fail(f"{int(bad.sum())} diffusion directions are not unit vectors "
                     f"(norms {norms[bad].min():.3g}..{norms[bad].max():.3g}, "
                     f"tolerance {norm_tolerance:g})")
    unit = np.zeros_like(vecs)
    unit[~b0] = vecs[~b0] / norms[~b0, None]
    shells, index = cluster_shells(vals, b0_threshold, shell_tolerance)
    return GradientCheck(ok=True, bvals=vals, bvecs=unit, b0_mask=b0, shells=shells,
                         shell_index=index, notes=notes)


def dti_shells(check: GradientCheck, max_b: float, tolerance: float) -> tuple[int, ...]:
    """Indices of the shells a tensor fit uses: b0 plus shells with b <= max_b + tolerance.

    Higher shells are left out because the tensor model's mono-exponential
    assumption biases MD and FA there.  When every diffusion shell is higher
    (e.g. a b = 2000 only protocol), the lowest one is used.

    Examples
    --------
    >>> check = check_gradients(np.r_[0, [1000] * 6, [3000] * 6], np.r_[[[0, 0, 0]],
    ...     np.tile(np.eye(3), (4, 1))], 13)
    >>> dti_shells(check, 1000, 100), check.shells
    ((0, 1), (0.0, 1000.0, 3000.0))
    """
    keep = tuple(k for k, b in enumerate(check.shells) if b <= max_b + tolerance)
    if len(keep) == 1 and len(check.shells) > 1:
        keep = (0, 1)
    return keep


def dti_volumes(check: GradientCheck, max_b: float, tolerance: float) -> np.ndarray:
    """Boolean mask of the volumes in :func:`dti_shells`."""
    if check.bvals is None or check.shell_index is None:
        raise ValueError("gradient table was rejected")
    return np.isin(check.shell_index, dti_shells(check, max_b, tolerance))


def subset(check: GradientCheck, keep: np.ndarray) -> GradientCheck:
    """The table of the volumes where ``keep`` is set (shells renumbered, b0 kept first)."""
    if check.bvals is None or check.bvecs is None or check.b0_mask is None \
            or check.shell_index is None:
        raise ValueError("gradient table was rejected")
    present = np.unique(check.shell_index[keep])
    renumber = {int(old): new for new, old in enumerate(present)}
    return GradientCheck(
        ok=True, bvals=check.bvals[keep], bvecs=check.bvecs[keep], b0_mask=check.b0_mask[keep],
        shells=tuple(check.shells[int(k)] for k in present),
        shell_index=np.array([renumber[int(i)] for i in check.shell_index[keep]], dtype=int),
        notes=check.notes)


def parse_table(text: str) -> np.ndarray:
    """Numbers of a ``.bval`` or ``.bvec`` file as a float array (rows kept).

    Raises
    ------
    ValueError
        When the text holds no numbers or rows of different lengths.
    """
    # Whitespace is the FSL format; commas (spreadsheet exports, some converters) are read too.
    rows = [line.replace(",", " ").split() for line in text.splitlines() if line.strip(" \t,")]
    if not rows:
        raise ValueError("empty gradient file")
    if len({len(r) for r in rows}) != 1:
        raise ValueError("gradient file rows have different lengths")
    return np.array([[float(v) for v in r] for r in rows], dtype=float)
