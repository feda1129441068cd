"""Streaming pre-training data: manifest rows -> augmented 3D crops as torch batches.

Interface (agreed with the train loop; stable)
-----------------------------------------------
``make_loader(output_dir, *, patch_size, batch_size, workers, selection=None,
split="train", val_fraction=0.05, seed=0, augment=True, rank=0, world_size=1,
follow=False, balance="image", balance_alpha=0.0) -> torch.utils.data.DataLoader``

Iterating the loader yields one dict per batch, every value a torch tensor:

* ``image``        B x 1 x P x P x P, float32 (z-scored intensities; 0 on padding)
* ``anon_mask``    B x 1 x P x P x P, uint8 0/1 (1 = changed by anonymization)
* ``anatomy_mask`` B x 1 x P x P x P, uint8 0/1 (1 = subject tissue)
* ``valid``        B x 1 x P x P x P, bool (False where the crop is padding)
* ``target``       B x 1 x P x P x P, float32, only with input-only intensity augmentation
  (AMAES's augmentation reversal, ``intensity="amaes"``): the crop before those
  transforms, which ``image`` then went through (spatial transforms are in both)

``scale="unit"`` maps each crop's valid voxels to [0, 1] (AMAES's intensity range) on
top of the stored z-scored values; ``spatial`` names the spatial augmentation preset
(``"nnssl"``, ``"amaes"``: :data:`pretrain.augment.SPATIAL_PRESETS`).

One pass over the loader is one epoch: every selected image of this split and
rank appears exactly once (one random crop each).  With ``balance="subject"`` or
``"dataset"`` an epoch is as long, but its images are drawn with replacement so
that each group (subject or dataset) of size *n* comes up with probability
proportional to *n* ** ``balance_alpha`` (see :func:`balance_weights`).  ``split_by_subject(table,
val_fraction, seed)`` returns the (train, val) Arrow tables, never sharing a
subject.  The data is read from ``OUTPUT/arrays`` through the manifest in
``OUTPUT/manifests``; this module never imports Dask.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import multiprocessing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

import manifests

from pretrain.augment import (
    SPATIAL_PRESETS, AugmentConfig, SpatialParams, crop_and_flip, elastic_displacement, region_masks, resample,
    sample_grid, sample_params, source_window,
)
from pretrain.intensity import INTENSITY_PRESETS, SCALES, IntensityConfig, degrade, unit_range
from pretrain.data_io import ArrayFileError, ArrayHandle, open_array, sample_centre, split_masks
from pretrain.sampling import BALANCE, balance_weights, epoch_order, samples_before, shard, slots

log = logging.getLogger(__name__)

__all__ = ["BALANCE", "CropDataset", "EpochLoader", "ImageEntry", "balance_weights", "epoch_order",
           "make_loader", "samples_before", "select_entries", "shard", "slots", "split_by_subject"]

Sample = dict[str, torch.Tensor]


@dataclass(frozen=True, slots=True, order=True)
class ImageEntry:
    """One training image: its id, subject key, array file (absolute path) and dataset."""

    image_id: str
    subject: str
    path: str
    dataset: str = ""


def subject_keys(table: pa.Table) -> list[str]:
    """``dataset/subject`` per row; a row without a subject is its own subject."""
    datasets = table["dataset"].to_pylist()
    subjects = table["subject"].to_pylist()
    ids = table["image_id"].to_pylist()
    return [f"{d}/{s}" if s else f"{d}/image-{i}" for d, s, i in zip(datasets, subjects, ids)]


def _unit_hash(key: str, seed: int) -> float:
    """A uniform number in [0, 1) fixed by ``key`` and ``seed``."""
    return int(hashlib.sha1(f"{seed}\x1f{key}".encode()).hexdigest()[:13], 16) / 16**13


def split_by_subject(table: pa.Table, val_fraction: float = 0.05, seed: int = 0) -> tuple[pa.Table, pa.Table]:
    """Split manifest rows into ``(train, val)`` by subject, never sharing a subject.

    A subject goes to validation when a seeded hash of its key falls below
    ``val_fraction``.  Hashing (rather than shuffling a list) keeps every
    subject on its side as new manifest parts arrive, which ``follow`` mode
    needs.  If that leaves validation empty although ``val_fraction > 0`` and
    there are at least two subjects, the subject with the smallest hash moves
    to validation.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    keys = subject_keys(table)
    scores = {k: _unit_hash(k, seed) for k in set(keys)}
    val_subjects = {k for k, v in scores.items() if v < val_fraction}
    if not val_subjects and val_fraction > 0 and len(scores) >= 2:
        val_subjects = {min(scores, key=scores.__getitem__)}
    is_val = pa.array([k in val_subjects for k in keys], pa.bool_())
    return table.filter(pc.invert(is_val)), table.filter(is_val)


