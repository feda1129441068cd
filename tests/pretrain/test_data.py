"""The streaming loader on a small real OUTPUT (MNI152 sub-volumes through the arrays stage)."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

import manifests
from manifests.io import write_part
from manifests.schema import ImageRecord

from curate.config import CurateConfig
from curate.io import ImageData
from curate.stages.arrays import ArraysStage
from curate.stages.base import StageContext, WorkItem
from pretrain.data import CropDataset, EpochLoader, make_loader, select_entries, shard, split_by_subject

PATCH = 32
#: (image_id, subject, window into the MNI152 T1); the last one is smaller than the patch.
IMAGES = [
    ("img0", "s1", (slice(40, 100), slice(50, 110), slice(40, 90))),
    ("img1", "s1", (slice(60, 110), slice(60, 130), slice(50, 100))),
    ("img2", "s2", (slice(70, 130), slice(40, 100), slice(60, 110))),
    ("img3", "s3", (slice(50, 95), slice(80, 140), slice(70, 120))),
    ("img4", "s4", (slice(90, 150), slice(90, 150), slice(30, 80))),
    ("img5", "s5", (slice(80, 100), slice(100, 125), slice(80, 102))),
]


def _record(image_id: str, subject: str) -> ImageRecord:
    return ImageRecord(image_id=image_id, dataset="mni", source_kind="nifti", modality="T1w",
                       source_path=f"{image_id}.nii.gz", subject=subject, included=True)


def _build(output: Path, mni_t1: nib.Nifti1Image, images: list, seq: int) -> list[ImageRecord]:
    data = np.asarray(mni_t1.dataobj, np.float32)
    ctx = StageContext(source_root=output, output_root=output, config=CurateConfig())
    rows = []
    for image_id, subject, window in images:
        anon = np.zeros(data[window].shape, np.uint8)
        anon[:5] = 1  # a slab "changed by anonymization"
        item = WorkItem(record=_record(image_id, subject), source_file=None,
                        image=ImageData(data=data[window].copy(), affine=mni_t1.affine, zooms=(1.0,) * 3),
                        extras={"anon_mask": anon})
        rows.append(ArraysStage().run(item, ctx)[0].record)
    write_part(output / "manifests", rows, "run", seq)
    return rows


@pytest.fixture(scope="module")
def output(tmp_path_factory: pytest.TempPathFactory, mni_t1: nib.Nifti1Image) -> Path:
    out = tmp_path_factory.mktemp("output")
    _build(out, mni_t1, IMAGES, 0)
    return out


def _ids_seen(output: Path, **kwargs) -> Counter:
    ds = CropDataset(output, patch_size=PATCH, split="all", **kwargs)
    ds.begin_epoch()
    seen: Counter = Counter()
    for sample in ds:
        seen[round(float(sample["image"].sum()), 3)] += 1
    return seen


def test_batches_have_the_agreed_shapes_and_types(output):
    loader = make_loader(output, patch_size=PATCH, batch_size=2, workers=0, split="all", seed=3)
    batches = list(loader)
    assert sum(b["image"].shape[0] for b in batches) == len(IMAGES)
    batch = batches[0]
    assert batch["image"].shape == (2, 1, PATCH, PATCH, PATCH) and batch["image"].dtype == torch.float32
    for key in ("anon_mask", "anatomy_mask"):
        assert batch[key].dtype == torch.uint8 and set(batch[key].unique().tolist()) <= {0, 1}
    assert batch["valid"].dtype == torch.bool and batch["valid"].shape == batch["image"].shape


class _Tagged(CropDataset):
    """Yields which image each sample came from (the sharding under test is in ``__iter__``)."""

    def load(self, entry, rng):
        return {"id": torch.tensor(int(entry.image_id[3:]))}


@pytest.mark.parametrize("world_size,workers", [(1, 2), (2, 2), (3, 1)])
def test_every_image_once_per_epoch_across_ranks_and_workers(output, world_size, workers):
    loaders = [EpochLoader(_Tagged(output, patch_size=PATCH, split="all", rank=r, world_size=world_size,
                                   seed=1), batch_size=2, num_workers=workers)
               for r in range(world_size)]
    orders = []
    for _ in range(2):  # two epochs, each complete on its own
        ids = [int(i) for loader in loaders for batch in loader for i in batch["id"]]
        assert sorted(ids) == list(range(len(IMAGES)))
        orders.append(ids)
    assert orders[0] != orders[1]  # a new seeded order each epoch
    for loader in loaders:
        loader.dataset.set_epoch(1)  # replaying an epoch (resume) gives the same order
    assert [int(i) for loader in loaders for batch in loader for i in batch["id"]] == orders[1]


def test_shard_partitions_indices_exactly():
    for n in (0, 1, 7, 100):
        parts = [shard(n, seed=0, epoch=2, rank=r, world_size=3, worker=w, n_workers=4)
                 for r in range(3) for w in range(4)]
        flat = sorted(int(i) for p in parts for i in p)
        assert flat == list(range(n))


def test_ranks_and_workers_get_distinct_images(output):
    ids: list[str] = []
    for rank in range(2):
        ds = CropDataset(output, patch_size=PATCH, split="all", rank=rank, world_size=2)
        ds.begin_epoch()
        for worker in range(2):
            idx = shard(len(ds.entries), seed=0, epoch=0, rank=rank, world_size=2, worker=worker, n_workers=2)
            ids.extend(ds.entries[i].image_id for i in idx)
    assert sorted(ids) == sorted(i for i, _, _ in IMAGES)


def test_subject_split_is_disjoint_and_seeded(output):
    table = manifests.read_table(output / "manifests")
    for seed in range(5):
        train, val = split_by_subject(table, val_fraction=0.3, seed=seed)
        assert train.num_rows + val.num_rows == table.num_rows
        assert val.num_rows > 0
        assert not set(train["subject"].to_pylist()) & set(val["subject"].to_pylist())
        again, _ = split_by_subject(table, val_fraction=0.3, seed=seed)
        assert again.equals(train)
    entries = select_entries(output, None, "val", 0.3, 0)
    assert {e.subject for e in entries}.isdisjoint({e.subject for e in select_entries(output, None, "train", 0.3, 0)})


def test_filters_reach_the_loader(output):
    sel = manifests.Selection(datasets=("other",))
    assert not select_entries(output, sel, "all", 0.0, 0)
    assert len(select_entries(output, manifests.Selection(modalities=("T1w",)), "all", 0.0, 0)) == len(IMAGES)


def test_small_image_is_padded_and_marked_invalid(output):
    ds = CropDataset(output, patch_size=PATCH, split="all", augment=False)
    entry = next(e for e in ds.entries if e.image_id == "img5")
    sample = ds.load(entry, np.random.default_rng(0))
    valid = sample["valid"][0]
    array_shape = next(r for r in manifests.read_records(output / "manifests") if r.image_id == "img5").array_shape
    assert int(valid.sum()) == int(np.prod([min(s, PATCH) for s in array_shape]))
    assert not valid.all()
    assert float(sample["image"][0][~valid].abs().sum()) == 0.0
    assert int(sample["anatomy_mask"][0][~valid].sum()) == 0


def test_augmented_samples_keep_masks_binary_and_padding_marked(output):
    ds = CropDataset(output, patch_size=PATCH, split="all", augment=True)
    rng = np.random.default_rng(5)
    for _ in range(25):
        sample = ds.load(ds.entries[int(rng.integers(len(ds.entries)))], rng)
        assert set(sample["anon_mask"].unique().tolist()) <= {0, 1}
        assert sample["image"].shape == (1, PATCH, PATCH, PATCH)
        assert float(sample["image"][~sample["valid"]].abs().sum()) == 0.0


def test_corrupt_and_missing_arrays_are_skipped_and_counted(tmp_path, mni_t1, caplog):
    rows = _build(tmp_path, mni_t1, IMAGES[:4], 0)
    (tmp_path / rows[0].array_path).unlink()
    path = tmp_path / rows[1].array_path
    path.write_bytes(path.read_bytes()[:200])  # truncated file
    ds = CropDataset(tmp_path, patch_size=PATCH, split="all")
    ds.begin_epoch()
    with caplog.at_level(logging.WARNING, logger="pretrain.data"):
        samples = list(ds)
    assert len(samples) == 2
    assert ds.skipped.total == 2
    assert sum("skipped image" in r.message for r in caplog.records) == 2


def test_follow_mode_sees_a_new_part_next_epoch_until_the_build_ends(tmp_path, mni_t1):
    from manifests.building import building

    with building(tmp_path):  # a build is running
        _build(tmp_path, mni_t1, IMAGES[:2], 0)
        loader = make_loader(tmp_path, patch_size=PATCH, batch_size=1, workers=0, split="all", follow=True)
        assert sum(1 for _ in loader) == 2
        _build(tmp_path, mni_t1, IMAGES[2:4], 1)
        assert sum(1 for _ in loader) == 4 and loader.dataset.follow
        _build(tmp_path, mni_t1, IMAGES[4:5], 2)
    assert sum(1 for _ in loader) == 5  # the build ended before this re-read: its last rows come in
    assert not loader.dataset.follow
    _build(tmp_path, mni_t1, IMAGES[5:6], 3)  # no longer followed
    assert sum(1 for _ in loader) == 5
    static = make_loader(tmp_path, patch_size=PATCH, batch_size=1, workers=0, split="all")
    _build(tmp_path, mni_t1, IMAGES[:1], 4)
    assert sum(1 for _ in static) == 6 and sum(1 for _ in static) == 6


def test_loader_with_workers_runs_blosc2_single_threaded(output):
    import blosc2

    blosc2.set_nthreads(2)  # a live pool in the parent would hang forked workers
    loader = make_loader(output, patch_size=PATCH, batch_size=3, workers=2, split="all")
    assert sum(b["image"].shape[0] for b in loader) == len(IMAGES)
    assert blosc2.nthreads == 1


@pytest.mark.parametrize("workers,batch_size", [(0, 2), (2, 2), (2, 4)])
def test_skip_resumes_mid_epoch_with_the_same_batches_without_reading_them(output, workers, batch_size):
    loader = make_loader(output, patch_size=PATCH, batch_size=batch_size, workers=workers, split="all",
                         seed=5)
    loader.dataset.set_epoch(2)
    full = list(loader)
    for n in range(len(full) + 1):
        loader.dataset.set_epoch(2)
        loader.skip(n)
        rest = list(loader)
        assert len(rest) == len(full) - n
        for got, want in zip(rest, full[n:]):
            assert all(torch.equal(got[k], want[k]) for k in want)


def test_samples_before_follows_the_loaders_worker_rotation():
    from pretrain.data import samples_before

    # worker 0 runs out after one batch; the loader then takes worker 1's batches in a row
    assert samples_before([2, 6], batch_size=2, drop_last=False, n_batches=3) == ({0: 2, 1: 4}, 0)
    assert samples_before([5, 5], batch_size=2, drop_last=True, n_batches=10) == ({0: 4, 1: 4}, 0)
    assert samples_before([4, 4, 4], batch_size=2, drop_last=False, n_batches=4) == ({0: 4, 1: 2, 2: 2}, 1)
    assert samples_before([1], batch_size=4, drop_last=False, n_batches=1) == ({0: 1}, 0)


def _manifest_only(tmp_path: Path, sizes: dict[str, int]) -> Path:
    """An OUTPUT whose manifest lists ``sizes[d]`` images (one subject each) of dataset ``d``."""
    rows = [ImageRecord(image_id=f"img{d}{k}", dataset=d, source_kind="nifti", modality="T1w",
                        source_path=f"{d}/{k}.nii.gz", subject=f"s{k}", included=True,
                        array_path=f"arrays/{d}/{k}.b2nd")
            for d, n in sizes.items() for k in range(n)]
    write_part(tmp_path / "manifests", rows, "run", 0)
    return tmp_path


class _Named(CropDataset):
    def load(self, entry, rng):
        return {"dataset": torch.tensor(ord(entry.dataset)), "draw": torch.from_numpy(rng.random(1))}


@pytest.mark.parametrize("alpha", [0.0, 0.5, 1.0])
def test_dataset_balance_draws_each_dataset_in_proportion_to_size_to_the_alpha(tmp_path, alpha):
    sizes = {"a": 60, "b": 9, "c": 1}
    out = _manifest_only(tmp_path, sizes)
    ds = _Named(out, patch_size=PATCH, split="all", balance="dataset", balance_alpha=alpha, seed=2)
    loader = EpochLoader(ds, batch_size=10, num_workers=0)
    seen: Counter = Counter()
    for _ in range(60):
        batches = list(loader)
        assert sum(len(b["dataset"]) for b in batches) == sum(sizes.values())  # an epoch keeps its length
        seen.update(chr(int(x)) for b in batches for x in b["dataset"])
    total = sum(seen.values())
    want = {d: n ** alpha for d, n in sizes.items()}
    norm = sum(want.values())
    for d in sizes:  # 4200 draws: 4 binomial standard deviations are < 3 percentage points
        assert seen[d] / total == pytest.approx(want[d] / norm, abs=0.03)


def test_subject_balance_evens_out_subjects_with_many_images(tmp_path):
    rows = [ImageRecord(image_id=f"img{k}", dataset="d", source_kind="nifti", modality="T1w",
                        source_path=f"{k}.nii.gz", subject="big" if k < 8 else f"s{k}", included=True,
                        array_path=f"arrays/{k}.b2nd") for k in range(10)]
    write_part(tmp_path / "manifests", rows, "run", 0)
    ds = CropDataset(tmp_path, patch_size=PATCH, split="all", balance="subject", balance_alpha=0.0)
    big = sum(w for e, w in zip(ds.entries, ds.weights) if e.subject == "d/big")
    assert big == pytest.approx(1 / 3)  # three subjects, picked equally often


def test_balanced_epochs_are_seeded_and_split_exactly_over_ranks_and_workers(tmp_path):
    out = _manifest_only(tmp_path, {"a": 12, "b": 3})

    def draws(seed: int, world_size: int, workers: int) -> list[tuple[int, float]]:
        got = []
        for rank in range(world_size):
            ds = _Named(out, patch_size=PATCH, split="all", balance="dataset", seed=seed, rank=rank,
                        world_size=world_size)
            ds.set_epoch(3)
            got += [(int(d), float(r)) for b in EpochLoader(ds, batch_size=2, num_workers=workers)
                    for d, r in zip(b["dataset"], b["draw"])]
        return sorted(got)

    one = draws(0, 1, 0)
    assert len(one) == 15 and one == draws(0, 2, 2) == draws(0, 3, 1)  # the same draws however split
    assert one != draws(1, 1, 0)


@pytest.mark.parametrize("balance", ["subject", "dataset"])
def test_skip_resumes_a_balanced_epoch_bit_for_bit(output, balance):
    loader = make_loader(output, patch_size=PATCH, batch_size=2, workers=2, split="all", seed=5,
                         balance=balance, balance_alpha=0.0)
    loader.dataset.set_epoch(1)
    full = list(loader)
    for n in range(len(full) + 1):
        loader.dataset.set_epoch(1)
        loader.skip(n)
        rest = list(loader)
        assert len(rest) == len(full) - n
        for got, want in zip(rest, full[n:]):
            assert all(torch.equal(got[k], want[k]) for k in want)
