"""The ``pretrain`` command: a thin shell over :mod:`pretrain.train` and :mod:`pretrain.export`.

::

    pretrain OUTPUT --run-dir RUN [--config FILE] [--method s3d|mae|amaes] [--max-steps N]
             [--patch-size P] [--batch-size B] [--model resenc-l|tiny]
             [--device auto|cpu|cuda] [--resume] [--follow]
             [--modality M ...] [--dataset D ...] [--exclude-dataset D ...]
             [--exclude-anonymization A ...] [--max-iqs X] [--max-iqs-for M=X ...]
             [--keep-unscored] [--balance image|subject|dataset] [--balance-alpha A]
    torchrun --nproc-per-node K -m pretrain.cli OUTPUT --run-dir RUN ...   # DDP
    pretrain export RUN --out weights.pth [--with-decoder]
    pretrain export RUN --format nnssl --out DIR   # DIR/checkpoint_final.pth for nnssl's nnU-Net fork
    pretrain bench-loader ...      # forwarded to pretrain.bench_loader.main
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from pretrain.config import (
    ANONYMIZATION_NAMES,
    BALANCE,
    METHODS,
    MODEL_NAMES,
    ConfigError,
    PretrainConfig,
    PretrainError,
    load_config,
    override,
)

SUBCOMMANDS = ("export", "bench-loader")


def _train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pretrain",
        description="S3D masked-autoencoder pre-training on a `curate build` output. "
                    f"Other commands: {', '.join(SUBCOMMANDS)} (see `pretrain export -h`).")
    p.add_argument("output", type=Path, metavar="OUTPUT", help="a `curate build` output directory")
    p.add_argument("--run-dir", type=Path, required=True, metavar="RUN",
                   help="where config, metrics and checkpoints go")
    p.add_argument("--config", type=Path, help="TOML config (default: papers' settings, or "
                   "RUN/config.toml with --resume)")
    p.add_argument("--max-steps", type=int, help="total optimizer steps (poly schedule length)")
    p.add_argument("--patch-size", type=int, help="cubic patch edge in voxels")
    p.add_argument("--batch-size", type=int, help="batch size per process")
    p.add_argument("--workers", type=int, help="data-loading worker processes per rank")
    p.add_argument("--model", choices=MODEL_NAMES, help="network (tiny: CPU smoke runs)")
    p.add_argument("--method", choices=METHODS, help="pre-training method preset (default s3d; "
                   "the config file's values override the preset)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument("--resume", action="store_true", help="continue RUN from its last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--follow", action="store_true", default=None,
                   help="train on a build that is still running: wait for its first arrays, "
                        "take in new rows at every pass, stop following when it has finished")
    _selection_flags(p.add_argument_group("selection ([data] in the config; lists repeat the flag)"))
    return p


def _selection_flags(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--modality", action="append", dest="modalities", metavar="M",
                   help="use only this modality (e.g. T1w)")
    g.add_argument("--dataset", action="append", dest="datasets", metavar="D", help="use only this dataset")
    g.add_argument("--exclude-dataset", action="append", dest="exclude_datasets", metavar="D",
                   help="leave this dataset out")
    g.add_argument("--exclude-anonymization", action="append", choices=ANONYMIZATION_NAMES,
                   help="leave out images with this anonymization (e.g. skull_stripped)")
    g.add_argument("--max-iqs", type=float, help="use only images with IQS <= X")
    g.add_argument("--max-iqs-for", action="append", type=_modality_limit, metavar="M=X",
                   help="IQS limit for one modality instead of --max-iqs (e.g. FA=3.5)")
    g.add_argument("--keep-unscored", action="store_true", default=None,
                   help="keep images without an IQS when a limit is set")
    g.add_argument("--balance", choices=BALANCE, help="what each epoch samples evenly")
    g.add_argument("--balance-alpha", type=float, metavar="A",
                   help="group weight = size ** A (0: groups equally, 1: by images)")


def _modality_limit(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        if not sep:
            raise ValueError
        return name.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MODALITY=LIMIT, got {text!r}") from None


def _export_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pretrain export",
                                description="Write pre-trained weights for nnU-Net's ResEnc U-Net.")
    p.add_argument("run", type=Path, metavar="RUN", help="a pre-training run directory")
    p.add_argument("--out", type=Path, required=True, help="weights file to write (.pth)")
    p.add_argument("--with-decoder", action="store_true",
                   help="also export decoder weights (needed by nnU-Net's -pretrained_weights)")
    p.add_argument("--format", choices=("plain", "nnssl"), default="plain",
                   help="plain: a weights file for stock nnU-Net; nnssl: OUT is a directory that gets "
                        "checkpoint_final.pth + adaptation_plan.json for nnssl's nnU-Net fine-tuning")
    return p


def build_config(args: argparse.Namespace) -> PretrainConfig:
    """The run's config: file (or the run's own on resume), then command-line overrides."""
    path = args.config
    if path is None and args.resume and (args.run_dir / "config.toml").is_file():
        path = args.run_dir / "config.toml"
    cfg = load_config(path, method=args.method)
    return override(
        cfg,
        model={"name": args.model},
        data={"patch_size": args.patch_size, "batch_size": args.batch_size,
              "workers": args.workers, "max_iqs": args.max_iqs, "follow": args.follow,
              **{k: tuple(v) if v is not None else None for k, v in (
                  ("modalities", args.modalities), ("datasets", args.datasets),
                  ("exclude_datasets", args.exclude_datasets),
                  ("exclude_anonymization", args.exclude_anonymization))},
              "max_iqs_by_modality": dict(args.max_iqs_for) if args.max_iqs_for else None,
              "keep_unscored": args.keep_unscored, "balance": args.balance,
              "balance_alpha": args.balance_alpha},
        optim={"max_steps": args.max_steps},
        run={"device": args.device, "progress": False if args.no_progress else None},
    )


def _optional_module(name: str, what: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name:
            raise
        raise PretrainError(f"{name} is not available in this installation; {what}") from exc


def make_source(cfg: PretrainConfig, output: Path, rank: int, world_size: int,
                poll_s: float = 10.0):  # noqa: ANN201
    """This rank's batch stream from :func:`pretrain.data.make_loader`.

    With ``data.follow`` it waits (:func:`pretrain.selection.wait_for_images`) for a
    running build's first arrays; the selection's counts are printed (main rank).
    """
    from pretrain.selection import describe, wait_for_images

    data = _optional_module("pretrain.data", "the array loader is needed to pre-train")
    workers = loader_workers(cfg.data.workers)

    def make():  # noqa: ANN202
        return data.make_loader(
            output, patch_size=cfg.data.patch_size, batch_size=cfg.data.batch_size,
            workers=workers, selection=cfg.data.selection(), split="train",
            val_fraction=cfg.data.val_fraction, seed=cfg.run.seed, augment=cfg.data.augment,
            rank=rank, world_size=world_size, follow=cfg.data.follow, balance=cfg.data.balance,
            balance_alpha=cfg.data.balance_alpha, spatial=cfg.augment.spatial,
            intensity=cfg.augment.intensity, scale=cfg.augment.scale)

    def has_images(loader) -> bool:  # noqa: ANN001
        entries = getattr(getattr(loader, "dataset", None), "entries", None)  # None: not an array loader
        return entries is None or bool(entries)

    loader = wait_for_images(output, make, has_images, poll_s) if cfg.data.follow else make()
    if rank == 0:
        print(f"pretrain: {describe(output, cfg.data)}", file=sys.stderr)
    if not has_images(loader):
        raise PretrainError(f"no images to pre-train on in {output}: {_selection_counts(output, cfg)}")
    return loader


def loader_workers(configured: int) -> int:
    """``configured`` loader workers, at most the CPU cores this process may use per local rank.

    More worker processes than cores only oversubscribe the CPU (torch warns
    about it too); one worker feeds a GPU here (README, loader table).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    per_rank = max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    if configured > per_rank:
        print(f"pretrain: {configured} loader workers asked for, {per_rank} CPU core(s) per rank: "
              f"using {per_rank}", file=sys.stderr)
        return per_rank
    return configured


