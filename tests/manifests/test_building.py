"""OUTPUT's build lock: held while a build runs, free when its process dies however it dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from manifests.building import LOCK_NAME, build_running, building

ROOT = Path(__file__).resolve().parents[2]


def test_a_killed_build_never_looks_as_if_it_still_ran(tmp_path: Path) -> None:
    code = ("import sys, time; from manifests.building import building\n"
            "with building(sys.argv[1]):\n    print('held', flush=True); time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert proc.stdout.readline().strip() == "held"
        assert build_running(tmp_path)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 10
        while build_running(tmp_path) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not build_running(tmp_path)
        assert (tmp_path / LOCK_NAME).exists()  # the file stays; only the lock is gone
    finally:
        proc.kill()


def test_asking_creates_nothing_and_a_second_holder_waits_its_turn(tmp_path: Path) -> None:
    assert not build_running(tmp_path / "missing") and not (tmp_path / "missing").exists()
    with building(tmp_path):
        assert build_running(tmp_path)
    with building(tmp_path):  # free again: a later build takes it at once
        assert build_running(tmp_path)
