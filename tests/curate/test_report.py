"""``curate report`` / ``curate status`` on a real (tiny) build, including a headless-browser check."""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from curate import pipeline
from curate.cli import main
from curate.config import CurateConfig
from curate.indexing import SOURCE_RECORD, recorded_source
from curate.report import ReportError, ensure_thumbnails, load_manifest, make_report
from curate.stages.thumbnails import thumbnail_path, thumbnail_style
from qc.report.aggregate import prepare
from qc.report.page import PageOptions, render_report
from qc.report.synthetic import synthetic_table

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]
BROKEN = "sub-03_T1w.nii.gz"


def _bids_source(root: Path, t1: nib.Nifti1Image) -> Path:
    """Three T1w images: MNI 1 mm, MNI at 2 mm in a session, and a truncated (corrupt) file."""
    src = root / "tinyds"
    for sub in ("sub-01/anat", "sub-02/ses-1/anat", "sub-03/anat"):
        (src / sub).mkdir(parents=True)
    (src / "dataset_description.json").write_text(json.dumps({"Name": "tiny", "BIDSVersion": "1.9.0"}))
    (src / "participants.tsv").write_text("participant_id\tage\tsex\nsub-01\t34\tF\nsub-02\t61\tM\n"
                                          "sub-03\t47\tF\n")
    nib.save(t1, src / "sub-01/anat/sub-01_T1w.nii.gz")
    affine = t1.affine.copy()
    affine[:3, :3] *= 2
    data = np.asarray(t1.dataobj)[::2, ::2, ::2] + np.float32(0.0)
    nib.save(nib.Nifti1Image(data, affine), src / "sub-02/ses-1/anat/sub-02_ses-1_T1w.nii.gz")
    whole = (src / "sub-01/anat/sub-01_T1w.nii.gz").read_bytes()
    (src / "sub-03/anat" / BROKEN).write_bytes(whole[: len(whole) // 2])
    return src


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, mni_t1: nib.Nifti1Image) -> tuple[Path, Path]:
    """(SOURCE, OUTPUT) of a finished build."""
    root = tmp_path_factory.mktemp("report_build")
    src = _bids_source(root, mni_t1)
    out = root / "out"
    result = pipeline.build(src, out, CurateConfig(), pipeline.RunOptions(workers=1))
    assert sorted(r.included for r in result.records) == [False, True, True]
    return src, out


@pytest.mark.slow
def test_build_draws_thumbnails_once_and_the_report_counts_the_build(built: tuple[Path, Path]) -> None:
    src, out = built
    ids = {r["image_id"]: r for r in load_manifest(out).to_pylist()}
    good = [i for i, r in ids.items() if r["included"]]
    thumbs = {i: thumbnail_path(out, i) for i in good}
    assert all(p.is_file() for p in thumbs.values())
    assert not any(thumbnail_path(out, i).exists() for i, r in ids.items() if not r["included"])
    stamps = {i: p.stat().st_mtime_ns for i, p in thumbs.items()}
    pipeline.build(src, out, CurateConfig(), pipeline.RunOptions(workers=1))
    # The stage's fingerprint is unchanged, so the rebuild leaves the pictures alone.
    assert {i: p.stat().st_mtime_ns for i, p in thumbs.items()} == stamps

    result = make_report(out)
    page = result.path.read_text()
    assert result.path == out / "reports/index.html" and result.rendered == 0 and not result.missing
    assert re.search(r'data-key="all indexed"><td>all indexed</td><td class="num" data-col="images">3<', page)
    assert re.search(r'data-key="included"><td>included</td><td class="num" data-col="images">2<', page)
    assert BROKEN in page and "unreadable" in page
    assert all(f'src="thumbs/{i}.png"' in page for i in good)


@pytest.mark.slow
def test_report_draws_missing_thumbnails_from_source(built: tuple[Path, Path]) -> None:
    src, out = built
    good = [r["image_id"] for r in load_manifest(out).to_pylist() if r["included"]]
    for image_id in good:
        thumbnail_path(out, image_id).unlink()
    record = out / SOURCE_RECORD
    assert recorded_source(out) == src.resolve()
    saved = record.read_bytes()
    record.unlink()  # as for a build made before SOURCE was recorded
    without = make_report(out)
    assert set(without.missing) == set(good) and "--source" in without.missing[good[0]]
    assert 'class="missing"' in without.path.read_text()
    drawn = make_report(out, source=src)
    assert drawn.rendered == len(good) and not drawn.missing
    assert all(thumbnail_path(out, i).is_file() for i in good)
    for image_id in good:
        thumbnail_path(out, image_id).unlink()
    record.write_bytes(saved)
    assert make_report(out).rendered == len(good)  # SOURCE found from the build's record


@pytest.mark.slow
def test_missing_thumbnails_are_drawn_in_parallel_processes(built: tuple[Path, Path]) -> None:
    src, out = built
    frame = prepare(load_manifest(out)).frame
    for image_id in frame["image_id"]:
        thumbnail_path(out, image_id).unlink(missing_ok=True)
    available, drawn, problems = ensure_thumbnails(out, frame, thumbnail_style(CurateConfig().report),
                                                   source=src, workers=2, parallel_from=1)
    good = set(frame.loc[frame["included"], "image_id"])
    assert available == good and drawn == 2
    assert set(problems) == set(frame["image_id"]) - good  # the corrupt file: a reason, no crash
    assert "EOFError" in next(iter(problems.values()))


def test_report_and_status_need_a_manifest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ReportError, match="no manifest"):
        make_report(tmp_path)
    for command in ("report", "status"):
        assert main([command, str(tmp_path)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("curate: error: no manifest in") and "\n" not in err
    assert main(["status", str(tmp_path / "absent")]) == 2


@pytest.mark.slow
def test_cli_report_and_status(built: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    src, out = built
    assert main(["report", str(out), "--worst", "1", "--best", "1", "--workers", "1",
                 "--source", str(src)]) == 0
    said = capsys.readouterr().out
    assert "wrote" in said and "3 images" in said
    assert main(["status", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "3 images, 2 included" in shown and "unreadable" in shown
    assert "report: " in shown and "index.html" in shown
    assert re.search(r"included\s*│\s*2\s*│\s*2\s*│\s*2\s*│\s*1", shown)


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HOME=str(profile))
    return subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120, env=env, check=False)


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="headless browser test needs Debian's `chromium` "
                    "package (apt-get install chromium); not installed here")
def test_report_in_headless_chromium(built: tuple[Path, Path], tmp_path: Path) -> None:
    src, out = built
    page = make_report(out, source=src).path
    url = page.resolve().as_uri()
    dom = _chromium(["--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000",
                     "--dump-dom", url], tmp_path / "profile-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    console = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console  # the page logs nothing unless something is wrong
    html = dom.stdout
    assert re.search(r'<body[^>]*data-ready="1"', html)
    assert not re.search(r"<html[^>]*data-errors", html)
    assert re.search(r'data-col="images">3</td>', html) and re.search(r'data-col="subjects">2</td>', html)
    body = re.search(r'<table id="excluded-table">.*?<tbody>(.*?)</tbody>', html, re.S).group(1)
    assert body.count("<tr>") == 1 and BROKEN in body and "unreadable" in body
    assert "rows 1–1 of 1 matching" in html
    assert html.count('class="thumb"') >= 2

    first = re.search(r'<img class="thumb" [^>]*data-image-id="([0-9a-f]+)"', html).group(1)
    linked = _chromium(["--enable-logging=stderr", "--v=0", "--dump-dom", f"{url}#view={first}"],
                       tmp_path / "profile-view")
    assert not [line for line in linked.stderr.splitlines() if ":CONSOLE" in line]
    lightbox = re.search(r'<div id="lightbox"[^>]*>', linked.stdout).group(0)
    assert 'class="open"' in lightbox and f'data-image-id="{first}"' in lightbox

    shot = tmp_path / "report.png"
    run = _chromium([f"--screenshot={shot}", "--window-size=1280,2000", url], tmp_path / "profile-shot")
    assert run.returncode == 0 and shot.is_file(), run.stderr[-2000:]
    pixels = np.asarray(Image.open(io.BytesIO(shot.read_bytes())).convert("L"), dtype=float)
    assert pixels.shape == (2000, 1280) and pixels.std() > 10


class DevTools:
    """A minimal Chrome DevTools Protocol client over tornado's websocket (a dask dependency)."""

    def __init__(self, ws: Any) -> None:
        self.ws, self.n, self.events = ws, 0, []

    async def _next(self) -> dict:
        message = await asyncio.wait_for(self.ws.read_message(), 30)
        assert message is not None, "browser closed the DevTools connection"
        return json.loads(message)

    async def call(self, method: str, **params: Any) -> dict:
        self.n += 1
        await self.ws.write_message(json.dumps({"id": self.n, "method": method, "params": params}))
        while (message := await self._next()).get("id") != self.n:
            self.events.append(message)
        assert "error" not in message, message
        return message["result"]

    async def open(self, url: str) -> None:
        self.events.clear()
        await self.call("Page.navigate", url=url)
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            self.events.append(await self._next())

    async def js(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def problems(self) -> list[dict]:
        """Console messages, uncaught exceptions and error log entries seen so far."""
        kinds = ("Runtime.consoleAPICalled", "Runtime.exceptionThrown")
        return [e for e in self.events if e.get("method") in kinds
                or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]


@contextmanager
def _devtools_browser(profile: Path) -> Iterator[str]:
    """Headless Chromium with remote debugging on a free local port; yields the page's websocket URL."""
    proc = subprocess.Popen([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                             "--remote-debugging-port=0", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=dict(os.environ, HOME=str(profile)))
    try:
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.is_file() and port_file.read_text().strip()):
            assert time.monotonic() < deadline and proc.poll() is None, "chromium did not start"
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30) as answer:
            pages = [t for t in json.load(answer) if t["type"] == "page"]
        yield pages[0]["webSocketDebuggerUrl"]
    finally:
        proc.terminate()
        proc.wait(30)


async def _interact(ws_url: str, table_page: str, gallery_page: str) -> dict[str, Any]:
    from tornado.websocket import websocket_connect

    tools = DevTools(await websocket_connect(ws_url))
    for domain in ("Page", "Runtime", "Log"):
        await tools.call(f"{domain}.enable")
    seen: dict[str, Any] = {}
    await tools.open(table_page)
    status = "document.getElementById('excluded-status').dataset.matching"
    first_file = "document.querySelector('#excluded-table tbody tr td:nth-child(2)').textContent"
    seen["total"] = await tools.js(status)
    await tools.js("(f => { f.value = 'unreadable'; f.dispatchEvent(new Event('change')); })"
                   "(document.getElementById('excluded-reason'))")
    seen["unreadable"] = await tools.js(status)
    await tools.js("(f => { f.value = ''; f.dispatchEvent(new Event('change')); })"
                   "(document.getElementById('excluded-reason'))")
    await tools.js("(f => { f.value = 'ds00001'; f.dispatchEvent(new Event('input')); })"
                   "(document.getElementById('excluded-filter'))")
    seen["filtered"] = await tools.js(status)
    seen["filtered_datasets"] = await tools.js(
        "[...document.querySelectorAll('#excluded-table tbody tr td:first-child')]"
        ".map(td => td.textContent)")
    await tools.js("document.querySelectorAll('#excluded-table th')[1].click()")
    await tools.js("document.querySelectorAll('#excluded-table th')[1].click()")
    seen["sort"] = await tools.js("document.querySelectorAll('#excluded-table th')[1].getAttribute('aria-sort')")
    seen["first_desc"] = await tools.js(first_file)
    seen["files"] = await tools.js("[...document.querySelectorAll('#excluded-table tbody tr td:nth-child(2)')]"
                                   ".map(td => td.textContent)")
    seen["table_problems"] = tools.problems()
    await tools.open(gallery_page)
    await tools.js("document.querySelector('img.thumb').click()")
    seen["lightbox_open"] = await tools.js("document.getElementById('lightbox').className")
    seen["thumbs_loaded"] = await tools.js("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    await tools.js("document.dispatchEvent(new KeyboardEvent('keydown', {key: 'Escape'}))")
    seen["lightbox_closed"] = await tools.js("document.getElementById('lightbox').className")
    seen["gallery_problems"] = tools.problems()
    tools.ws.close()
    return seen


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="headless browser test needs Debian's `chromium` "
                    "package (apt-get install chromium); not installed here")
def test_excluded_table_and_lightbox_respond_to_a_user(built: tuple[Path, Path], tmp_path: Path) -> None:
    src, out = built
    gallery_page = make_report(out, source=src).path.resolve().as_uri()
    table = synthetic_table(600, seed=11, n_datasets=6, dwi_series=0)
    data = prepare(table)
    table_page = tmp_path / "index.html"
    table_page.write_text(render_report(table, available=set(), options=PageOptions(max_table_rows=10_000)))
    with _devtools_browser(tmp_path / "profile") as ws_url:
        seen = asyncio.run(_interact(ws_url, table_page.as_uri(), gallery_page))
    excluded = data.frame[~data.frame["included"]]
    assert seen["total"] == str(len(excluded))
    assert seen["unreadable"] == str(int(data.reason_counts["unreadable"]))
    assert seen["filtered"] == str(int((excluded["dataset"] == "ds00001").sum()))
    assert set(seen["filtered_datasets"]) == {"ds00001"}
    assert seen["sort"] == "descending"
    assert seen["files"] == sorted(seen["files"], key=_natural, reverse=True)
    assert seen["table_problems"] == [] and seen["gallery_problems"] == []
    assert seen["lightbox_open"] == "open" and seen["lightbox_closed"] == ""
    assert seen["thumbs_loaded"] is True


def _natural(text: str) -> list[Any]:
    """Sort key that orders digit runs by value, like the page's ``localeCompare(numeric)``."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]
