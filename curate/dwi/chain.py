"""The whole DWI derivation as one pure function: 4D series + gradients -> FA, MD, T2w.

Order (OpenMind appendix B.2): gradient checks, denoising on the raw data,
Gibbs-ringing removal, motion correction to the mean b0 (bvecs rotated), N4
bias field from the mean b0, brain mask, tensor fit.  Each step is switched
and parametrised by :class:`curate.config.DwiConfig`; :func:`derive` returns
the maps with the parameters, timings and QC figures of the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from curate.config import DwiConfig
from curate.dwi import bias, denoise, gibbs, gradients, mask, motion, tensor
from curate.dwi.threads import one_blas_thread
from curate.threads import thread_budget


#: Registration of volumes smaller than this along any axis is unreliable (tested on
#: dipy's 10-voxel test series, it drifts by many millimetres); it is skipped.
MIN_REGISTRATION_SIZE = 16


@dataclass(slots=True)
class DwiResult:
    """Outcome of :func:`derive`: maps when ``ok``, else ``reason`` says why not."""

    ok: bool
    reason: str | None = None
    #: Manifest exclusion reason for a failure: "gradients" or "empty".
    reason_code: str = "gradients"
    fa: np.ndarray | None = field(default=None, repr=False)
    md: np.ndarray | None = field(default=None, repr=False)
    t2w: np.ndarray | None = field(default=None, repr=False)
    brain_mask: np.ndarray | None = field(default=None, repr=False)
    shells: tuple[float, ...] = ()
    shells_used: tuple[float, ...] = ()
    nan_voxels: int | None = None
    degenerate_voxels: int | None = None
    motion_max_mm: float | None = None
    motion_mean_mm: float | None = None
    warnings: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    cpu_s: dict[str, float] = field(default_factory=dict)
    parameters: dict[str, Any] = field(default_factory=dict)


def _threads(cfg: DwiConfig) -> int:
    """``cfg.threads``, never more than the worker's share of the cores (:mod:`curate.threads`)."""
    return max(1, min(cfg.threads, thread_budget()))


