"""Training-step speed: nnssl-style dense MAE vs our S3D sparse model, side by side.

CPU (default): 1 thread, fp32, ResEnc-L, a few steps per shape, dense and sparse steps
interleaved so machine load hits both alike.  Prints a markdown table with parameter
counts and seconds per step (median of the timed steps, after warm-up).

GPU (``--device cuda``): ResEnc-L S3D at batch 8 x 160^3 (by default), bf16 autocast, with
and without ``torch.compile``: steps/s and peak GPU memory; the dense MAE for comparison.

With ``--output OUTPUT`` (a ``curate build`` output) and the loader installed, it also
measures the fraction of step time spent waiting for data from ``pretrain.data``.

Examples
--------
    python benchmarks/bench_mae.py                       # CPU: 2x64^3 and 1x96^3
    python benchmarks/bench_mae.py --shapes 2x64 --steps 2
    python benchmarks/bench_mae.py --amaes --shapes 2x64  # AMAES step vs dense MAE step
    python benchmarks/bench_mae.py --device cuda         # GPU: 8x160^3, bf16, compile on/off
    python benchmarks/bench_mae.py --device cuda --output demo_out
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pretrain.checkpoint import Position  # noqa: E402
from pretrain.intensity import AMAES, degrade  # noqa: E402
from pretrain.loss import masked_l2_loss  # noqa: E402
from pretrain.masking import random_block_mask  # noqa: E402
from pretrain.model import build_model, count_parameters, trainable  # noqa: E402
from pretrain.train import batch_stream  # noqa: E402

NNSSL_REFERENCE = {  # measured on this kind of machine (CPU, 1 thread, fp32, torch 2.13)
    ("dense", "2x64"): 11.6, ("sparse", "2x64"): 13.3,
    ("dense", "1x96"): 21.0, ("sparse", "1x96"): 26.0,
}
NNSSL_PARAMS = {"dense": 102e6, "sparse": 200e6}


@dataclass
class Runner:
    """One model with its optimizer, stepping on fixed random data."""

    kind: str
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    device: torch.device
    bf16: bool

    def step(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
        """One full training step; returns (wall, process CPU) seconds (synchronised on CUDA)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        t0, c0 = time.perf_counter(), time.process_time()
        self.optimizer.zero_grad(set_to_none=True)
        ctx = (torch.autocast("cuda", dtype=torch.bfloat16) if self.bf16
               else contextlib.nullcontext())
        with ctx:
            pred = self.model(x, mask)
        loss = masked_l2_loss(pred, x, mask)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(trainable(self.model)), 12.0)
        self.optimizer.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0, time.process_time() - c0


def make_runner(kind: str, arch: str, device: torch.device, bf16: bool = False,
                compile_model: bool = False, channels_last: bool = False) -> Runner:
    """A dense (nnssl-style) or sparse (S3D) MAE with the papers' SGD settings."""
    torch.manual_seed(0)
    model = build_model(arch, sparse=(kind == "sparse")).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
    opt = torch.optim.SGD(list(trainable(model)), lr=1e-2, momentum=0.99, nesterov=True,
                          weight_decay=3e-5)
    if compile_model:
        model = torch.compile(model)
    return Runner(kind, model, opt, device, bf16)


