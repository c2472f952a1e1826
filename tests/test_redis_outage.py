"""Redis restarting under two server processes: clear errors meanwhile, one runner after.

A Redis server of the test's own (on a free port) is stopped mid-run and started again, so the
machine's shared Redis is never touched.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from tests.conftest import free_port, in_ci, run_daphne
from tests.test_scale_out import post
from tests.web_helpers import FrameFollower

pytestmark = pytest.mark.slow

SCENARIO = {
    "duration": 3600,
    "topics": [{"name": "orders", "partitions": 2}],
    "producers": [{"name": "checkout", "topic": "orders", "event": "OrderPlaced", "rate": 40}],
    "consumers": [{"name": "email", "topics": ["orders"]}],
}


@contextmanager
def redis_server(port: int) -> Iterator[subprocess.Popen[bytes]]:
    binary = shutil.which("redis-server")
    if binary is None:
        if in_ci():
            pytest.fail("redis-server is not installed")
        pytest.skip("redis-server is not installed")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, dict(json.load(r))
    except urllib.error.HTTPError as e:
        return e.code, dict(json.load(e))


def test_a_redis_restart_gives_clear_errors_and_then_one_runner_again(
    tmp_path: Path, artifacts_dir: Path
) -> None:
    port = free_port()
    env = {"REDIS_URL": f"redis://127.0.0.1:{port}/0"}
    db = tmp_path / "shared.sqlite3"
    with ExitStack() as stack:
        first = stack.enter_context(redis_server(port))
        a = stack.enter_context(
            run_daphne(db_path=db, log_path=artifacts_dir / "daphne-outage-a.log", env=env)
        )
        b = stack.enter_context(
            run_daphne(db_path=db, log_path=artifacts_dir / "daphne-outage-b.log", env=env)
        )
        created = post(f"{a}/api/simulations", SCENARIO)
        sim_id, token = created["id"], created["control_token"]
        post(f"{a}/api/simulations/{sim_id}/commands", {"command": "start"}, token)
        assert get(f"{b}/api/simulations/{sim_id}")[0] == 200

        first.terminate()  # Redis goes away
        first.wait(timeout=10)
        for server in (a, b):
            status, body = get(f"{server}/api/simulations/{sim_id}")
            assert status == 503, body  # not a 500: a sentence, and the run goes on
            assert "did not answer" in body["error"]

        stack.enter_context(redis_server(port))  # and comes back, empty
        deadline = time.monotonic() + 30
        status = 0
        while time.monotonic() < deadline and status != 200:
            status, state = get(f"{b}/api/simulations/{sim_id}")
            time.sleep(0.5)
        assert status == 200, "the run never answered again after Redis came back"
        assert state["running"] is True

        # one runner: a viewer sees one epoch's frames, in order, never two runners interleaved
        with connect(b.replace("http", "ws") + f"/ws/simulations/{sim_id}/", origin=b) as ws:
            seen: list[tuple[int, int]] = []
            follow = FrameFollower()  # deltas made whole frames (docs/api.md, "Deltas")
            while len(seen) < 30:
                m = follow.take(json.loads(ws.recv(timeout=10)))
                if m is None:
                    ws.send(json.dumps({"type": "resync"}))
                elif m.get("type") == "frame" and not m.get("full"):
                    seen.append((m["epoch"], m["seq"]))
                    ws.send(json.dumps({"type": "ack", "seq": m["seq"]}))
        assert len({epoch for epoch, _ in seen}) == 1
        seqs = [seq for _, seq in seen]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        # and commands reach it again
        reply = post(f"{b}/api/simulations/{sim_id}/commands", {"command": "pause"}, token)
        assert reply["state"]["running"] is False
