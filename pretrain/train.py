"""The pre-training loop, as small functions: build, step, log, checkpoint, resume.

Any iterable of batch dicts works as the data source (``image`` B x 1 x P^3 float32,
``anon_mask`` B x 1 x P^3 uint8, optional ``valid``), so the loop is testable with a
synthetic source and runs unchanged on :func:`pretrain.data.make_loader`.

Reproducibility: the mask of step ``s`` on rank ``r`` comes from a generator seeded with
``(seed, r, s)``, the data position is checkpointed, and so are all RNG states, so a resumed
run continues bit-for-bit (on the same device and thread count).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from pretrain.checkpoint import Position, load_checkpoint, save_checkpoint
from pretrain.config import ConfigError, PretrainConfig, PretrainError, dump_config, to_dict
from pretrain.distributed import DistInfo, barrier, mean_across_ranks, resolve_device
from pretrain.loss import masked_l2_loss
from pretrain.masking import block_grid, random_block_mask, sample_ratio, total_stride
from pretrain.model import build_model, trainable, unet_kwargs, unwrap
from pretrain.progress import progress_bar

Batch = Mapping[str, torch.Tensor]


@dataclass(slots=True)
class StepResult:
    """What one optimizer step reports."""

    loss: float
    grad_norm: float
    mask_ratio: float


def make_model(cfg: PretrainConfig, info: DistInfo) -> nn.Module:
    """The (possibly compiled, DDP-wrapped) model on this rank's device.

    All ranks build from the same seed; DDP also broadcasts rank 0's weights.
    """
    torch.manual_seed(cfg.run.seed)
    model = build_model(cfg.model.name, cfg.model.sparse, cfg.model.mask_token, cfg.model.densify,
                        cfg.model.skips)
    model = model.to(info.device)
    if switch_on(cfg, info.device, "channels_last"):
        model = model.to(memory_format=torch.channels_last_3d)
    if info.distributed:
        ids = [info.device.index] if info.device.type == "cuda" else None
        model = DistributedDataParallel(model, device_ids=ids)
    if switch_on(cfg, info.device, "compile"):
        model = torch.compile(model)
    return model


def switch_on(cfg: PretrainConfig, device: torch.device, name: str) -> bool:
    """Whether the GPU switch ``name`` (``bf16``, ``channels_last``, ``compile``) applies here.

    On CUDA it is the switch's value; elsewhere only with ``run.switches_on_cpu``.
    """
    return bool(getattr(cfg.run, name)) and (device.type == "cuda" or cfg.run.switches_on_cpu)


def make_optimizer(model: nn.Module, cfg: PretrainConfig) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum (nnU-Net / S3D), or AdamW (AMAES), with weight decay."""
    o = cfg.optim
    params = list(trainable(model))
    if o.name == "adamw":
        return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay, amsgrad=o.amsgrad, eps=o.eps)
    return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov,
                           weight_decay=o.weight_decay)


def poly_factor(step: int, max_steps: int, exponent: float) -> float:
    """Poly decay ``(1 - step / max_steps) ** exponent``, floored at 0.

    >>> poly_factor(0, 100, 0.9), poly_factor(100, 100, 0.9), round(poly_factor(50, 100, 1.0), 2)
    (1.0, 0.0, 0.5)
    """
    return max(0.0, 1.0 - step / max_steps) ** exponent


def lr_factor(step: int, cfg: PretrainConfig) -> float:
    r"""Learning-rate multiplier of ``step``: linear warm-up from 1/1000, then poly or cosine.

    >>> from pretrain.config import load_config_text
    >>> cfg = load_config_text('[method]\nname = "amaes"\n[optim]\nmax_steps = 105\n')
    >>> [round(lr_factor(s, cfg), 3) for s in (0, 5, 55, 105)]
    [0.001, 1.0, 0.5, 0.0]
    """
    o = cfg.optim
    warmup = round(o.warmup_fraction * o.max_steps)
    if step < warmup:
        return 1e-3 + (1.0 - 1e-3) * step / warmup
    if o.schedule == "cosine":
        done = min(1.0, (step - warmup) / max(1, o.max_steps - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * done))
    return poly_factor(step - warmup, o.max_steps - warmup, o.poly_exponent)


def make_scheduler(optimizer: torch.optim.Optimizer,
                   cfg: PretrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning-rate schedule over ``optim.max_steps`` (:func:`lr_factor`)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg))


def step_mask(cfg: PretrainConfig, batch: int, block: int, step: int, rank: int,
              device: torch.device | None = None) -> tuple[torch.Tensor, float]:
    """The block mask of one step on one rank, reproducible from ``(seed, rank, step)``."""
    g = torch.Generator().manual_seed(((cfg.run.seed * 1_000_003 + rank) * 1_000_033 + step) % 2**63)
    ratio = sample_ratio(cfg.masking.ratio_min, cfg.masking.ratio_max, g)
    block = cfg.masking.block_size or block
    return random_block_mask(batch, cfg.data.patch_size, block, ratio, g, device), ratio