def _selection_counts(output: Path, cfg: PretrainConfig) -> str:
    """What the manifest holds against what the loader needs, for the empty-selection error."""
    import manifests

    try:
        table = manifests.read_table(output / "manifests")
    except (OSError, ValueError) as exc:
        return f"its manifest cannot be read ({exc})"
    included = manifests.apply(table, manifests.Selection(included=True))
    with_arrays = manifests.apply(included, manifests.Selection(require_array=True))
    note = f"{table.num_rows} manifest rows, {included.num_rows} included, {with_arrays.num_rows} with arrays"
    if cfg.data.max_iqs is not None:
        note += f", --max-iqs {cfg.data.max_iqs}"
    return note + " (the arrays are made by `curate build`; the train split leaves out a few subjects)"


def run_train(argv: Sequence[str]) -> int:
    """``pretrain OUTPUT --run-dir RUN ...``."""
    from pretrain.distributed import init_distributed, shutdown
    from pretrain.train import train

    args = _train_parser().parse_args(argv)
    cfg = build_config(args)
    if not args.output.is_dir() and not cfg.data.follow:
        raise FileNotFoundError(f"OUTPUT {args.output} is not a directory (a `curate build` output)")
    info = init_distributed(cfg.run.device)
    try:
        source = make_source(cfg, args.output, info.rank, info.world_size)
        position, _ = train(cfg, source, args.run_dir, info, resume=args.resume)
    finally:
        shutdown(info)
    if info.is_main:
        print(f"pretrain: stopped at step {position.step}; checkpoint in "
              f"{args.run_dir / 'checkpoints' / 'last.pt'}")
    return 0


