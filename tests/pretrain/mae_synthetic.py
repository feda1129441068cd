"""A deterministic synthetic batch source for loop tests, and a DDP worker for torchrun.

Not a test module (no ``test_`` prefix).  Batch ``i`` of rank ``r`` depends only on
``(seed, r, i)``, like a sharded, seeded loader; a face-like slab is flagged in
``anon_mask`` as a defaced region would be.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import torch


class SyntheticBatches:
    """``n_batches`` batches of ``batch`` x 1 x ``patch``^3 z-scored noise blobs."""

    def __init__(self, n_batches: int, batch: int, patch: int, seed: int = 0,
                 rank: int = 0, world_size: int = 1) -> None:
        self.n_batches, self.batch, self.patch = n_batches, batch, patch
        self.seed, self.rank, self.world_size = seed, rank, world_size

    def __len__(self) -> int:
        return self.n_batches

    def make(self, i: int) -> dict[str, torch.Tensor]:
        """Batch number ``i`` of this rank's shard."""
        g = torch.Generator().manual_seed((self.seed * 7919 + i) * self.world_size + self.rank)
        shape = (self.batch, 1, self.patch, self.patch, self.patch)
        image = torch.nn.functional.avg_pool3d(torch.randn(shape, generator=g), 3, 1, 1)
        image = (image - image.mean()) / image.std()
        anon = torch.zeros(shape, dtype=torch.uint8)
        anon[..., : self.patch // 4, :] = 1
        image[anon.bool()] = 0.0  # what defacing leaves behind
        valid = torch.ones(self.batch, dtype=torch.bool)
        return {"image": image, "anon_mask": anon, "anatomy_mask": 1 - anon, "valid": valid}

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        return (self.make(i) for i in range(self.n_batches))


def _ddp_main(run_dir: str, steps: str) -> int:
    """Worker under torchrun: a short tiny-model run on this rank's synthetic shard.

    Each rank saves its final weights and per-step losses to ``RUN/rank<r>.pt``.
    """
    from pretrain.config import PretrainConfig, override
    from pretrain.distributed import init_distributed, shutdown
    from pretrain.train import train

    torch.set_num_threads(1)
    info = init_distributed("cpu")
    cfg = override(PretrainConfig(), model={"name": "tiny"},
                   data={"patch_size": 16, "batch_size": 1}, optim={"max_steps": int(steps)},
                   run={"device": "cpu", "progress": False, "log_every": 1})
    source = SyntheticBatches(8, 1, 16, rank=info.rank, world_size=info.world_size)
    losses: list[float] = []
    _, model = train(cfg, source, Path(run_dir), info, on_step=lambda s, r: losses.append(r.loss))
    torch.save({"losses": losses, "model": model.state_dict(), "world_size": info.world_size},
               Path(run_dir) / f"rank{info.rank}.pt")
    shutdown(info)
    return 0


if __name__ == "__main__":
    sys.exit(_ddp_main(*sys.argv[1:3]))
