"""The training loop: metrics, checkpoints, bit-for-bit resume, DDP on gloo."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pretrain.checkpoint import read_checkpoint
from pretrain.config import PretrainConfig, PretrainError, override
from pretrain.train import batch_stream, poly_factor, train
from pretrain.checkpoint import Position
from tests.pretrain.mae_synthetic import SyntheticBatches

ROOT = Path(__file__).resolve().parents[2]


def tiny_config(steps: int, every: int) -> PretrainConfig:
    return override(PretrainConfig(), model={"name": "tiny"},
                    data={"patch_size": 16, "batch_size": 2}, optim={"max_steps": steps},
                    run={"device": "cpu", "progress": False, "log_every": 1,
                         "checkpoint_every": every})


def test_training_logs_metrics_and_lowers_the_loss(tmp_path: Path) -> None:
    cfg = override(tiny_config(8, 4), optim={"lr": 1e-2})
    source = SyntheticBatches(1, 2, 16)  # one batch, repeated: the loss must go down
    position, _ = train(cfg, source, tmp_path)
    assert position.step == 8 and position.epoch == 7
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 9))
    assert {"step", "loss", "lr", "throughput", "data_wait"} <= set(rows[0])
    assert rows[0]["lr"] == pytest.approx(1e-2)
    assert rows[-1]["lr"] == pytest.approx(1e-2 * poly_factor(7, 8, 0.9))
    assert 0.0 <= rows[0]["data_wait"] < 1.0 and rows[0]["throughput"] > 0
    assert all(0.55 < r["mask_ratio"] < 0.95 for r in rows)
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert (tmp_path / "config.toml").is_file()


def test_resume_continues_bit_for_bit(tmp_path: Path) -> None:
    n = 3
    cfg = tiny_config(2 * n, n)
    _, straight = train(cfg, SyntheticBatches(4, 2, 16), tmp_path / "a")
    first, _ = train(cfg, SyntheticBatches(4, 2, 16), tmp_path / "b", stop_after=n)
    assert first.step == n
    second, resumed = train(cfg, SyntheticBatches(4, 2, 16), tmp_path / "b", resume=True)
    assert second.step == 2 * n
    a, b = straight.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    ck_a = read_checkpoint(tmp_path / "a" / "checkpoints" / "last.pt")
    ck_b = read_checkpoint(tmp_path / "b" / "checkpoints" / "last.pt")
    mom_a, mom_b = ck_a["optimizer"]["state"], ck_b["optimizer"]["state"]
    assert all(torch.equal(mom_a[i]["momentum_buffer"], mom_b[i]["momentum_buffer"]) for i in mom_a)
    lines = (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == list(range(1, 2 * n + 1))


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no checkpoint to resume from"):
        train(tiny_config(2, 1), SyntheticBatches(1, 2, 16), tmp_path, resume=True)


def test_a_second_run_into_the_same_directory_is_refused(tmp_path: Path) -> None:
    train(tiny_config(1, 1), SyntheticBatches(1, 2, 16), tmp_path)
    with pytest.raises(FileExistsError, match="--resume"):
        train(tiny_config(1, 1), SyntheticBatches(1, 2, 16), tmp_path)


@pytest.mark.parametrize(("patch", "block", "message"),
                         [(20, None, "multiple of 8"), (16, 3, "not a multiple")])
def test_a_patch_the_network_cannot_tile_is_refused_before_training(
        tmp_path: Path, patch: int, block: int | None, message: str) -> None:
    cfg = override(tiny_config(1, 1), data={"patch_size": patch}, masking={"block_size": block})
    with pytest.raises(ValueError, match=message):
        train(cfg, SyntheticBatches(1, 2, patch), tmp_path)
    assert not (tmp_path / "config.toml").exists()


def test_batch_stream_resumes_mid_epoch_and_wraps() -> None:
    source = [{"image": torch.full((1,), float(i))} for i in range(3)]
    pos = Position(epoch=1, batch_in_epoch=2)
    stream = batch_stream(source, pos)
    got = [int(next(stream)["image"]) for _ in range(4)]
    assert got == [2, 0, 1, 2] and (pos.epoch, pos.batch_in_epoch) == (2, 3)


def test_an_empty_source_is_a_clear_error() -> None:
    with pytest.raises(PretrainError, match="no batch"):
        next(batch_stream([], Position()))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ddp_on_two_gloo_processes_keeps_ranks_in_sync(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-port", str(_free_port()),
           str(ROOT / "tests" / "pretrain" / "mae_synthetic.py"), str(tmp_path), "2"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1))
    assert r0["world_size"] == 2
    # Different shards give different local losses ...
    assert r0["losses"] != r1["losses"]
    # ... but DDP's gradient all-reduce keeps the weights identical on both ranks.
    assert all(torch.equal(r0["model"][k], r1["model"][k]) for k in r0["model"])
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert (tmp_path / "checkpoints" / "last.pt").is_file()


def test_a_non_finite_loss_stops_the_run_with_a_message_and_metrics_stay_json(tmp_path: Path) -> None:
    cfg = tiny_config(6, 2)
    good = SyntheticBatches(1, 2, 16)
    batch = next(iter(good))
    poisoned = dict(batch, image=torch.full_like(batch["image"], float("inf")))

    class Source:
        def __iter__(self):
            yield from [batch, batch, batch, poisoned]

    with pytest.raises(PretrainError, match="loss became nan at step 4; the run stopped"):
        train(cfg, Source(), tmp_path)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(x, parse_constant=lambda c: pytest.fail(f"non-JSON token {c}")) for x in lines]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert read_checkpoint(tmp_path / "checkpoints" / "last.pt")["position"]["step"] == 2


def test_anonymization_aware_switch_decides_whether_anonymized_voxels_train() -> None:
    """OpenMind Table 7: with the switch on, an error only in anonymized voxels teaches nothing."""
    import dataclasses

    import torch

    from pretrain.config import load_config_text
    from pretrain.train import train_step

    class Scale(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(()))

        def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return image * self.w

    image = torch.ones(1, 1, 4, 4, 4)
    target = image.clone()
    anon = torch.zeros_like(image, dtype=torch.uint8)
    anon[..., :2] = 1
    target[..., :2] = 3.0  # the only reconstruction error sits in the anonymized half
    mask = torch.zeros_like(image)  # everything masked: every voxel is in the loss region
    batch = {"image": image, "target": target, "anon_mask": anon}
    moved = {}
    for aware in (True, False):
        cfg = load_config_text(f"[method]\nanonymization_aware = {str(aware).lower()}\n")
        cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, device="cpu"))
        model = Scale()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        train_step(model, batch, mask, optimizer, cfg)
        moved[aware] = abs(float(model.w) - 1.0)
    assert moved[True] == 0.0 and moved[False] > 0.0
