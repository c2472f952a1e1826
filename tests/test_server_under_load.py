"""The server a class uses, under the heaviest run it allows: it keeps answering, and stops."""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_daphne
from tests.test_bounded_server import HEAVY


def post(url: str, body: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers)
    with urllib.request.urlopen(req, timeout=10) as r:
        return dict(json.load(r))


@pytest.mark.slow
def test_the_heaviest_run_at_x100_leaves_the_server_answering_and_stoppable(
    tmp_path: Path, artifacts_dir: Path
) -> None:
    log = artifacts_dir / "daphne-heavy.log"
    with run_daphne(db_path=tmp_path / "heavy.sqlite3", log_path=log) as url:
        created = post(f"{url}/api/simulations", HEAVY)
        for cmd in ({"command": "speed", "value": 100}, {"command": "start"}):
            post(f"{url}/api/simulations/{created['id']}/commands", cmd, created["control_token"])
        time.sleep(1.0)
        worst = 0.0
        for _ in range(20):  # what everyone else on the server feels
            t0 = time.perf_counter()
            with urllib.request.urlopen(f"{url}/api/simulations/{created['id']}", timeout=15) as r:
                state = json.load(r)
            worst = max(worst, time.perf_counter() - t0)
            time.sleep(0.1)
        assert state["behind"] is True and state["t"] > 0  # the run is behind, and says so
        assert worst < 1.0, f"a request waited {worst:.2f} s"
        # and SIGTERM stops it (before the fix the loop never got to the signal)
        pid = next(
            int(p.name)
            for p in Path("/proc").iterdir()
            if p.name.isdigit()
            and b"daphne" in (p / "cmdline").read_bytes()
            and url.rsplit(":", 1)[1].encode() in (p / "cmdline").read_bytes()
        )
        t0 = time.perf_counter()
        os.kill(pid, signal.SIGTERM)
        while time.perf_counter() - t0 < 10:
            try:
                if "State:\tZ" in Path(f"/proc/{pid}/status").read_text():
                    break  # exited (a zombie until run_daphne reaps it)
            except FileNotFoundError:
                break
            time.sleep(0.05)
        stopped_in = time.perf_counter() - t0
    print(f"worst request {worst * 1000:.0f} ms; SIGTERM to exit {stopped_in:.2f} s")
    assert stopped_in < 10