def select_entries(output_dir: Path, selection: manifests.Selection | None, split: str,
                   val_fraction: float, seed: int) -> list[ImageEntry]:
    """The images of one split: manifest filters, rows with arrays, subject split."""
    if split not in ("train", "val", "all"):
        raise ValueError(f"split must be 'train', 'val' or 'all', got {split!r}")
    selection = dataclasses.replace(selection or manifests.Selection(), require_array=True)
    table = manifests.apply(manifests.read_table(output_dir / "manifests"), selection)
    if split != "all":
        train, val = split_by_subject(table, val_fraction, seed)
        table = train if split == "train" else val
    rows = zip(table["image_id"].to_pylist(), subject_keys(table), table["array_path"].to_pylist(),
               table["dataset"].to_pylist())
    return sorted(ImageEntry(i, s, str(output_dir / p), d) for i, s, p, d in rows)


class SkipCounter:
    """Images skipped for bad array files, counted across forked loader workers."""

    def __init__(self) -> None:
        self._shared = multiprocessing.Value("i", 0)

    def add(self) -> None:
        with self._shared.get_lock():
            self._shared.value += 1

    @property
    def total(self) -> int:
        return int(self._shared.value)


class CropDataset(IterableDataset):
    """One random (augmented) crop per selected image per epoch, sharded over ranks and workers.

    Call :meth:`begin_epoch` before each pass (the loader from :func:`make_loader`
    does it); it advances the seeded order and, with ``follow=True``, re-reads the
    manifest so parts written since the last epoch join in.
    """

    def __init__(self, output_dir: Path | str, *, patch_size: int, selection: manifests.Selection | None = None,
                 split: str = "train", val_fraction: float = 0.05, seed: int = 0, augment: bool = True,
                 rank: int = 0, world_size: int = 1, follow: bool = False, anatomy_bias: float = 0.9,
                 augment_config: AugmentConfig = AugmentConfig(), balance: str = "image",
                 balance_alpha: float = 0.0, intensity: IntensityConfig | None = None,
                 scale: str = "zscore") -> None:
        super().__init__()
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world_size {world_size}")
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
        self.intensity, self.scale = intensity, scale
        self.root = Path(output_dir)
        self.patch = int(patch_size)
        self.selection, self.split, self.val_fraction = selection, split, val_fraction
        self.seed, self.augment, self.rank, self.world_size = seed, augment, rank, world_size
        self.follow, self.anatomy_bias, self.aug = follow, anatomy_bias, augment_config
        self.balance, self.balance_alpha = balance, float(balance_alpha)
        balance_weights([], balance)  # refuse a bad choice now
        self.epoch = -1
        self._pending_epoch: int | None = None
        self._pending_skip: tuple[int, int, int, bool] | None = None
        self._skip: dict[int, int] = {}
        self._first_role = 0
        self._passes = 0
        self.skipped = SkipCounter()
        self.entries: list[ImageEntry] = []
        self.weights: np.ndarray | None = None
        self._read_entries()

    def _read_entries(self) -> None:
        """(Re-)read the selected entries; in follow mode, stop following once the build is over.

        Whether a build still runs is asked *before* the manifest is read, so the read
        that ends following already sees the finished build's rows.
        """
        running = self.follow and manifests.build_running(self.root)
        entries = select_entries(self.root, self.selection, self.split, self.val_fraction, self.seed)
        dist = torch.distributed
        if self.world_size > 1 and dist.is_available() and dist.is_initialized():
            box: list[Any] = [(entries, running)]
            dist.broadcast_object_list(box, src=0)  # every rank shards the same list
            entries, running = box[0]
        if self.follow and not running:
            log.info("the build of %s has finished: %d images, no longer following", self.root, len(entries))
            self.follow = False
        self.entries = entries
        self.weights = balance_weights(entries, self.balance, self.balance_alpha)

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass epoch ``epoch`` (seeded order and crops; for exact resumes)."""
        self._pending_epoch = int(epoch)

    def skip_batches(self, n_batches: int, batch_size: int, n_workers: int, drop_last: bool) -> None:
        """Make the next pass start after its first ``n_batches`` batches (a resume mid-epoch).

        The skipped samples are not read or augmented: their files are only opened
        (so a missing or corrupt file is passed over exactly as in a full pass), and
        every kept sample draws from its own generator, so it comes out the same.
        """
        self._pending_skip = (int(n_batches), int(batch_size), max(int(n_workers), 1), bool(drop_last))

    def begin_epoch(self) -> None:
        """Start the next pass: epoch set by :meth:`set_epoch`, else the previous one + 1.

        In follow mode every pass after the first re-reads the manifest first.
        """
        pending, self._pending_epoch = self._pending_epoch, None
        self.epoch = pending if pending is not None else self.epoch + 1
        if self.follow and self._passes > 0:
            self._read_entries()
        self._passes += 1
        skip, self._pending_skip = self._pending_skip, None
        self._skip, self._first_role = self._samples_to_skip(*skip) if skip else ({}, 0)

    def _samples_to_skip(self, n_batches: int, batch_size: int, n_workers: int,
                         drop_last: bool) -> tuple[dict[int, int], int]:
        sizes = [len(slots(len(self.entries), rank=self.rank, world_size=self.world_size,
                           worker=w, n_workers=n_workers)) for w in range(n_workers)]
        return samples_before(sizes, batch_size, drop_last, n_batches)

    def _sample_rng(self, epoch: int, index: int, slot: int) -> np.random.Generator:
        """The generator of one crop in one epoch, whatever worker or rank draws it.

        Keyed by the image without balance (each image comes once per epoch), by its
        position in the epoch with balance (an image may come twice, with two crops).
        """
        key = [self.seed, epoch, index, 1] if self.weights is None else [self.seed, epoch, slot, 2]
        return np.random.default_rng(key)

    def num_images(self) -> int:
        """Images this rank sees in one epoch."""
        return len(range(self.rank, len(self.entries), self.world_size))

    def __iter__(self) -> Iterator[Sample]:
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        epoch = max(self.epoch, 0)
        # After a skip the loader still starts its rotation at worker 0, so worker 0
        # takes the shard whose batch came next in the full pass, and so on.
        role = (worker + self._first_role) % n_workers
        order = epoch_order(len(self.entries), seed=self.seed, epoch=epoch, weights=self.weights)
        mine = slots(len(self.entries), rank=self.rank, world_size=self.world_size, worker=role,
                     n_workers=n_workers)
        to_skip = self._skip.get(role, 0)
        for slot in mine:
            index = int(order[slot])
            entry = self.entries[index]
            try:
                if to_skip:
                    open_array(Path(entry.path))  # only to know it would have given a sample
                    to_skip -= 1
                    continue
                yield self.load(entry, self._sample_rng(epoch, index, int(slot)))
            except ArrayFileError as exc:
                self.skipped.add()
                log.warning("skipped image %s: %s (%d skipped so far)", entry.image_id, exc, self.skipped.total)

    def load(self, entry: ImageEntry, rng: np.random.Generator) -> Sample:
        """One crop of ``entry`` as a dict of 1 x P^3 tensors.

        Raises
        ------
        pretrain.data_io.ArrayFileError
            For a missing or corrupt array file.
        """
        handle = open_array(Path(entry.path))
        params = sample_params(rng, self.aug, self.augment)
        centre = self._clamp_centre(sample_centre(handle, rng, self.anatomy_bias), handle.shape)
        if params.interpolate:
            sample = self._resampled(handle, centre, params)
        else:
            sample = self._cropped(handle, centre, np.sign(np.diag(params.matrix)))
        return self._finish(sample, rng)

    def _finish(self, sample: Sample, rng: np.random.Generator) -> Sample:
        """Intensity scaling, then the input-only intensity augmentation (target kept)."""
        if self.scale == "unit":
            sample["image"] = unit_range(sample["image"], sample["valid"])
        if self.intensity is not None:
            degraded, _ = degrade(sample["image"][0], rng, self.intensity)
            sample["target"] = sample["image"]
            sample["image"] = (degraded * sample["valid"][0])[None]  # padding stays 0 in both
        return sample

    def _clamp_centre(self, centre: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """Keep the un-augmented patch inside the array (or the array inside the patch)."""
        half = (self.patch - 1) / 2.0
        spare = np.array(shape) - self.patch
        start = np.clip(np.rint(centre - half), np.minimum(spare, 0), np.maximum(spare, 0))
        return start + half

    def _cropped(self, handle: ArrayHandle, centre: np.ndarray, flips: np.ndarray) -> Sample:
        start = np.rint(centre - (self.patch - 1) / 2.0).astype(int)
        lo = np.maximum(start, 0)
        hi = np.minimum(start + self.patch, np.array(handle.shape))
        image, masks = handle.read(lo, hi)  # float32, decoded and converted slab by slab
        image, valid = crop_and_flip(image[None], lo, start, self.patch, flips)
        masks, _ = crop_and_flip(masks[None], lo, start, self.patch, flips)
        anatomy, anon = split_masks(masks)
        return {"image": torch.from_numpy(image), "anon_mask": torch.from_numpy(anon),
                "anatomy_mask": torch.from_numpy(anatomy), "valid": torch.from_numpy(valid[None])}

    def _resampled(self, handle: ArrayHandle, centre: np.ndarray, params: SpatialParams) -> Sample:
        displacement, margin = None, 0.0
        if params.elastic is not None:
            displacement = elastic_displacement(self.patch, *params.elastic)
            margin = float(displacement.abs().max()) + 1.0
        lo, hi = source_window(centre, params.matrix, self.patch, handle.shape, margin)
        image, masks = handle.read(lo, hi)
        grid = sample_grid(centre, params.matrix, self.patch, lo, image.shape, displacement=displacement)
        return resample(torch.from_numpy(image), region_masks(masks), grid)


class EpochLoader(DataLoader):
    """A DataLoader that starts a new epoch of its :class:`CropDataset` on every ``iter()``."""

    def skip(self, n_batches: int) -> None:
        """Make the next ``iter()`` start after its first ``n_batches`` batches (cheaply)."""
        self.dataset.skip_batches(n_batches, self.batch_size or 1, self.num_workers, self.drop_last)

    def __iter__(self):  # type: ignore[override]
        self.dataset.begin_epoch()  # in the main process, before workers fork
        if self.num_workers > 0:
            single_threaded_blosc2()
        return super().__iter__()


def single_threaded_blosc2() -> None:
    """Shut blosc2's thread pool in this process before loader workers fork.

    blosc2's pool threads do not survive ``fork``: a worker that inherits a live
    pool hangs as soon as it decompresses or resizes the pool (measured here:
    ``blosc2.set_nthreads`` in a forked worker never returns).  With one thread
    no pool exists, and each worker decompresses serially: the workers are the
    parallelism.
    """
    import blosc2

    if blosc2.nthreads != 1:
        blosc2.set_nthreads(1)


def _worker_init(worker_id: int) -> None:
    """One torch thread per loader worker (blosc2 is made single-threaded before the fork)."""
    torch.set_num_threads(1)


def make_loader(output_dir: Path | str, *, patch_size: int, batch_size: int, workers: int,
                selection: manifests.Selection | None = None, split: str = "train",
                val_fraction: float = 0.05, seed: int = 0, augment: bool = True, rank: int = 0,
                world_size: int = 1, follow: bool = False, balance: str = "image",
                balance_alpha: float = 0.0, spatial: str = "nnssl", intensity: str = "none",
                scale: str = "zscore") -> DataLoader:
    """The pre-training loader over ``OUTPUT`` (see the module docstring for the batch format).

    Examples
    --------
    Stream 160³ batches of a build in ``out`` (a literal block, not a doctest)::

        loader = make_loader("out", patch_size=160, batch_size=2, workers=4)
        for epoch in range(10):
            for batch in loader:
                loss = model(batch["image"].cuda())
    """
    dataset = CropDataset(output_dir, patch_size=patch_size, selection=selection, split=split,
                          val_fraction=val_fraction, seed=seed, augment=augment, rank=rank,
                          world_size=world_size, follow=follow, balance=balance,
                          balance_alpha=balance_alpha, augment_config=SPATIAL_PRESETS[spatial],
                          intensity=INTENSITY_PRESETS[intensity], scale=scale)
    return EpochLoader(dataset, batch_size=batch_size, num_workers=workers,
                       pin_memory=torch.cuda.is_available(), worker_init_fn=_worker_init,
                       prefetch_factor=2 if workers > 0 else None, persistent_workers=False)