def batch(b: int, p: int, block: int, device: torch.device,
          channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Random z-scored input and a 75 % block mask."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(b, 1, p, p, p, generator=g).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last_3d)
    return x, random_block_mask(b, p, block, 0.75, g, device)


def parse_shape(text: str) -> tuple[int, int]:
    """``"2x64"`` -> (2, 64)."""
    b, p = text.lower().split("x")
    return int(b), int(p)


def cpu_table(shapes: list[str], steps: int, warmup: int, arch: str) -> str:
    """Dense vs sparse seconds per step on CPU, interleaved."""
    torch.set_num_threads(1)
    dev = torch.device("cpu")
    runners = {k: make_runner(k, arch, dev) for k in ("dense", "sparse")}
    rows = [f"| model | params | shape | wall s/step (median of {steps}) | CPU s/step | "
            "nnssl reference s/step | nnssl params |", "|---|---|---|---|---|---|---|"]
    for shape in shapes:
        b, p = parse_shape(shape)
        x, mask = batch(b, p, runners["sparse"].model.block_size, dev)
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in runners}
        for i in range(warmup + steps):
            for kind, r in runners.items():  # interleave: same load for both
                t = r.step(x, mask)
                if i >= warmup:
                    times[kind].append(t)
                print(f"  {shape} {kind} step {i}: wall {t[0]:.2f} s, CPU {t[1]:.2f} s",
                      file=sys.stderr, flush=True)
        for kind, r in runners.items():
            ref = NNSSL_REFERENCE.get((kind, shape))
            name = "dense MAE (plain ResEnc-L, masked input)" if kind == "dense" else "S3D sparse (ours)"
            rows.append(f"| {name} | {count_parameters(r.model) / 1e6:.1f} M | {b} x {p}^3 | "
                        f"{statistics.median(t[0] for t in times[kind]):.2f} | "
                        f"{statistics.median(t[1] for t in times[kind]):.2f} | {ref if ref else '-'} | "
                        f"{NNSSL_PARAMS[kind] / 1e6:.0f} M |")
    return "\n".join(rows)


class AmaesRunner(Runner):
    """AMAES's step: input-only intensity augmentation of the batch (counted here, although
    the loader's workers do it), the no-skip dense U-Net on 4^3 tokens masked at 0.6, MSE over
    the whole volume, AdamW (amsgrad)."""

    def step(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
        t0, c0 = time.perf_counter(), time.process_time()
        degraded = torch.stack([degrade(s[0], self.rng, AMAES)[0][None] for s in x])
        self.optimizer.zero_grad(set_to_none=True)
        loss = masked_l2_loss(self.model(degraded, mask), x, mask, masked_only=False)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(trainable(self.model)), 12.0)
        self.optimizer.step()
        return time.perf_counter() - t0, time.process_time() - c0


def amaes_table(shape: str, steps: int, warmup: int, arch: str) -> str:
    """AMAES step vs the dense MAE step on CPU (1 thread), interleaved; and the augmentation alone."""
    torch.set_num_threads(1)
    dev = torch.device("cpu")
    b, p = parse_shape(shape)
    dense = make_runner("dense", arch, dev)
    torch.manual_seed(0)
    model = build_model(arch, sparse=False, skips=False)
    opt = torch.optim.AdamW(list(trainable(model)), lr=1e-4, weight_decay=3e-5, amsgrad=True)
    amaes = AmaesRunner("amaes", model, opt, dev, False)
    amaes.rng = np.random.default_rng(0)
    x, block_mask = batch(b, p, dense.model.block_size, dev)
    unit = (x - x.min()) / (x.max() - x.min())
    g = torch.Generator().manual_seed(1)
    token_mask = random_block_mask(b, p, 4, 0.6, g)
    times: dict[str, list[tuple[float, float]]] = {"dense": [], "amaes": []}
    for i in range(warmup + steps):
        for kind, r, xi, m in (("dense", dense, x, block_mask), ("amaes", amaes, unit, token_mask)):
            t = r.step(xi, m)
            if i >= warmup:
                times[kind].append(t)
            print(f"  {shape} {kind} step {i}: wall {t[0]:.2f} s, CPU {t[1]:.2f} s", file=sys.stderr, flush=True)
    rng = np.random.default_rng(2)
    aug = []
    for _ in range(20):
        c0 = time.process_time()
        degrade(unit[0, 0], rng, AMAES)
        aug.append(time.process_time() - c0)
    med = {k: (statistics.median(t[0] for t in v), statistics.median(t[1] for t in v)) for k, v in times.items()}
    rows = [f"| step ({arch}, {b} x {p}^3, 1 thread) | wall s/step (median of {steps}) | CPU s/step |",
            "|---|---|---|",
            f"| dense MAE (SGD, 32^3 blocks at 0.75, masked loss) | {med['dense'][0]:.2f} | {med['dense'][1]:.2f} |",
            f"| AMAES (augmentation + no-skip U-Net, 4^3 tokens at 0.6, whole-volume loss, AdamW) | "
            f"{med['amaes'][0]:.2f} | {med['amaes'][1]:.2f} |",
            f"| ratio AMAES / dense | {med['amaes'][0] / med['dense'][0]:.2f} | "
            f"{med['amaes'][1] / med['dense'][1]:.2f} |",
            f"| intensity augmentation alone, one {p}^3 sample (mean CPU of 20 draws) | - | "
            f"{statistics.mean(aug):.3f} |"]
    return "\n".join(rows)


