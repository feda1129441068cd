"""The baseline of ``pretrain bench-loader``: augmented crops made the nnssl way.

nnssl's MAE data path, per sample: read an enlarged "initial patch" (large
enough that a patch rotated by up to 30 degrees and scaled down to 0.85 stays
filled, as nnU-Net's ``get_patch_size`` computes it) from the preprocessed
array, zero-pad it, then run batchgeneratorsv2's ``SpatialTransform``
(rotation +-30 degrees p=0.2, scaling 0.7-1.4 p=0.2 synchronised over axes, no
elastic deformation, masks as a 2-channel segmentation resampled
``bilinear``) and ``MirrorTransform`` on all three axes.  batchgeneratorsv2
is only needed by this benchmark; when it is not importable the transform
falls back to ``scipy.ndimage.map_coordinates`` (order 3 image, order 1 masks)
the way batchgenerators v1 does, and the table says which ran.

The crops come from our own array files, with the same centre sampling as the
real loader, so the comparison isolates the augmentation path.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from pretrain.augment import rotation_matrix
from pretrain.data import ImageEntry, Sample
from pretrain.data_io import ArrayFileError, open_array, sample_centre, split_masks


def nnssl_initial_patch(patch: int, max_deg: float = 30.0, min_scale: float = 0.85) -> int:
    """Edge of nnssl's enlarged initial patch (nnU-Net's rule: rotate per axis, take extents, / scale).

    Examples
    --------
    >>> nnssl_initial_patch(160)
    258
    """
    corners = np.array(np.meshgrid(*[[-patch / 2, patch / 2]] * 3, indexing="ij")).reshape(3, -1)
    extent = float(patch)
    for axis in range(3):
        angles = [0.0, 0.0, 0.0]
        angles[axis] = math.radians(max_deg)
        rotated = rotation_matrix(tuple(angles)) @ corners  # type: ignore[arg-type]
        extent = max(extent, float((rotated.max(axis=1) - rotated.min(axis=1)).max()))
    return int(math.ceil(extent / min_scale))


def baseline_name() -> str:
    """Which implementation the baseline uses here."""
    try:
        import batchgeneratorsv2  # noqa: F401
    except ImportError:
        return "scipy map_coordinates (batchgenerators v1 style; batchgeneratorsv2 not installed)"
    return "batchgeneratorsv2 0.3.x SpatialTransform + MirrorTransform"


def _bgv2_transforms(patch: int):  # noqa: ANN202 (third-party types)
    from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform
    from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform

    limit = math.radians(30.0)
    spatial = SpatialTransform(
        (patch,) * 3, patch_center_dist_from_border=0, random_crop=False, p_elastic_deform=0,
        p_rotation=0.2, rotation=(-limit, limit), p_rot_per_axis=1, p_scaling=0.2, scaling=(0.7, 1.4),
        p_synchronize_scaling_across_axes=1, bg_style_seg_sampling=False, mode_seg="bilinear")
    return spatial, MirrorTransform(allowed_axes=(0, 1, 2))


def _scipy_transform(image: np.ndarray, seg: np.ndarray, patch: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """batchgenerators-v1-style per-sample spatial transform with ``map_coordinates``."""
    from scipy.ndimage import map_coordinates

    matrix = np.eye(3)
    moved = False
    if rng.uniform() < 0.2:
        matrix = rotation_matrix(tuple(rng.uniform(-math.pi / 6, math.pi / 6, 3)))  # type: ignore[arg-type]
        moved = True
    if rng.uniform() < 0.2:
        matrix = matrix * rng.uniform(0.7, 1.4)
        moved = True
    centre = (np.array(image.shape) - 1) / 2.0
    offsets = np.arange(patch) - (patch - 1) / 2.0
    if moved:
        grid = np.stack(np.meshgrid(offsets, offsets, offsets, indexing="ij")).reshape(3, -1)
        coords = matrix @ grid + centre[:, None]
        img = map_coordinates(image, coords, order=3, mode="constant").reshape((patch,) * 3)
        masks = np.stack([map_coordinates(s.astype(np.float32), coords, order=1, mode="constant")
                          .reshape((patch,) * 3) >= 0.5 for s in seg])
    else:
        start = np.floor(centre - (patch - 1) / 2.0).astype(int)
        window = tuple(slice(s, s + patch) for s in start)
        img, masks = image[window], seg[(slice(None), *window)]
    for axis in range(3):
        if rng.uniform() < 0.5:
            img, masks = np.flip(img, axis), np.flip(masks, axis + 1)
    return np.ascontiguousarray(img), np.ascontiguousarray(masks).astype(np.uint8)


class NnsslWayDataset(IterableDataset):
    """Endless augmented crops the nnssl way (see the module docstring)."""

    def __init__(self, entries: list[ImageEntry], patch: int, seed: int = 0) -> None:
        super().__init__()
        self.entries, self.patch, self.seed = entries, patch, seed
        self.initial = nnssl_initial_patch(patch)

    def _initial_patch(self, entry: ImageEntry, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        handle = open_array(Path(entry.path))
        centre = np.rint(sample_centre(handle, rng, 0.9)).astype(int)
        start = centre - self.initial // 2
        lo = np.clip(start, 0, handle.shape)
        hi = np.clip(start + self.initial, 0, handle.shape)
        image, masks = handle.read(lo, hi)
        pads = [(int(a - s), int(s + self.initial - b)) for a, b, s in zip(lo, hi, start)]
        anatomy, anon = split_masks(masks)
        seg = np.stack([np.pad(anatomy, pads), np.pad(anon, pads)]).astype(np.int16)
        return np.pad(image, pads), seg

    def __iter__(self) -> Iterator[Sample]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        rng = np.random.default_rng([self.seed, worker, 7])
        torch.manual_seed(self.seed * 1000 + worker)
        np.random.seed(self.seed * 1000 + worker)  # batchgeneratorsv2 draws from numpy's global RNG
        use_bgv2 = baseline_name().startswith("batchgeneratorsv2")
        spatial, mirror = _bgv2_transforms(self.patch) if use_bgv2 else (None, None)
        while True:
            entry = self.entries[int(rng.integers(len(self.entries)))]
            try:
                image, seg = self._initial_patch(entry, rng)
            except ArrayFileError:
                continue
            if use_bgv2:
                out = mirror(**spatial(image=torch.from_numpy(image[None]), segmentation=torch.from_numpy(seg)))
                img, masks = out["image"], out["segmentation"].to(torch.uint8)
            else:
                img_np, masks_np = _scipy_transform(image, seg, self.patch, rng)
                img, masks = torch.from_numpy(img_np[None]), torch.from_numpy(masks_np)
            yield {"image": img.float(), "anatomy_mask": masks[0:1], "anon_mask": masks[1:2]}
