"""Reading pre-training array files (format ``mri-curate-array/1``, written by ``curate build``).

Each file is a blosc2 ``DictStore`` (``.b2z``) holding two 3D arrays with the
same chunks: ``/image`` (float16 by default) and ``/masks`` (uint8; bit 0
anatomy, bit 1 anonymization).  The image's ``vlmeta["mri-curate-array"]``
holds the geometry and a coarse anatomy occupancy grid used to centre crops on
tissue.  Only the blocks a crop touches are decompressed.

The stored float16 becomes float32 through torch, not numpy: numpy's
``astype`` from float16 runs a scalar loop here (6.8 ms for a 160^3 crop, as
long as decompressing it), torch's copy kernel uses the CPU's vector
half-to-float instructions (0.5-1 ms on one thread, same exact values).
:meth:`ArrayHandle.read` goes further and converts slab by slab while each
decoded slab is still in cache.

A read is serial whatever the caller's thread settings: the arrays are opened with
their own blosc2 decompression parameters (one thread; the global ``blosc2.nthreads``
is left alone) and the conversion is copied in pieces smaller than torch's
parallelisation grain, so it never enters torch's intra-op pool.  A 160^3 crop is
only ~7 ms of work: on a loaded machine, handing it to thread pools sized for all
cores cost 8x (59 ms against 7 ms, issue 17); parallelism belongs to the loader's
workers.
"""

from __future__ import annotations

import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

import blosc2
import numpy as np
import torch

META_KEY = "mri-curate-array"
#: Format versions this reader understands (``curate.array_file.READABLE_VERSIONS``;
#: not imported from there so the loader does not depend on the curate package).
READABLE_VERSIONS = (1,)
ANATOMY_BIT = 1
ANON_BIT = 2
_OPEN_ERRORS = (OSError, RuntimeError, ValueError, KeyError, TypeError, zipfile.BadZipFile)


class ArrayFileError(Exception):
    """An array file that is missing, truncated or not in our format; ``str`` says why."""