def to_device(batch: Batch, device: torch.device, channels_last: bool) -> dict[str, torch.Tensor]:
    """Move a batch to ``device`` (non-blocking), checking it has what the loss needs.

    ``channels_last`` is whether that switch applies here (:func:`switch_on`).
    """
    if "image" not in batch:
        raise KeyError(f"a batch needs an 'image' tensor; got keys {sorted(batch)}")
    fmt = torch.channels_last_3d if channels_last else torch.contiguous_format
    out = {}
    for key in ("image", "target", "anon_mask", "valid"):
        if key in batch:
            t = batch[key].to(device, non_blocking=True)
            out[key] = t.contiguous(memory_format=fmt) if t.ndim == 5 else t
    return out


def autocast(cfg: PretrainConfig, device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast when enabled on CUDA (or on CPU with ``run.switches_on_cpu``); else fp32."""
    if switch_on(cfg, device, "bf16"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_step(model: nn.Module, batch: dict[str, torch.Tensor], mask: torch.Tensor,
               optimizer: torch.optim.Optimizer, cfg: PretrainConfig) -> StepResult:
    """Forward, anonymization-aware loss, backward, gradient clipping, optimizer step.

    The target is ``batch["target"]`` when the loader degraded the input (AMAES), else the
    input itself; ``method.loss`` picks masked voxels only or the whole volume, and
    ``method.anonymization_aware`` whether anonymized voxels are left out.
    """
    image = batch["image"]
    target = batch.get("target", image)
    mask = mask.to(image.device, non_blocking=True)
    optimizer.zero_grad(set_to_none=True)
    with autocast(cfg, image.device):
        pred = model(image, mask)
    anon = batch.get("anon_mask") if cfg.method.anonymization_aware else None
    loss = masked_l2_loss(pred, target, mask, anon, batch.get("valid"),
                          masked_only=cfg.method.loss == "masked")
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(list(trainable(model)), cfg.optim.grad_clip)
    optimizer.step()
    return StepResult(float(loss.detach()), float(norm), 1.0 - float(mask.mean()))


def batch_stream(source: Iterable[Batch], position: Position) -> Iterator[Batch]:
    """Endless batches from ``source``, starting at ``position`` and advancing it.

    A finite source is iterated again (next epoch; ``set_epoch`` is called when the source
    or its sampler has it).  Batches before the saved position are skipped on resume, or
    handed to the source's ``skip(n)`` when it can seek.
    """
    for epoch in itertools.count(position.epoch):
        for obj in (source, getattr(source, "sampler", None), getattr(source, "dataset", None)):
            if obj is not None and hasattr(obj, "set_epoch"):
                obj.set_epoch(epoch)
        skip, position.epoch = position.batch_in_epoch, epoch
        if skip and hasattr(source, "skip"):
            source.skip(skip)  # before iter(): loader workers take it with them
            it = iter(source)
        else:
            it = iter(source)
            for _ in itertools.islice(it, skip):
                pass
        yielded = skip
        for batch in it:
            yielded += 1
            position.batch_in_epoch = yielded
            yield batch
        if yielded == 0:
            raise PretrainError("the data source yielded no batch; check the selection and OUTPUT")
        position.batch_in_epoch = 0


def append_metrics(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line to ``RUN/metrics.jsonl``; a non-finite number is written as ``null``.

    >>> import tempfile; p = Path(tempfile.mkdtemp()) / "m.jsonl"
    >>> append_metrics(p, {"step": 1, "grad_norm": float("inf")}); p.read_text()
    '{"step": 1, "grad_norm": null}\\n'
    """
    clean = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in record.items()}
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(clean, allow_nan=False) + "\n")


def truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines logged after ``step`` (work lost since the last checkpoint)."""
    if not path.exists():
        return
    kept = [ln for ln in path.read_text(encoding="utf-8").splitlines()
            if ln.strip() and json.loads(ln)["step"] <= step]
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(f"{ln}\n" for ln in kept), encoding="utf-8")
    tmp.replace(path)


def check_patch(cfg: PretrainConfig) -> None:
    """Refuse, before anything starts, a patch the network or the mask grid cannot tile."""
    stride = total_stride(unet_kwargs(cfg.model.name)["strides"])
    if cfg.data.patch_size % stride:
        raise ConfigError(f"patch size {cfg.data.patch_size} must be a multiple of {stride} "
                          f"(the {cfg.model.name} encoder's total stride)")
    block_grid(cfg.data.patch_size, cfg.masking.block_size or stride)


def prepare_run_dir(run_dir: Path, cfg: PretrainConfig, info: DistInfo, resume: bool) -> None:
    """Create ``RUN/`` and dump the config there (main rank only)."""
    if info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resume and (run_dir / "checkpoints").exists():
            raise FileExistsError(f"{run_dir} already holds a run; pass --resume or use a new --run-dir")
        (run_dir / "config.toml").write_text(dump_config(cfg), encoding="utf-8")
    barrier(info)


def train(cfg: PretrainConfig, source: Iterable[Batch], run_dir: Path, info: DistInfo | None = None,
          *, resume: bool = False, stop_after: int | None = None,
          on_step: Callable[[int, StepResult], None] | None = None) -> tuple[Position, nn.Module]:
    """Pre-train until ``optim.max_steps`` (or ``stop_after`` steps in this call).

    Parameters
    ----------
    cfg
        The run configuration.
    source
        Iterable of batch dicts (this rank's shard).
    run_dir
        ``RUN/``: ``config.toml``, ``metrics.jsonl``, ``checkpoints/last.pt``.
    info
        Distributed context (default: one process on ``cfg.run.device``).
    resume
        Continue from ``RUN/checkpoints/last.pt``.
    stop_after
        Stop after this many steps of this call (checkpointing there), e.g. to split a run.
    on_step
        Optional callback ``(step, result)`` after every step.

    Returns
    -------
    position, model
        Where the run stopped, and the trained (bare, unwrapped) model.
    """
    info = info or DistInfo(device=resolve_device(cfg.run.device))
    run_dir = Path(run_dir)
    check_patch(cfg)
    prepare_run_dir(run_dir, cfg, info, resume)
    model = make_model(cfg, info)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg)
    position = Position()
    if resume:
        position = load_checkpoint(run_dir, unwrap(model), optimizer, scheduler, info.device)
        if info.is_main:
            truncate_metrics(run_dir / "metrics.jsonl", position.step)
    last = cfg.optim.max_steps if stop_after is None else min(cfg.optim.max_steps, position.step + stop_after)
    model.train()
    _loop(cfg, model, optimizer, scheduler, source, run_dir, info, position, last, on_step)
    return position, unwrap(model)


def _loop(cfg: PretrainConfig, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any,
          source: Iterable[Batch], run_dir: Path, info: DistInfo, position: Position, last: int,
          on_step: Callable[[int, StepResult], None] | None) -> None:
    stream = batch_stream(source, position)
    block = unwrap(model).block_size
    metrics = run_dir / "metrics.jsonl"
    window = _new_window()
    with progress_bar(position.step, last, enabled=cfg.run.progress and info.is_main) as advance:
        while position.step < last:
            t0 = time.perf_counter()
            batch = to_device(next(stream), info.device, switch_on(cfg, info.device, "channels_last"))
            t1 = time.perf_counter()
            mask, _ = step_mask(cfg, batch["image"].shape[0], block, position.step, info.rank,
                                info.device)
            result = train_step(model, batch, mask, optimizer, cfg)
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            position.step += 1
            window["wait"] += t1 - t0
            window["time"] += time.perf_counter() - t0
            window["samples"] += batch["image"].shape[0]
            window["steps"] += 1
            if not math.isfinite(result.loss):
                raise PretrainError(
                    f"the loss became {result.loss} at step {position.step}; the run stopped "
                    f"(RUN/checkpoints/last.pt keeps the last good state: lower optim.lr or "
                    f"optim.grad_clip, or check the data)")
            if position.step % cfg.run.log_every == 0 or position.step == last:
                _log(metrics, position.step, result, lr, window, info)
                window = _new_window()
            if position.step % cfg.run.checkpoint_every == 0 or position.step == last:
                if info.is_main:
                    save_checkpoint(run_dir, unwrap(model), optimizer, scheduler, position, to_dict(cfg))
                barrier(info)
            advance(result.loss)
            if on_step is not None:
                on_step(position.step, result)


def _new_window() -> dict[str, float]:
    return {"wait": 0.0, "time": 0.0, "samples": 0, "steps": 0}


def _log(path: Path, step: int, result: StepResult, lr: float, window: dict[str, float],
         info: DistInfo) -> None:
    loss = mean_across_ranks(result.loss, info)
    if not info.is_main:
        return
    elapsed = max(window["time"], 1e-9)
    append_metrics(path, {
        "step": step, "loss": loss, "lr": lr, "grad_norm": result.grad_norm,
        "mask_ratio": round(result.mask_ratio, 4),
        "throughput": window["samples"] * info.world_size / elapsed,  # samples/s, all ranks
        "data_wait": window["wait"] / elapsed,  # fraction of step time spent waiting for data
        "step_time": elapsed / max(1, window["steps"]),
        "time": time.time(),
    })
