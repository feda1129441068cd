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

from curate.config import ConfigError, CurateConfig, load_config
from curate.discover import SourceError
from curate.errors import OutputError
from curate.execution import RunOptions
from curate.terminal import for_rich, printable

# The report, summary and build pipeline are imported where they are used:
# ``curate index`` stays light to start (see curate/indexing.py).


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
    p_report = sub.add_parser("report", help="write OUTPUT/reports/index.html (dataset card, QC gallery)")
    p_report.add_argument("output", type=Path, help="output folder of a build")
    p_report.add_argument("--worst", type=int, metavar="N", help="show the N worst images by IQS")
    p_report.add_argument("--best", type=int, metavar="N", help="show the N best images by IQS")
    p_report.add_argument("--source", type=Path, help="SOURCE of the build (default: the one the build "
                          "recorded in OUTPUT), to draw thumbnails of "
                          "source images the build did not draw")
    p_report.add_argument("--workers", type=int, default=0,
                          help="processes for missing thumbnails (default: all cores)")
    p_report.add_argument("-q", "--quiet", action="store_true", help="no summary line")
    p_status = sub.add_parser("status", help="print the summary of a build's manifest")
    p_status.add_argument("output", type=Path, help="output folder of a build")
    return parser


def _options(args: argparse.Namespace) -> RunOptions:
    return RunOptions(
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
    if config.iqs.calibration:
        from qc.iqs import CalibrationError, load_calibration

        try:  # and so does a calibration file that is missing or malformed
            load_calibration(config.iqs.calibration)
        except CalibrationError as exc:
            raise ConfigError(str(exc)) from exc
    return config


def _report(args: argparse.Namespace) -> int:
    from curate.report import ReportError, make_report

    workers = args.workers if args.workers > 0 else RunOptions().n_workers
    try:
        result = make_report(args.output, worst=args.worst, best=args.best, source=args.source,
                             workers=workers)
    except ReportError as exc:
        print(f"curate: error: {printable(str(exc))}", file=sys.stderr)
        return 2
    if not args.quiet:
        note = f", {len(result.missing)} without thumbnail" if result.missing else ""
        print(f"wrote {printable(str(result.path))} ({result.n_images:,} images, {result.shown} in the gallery, "
              f"{result.rendered} thumbnails drawn{note}) in {result.seconds:.1f} s")
    return 0


def _status(args: argparse.Namespace) -> int:
    from qc.report.aggregate import READ_COLUMNS

    from curate import summary, timings
    from curate.report import REPORT_PAGE, ReportError, load_manifest, output_config

    try:
        table = load_manifest(args.output, READ_COLUMNS)
    except ReportError as exc:
        print(f"curate: error: {printable(str(exc))}", file=sys.stderr)
        return 2
    page = args.output / REPORT_PAGE
    note = f"report: {page}" if page.is_file() else f"no report yet: run `curate report {args.output}`"
    console = Console()
    summary.render_table(table, console, title=for_rich(args.output.name),
                         iqs_threshold=output_config(args.output).iqs.max_iqs, notes=[for_rich(note)])
    timing = timings.latest(args.output)
    if timing is not None and timing.num_rows:
        for rich_table in summary.timing_tables(timing.to_pandas()):
            console.print(rich_table)
    return 0


def _progress_bar(console: Console, quiet: bool, label: str, auto_refresh: bool = True) -> Progress:
    return Progress(f"[progress.description]{label}", BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=True, disable=quiet,
                    auto_refresh=auto_refresh)


def _print_warnings(warnings: list[str], limit: int = 10) -> None:
    """Collection-level warnings (skipped datasets, unlistable folders) on stderr, even with -q."""
    console = Console(stderr=True)
    for line in warnings[:limit]:
        console.print(f"[yellow]warning[/yellow]: {for_rich(line)}", highlight=False, soft_wrap=True)
    if len(warnings) > limit:
        console.print(f"... and {len(warnings) - limit} more warnings")


def _index(args: argparse.Namespace) -> int:
    from curate import indexing

    console = Console(stderr=True, quiet=args.quiet)
    # No refresh thread: the index forks its workers, which is only safe while
    # the process has a single thread (curate.execution); the bar is redrawn
    # as each batch completes instead.
    with _progress_bar(console, args.quiet, "indexing (batches)", auto_refresh=False) as bar:
        task = bar.add_task("index", total=None)
        result = indexing.index(args.source, args.output, _config(args), _options(args),
                                progress=lambda done, total: bar.update(task, completed=done, total=total,
                                                                        refresh=True))
    _print_warnings(result.warnings)
    if not args.quiet:
        from curate import summary, timings

        summary.render_table(result.table, Console())
    return 0


def _build(args: argparse.Namespace) -> int:
    from curate import pipeline, summary

    console = Console(stderr=True, quiet=args.quiet)
    config, options = _config(args), _options(args)
    with _progress_bar(console, args.quiet, "building") as bar:
        task = bar.add_task("build", total=None)
        result = pipeline.build(args.source, args.output, config, options,
                                progress=lambda done, total: bar.update(task, completed=done, total=total))
    console.print(f"processed {result.processed} images, reused {result.reused} unchanged")
    _print_warnings(result.warnings)
    if not args.quiet:
        summary.render(result.records, Console())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``curate``; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("distributed").setLevel(logging.WARNING)
    commands = {"index": _index, "build": _build, "report": _report,
                "status": _status}
    try:
        return commands[args.command](args)
    except (SourceError, ConfigError, OutputError) as exc:
        print(f"curate: error: {printable(str(exc))}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