@dataclass(slots=True)
class ArrayHandle:
    """An open array file: its shape, coarse anatomy grid and region reads."""

    path: Path
    store: object
    image: blosc2.NDArray
    masks: blosc2.NDArray
    shape: tuple[int, int, int]
    occupancy: np.ndarray | None
    cell: int

    def read_stored(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image (stored dtype, float16 by default) and packed masks (uint8) of the box ``[lo, hi)``."""
        window = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        try:
            return self.image[window], self.masks[window]
        except _OPEN_ERRORS as exc:
            raise ArrayFileError(f"{self.path}: cannot decompress region: {exc}") from exc

    def read(self, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Image (float32, see :func:`decode_float32`) and packed masks (uint8) of the box ``[lo, hi)``."""
        window = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
        try:
            return decode_float32(self.image, window), self.masks[window]
        except _OPEN_ERRORS as exc:
            raise ArrayFileError(f"{self.path}: cannot decompress region: {exc}") from exc


def decode_float32(array: blosc2.NDArray, window: tuple[slice, ...]) -> np.ndarray:
    """``array[window]`` as float32, decoded in slabs one block deep (axis 0).

    Each slab is decoded into a small reused buffer and converted into the float32
    result while it is still in cache: no whole float16 crop is allocated and
    streamed through memory a second time.  Measured on 160^3 crops: 5.8 ms
    against 6.7 ms for decode-then-convert (the float16 decode alone: 5.4 ms).
    ``window`` holds plain ``slice(start, stop)`` objects inside the array.
    """
    if array.dtype == np.float32:
        return array[window]
    out = np.empty(tuple(s.stop - s.start for s in window), np.float32)
    if out.size == 0:
        return out
    target, first = torch.from_numpy(out), window[0].start
    for start, stop in _slabs(first, window[0].stop, array.chunks[0], array.blocks[0]):
        serial_copy(target[start - first:stop - first], _decode_slab(array, (slice(start, stop), *window[1:])))
    return out


#: Elements per piece of :func:`serial_copy`: below torch's ``at::internal::GRAIN_SIZE``
#: (32768), under which an elementwise kernel runs on the calling thread only.
SERIAL_PIECE = 32_000


def serial_copy(target: torch.Tensor, source: torch.Tensor) -> None:
    """``target.copy_(source)`` (contiguous, same shape) on the calling thread only.

    torch would split a large copy over its intra-op pool (all cores by default); a
    process that trains or decodes elsewhere meanwhile then oversubscribes the cores.
    Pieces below the grain size stay serial: ~3 us of dispatch each, ~0.4 ms per 160^3.

    Examples
    --------
    >>> t = torch.empty(70_000); serial_copy(t, torch.arange(70_000, dtype=torch.float16))
    >>> bool((t == torch.arange(70_000, dtype=torch.float16).float()).all())
    True
    """
    flat_target, flat_source = target.view(-1), source.reshape(-1)
    for lo in range(0, flat_target.numel(), SERIAL_PIECE):
        flat_target[lo:lo + SERIAL_PIECE].copy_(flat_source[lo:lo + SERIAL_PIECE])


def _slabs(start: int, stop: int, chunk: int, block: int) -> list[tuple[int, int]]:
    """Cut ``[start, stop)`` at block boundaries (blocks tile each chunk from its start).

    Examples
    --------
    >>> _slabs(5, 70, 64, 32)
    [(5, 32), (32, 64), (64, 70)]
    """
    step = block if chunk % block == 0 else chunk
    cuts = list(range((start // step + 1) * step, stop, step))
    return list(zip([start, *cuts], [*cuts, stop]))


_scratch = threading.local()


def _decode_slab(array: blosc2.NDArray, window: tuple[slice, ...]) -> torch.Tensor:
    """One slab of ``array`` decoded into this thread's reused buffer, as a tensor over that buffer.

    ``get_slice_numpy`` (what blosc2's own ``__getitem__`` calls) writes into a
    given buffer.  The buffer is reused by the next call, so the caller copies out at once.
    """
    shape = tuple(s.stop - s.start for s in window)
    size = int(np.prod(shape))
    buffer = getattr(_scratch, "buffer", None)
    if buffer is None or buffer.size < size or buffer.dtype != array.dtype:
        buffer = _scratch.buffer = np.empty(max(size, 1 << 21), array.dtype)
    view = buffer[:size].reshape(shape)
    array.get_slice_numpy(view, ([s.start for s in window], [s.stop for s in window]))
    return torch.from_numpy(view)


def to_float32(array: np.ndarray) -> np.ndarray:
    """``array`` as float32 (exact for float16), converted by torch's vectorised kernel.

    Examples
    --------
    >>> to_float32(np.array([0.5, -2.0], np.float16)).dtype
    dtype('float32')
    """
    if array.dtype == np.float32:
        return array
    # numpy allocates the output: it asks for huge pages on large arrays, torch's allocator
    # does not, and 4 KiB page faults on a fresh 16 MB tensor cost 6-7 ms here (measured).
    out = np.empty(array.shape, np.float32)
    serial_copy(torch.from_numpy(out), torch.from_numpy(np.ascontiguousarray(array)))
    return out


#: Where blosc2's ``DictStore`` keeps the arrays ``/image`` and ``/masks`` inside the ``.b2z`` zip.
_MEMBERS = ("image.b2nd", "masks.b2nd")


def _open_members(path: Path) -> tuple[object, blosc2.NDArray, blosc2.NDArray]:
    """``(store, image, masks)``: the two arrays opened read-only and memory-mapped.

    Memory-mapped because blosc2 otherwise re-opens and reads the file for every
    chunk a crop touches (up to 64 per array): the same 160^3 crop decoded ~25 %
    faster mapped.  The arrays are opened in place at their zip offsets (the
    ``DictStore`` stores its members uncompressed, which is what makes this
    possible): 0.23 ms instead of 1.0 ms for ``DictStore`` itself, which also
    sets up its write machinery; the loader opens one file per sample.  A file
    laid out otherwise falls back to ``DictStore``.
    """
    with zipfile.ZipFile(path) as archive:
        infos = {info.filename: info for info in archive.infolist()}
        if all(name in infos and infos[name].compress_type == zipfile.ZIP_STORED for name in _MEMBERS):
            offsets = []
            for name in _MEMBERS:  # data start = local header (30 bytes + name + extra field)
                archive.fp.seek(infos[name].header_offset)  # type: ignore[union-attr]
                header = archive.fp.read(30)  # type: ignore[union-attr]
                offsets.append(infos[name].header_offset + 30 + int.from_bytes(header[26:28], "little")
                               + int.from_bytes(header[28:30], "little"))
            image, masks = (blosc2.open(str(path), mode="r", offset=o, mmap_mode="r", dparams=_SERIAL)
                            for o in offsets)
            return None, image, masks
    store = blosc2.DictStore(str(path), mode="r", mmap_mode="r")
    image, masks = store["/image"], store["/masks"]
    for array in (image, masks):
        array.schunk.dparams = _SERIAL
    return store, image, masks


#: Decompression on the calling thread only, per array (``blosc2.nthreads`` is process-wide).
_SERIAL = blosc2.DParams(nthreads=1)


def open_array(path: Path) -> ArrayHandle:
    """Open an array file for region reads.

    Raises
    ------
    ArrayFileError
        If the file is missing, unreadable or not a 3D ``mri-curate-array``.
    """
    if not path.is_file():
        raise ArrayFileError(f"{path}: no such file")
    try:
        store, image, masks = _open_members(path)
        meta = dict(image.vlmeta[META_KEY])
    except KeyError:
        meta = None
    except _OPEN_ERRORS as exc:
        raise ArrayFileError(f"{path}: {type(exc).__name__}: {exc}") from exc
    if meta is None or image.ndim != 3 or masks.shape != image.shape:
        raise ArrayFileError(f"{path}: not an {META_KEY} file")
    if meta.get("version") not in READABLE_VERSIONS:
        raise ArrayFileError(f"{path}: {META_KEY} version {meta.get('version')!r} is not readable by this "
                             f"mri-curate (reads {READABLE_VERSIONS}); update it or rebuild the arrays "
                             "with `curate build`")
    occupancy, cell = None, 1
    grid = meta.get("anatomy_grid")
    if grid:
        cell = int(grid["cell"])
        occupancy = np.frombuffer(grid["data"], dtype=np.uint8).reshape(grid["shape"])
    return ArrayHandle(path=path, store=store, image=image, masks=masks,
                       shape=tuple(image.shape),  # type: ignore[arg-type]
                       occupancy=occupancy, cell=cell)


def split_masks(masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(anatomy, anon)`` uint8 0/1 from packed masks."""
    # a bool array viewed as uint8 is 0/1 without another pass over the crop
    return ((masks & ANATOMY_BIT) != 0).view(np.uint8), ((masks & ANON_BIT) != 0).view(np.uint8)


def sample_centre(handle: ArrayHandle, rng: np.random.Generator, anatomy_bias: float) -> np.ndarray:
    """A crop centre: with probability ``anatomy_bias`` inside an anatomy cell, else uniform."""
    shape = np.array(handle.shape)
    occ = handle.occupancy
    if occ is not None and occ.any() and rng.uniform() < anatomy_bias:
        weights = occ.ravel().astype(np.float64)
        cell_index = np.array(np.unravel_index(rng.choice(weights.size, p=weights / weights.sum()), occ.shape))
        lo = cell_index * handle.cell
        hi = np.minimum(lo + handle.cell, shape)
        return rng.uniform(lo, hi)
    return rng.uniform(np.zeros(3), shape)
