"""The ``iqs`` stage: raw quality measures and the automatic 1-5 image quality score.

Glue only: the maths is :func:`qc.profile.measure_image` and :func:`qc.iqs.score`.
Group scores, human ratings and the ``--max-iqs`` threshold need the whole
collection and live in :mod:`curate.finalize`.
"""

from __future__ import annotations

import functools
import math
from typing import Any, ClassVar

import nibabel as nib
import numpy as np

from manifests.schema import ImageRecord

from curate.config import CurateConfig, IqsConfig
from curate.io import UnreadableImage, read_image
from qc.iqs import Calibration, FlagRules, IqsResult, load_calibration, score
from qc.profile import Profile, measure_image

from curate.stages.base import StageContext, WorkItem, load_image

#: Raw measure columns and the profile attribute each one takes.
MEASURE_COLUMNS: dict[str, str] = {
    "qc_noise_sigma": "noise_sigma", "qc_snr": "snr", "qc_snr_dietrich": "snr_dietrich",
    "qc_cnr": "cnr", "qc_cjv": "cjv", "qc_efc": "efc", "qc_fber": "fber", "qc_fwhm_mm": "fwhm_mm",
    "qc_sharpness": "sharpness", "qc_ghost": "ghost", "qc_qi1": "qi1", "qc_spike": "spike",
    "qc_inu": "inu", "qc_ringing": "ringing", "qc_border_truncation": "border_truncation",
}
SCORE_COLUMNS = ("iqs", "iqs_noise", "iqs_blur", "iqs_artifact", "fov_suboptimal", "corrupted", "iqs_source")


@functools.lru_cache(maxsize=4)
def _calibration(path: str | None) -> Calibration:
    return load_calibration(path)


def phase_axis(direction: str | None) -> int | None:
    """Voxel axis of a BIDS ``PhaseEncodingDirection`` (``i``, ``j-``, ...), else ``None``.

    Examples
    --------
    >>> phase_axis("j-"), phase_axis("k"), phase_axis(None)
    (1, 2, None)
    """
    if not direction:
        return None
    return {"i": 0, "j": 1, "k": 2}.get(direction.strip()[:1])


def inferior_face(affine: np.ndarray) -> tuple[tuple[int, int], ...]:
    """The ``(axis, side)`` face of the volume that points to the feet (the neck leaves there)."""
    try:
        codes = nib.aff2axcodes(affine)
    except (ValueError, np.linalg.LinAlgError):
        return ()
    for axis, code in enumerate(codes[:3]):
        if code == "S":
            return ((axis, 0),)
        if code == "I":
            return ((axis, 1),)
    return ()


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def record_columns(profile: Profile, result: IqsResult) -> dict[str, Any]:
    """Manifest columns of one scored image (NaN becomes null)."""
    columns: dict[str, Any] = {col: _finite(getattr(profile, attr)) for col, attr in MEASURE_COLUMNS.items()}
    columns.update(
        qc_bad_slices=int(profile.bad_slices), iqs=_finite(result.iqs), iqs_noise=_finite(result.noise),
        iqs_blur=_finite(result.blur), iqs_artifact=_finite(result.artifact),
        fov_suboptimal=bool(result.fov_suboptimal), corrupted=bool(result.corrupted), iqs_source="auto",
    )
    return columns


def _anatomy(item: WorkItem, ctx: StageContext) -> np.ndarray | None:
    """The anatomy mask from the masks stage: in memory, else its file on a resumed build."""
    mask = item.extras.get("anatomy_mask")
    if mask is not None or not item.record.anatomy_mask_path:
        return mask
    path = ctx.output_root / item.record.anatomy_mask_path
    if not path.exists():
        return None
    try:
        return read_image(path).data > 0
    except UnreadableImage:
        return None


class IqsStage:
    """Measure every included image and score it 1 (clean) to 5 (unusable)."""

    name: ClassVar[str] = "iqs"
    version: ClassVar[str] = "2"
    requires: ClassVar[tuple[str, ...]] = ("read", "dwi", "masks")
    # iqs_group is set by curate.finalize; listing it lets an unchanged row be recognised
    # as done on a rerun (finalize recomputes it anyway).  The ``iqs`` reason is not
    # carried on purpose: rows stay included through every stage (so later stages keep
    # their outputs up to date) and finalize re-applies the threshold at the end.
    columns: ClassVar[tuple[str, ...]] = (*SCORE_COLUMNS, *MEASURE_COLUMNS, "qc_bad_slices", "iqs_group")
    reasons: ClassVar[tuple[str, ...]] = ()

    def settings(self, config: CurateConfig) -> dict[str, Any]:
        cfg = config.iqs
        calibration = _calibration(cfg.calibration)
        # max_iqs, ratings and group_scores act in finalize: changing them must not re-measure.
        return {"calibration": calibration.version, "calibration_path": cfg.calibration,
                "max_border_fraction": cfg.max_border_fraction,
                "min_head_fraction": cfg.min_head_fraction, "max_bad_slices": cfg.max_bad_slices}

    def applies(self, record: ImageRecord) -> bool:
        return record.included

    def run(self, item: WorkItem, ctx: StageContext) -> list[WorkItem]:
        cfg: IqsConfig = ctx.config.iqs
        image = load_image(item, ctx)
        anatomy = _anatomy(item, ctx)
        if anatomy is not None and np.shape(anatomy) != image.data.shape[:3]:
            anatomy = None
        profile = measure_image(image.data, tuple(image.zooms[:3]), anatomy=anatomy,
                                pe_axis=phase_axis(item.record.phase_encoding_direction),
                                skip_faces=inferior_face(image.affine))
        rules = FlagRules(cfg.max_border_fraction, cfg.min_head_fraction, cfg.max_bad_slices)
        result = score(profile, item.record.modality, _calibration(cfg.calibration), rules)
        record = item.record.replace(**record_columns(profile, result))
        for note in (*profile.notes.values(), *result.reasons):
            record = record.with_warning(f"iqs: {note}")
        item.record = record
        return [item]