def gpu_table(shape: str, steps: int, warmup: int, arch: str) -> str:
    """Steps/s and peak memory on CUDA: S3D bf16 with and without compile, dense for comparison."""
    dev = torch.device("cuda")
    b, p = parse_shape(shape)
    rows = ["| model | bf16 | compile | steps/s | s/step | peak GPU memory |", "|---|---|---|---|---|---|"]
    for kind, bf16, comp in (("sparse", True, False), ("sparse", True, True),
                             ("dense", True, False), ("sparse", False, False)):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        r = make_runner(kind, arch, dev, bf16=bf16, compile_model=comp, channels_last=True)
        x, mask = batch(b, p, 32 if arch == "resenc-l" else 8, dev, channels_last=True)
        times = [r.step(x, mask)[0] for _ in range(warmup + steps)][warmup:]
        med = statistics.median(times)
        rows.append(f"| {'S3D sparse' if kind == 'sparse' else 'dense MAE'} {b} x {p}^3 | {bf16} | "
                    f"{comp} | {1 / med:.2f} | {med:.3f} | "
                    f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB |")
        del r
    return "\n".join(rows)


def loader_wait(output: Path, steps: int, arch: str, shape: str, device: torch.device,
                workers: int) -> str:
    """Fraction of step time spent waiting on ``pretrain.data.make_loader`` batches."""
    try:
        from pretrain.data import make_loader
    except ImportError as exc:
        return f"loader not available ({exc}); data-wait not measured"
    b, p = parse_shape(shape)
    loader = make_loader(output, patch_size=p, batch_size=b, workers=workers)
    r = make_runner("sparse", arch, device, bf16=device.type == "cuda")
    wait = total = 0.0
    it: Iterator = batch_stream(loader, Position())  # epochs one after another, as in training
    for i in range(steps + 1):
        t0 = time.perf_counter()
        data = next(it)
        t1 = time.perf_counter()
        x = data["image"].to(device)
        mask = random_block_mask(x.shape[0], p, r.model.block_size, 0.75, torch.Generator(), device)
        r.step(x, mask)
        if i:  # the first batch includes worker start-up
            wait, total = wait + (t1 - t0), total + (time.perf_counter() - t0)
    return (f"| loader data wait | {arch} | {b} x {p}^3 | {workers} workers | "
            f"{wait / total:.1%} of step time | {total / steps:.2f} s/step ({steps} steps) |")


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print markdown tables."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--shapes", nargs="+", help="BATCHxPATCH, e.g. 2x64 1x96 (GPU: 8x160)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--model", default="resenc-l", choices=("resenc-l", "tiny"))
    ap.add_argument("--output", type=Path, help="curate build output, to measure loader wait")
    ap.add_argument("--workers", type=int, default=2, help="loader workers for --output")
    ap.add_argument("--loader-only", action="store_true", help="with --output: skip the model table")
    ap.add_argument("--amaes", action="store_true", help="CPU: the AMAES step against the dense MAE step")
    args = ap.parse_args(argv)
    print(f"torch {torch.__version__}, device {args.device}, model {args.model}")
    if args.loader_only:
        pass
    elif args.amaes:
        for shape in args.shapes or ["2x64"]:
            print(amaes_table(shape, args.steps, args.warmup, args.model))
    elif args.device == "cpu":
        print(cpu_table(args.shapes or ["2x64", "1x96"], args.steps, args.warmup, args.model))
    else:
        if not torch.cuda.is_available():
            print("no CUDA device available", file=sys.stderr)
            return 2
        print(torch.cuda.get_device_name())
        print(gpu_table((args.shapes or ["8x160"])[0], args.steps, args.warmup, args.model))
    if args.output is not None:
        if args.device == "cpu":
            torch.set_num_threads(1)
        print(loader_wait(args.output, args.steps, args.model, (args.shapes or ["2x64"])[0],
                          torch.device(args.device), args.workers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