def _finite_volumes(data: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Volumes that are mostly finite; the others are dropped with a warning."""
    bad_fraction = (~np.isfinite(data)).reshape(-1, data.shape[3]).mean(axis=0)
    keep = bad_fraction <= 0.5
    notes = []
    if (~keep).any():
        notes.append(f"dropped {int((~keep).sum())} volume(s) that are mostly non-finite: "
                     f"{np.flatnonzero(~keep).tolist()}")
    return keep, notes


def _check(data: np.ndarray, bvals: np.ndarray, bvecs: np.ndarray, cfg: DwiConfig,
           ) -> tuple[gradients.GradientCheck, np.ndarray | None, list[str]]:
    if data.ndim != 4 or data.shape[3] < 2:
        shape = "x".join(str(s) for s in data.shape)
        return gradients.GradientCheck(False, f"not a 4D diffusion series (shape {shape})"), None, []
    vecs = gradients.as_n_by_3(bvecs, data.shape[3])
    if np.asarray(bvals).size != data.shape[3] or vecs is None:
        return gradients.check_gradients(bvals, bvecs, data.shape[3]), None, []
    keep, notes = _finite_volumes(data)
    check = gradients.check_gradients(
        np.asarray(bvals, float).ravel()[keep], vecs[keep], int(keep.sum()), cfg.b0_threshold,
        cfg.bvec_norm_tolerance, cfg.shell_tolerance, cfg.min_dwi_volumes)
    if not check.ok and notes:
        check = gradients.GradientCheck(False, f"{check.reason} after {notes[0]}")
    return check, keep, notes


def _denoise(data: np.ndarray, bvals: np.ndarray, head: np.ndarray, cfg: DwiConfig) -> np.ndarray:
    if cfg.denoise == "mppca":
        return denoise.mppca(data, head, cfg.denoise_patch_radius, cfg.denoise_stride,
                             threads=_threads(cfg))
    if cfg.denoise == "dipy_mppca":
        return denoise.dipy_mppca(data, head, cfg.denoise_patch_radius)
    if cfg.denoise == "patch2self":
        return denoise.patch2self(data, bvals, cfg.b0_threshold)
    if cfg.denoise == "none":
        return data
    raise ValueError(f"unknown denoiser {cfg.denoise!r}; use one of {denoise.DENOISERS}")


def _motion(data: np.ndarray, check: gradients.GradientCheck, zooms: tuple[float, ...],
            head: np.ndarray, flip_x: bool, cfg: DwiConfig, result: DwiResult,
            ) -> tuple[np.ndarray, np.ndarray]:
    if min(data.shape[:3]) < MIN_REGISTRATION_SIZE:
        raise ValueError(f"series {data.shape[:3]} is too small to register "
                         f"(< {MIN_REGISTRATION_SIZE} voxels along an axis)")
    settings = motion.MotionSettings(cfg.motion, cfg.motion_shrink_factors,
                                     cfg.motion_smoothing_mm, cfg.motion_sampling,
                                     cfg.motion_iterations)
    reference = data[..., check.b0_mask].mean(axis=3)
    moved = motion.correct_motion(data, zooms, reference, check.bvecs, head, flip_x, settings,
                                  threads=_threads(cfg))
    result.motion_max_mm = float(moved.displacement_mm.max())
    result.motion_mean_mm = float(moved.displacement_mm.mean())
    return moved.data, moved.bvecs


def _optional(step: str, run: Callable[[], Any], fallback: Any, result: DwiResult) -> Any:
    """Run one correction step; if it cannot work on this series, skip it with a warning.

    Corrections improve the maps but are not required for them (a two-slice
    series has no room for a 5-voxel denoising patch or a registration pyramid).
    """
    try:
        return run()
    except (ValueError, RuntimeError, np.linalg.LinAlgError) as exc:
        result.warnings.append(f"{step} skipped: {type(exc).__name__}: {str(exc).strip()[:200]}")
        return fallback


def derive(data: np.ndarray, zooms: tuple[float, ...], affine: np.ndarray, bvals: np.ndarray,
           bvecs: np.ndarray, cfg: DwiConfig, slice_axis: int = 2) -> DwiResult:
    """Run the derivation chain on one series (see the module docstring).

    BLAS is limited to one thread meanwhile (see :mod:`curate.dwi.threads`).
    """
    with one_blas_thread():
        return _derive(data, zooms, affine, bvals, bvecs, cfg, slice_axis)


class _Clock:
    """Wall and CPU seconds (all threads of the process) per step, in order."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.last = time.perf_counter()
        self.last_cpu = time.process_time()

    def lap(self, name: str) -> None:
        now, now_cpu = time.perf_counter(), time.process_time()
        self.timings[name] = round(now - self.last, 3)
        self.cpu[name] = round(now_cpu - self.last_cpu, 3)
        self.last, self.last_cpu = now, now_cpu


def _corrections(data: np.ndarray, check: gradients.GradientCheck, head: np.ndarray,
                 zooms: tuple[float, ...], affine: np.ndarray, cfg: DwiConfig, slice_axis: int,
                 result: DwiResult, clock: _Clock) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unring, realign, unbias; return the series, its bvecs and its mean b0."""
    if cfg.gibbs:
        data = _optional("gibbs", lambda: gibbs.remove_gibbs(
            data, slice_axis, cfg.gibbs_n_points, _threads(cfg), mask=head), data, result)
    clock.lap("gibbs")
    bvecs = check.bvecs
    if cfg.motion != "none":
        flip_x = bool(np.linalg.det(affine[:3, :3]) > 0)
        data, bvecs = _optional("motion", lambda: _motion(
            data, check, zooms, head, flip_x, cfg, result), (data, bvecs), result)
    clock.lap("motion")
    mean_b0 = data[..., check.b0_mask].mean(axis=3)
    if cfg.bias:
        field = _optional("bias", lambda: bias.n4_field(
            mean_b0, head, zooms, cfg.bias_shrink, cfg.bias_iterations), None, result)
        if field is not None:
            data = bias.apply_field(data, field)
            mean_b0 = bias.apply_field(mean_b0, field)
    clock.lap("bias")
    return data, bvecs, mean_b0


def _derive(data: np.ndarray, zooms: tuple[float, ...], affine: np.ndarray, bvals: np.ndarray,
            bvecs: np.ndarray, cfg: DwiConfig, slice_axis: int) -> DwiResult:
    clock = _Clock()
    check, keep, notes = _check(np.asarray(data), np.asarray(bvals), np.asarray(bvecs), cfg)
    clock.lap("gradients")
    if not check.ok or keep is None:
        return DwiResult(False, check.reason, warnings=notes, timings_s=clock.timings)
    data = np.nan_to_num(np.asarray(data, np.float32)[..., keep], nan=0.0, posinf=0.0, neginf=0.0)
    result = DwiResult(True, shells=check.shells, warnings=notes + list(check.notes),
                       timings_s=clock.timings, cpu_s=clock.cpu,
                       parameters=_parameters(cfg, slice_axis))
    head = mask.head_mask(data[..., check.b0_mask].mean(axis=3))
    clock.lap("head_mask")
    data = _optional("denoise", lambda: _denoise(data, check.bvals, head, cfg), data, result)
    clock.lap("denoise")
    use = gradients.dti_volumes(check, cfg.dti_max_b, cfg.shell_tolerance)
    if cfg.drop_unused_shells and not use.all():
        data, check = data[..., use], gradients.subset(check, use)
        use = np.ones(data.shape[3], bool)
    data, bvecs_now, mean_b0 = _corrections(data, check, head, zooms, affine, cfg, slice_axis,
                                            result, clock)
    brain = mask.brain_mask(mean_b0, cfg.mask_median_radius, cfg.mask_numpass,
                            cfg.mask_fill_holes)
    clock.lap("mask")
    if not brain.any():
        return DwiResult(False, "brain mask of the mean b0 is empty", "empty",
                         warnings=result.warnings, timings_s=clock.timings)
    maps = tensor.fit_tensor(data[..., use], check.bvals[use], bvecs_now[use], brain,
                             cfg.dti_fit_method, cfg.b0_threshold)
    clock.lap("tensor")
    result.fa, result.md, result.brain_mask = maps.fa, maps.md, brain
    result.t2w = np.where(brain > 0, np.clip(mean_b0, 0, None), 0).astype(np.float32)
    result.shells_used = tuple(check.shells[k] for k in
                               gradients.dti_shells(check, cfg.dti_max_b, cfg.shell_tolerance))
    result.nan_voxels, result.degenerate_voxels = maps.nan_voxels, maps.degenerate_voxels
    return result


def _parameters(cfg: DwiConfig, slice_axis: int) -> dict[str, Any]:
    from dataclasses import asdict

    import dipy
    import SimpleITK

    params = asdict(cfg)
    params["gibbs_slice_axis"] = slice_axis
    params["software"] = {"dipy": dipy.__version__, "SimpleITK": SimpleITK.__version__}
    return params
