"""Curation settings: frozen dataclasses loaded from TOML and dumped beside outputs.

Each stage owns one section.  A stage's fingerprint is a hash of its section,
so changing a threshold re-runs exactly the stages that read it.

Examples
--------
>>> cfg = load_config_text('[triage]\\nmin_fov_mm = 40.0\\n')
>>> cfg.triage.min_fov_mm, cfg.triage.max_spacing_mm
(40.0, 6.5)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from manifests import tomlconfig
from manifests.tomlconfig import ConfigError


@dataclass(frozen=True, slots=True)
class TriageConfig:
    """Header-level exclusion thresholds (OpenMind / S3D curation)."""

    min_fov_mm: float = 50.0
    max_spacing_mm: float = 6.5
    min_file_size_bytes: int = 200 * 1024
    exclude_derived_dicom_series: bool = True


@dataclass(frozen=True, slots=True)
class ReadConfig:
    """The full data read that catches corrupt or empty images (and converts DICOM series).

    ``outlier_spans``: when a source image is loaded, voxels farther than this
    many times its 0.1-99.9 percentile range beyond that range (a hot voxel, a
    failed fit in a quantitative map, a FLT_MAX fill value) are clipped to the
    bound, with a warning, so that one voxel cannot set the histogram ranges of
    the masks and quality measures (:func:`curate.nifti.clip_outliers`).
    Ordinary images have no such voxels.  ``0`` turns it off.
    """

    enabled: bool = True
    min_finite_fraction: float = 0.01
    outlier_spans: float = 10.0
    #: A dcm2niix run on one series taking longer than this is stopped (the series is unreadable).
    dcm2niix_timeout_s: float = 1800.0


@dataclass(frozen=True, slots=True)
class DwiConfig:
    """DWI derivation into FA, MD and mean-b0 (T2w) maps (OpenMind appendix B.2).

    Every step can be switched off; every value here is written into the
    sidecar JSON of the maps it produced.
    """

    enabled: bool = True
    #: Threads one series may use (registration, denoising); keep at 1 when
    #: Dask already runs one task per core.
    threads: int = 2
    # gradient table checks
    b0_threshold: float = 50.0
    bvec_norm_tolerance: float = 0.1
    shell_tolerance: float = 100.0
    min_dwi_volumes: int = 6
    # 1. denoising: "mppca" (ours, vectorised), "dipy_mppca", "patch2self" or "none"
    denoise: str = "mppca"
    denoise_patch_radius: int = 2
    denoise_stride: int = 2
    #: After denoising (which uses every volume), drop the volumes of shells the
    #: tensor fit does not use: they only cost Gibbs-removal and registration time.
    drop_unused_shells: bool = True
    # 2. Gibbs ringing removal along the in-plane axes
    gibbs: bool = True
    gibbs_n_points: int = 3
    # 3. motion: "rigid", "affine" or "none" (every volume to the mean b0)
    motion: str = "rigid"
    motion_shrink_factors: tuple[int, ...] = (4, 2)
    motion_smoothing_mm: tuple[float, ...] = (2.0, 1.0)
    motion_sampling: float = 0.25
    motion_iterations: int = 50
    # 4. N4 bias field on the mean b0, applied to every volume
    bias: bool = True
    bias_shrink: int = 4
    bias_iterations: tuple[int, ...] = (50, 50, 30)
    # 5. brain mask on the mean b0 (median_otsu, lighter than dipy's defaults)
    mask_median_radius: int = 2
    mask_numpass: int = 1
    mask_fill_holes: bool = True
    # 6. tensor fit on b0 + shells with b <= dti_max_b + shell_tolerance
    dti_max_b: float = 1000.0
    dti_fit_method: str = "WLS"


@dataclass(frozen=True, slots=True)
class IqsConfig:
    """Automatic image-quality score (OpenMind App. B.1 rules, calibrated measures).

    ``calibration`` is a JSON file of knots (``None``: the packaged
    ``qc/calibration/iqs_v2.json``); ``ratings`` a CSV of human ratings that take
    precedence (columns ``dataset, modality, rating`` or ``image_id, rating``);
    ``max_iqs`` excludes rows whose final score is above it (reason ``iqs``);
    ``score_from`` picks the final ``iqs`` when no human rating applies:
    ``"image"`` (each image's own score) or ``"group"`` (OpenMind's per-group median).
    """

    enabled: bool = True
    max_iqs: float | None = None
    calibration: str | None = None
    ratings: str | None = None
    score_from: str = "image"
    max_border_fraction: float = 0.25
    min_head_fraction: float = 0.03
    max_bad_slices: int = 0

    def __post_init__(self) -> None:
        if self.score_from not in ("image", "group"):
            raise ConfigError(f"iqs.score_from must be 'image' or 'group', got {self.score_from!r}")
        if self.max_iqs is not None and not 1.0 <= self.max_iqs <= 5.0:
            raise ConfigError(f"iqs.max_iqs must be within [1, 5], got {self.max_iqs}")


@dataclass(frozen=True, slots=True)
class MasksConfig:
    """Anonymization and anatomy masks (see :mod:`curate.masks` for the methods)."""

    enabled: bool = True
    #: voxel size (mm) the masks are computed at before going back to the image grid
    work_mm: float = 2.0
    # anatomy foreground
    closing_mm: float = 4.0
    noise_k: float = 5.0
    floor_multiple: float = 3.0
    min_component_fraction: float = 0.1
    #: smallest left-right extent (mm) of a foreground treated as a head
    min_head_width_mm: float = 90.0
    # defacing: flat cut faces with zero signal beyond
    cut_min_area_mm2: float = 2500.0
    cut_tolerance_mm: float = 2.0
    cut_min_width_mm: float = 40.0
    cut_depth_mm: float = 60.0
    cut_margin_mm: float = 8.0
    # skull stripping: brain-sized foreground in a zeroed background without a skull layer
    strip_min_volume_ml: float = 700.0
    strip_max_volume_ml: float = 2200.0
    strip_min_void_fraction: float = 0.8
    strip_max_skull_dip: float = 0.7
    strip_shell_mm: float = 17.0
    strip_footprint_margin_mm: float = 0.0
    strip_neck_mm: float = 140.0
    # face blurring: low within-block texture in the face zone
    blur_smooth_ratio: float = 0.3
    blur_min_face_fraction: float = 0.25
    blur_max_cranium_fraction: float = 0.1


@dataclass(frozen=True, slots=True)
class ArraysConfig:
    """Pre-training arrays: RAS, resampled, cropped, z-scored, compressed (OpenMind/nnssl).

    ``image_interpolation`` is ``"bspline"`` (cubic B-spline, nnssl's order 3) or
    ``"linear"``; masks are always resampled nearest-neighbour.  ``normalization``
    z-scores over the whole cropped image (``"image"``, nnssl's default) or within
    the anatomy mask (``"anatomy"``).  Resampling is skipped when every axis is
    within ``spacing_tolerance_mm`` of the target.  ``codec``/``clevel`` (image,
    byte shuffle), ``masks_codec``/``masks_clevel`` (packed masks, no filter) and
    ``chunks``/``blocks`` are the blosc2 storage settings chosen for random 160^3
    crops (docs/loader.md and ``benchmarks/bench_array_format.py`` have the
    measurements behind them).  ``outlier_spans`` clips outliers as
    ``[read] outlier_spans`` does, again on the cropped region before resampling
    and z-scoring (a single hot voxel would flatten the whole array), so that
    it also covers images made in memory such as DWI-derived maps.
    """

    enabled: bool = True
    spacing_mm: tuple[float, ...] = (1.0, 1.0, 1.0)
    spacing_tolerance_mm: float = 1e-3
    image_interpolation: str = "bspline"
    margin_mm: float = 8.0
    normalization: str = "image"
    outlier_spans: float = 10.0
    image_dtype: str = "float16"
    codec: str = "LZ4HC"
    clevel: int = 1
    masks_codec: str = "BLOSCLZ"
    masks_clevel: int = 5
    chunks: tuple[int, ...] = (64, 64, 64)
    blocks: tuple[int, ...] = (32, 32, 64)
    folder: str = "arrays"


@dataclass(frozen=True, slots=True)
class ReportConfig:
    """QC thumbnails (the ``thumbnails`` build stage) and the HTML report.

    The first group changes how thumbnails look, so it is the stage's
    fingerprint; the second only chooses what ``curate report`` shows.
    """

    thumbnails: bool = True
    panel_px: int = 160
    low_percentile: float = 0.5
    high_percentile: float = 99.5
    overlay_alpha: float = 0.45
    worst_n: int = 12
    best_n: int = 12
    per_modality: int = 4
    max_dwi_series: int = 8
    max_table_rows: int = 20000
    sample_seed: int = 0


@dataclass(frozen=True, slots=True)
class ExecutionConfig:
    """How work is split into Dask tasks."""

    index_batch_size: int = 512
    build_batch_size: int = 4
    small_collection: int = 2000


@dataclass(frozen=True, slots=True)
class CurateConfig:
    """Every curation setting, one section per concern."""

    triage: TriageConfig = field(default_factory=TriageConfig)
    read: ReadConfig = field(default_factory=ReadConfig)
    dwi: DwiConfig = field(default_factory=DwiConfig)
    iqs: IqsConfig = field(default_factory=IqsConfig)
    masks: MasksConfig = field(default_factory=MasksConfig)
    arrays: ArraysConfig = field(default_factory=ArraysConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)


def load_config_text(text: str) -> CurateConfig:
    """Parse TOML text into a :class:`CurateConfig`."""
    return tomlconfig.load_text(CurateConfig, text)


def load_config(path: Path | None) -> CurateConfig:
    """Load a TOML config file; ``None`` gives the defaults."""
    return tomlconfig.load_file(CurateConfig, path)


def dump_config(config: Any) -> str:
    """TOML text of a config dataclass (``None`` values are left out, as TOML has no null)."""
    return tomlconfig.dump(config)


def fingerprint(*parts: Any) -> str:
    """A short hash of JSON-serialisable parts and config dataclasses."""
    payload = json.dumps([tomlconfig.to_plain(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha1(payload.encode()).hexdigest()[:12]
