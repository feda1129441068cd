"""The array file's storage settings reach the file, and readers refuse format versions they do not know."""

from __future__ import annotations

import blosc2
import numpy as np
import pytest

from curate.array_file import META_KEY, read_array, write_array
from curate.config import ArraysConfig


def _volume() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.normal(size=(70, 80, 90)).astype(np.float32)
    masks = np.zeros(image.shape, np.uint8)
    masks[10:60, 10:70, 10:80] = 1
    masks[:5] |= 2
    return image, masks


def test_default_settings_reach_the_file(tmp_path):
    cfg = ArraysConfig()
    image, masks = _volume()
    path = tmp_path / "a.b2z"
    write_array(path, image, masks, {}, codec=cfg.codec, clevel=cfg.clevel, masks_codec=cfg.masks_codec,
                masks_clevel=cfg.masks_clevel, chunks=cfg.chunks, blocks=cfg.blocks)
    store = blosc2.DictStore(str(path), mode="r")
    img, msk = store["/image"], store["/masks"]
    assert img.cparams.codec == blosc2.Codec[cfg.codec] and blosc2.Filter.SHUFFLE in img.cparams.filters
    # byte shuffle on the 1-byte masks only costs time: they are stored unfiltered
    assert msk.cparams.codec == blosc2.Codec[cfg.masks_codec]
    assert set(msk.cparams.filters) == {blosc2.Filter.NOFILTER}
    assert img.blocks == msk.blocks == tuple(min(b, s) for b, s in zip(cfg.blocks, image.shape))
    out, packed, meta = read_array(path)
    assert np.array_equal(out, image.astype(np.float16).astype(np.float32)) and np.array_equal(packed, masks)
    assert meta["version"] == 1


def test_read_array_refuses_an_unknown_version(tmp_path):
    image, masks = _volume()
    path = tmp_path / "a.b2z"
    stored = blosc2.asarray(image.astype(np.float16))
    stored.vlmeta[META_KEY] = {"format": META_KEY, "version": 2}
    with blosc2.DictStore(str(path), mode="w") as store:
        store["/image"] = stored
        store["/masks"] = blosc2.asarray(masks)
    with pytest.raises(ValueError, match="version 2.*rebuild"):
        read_array(path)
