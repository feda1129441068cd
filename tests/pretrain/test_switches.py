"""The GPU switches (bf16 autocast, channels_last_3d, torch.compile) run on the CPU.

``run.switches_on_cpu = true`` applies them without CUDA, so each has executed in a test
before a GPU is there: a few steps of S3D and AMAES with each one.  ``torch.compile`` uses
the ``aot_eager`` backend here (dynamo's graph capture and AOTAutograd, which trace our
custom masked-norm autograd function, without inductor's C++ code generation, which took
407 s for the tiny model's first step on this 2-core machine).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pretrain.config import load_config_text, override
from pretrain.intensity import AMAES, degrade
from pretrain.sparse import masked_instance_norm
from pretrain.train import make_model, train
from pretrain.distributed import DistInfo
from tests.pretrain.mae_synthetic import SyntheticBatches

SWITCHES = {"bf16": {"bf16": True, "channels_last": False, "compile": False},
            "channels_last": {"bf16": False, "channels_last": True, "compile": False},
            "compile": {"bf16": False, "channels_last": False, "compile": True}}


class ReversalBatches(SyntheticBatches):
    def make(self, i: int) -> dict[str, torch.Tensor]:
        batch = super().make(i)
        rng = np.random.default_rng(i)
        batch["target"] = batch["image"]
        batch["image"] = torch.stack([degrade(im[0], rng, AMAES)[0][None] for im in batch["image"]])
        return batch


def _config(method: str, switch: str, steps: int = 3):
    cfg = load_config_text(f'[method]\nname = "{method}"\n')
    return override(cfg, model={"name": "tiny"}, data={"patch_size": 16, "batch_size": 2},
                    masking={"block_size": None if method == "s3d" else 4},
                    optim={"max_steps": steps, "warmup_fraction": 0.0},
                    run={"device": "cpu", "progress": False, "log_every": 1, "switches_on_cpu": True,
                         **SWITCHES[switch]})


@pytest.fixture
def aot_eager(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))


@pytest.mark.parametrize("method", ["s3d", "amaes"])
@pytest.mark.parametrize("switch", ["bf16", "channels_last", pytest.param("compile", marks=pytest.mark.slow)])
def test_a_few_steps_run_with_each_switch_on_cpu(tmp_path: Path, method: str, switch: str, aot_eager,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _config(method, switch)
    source = (SyntheticBatches if method == "s3d" else ReversalBatches)(2, 2, 16)
    seen: list[torch.dtype] = []
    original_conv = torch.nn.Conv3d.forward

    def spy(self, x):  # what the convolutions see: bf16 under autocast
        out = original_conv(self, x)
        seen.append(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.Conv3d, "forward", spy)
    _, model = train(cfg, source, tmp_path)
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and all(np.isfinite(r["loss"]) and r["grad_norm"] > 0 for r in rows)
    if switch == "bf16":
        assert seen and all(d == torch.bfloat16 for d in seen)
    else:
        assert seen and all(d == torch.float32 for d in seen)
    if switch == "channels_last":
        weight = next(p for p in model.parameters() if p.ndim == 5 and p.shape[1] > 1)
        assert weight.is_contiguous(memory_format=torch.channels_last_3d)


@pytest.mark.slow
def test_compiled_model_computes_what_the_eager_one_does(aot_eager) -> None:
    cfg = _config("s3d", "compile")
    compiled = make_model(cfg, DistInfo(device=torch.device("cpu")))
    eager = make_model(override(cfg, run={"compile": False}), DistInfo(device=torch.device("cpu")))
    assert type(compiled).__name__ == "OptimizedModule"
    x = torch.randn(2, 1, 16, 16, 16)
    mask = torch.ones_like(x)
    mask[..., :8, :, :] = 0
    torch.testing.assert_close(compiled(x, mask), eager(x, mask), atol=1e-5, rtol=1e-4)


def test_switches_stay_off_on_cpu_unless_asked() -> None:
    cfg = override(_config("s3d", "channels_last"), run={"switches_on_cpu": False, "bf16": True})
    model = make_model(cfg, DistInfo(device=torch.device("cpu")))
    weight = next(p for p in model.parameters() if p.ndim == 5 and p.shape[1] > 1)
    assert weight.is_contiguous() and not weight.is_contiguous(memory_format=torch.channels_last_3d)
    from pretrain.train import autocast

    assert not isinstance(autocast(cfg, torch.device("cpu")), torch.autocast)


#: bf16 keeps 8 bits of mantissa: relative error ~2^-8 per rounding; the norm's statistics
#: and gradients are accumulated in float32 (pretrain.sparse), so the error stays at that level.
BF16_RTOL = 2e-2


def test_masked_norm_backward_under_bf16_matches_float32() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 8, 12, 12, 12, generator=g) * 3 + 1
    m = (torch.rand(2, 1, 12, 12, 12, generator=g) > 0.4).float()
    w = torch.rand(8, generator=g) + 0.5
    b = torch.randn(8, generator=g)
    upstream = torch.randn(2, 8, 12, 12, 12, generator=g)
    results = {}
    for dtype in (torch.float32, torch.bfloat16):
        xi, wi, bi = (t.clone().to(dtype).requires_grad_() for t in (x, w, b))
        y = masked_instance_norm(xi, m.to(dtype), wi, bi, 1e-5)
        assert y.dtype == dtype
        y.backward(upstream.to(dtype))
        results[dtype] = [t.float() for t in (y, xi.grad, wi.grad, bi.grad)]
    for name, ref, low in zip(("y", "dx", "dw", "db"), results[torch.float32], results[torch.bfloat16]):
        scale = float(ref.detach().abs().max())
        assert float((ref - low).detach().abs().max()) <= BF16_RTOL * scale, name
