"""Reading array files: float16 -> float32 exactness, files in the earlier settings, version refusal."""

from __future__ import annotations

import zipfile
from pathlib import Path

import blosc2
import nibabel as nib
import numpy as np
import pytest

from curate.array_file import META_KEY, write_array
from curate.arrays import prepare
from pretrain.data_io import ArrayFileError, open_array, split_masks, to_float32


@pytest.fixture(scope="module")
def prepared(mni_t1: nib.Nifti1Image):
    """A real z-scored MNI152 sub-volume with an anonymization slab, as the arrays stage makes it."""
    data = np.asarray(mni_t1.dataobj, np.float32)[40:120, 50:130, 40:110]
    anon = np.zeros(data.shape, np.uint8)
    anon[:6] = 1
    return prepare(data, mni_t1.affine, None, anon)


def _write_v1_defaults(path: Path, image: np.ndarray, masks: np.ndarray, meta: dict) -> None:
    """A file exactly as the first release wrote it: ZSTD-1 + byte shuffle on both arrays, 32^3 blocks."""
    cparams = {"codec": blosc2.Codec.ZSTD, "clevel": 1, "filters": [blosc2.Filter.SHUFFLE], "nthreads": 1}
    kwargs = {"chunks": (64, 64, 64), "blocks": (32, 32, 32), "cparams": cparams}
    stored = blosc2.asarray(image.astype(np.float16), **kwargs)
    stored.vlmeta[META_KEY] = {"format": META_KEY, "version": 1, **meta}
    with blosc2.DictStore(str(path), mode="w") as store:
        store["/image"] = stored
        store["/masks"] = blosc2.asarray(masks, **kwargs)


def test_read_gives_exact_float32_of_the_stored_float16(tmp_path, prepared):
    path = tmp_path / "a.b2z"
    write_array(path, prepared.image, prepared.masks, {})
    handle = open_array(path)
    lo, hi = np.array([3, 5, 7]), np.array([60, 70, 50])
    stored, _ = handle.read_stored(lo, hi)
    image, masks = handle.read(lo, hi)
    assert stored.dtype == np.float16 and image.dtype == np.float32 and image.flags["C_CONTIGUOUS"]
    assert np.array_equal(image, stored.astype(np.float32))
    window = tuple(slice(a, b) for a, b in zip(lo, hi))
    assert np.array_equal(image, prepared.image[window].astype(np.float16).astype(np.float32))
    assert np.array_equal(masks, prepared.masks[window])


def test_to_float32_is_exact_for_special_float16_values():
    special = np.array([0.0, -0.0, 6e-8, -6e-8, 6.1e-5, 65504.0, -65504.0, np.inf, -np.inf, np.nan, 1 / 3],
                       np.float16)
    out = to_float32(special.reshape(1, 1, -1))
    assert out.dtype == np.float32 and out.shape == (1, 1, special.size)
    np.testing.assert_array_equal(out.ravel(), special.astype(np.float32))  # NaN == NaN here
    assert np.signbit(out.ravel()[1])  # -0 stays negative zero
    float32 = np.ones(3, np.float32)
    assert to_float32(float32) is float32


def test_files_with_the_earlier_settings_read_the_same(tmp_path, prepared):
    old, new = tmp_path / "old.b2z", tmp_path / "new.b2z"
    _write_v1_defaults(old, prepared.image, prepared.masks, {"affine": prepared.affine.tolist()})
    write_array(new, prepared.image, prepared.masks, {"affine": prepared.affine.tolist()})
    a, b = open_array(old), open_array(new)
    assert a.image.cparams.codec == blosc2.Codec.ZSTD and b.image.cparams.codec == blosc2.Codec.LZ4HC
    for lo in ([0, 0, 0], [17, 9, 30], [40, 50, 20]):
        lo = np.array(lo)
        hi = np.minimum(lo + 48, a.shape)
        for x, y in zip(a.read(lo, hi), b.read(lo, hi)):
            assert np.array_equal(x, y)