def run_export(argv: Sequence[str]) -> int:
    """``pretrain export RUN --out weights.pth [--with-decoder]``."""
    from pretrain.export import export_run

    args = _export_parser().parse_args(argv)
    if args.format == "nnssl":
        return _export_nnssl(args)
    payload = export_run(args.run, args.out, with_decoder=args.with_decoder)
    n = sum(v.numel() for v in payload["state_dict"].values())
    print(f"pretrain export: {len(payload['state_dict'])} tensors ({n:,} values, step "
          f"{payload['pretrain']['step']}) -> {args.out}")
    return 0


def _export_nnssl(args: argparse.Namespace) -> int:
    from pretrain.export import NNSSL_CHECKPOINT, export_nnssl

    if args.out.suffix in (".pth", ".pt"):
        raise ValueError(f"--format nnssl writes a directory ({NNSSL_CHECKPOINT} + adaptation_plan.json); "
                         f"got the file name {args.out}")
    payload = export_nnssl(args.run, args.out)
    weights = payload["network_weights"]
    print(f"pretrain export: {len(weights)} tensors ({sum(v.numel() for v in weights.values()):,} values, "
          f"step {payload['mri_curate']['step']}) -> {args.out / NNSSL_CHECKPOINT} (nnssl layout)")
    return 0


def run_bench_loader(argv: Sequence[str]) -> int:
    """``pretrain bench-loader ...``: forwarded to :func:`pretrain.bench_loader.main`."""
    bench = _optional_module("pretrain.bench_loader", "the loader benchmark ships with the loader")
    return int(bench.main(list(argv)))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pretrain`` console script; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = {"export": run_export, "bench-loader": run_bench_loader}.get(argv[0] if argv else "")
    try:
        if command is not None:
            return command(argv[1:])
        return run_train(argv)
    except (ConfigError, PretrainError, FileNotFoundError, FileExistsError, ValueError) as exc:
        print(f"pretrain: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
