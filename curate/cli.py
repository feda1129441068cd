"""``curate`` command line: a thin shell over :mod:`curate.pipeline`."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from manifests.schema import SourceKind

from curate import pipeline, summary
from curate.config import ConfigError, CurateConfig, load_config
from curate.discover import SourceError


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, help="BIDS root (or folder of BIDS datasets), "
                        "DICOM tree or folder of NIfTI files")
    parser.add_argument("output", type=Path, help="output folder (manifests, derivatives, ...)")
    parser.add_argument("--workers", type=int, default=0, help="local worker processes (default: all cores)")
    parser.add_argument("--scheduler", help="address of a running dask.distributed scheduler")
    parser.add_argument("--participant-label", nargs="+", default=[], metavar="LABEL",
                        help="only these participants ('sub-' prefix optional)")
    parser.add_argument("--config", type=Path, help="TOML config file")
    parser.add_argument("--source-kind", choices=[k.value for k in SourceKind],
                        help="override source-kind detection")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for ``curate``."""
    parser = argparse.ArgumentParser(prog="curate", description="Curate raw brain MRI for pre-training.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_index = sub.add_parser("index", help="header-only manifest of every image")
    _common(p_index)
    p_build = sub.add_parser("build", help="index plus every processing stage (resumes)")
    _common(p_build)
    p_build.add_argument("--max-iqs", type=float, help="exclude images with IQS above this")
    p_build.add_argument("--iqs-ratings", type=Path, metavar="CSV",
                         help="human IQS ratings (image_id,rating or dataset,modality,rating) "
                              "that take precedence over the automatic score")
    return parser


def _options(args: argparse.Namespace) -> pipeline.RunOptions:
    return pipeline.RunOptions(
        workers=args.workers, scheduler=args.scheduler,
        participant_labels=tuple(args.participant_label),
        source_kind=SourceKind(args.source_kind) if args.source_kind else None,
    )


def _config(args: argparse.Namespace) -> CurateConfig:
    config = load_config(args.config)
    if getattr(args, "max_iqs", None) is not None:
        config = dataclasses.replace(config, iqs=dataclasses.replace(config.iqs, max_iqs=args.max_iqs))
    if getattr(args, "iqs_ratings", None) is not None:
        config = dataclasses.replace(config, iqs=dataclasses.replace(config.iqs, ratings=str(args.iqs_ratings)))
    if config.iqs.ratings:
        from curate.finalize import load_ratings

        load_ratings(config.iqs.ratings)  # a bad CSV stops here, before any image is processed
    return config


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``curate``; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    console = Console(stderr=True, quiet=args.quiet)
    try:
        config = _config(args)
        options = _options(args)
        if args.command == "index":
            records = pipeline.index(args.source, args.output, config, options)
        else:
            with Progress("[progress.description]{task.description}", BarColumn(),
                          MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                          transient=True, disable=args.quiet) as bar:
                task = bar.add_task("building", total=None)
                result = pipeline.build(args.source, args.output, config, options,
                                        progress=lambda done, total: bar.update(task, completed=done, total=total))
            records = result.records
            console.print(f"processed {result.processed} images, reused {result.reused} unchanged")
    except (SourceError, ConfigError) as exc:
        print(f"curate: error: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        summary.render(records, Console())
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