def test_unknown_format_version_is_refused_with_a_rebuild_hint(tmp_path, prepared):
    path = tmp_path / "future.b2z"
    write_array(path, prepared.image, prepared.masks, {})
    store = blosc2.DictStore(str(path), mode="a")
    image = store["/image"][...]
    stored = blosc2.asarray(image)
    stored.vlmeta[META_KEY] = {"format": META_KEY, "version": 99}
    store["/image"] = stored
    store.close()
    with pytest.raises(ArrayFileError, match="version 99.*rebuild"):
        open_array(path)


def test_split_masks_gives_uint8_zero_one():
    packed = np.array([0, 1, 2, 3, 7], np.uint8)
    anatomy, anon = split_masks(packed)
    assert anatomy.dtype == np.uint8 and anon.dtype == np.uint8
    assert anatomy.tolist() == [0, 1, 0, 1, 1] and anon.tolist() == [0, 0, 1, 1, 1]


@pytest.mark.parametrize("shape", [(50, 40, 45), (130, 70, 66)])
def test_slabbed_read_matches_a_whole_read_for_any_chunk_and_block_grid(tmp_path, shape):
    # (50, ...) clips chunks to 50, which 32-deep blocks do not divide; (130, ...) spans three chunks
    rng = np.random.default_rng(1)
    image = rng.normal(size=shape).astype(np.float32)
    masks = (rng.random(shape) < 0.5).astype(np.uint8)
    path = tmp_path / "a.b2z"
    write_array(path, image, masks, {})
    handle = open_array(path)
    for lo, hi in (([0, 0, 0], shape), ([1, 2, 3], [49, 39, 44]), ([31, 0, 0], [33, 5, 5]), ([4, 4, 4], [4, 9, 9])):
        out, packed = handle.read(np.array(lo), np.array(hi))
        window = tuple(slice(a, b) for a, b in zip(lo, hi))
        assert np.array_equal(out, image[window].astype(np.float16).astype(np.float32))
        assert np.array_equal(packed, masks[window])


def test_float32_files_are_read_without_conversion(tmp_path, prepared):
    path = tmp_path / "f32.b2z"
    write_array(path, prepared.image, prepared.masks, {}, image_dtype="float32")
    image, _ = open_array(path).read(np.array([0, 0, 0]), np.array([20, 20, 20]))
    assert image.dtype == np.float32 and np.array_equal(image, prepared.image[:20, :20, :20])


def test_a_zip_with_compressed_members_is_not_read_in_place(tmp_path, prepared):
    # the in-place open needs uncompressed members; anything else goes through DictStore,
    # which refuses this file, and the loader gets a clear ArrayFileError instead of garbage
    good, bad = tmp_path / "good.b2z", tmp_path / "bad.b2z"
    write_array(good, prepared.image, prepared.masks, {})
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info.filename))
    with pytest.raises(ArrayFileError):
        open_array(bad).read(np.array([0, 0, 0]), np.array([8, 8, 8]))


def test_reads_are_serial_and_leave_the_process_thread_settings_alone(tmp_path, prepared):
    import torch

    from pretrain.data_io import SERIAL_PIECE, serial_copy

    path = tmp_path / "a.b2z"
    write_array(path, prepared.image, prepared.masks, {})
    before_blosc, before_torch = blosc2.nthreads, torch.get_num_threads()
    blosc2.set_nthreads(2)
    try:
        handle = open_array(path)
        # each array decompresses on the calling thread whatever the process-wide count
        assert handle.image.schunk.dparams.nthreads == 1 and handle.masks.schunk.dparams.nthreads == 1
        lo, hi = np.array([0, 0, 0]), np.array(handle.shape)
        image, _ = handle.read(lo, hi)
        assert blosc2.nthreads == 2 and torch.get_num_threads() == before_torch
        assert np.array_equal(image, prepared.image.astype(np.float16).astype(np.float32))
    finally:
        blosc2.set_nthreads(before_blosc)
    # the piecewise copy covers every element, also a ragged last piece
    n = 3 * SERIAL_PIECE + 17
    target = torch.full((n,), -1.0)
    serial_copy(target, torch.arange(n, dtype=torch.float16).view(-1))
    assert torch.equal(target, torch.arange(n, dtype=torch.float16).float())
