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

import dataclasses
import functools
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, ClassVar, Literal

from manifests import tomlconfig
from manifests.tomlconfig import ConfigError


@dataclass(frozen=True, slots=True)
class Rule:
    """What a setting's value must satisfy beyond its type, attached with ``Annotated``.

    Bounds apply to a number and to every element of a tuple of numbers;
    ``length`` to a tuple; ``inside_output`` to a path that must stay inside
    OUTPUT (relative, without ``..``).  Every float must be finite, and a
    ``Literal`` type lists the only accepted values: both are read from the type
    hints, so they need no rule.  :func:`check_section` applies them all.
    """

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    length: int | None = None
    inside_output: bool = False


Positive = Annotated[float, Rule(gt=0)]
NonNegative = Annotated[float, Rule(ge=0)]
Fraction = Annotated[float, Rule(ge=0, le=1)]
Count = Annotated[int, Rule(ge=1)]
NonNegativeInt = Annotated[int, Rule(ge=0)]
Percentile = Annotated[float, Rule(ge=0, le=100)]
#: blosc2's general-purpose codecs (``blosc2.Codec`` names).
Codec = Literal["BLOSCLZ", "LZ4", "LZ4HC", "ZLIB", "ZSTD"]


def _problem(value: Any, hint: Any, rules: tuple[Rule, ...]) -> str | None:
    """Why ``value`` breaks its type hint's choices, finiteness or ``rules``; ``None`` when it does not."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        return _problem(value, args[0], rules + tuple(a for a in args[1:] if isinstance(a, Rule)))
    if value is None:
        return None
    if origin is Literal:
        return None if value in args else f"must be one of {', '.join(repr(a) for a in args)}"
    if origin in (typing.Union, types.UnionType):
        return _problem(value, next(a for a in args if a is not type(None)), rules)
    if origin is tuple:
        for rule in rules:
            if rule.length is not None and len(value) != rule.length:
                return f"must have {rule.length} values"
        return next((p for v in value if (p := _problem(v, args[0], rules)) is not None), None)
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    return _rule_problem(value, rules)


def _rule_problem(value: Any, rules: tuple[Rule, ...]) -> str | None:
    for rule in rules:
        if rule.inside_output:
            parts = PurePosixPath(str(value).replace("\\", "/")).parts
            if not parts or PurePosixPath(str(value)).is_absolute() or ".." in parts or ":" in str(value):
                return "must be a folder inside OUTPUT (relative, without '..')"
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        for bound, ok, word in ((rule.ge, lambda v, b: v >= b, ">="), (rule.gt, lambda v, b: v > b, ">"),
                                (rule.le, lambda v, b: v <= b, "<="), (rule.lt, lambda v, b: v < b, "<")):
            if bound is not None and not ok(value, bound):
                return f"must be {word} {bound:g}"
    return None


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, include_extras=True)


def check_section(section: Any) -> None:
    """Raise :class:`ConfigError` naming the first setting of ``section`` its type hints refuse.

    The section's name in messages is its class name without ``Config``
    (``TriageConfig`` -> ``triage``).  Pairs listed in the class attribute
    ``ordered`` must be strictly increasing (a low before its high).

    Examples
    --------
    >>> TriageConfig(min_fov_mm=float("nan"))
    Traceback (most recent call last):
    ...
    manifests.tomlconfig.ConfigError: triage.min_fov_mm must be a finite number, got nan
    """
    cls = type(section)
    name = cls.__name__.removesuffix("Config").lower()
    hints = _hints(cls)
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        problem = _problem(value, hints[f.name], ())
        if problem is not None:
            raise ConfigError(f"{name}.{f.name} {problem}, got {value!r}")
    for low, high in getattr(cls, "ordered", ()):
        if not getattr(section, low) < getattr(section, high):
            raise ConfigError(f"{name}.{low} must be below {name}.{high}, got "
                              f"{getattr(section, low)!r} and {getattr(section, high)!r}")


@dataclass(frozen=True, slots=True)
class TriageConfig:
    """Header-level exclusion thresholds (OpenMind / S3D curation)."""

    min_fov_mm: NonNegative = 50.0
    max_spacing_mm: Positive = 6.5
    min_file_size_bytes: NonNegativeInt = 200 * 1024
    exclude_derived_dicom_series: bool = True

    def __post_init__(self) -> None:
        check_section(self)


@dataclass(frozen=True, slots=True)
class ReadConfig:
    """The full data read that catches corrupt or empty images (and converts DICOM series).

    ``outlier_spans``: when a source image is loaded, voxels farther than this
    many times its 0.1-99.9 percentile range beyond that range (a hot voxel, a
    failed fit in a quantitative map, a FLT_MAX fill value) are clipped to the
    bound, with a warning, so that one voxel cannot set the histogram ranges of
    the masks and quality measures (:func:`curate.nifti.clip_outliers`).
    Ordinary images have no such voxels.  ``0`` turns it off.

    ``max_image_bytes`` and ``max_series_bytes`` bound what one worker decodes,
    from the headers and before any data are read: an image whose voxels, held
    as float32, take more (a 22 MB ``.nii.gz`` can hold 1024^3 float32, 4 GiB),
    or a DICOM series whose pixel data (Rows x Columns x frames x BitsAllocated,
    summed over its files) is larger, is excluded with reason ``size``; a
    deflated DICOM series is inflated only up to ``max_series_bytes``.  The
    defaults (2 GiB each) pass up to 536 million voxels (812^3, or a 4D series
    of 96 x 96 x 60 x 900).
    """

    enabled: bool = True
    min_finite_fraction: Fraction = 0.01
    outlier_spans: NonNegative = 10.0
    #: A dcm2niix run on one series taking longer than this is stopped (the series is unreadable).
    dcm2niix_timeout_s: Positive = 1800.0
    max_image_bytes: Count = 2 * 1024**3
    max_series_bytes: Count = 2 * 1024**3

    def __post_init__(self) -> None:
        check_section(self)


@dataclass(frozen=True, slots=True)
class DwiConfig:
    """DWI derivation into FA, MD and mean-b0 (T2w) maps (OpenMind appendix B.2).

    Every step can be switched off; every value here is written into the
    sidecar JSON of the maps it produced.
    """

    enabled: bool = True
    #: Threads one series may use (registration, denoising); keep at 1 when
    #: Dask already runs one task per core.
    threads: Count = 2
    # gradient table checks
    b0_threshold: NonNegative = 50.0
    bvec_norm_tolerance: Positive = 0.1
    shell_tolerance: Positive = 100.0
    min_dwi_volumes: Count = 6
    # 1. denoising: "mppca" (ours, vectorised), "dipy_mppca", "patch2self" or "none"
    denoise: Literal["mppca", "dipy_mppca", "patch2self", "none"] = "mppca"
    denoise_patch_radius: Count = 2
    denoise_stride: Count = 2
    #: After denoising (which uses every volume), drop the volumes of shells the
    #: tensor fit does not use: they only cost Gibbs-removal and registration time.
    drop_unused_shells: bool = True
    # 2. Gibbs ringing removal along the in-plane axes
    gibbs: bool = True
    gibbs_n_points: Count = 3
    # 3. motion: "rigid", "affine" or "none" (every volume to the mean b0)
    motion: Literal["rigid", "affine", "none"] = "rigid"
    motion_shrink_factors: tuple[Count, ...] = (4, 2)
    motion_smoothing_mm: tuple[NonNegative, ...] = (2.0, 1.0)
    motion_sampling: Annotated[float, Rule(gt=0, le=1)] = 0.25
    motion_iterations: Count = 50
    # 4. N4 bias field on the mean b0, applied to every volume
    bias: bool = True
    bias_shrink: Count = 4
    bias_iterations: tuple[Count, ...] = (50, 50, 30)
    # 5. brain mask on the mean b0 (median_otsu, lighter than dipy's defaults)
    mask_median_radius: Count = 2
    mask_numpass: Count = 1
    mask_fill_holes: bool = True
    # 6. tensor fit on b0 + shells with b <= dti_max_b + shell_tolerance
    dti_max_b: Positive = 1000.0
    #: dipy's TensorModel fit methods
    dti_fit_method: Literal["WLS", "LS", "OLS", "NLLS", "RESTORE"] = "WLS"

    def __post_init__(self) -> None:
        check_section(self)
        if len(self.motion_shrink_factors) != len(self.motion_smoothing_mm):
            raise ConfigError("dwi.motion_shrink_factors and dwi.motion_smoothing_mm must have as many "
                              f"values, got {len(self.motion_shrink_factors)} and "
                              f"{len(self.motion_smoothing_mm)}")


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
    max_iqs: Annotated[float | None, Rule(ge=1, le=5)] = None
    calibration: str | None = None
    ratings: str | None = None
    score_from: Literal["image", "group"] = "image"
    max_border_fraction: Fraction = 0.25
    min_head_fraction: Fraction = 0.03
    max_bad_slices: NonNegativeInt = 0

    def __post_init__(self) -> None:
        check_section(self)


@dataclass(frozen=True, slots=True)
class MasksConfig:
    """Anonymization and anatomy masks (see :mod:`curate.masks` for the methods)."""

    enabled: bool = True
    #: voxel size (mm) the masks are computed at before going back to the image grid
    work_mm: Positive = 2.0
    # anatomy foreground
    closing_mm: NonNegative = 4.0
    noise_k: NonNegative = 5.0
    floor_multiple: NonNegative = 3.0
    min_component_fraction: Fraction = 0.1
    #: smallest left-right extent (mm) of a foreground treated as a head
    min_head_width_mm: NonNegative = 90.0
    # defacing: flat cut faces with zero signal beyond
    cut_min_area_mm2: NonNegative = 2500.0
    cut_tolerance_mm: NonNegative = 2.0
    cut_min_width_mm: NonNegative = 40.0
    cut_depth_mm: NonNegative = 60.0
    cut_margin_mm: NonNegative = 8.0
    # skull stripping: brain-sized foreground in a zeroed background without a skull layer
    strip_min_volume_ml: NonNegative = 700.0
    strip_max_volume_ml: NonNegative = 2200.0
    strip_min_void_fraction: Fraction = 0.8
    strip_max_skull_dip: Fraction = 0.7
    strip_shell_mm: NonNegative = 17.0
    strip_footprint_margin_mm: NonNegative = 0.0
    strip_neck_mm: NonNegative = 140.0
    # face blurring: low within-block texture in the face zone
    blur_smooth_ratio: Fraction = 0.3
    blur_min_face_fraction: Fraction = 0.25
    blur_max_cranium_fraction: Fraction = 0.1

    ordered: ClassVar[tuple[tuple[str, str], ...]] = (("strip_min_volume_ml", "strip_max_volume_ml"),)

    def __post_init__(self) -> None:
        check_section(self)


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
    spacing_mm: Annotated[tuple[Positive, ...], Rule(length=3)] = (1.0, 1.0, 1.0)
    spacing_tolerance_mm: NonNegative = 1e-3
    image_interpolation: Literal["bspline", "linear"] = "bspline"
    margin_mm: NonNegative = 8.0
    normalization: Literal["image", "anatomy"] = "image"
    outlier_spans: NonNegative = 10.0
    image_dtype: Literal["float16", "float32"] = "float16"
    codec: Codec = "LZ4HC"
    clevel: Annotated[int, Rule(ge=0, le=9)] = 1
    masks_codec: Codec = "BLOSCLZ"
    masks_clevel: Annotated[int, Rule(ge=0, le=9)] = 5
    chunks: Annotated[tuple[Count, ...], Rule(length=3)] = (64, 64, 64)
    blocks: Annotated[tuple[Count, ...], Rule(length=3)] = (32, 32, 64)
    folder: Annotated[str, Rule(inside_output=True)] = "arrays"

    def __post_init__(self) -> None:
        check_section(self)


@dataclass(frozen=True, slots=True)
class ReportConfig:
    """QC thumbnails (the ``thumbnails`` build stage) and the HTML report.

    The first group changes how thumbnails look, so it is the stage's
    fingerprint; the second only chooses what ``curate report`` shows.
    """

    thumbnails: bool = True
    panel_px: Annotated[int, Rule(ge=16, le=4096)] = 160
    low_percentile: Percentile = 0.5
    high_percentile: Percentile = 99.5
    overlay_alpha: Fraction = 0.45
    worst_n: NonNegativeInt = 12
    best_n: NonNegativeInt = 12
    per_modality: NonNegativeInt = 4
    max_dwi_series: NonNegativeInt = 8
    max_table_rows: NonNegativeInt = 20000
    sample_seed: NonNegativeInt = 0

    ordered: ClassVar[tuple[tuple[str, str], ...]] = (("low_percentile", "high_percentile"),)

    def __post_init__(self) -> None:
        check_section(self)


@dataclass(frozen=True, slots=True)
class ExecutionConfig:
    """How work is split into Dask tasks, and how many threads each worker's libraries use."""

    index_batch_size: Count = 512
    build_batch_size: Count = 4
    small_collection: NonNegativeInt = 2000
    #: Threads per worker for BLAS/OpenMP/SimpleITK/blosc2/torch; 0 = the cores split evenly
    #: between the local workers (one thread per task on a ``--scheduler`` cluster).
    threads_per_worker: NonNegativeInt = 0

    def __post_init__(self) -> None:
        check_section(self)


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
