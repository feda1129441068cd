"""The ``masks`` stage: anatomy and anonymization masks for every included image.

Writes two BIDS-derivative NIfTI files per image, uint8 with values exactly
0/1 on the image's own grid (same shape and affine):

* ``<stem>_desc-anatomy_mask.nii.gz`` — 1 where the subject's tissue is;
* ``<stem>_desc-anon_mask.nii.gz`` — 1 where anonymization removed or altered
  content (do not learn from it); empty for an intact image.

and fills ``anonymization`` (``none``/``defaced``/``face_blurred``/
``skull_stripped``), ``anonymization_confidence`` (0..1),
``anonymization_method`` (``rules`` or ``rules+deepbet-<version>``), ``anon_fraction``
(anon voxels over the voxels of anatomy or anon, i.e. the share of the
subject's estimated original extent that was removed or altered) and the two
paths.  The masks are also left in ``item.extras`` (``"anatomy_mask"``,
``"anon_mask"``) for later stages in the same task.  The maths lives in
:mod:`curate.masks`.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from manifests.schema import ImageRecord

from curate.config import CurateConfig, MasksConfig
from curate.derivatives import derivative_path, ensure_dataset_description
from curate.io import read_image, write_nifti
from curate.masks import anatomy_mask, detect_anonymization
from curate.masks.learned import brain_method, learned_brain_mask
from curate.stages.base import StageContext, WorkItem, load_image


def volume_of(data: np.ndarray) -> np.ndarray | None:
    """The 3-D volume in ``data`` (trailing singleton axes dropped), or ``None``.

    Examples
    --------
    >>> volume_of(np.zeros((4, 4, 4, 1))).shape
    (4, 4, 4)
    >>> volume_of(np.zeros((4, 4, 4, 3))) is None
    True
    """
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    return data if data.ndim == 3 else None


def method_of(cfg: MasksConfig) -> str:
    """What decides the class under ``cfg``: ``"rules"`` or ``"rules+deepbet-<version>"``."""
    learned = brain_method() if cfg.brain_model == "auto" else "none"
    return "rules" if learned == "none" else f"rules+{learned}"


def compute_masks(data: np.ndarray, affine: np.ndarray, zooms: tuple[float, ...],
                  cfg: MasksConfig) -> tuple[np.ndarray, np.ndarray, str, float]:
    """``(anatomy, anon, anonymization, confidence)`` for one 3-D image.

    A learned brain mask is used when ``cfg.brain_model`` is ``"auto"`` and
    deepbet is installed (see :func:`method_of`).
    """
    anatomy = anatomy_mask(data, zooms, cfg.work_mm, cfg.closing_mm, cfg.noise_k,
                           cfg.floor_multiple, cfg.min_component_fraction)
    brain = learned_brain_mask(data, affine) if method_of(cfg) != "rules" else None
    result = detect_anonymization(data, affine, anatomy, cfg, brain=brain)
    return anatomy, result.mask, result.kind, result.confidence


def masks_for(item: WorkItem, ctx: StageContext) -> tuple[np.ndarray, np.ndarray] | None:
    """``(anatomy, anon)`` uint8 masks of an item, for later stages.

    Taken from ``item.extras`` when this stage ran in the same task, else read
    from the files named in the record (a resumed build), else ``None``.

    Raises
    ------
    curate.io.UnreadableImage
        If the record names mask files that cannot be read.
    """
    if "anatomy_mask" in item.extras and "anon_mask" in item.extras:
        return item.extras["anatomy_mask"], item.extras["anon_mask"]
    record = item.record
    if not record.anatomy_mask_path or not record.anon_mask_path:
        return None
    anatomy = read_image(ctx.output_root / record.anatomy_mask_path).data > 0
    anon = read_image(ctx.output_root / record.anon_mask_path).data > 0
    return anatomy.astype(np.uint8), anon.astype(np.uint8)


class MasksStage:
    """Anatomy and anonymization masks (OpenMind's anonymization-aware loss needs them)."""

    name: ClassVar[str] = "masks"
    version: ClassVar[str] = "2"
    requires: ClassVar[tuple[str, ...]] = ("read",)
    columns: ClassVar[tuple[str, ...]] = (
        "anonymization", "anonymization_confidence", "anonymization_method", "anon_fraction",
        "anon_mask_path", "anatomy_mask_path",
    )
    reasons: ClassVar[tuple[str, ...]] = ()

    def settings(self, config: CurateConfig) -> tuple[MasksConfig, str]:
        # the method joins the fingerprint: installing deepbet later reruns the stage
        return config.masks, method_of(config.masks)

    def applies(self, record: ImageRecord) -> bool:
        return record.included

    def run(self, item: WorkItem, ctx: StageContext) -> list[WorkItem]:
        image = load_image(item, ctx)
        data = volume_of(image.data)
        if data is None:
            item.record = item.record.with_warning(
                f"masks: not a 3-D image (shape {tuple(image.data.shape)}), no masks made")
            return [item]
        anatomy, anon, kind, confidence = compute_masks(data, image.affine, image.zooms,
                                                        ctx.config.masks)
        record = item.record
        ensure_dataset_description(ctx.output_root, record.dataset)
        anon_rel = derivative_path(record, "anon", "mask")
        anatomy_rel = derivative_path(record, "anatomy", "mask")
        write_nifti(ctx.output_root / anon_rel, anon, image.affine, dtype=np.uint8)
        write_nifti(ctx.output_root / anatomy_rel, anatomy, image.affine, dtype=np.uint8)
        subject = int(np.count_nonzero(anatomy | anon))
        fraction = float(np.count_nonzero(anon)) / subject if subject else 0.0
        item.record = record.replace(
            anonymization=kind, anonymization_confidence=round(float(confidence), 4),
            anonymization_method=method_of(ctx.config.masks),
            anon_fraction=round(fraction, 6), anon_mask_path=anon_rel,
            anatomy_mask_path=anatomy_rel,
        )
        item.extras["anatomy_mask"] = anatomy
        item.extras["anon_mask"] = anon
        return [item]
