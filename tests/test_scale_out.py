"""Several server processes share simulations through Redis (channels_redis)."""

from __future__ import annotations

import json
import sqlite3
import urllib.request
import weakref
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import redis
from websockets.sync.client import connect

from tests.conftest import run_daphne
from tests.web_helpers import FrameFollower

REDIS_DB = 14  # a database of its own, flushed before and after


def post(url: str, doc: Any, token: str | None = None) -> dict[str, Any]:
    req = urllib.request.Request(
        url,
        data=json.dumps(doc).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=10) as r:
        return dict(json.load(r))


def frames(ws: Any, *, until: Any, limit: int = 200) -> dict[str, Any]:
    """Frames as a client that follows the protocol sees them (deltas made whole frames)."""
    follow = _followers.setdefault(ws, FrameFollower())
    for _ in range(limit):
        m = follow.take(json.loads(ws.recv(timeout=10)))
        if m is None:
            ws.send(json.dumps({"type": "resync"}))
            continue
        if m.get("type") == "frame":
            if not m.get("full"):
                ws.send(json.dumps({"type": "ack", "seq": m["seq"]}))
            if until(m):
                return dict(m)
    raise AssertionError("no matching frame")


_followers: weakref.WeakKeyDictionary[Any, FrameFollower] = weakref.WeakKeyDictionary()


@pytest.fixture
def two_servers(redis_url: str, tmp_path: Path, artifacts_dir: Path) -> Iterator[list[str]]:
    url = redis_url.rsplit("/", 1)[0] + f"/{REDIS_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    env = {"REDIS_URL": url}
    db = tmp_path / "shared.sqlite3"
    try:
        with ExitStack() as stack:
            a = stack.enter_context(
                run_daphne(db_path=db, log_path=artifacts_dir / "daphne-a.log", env=env)
            )
            b = stack.enter_context(
                run_daphne(db_path=db, log_path=artifacts_dir / "daphne-b.log", env=env)
            )
            yield [a, b]
    finally:
        client.flushdb()


def test_a_viewer_on_process_b_watches_and_controls_the_run_process_a_owns(
    two_servers: list[str], tmp_path: Path
) -> None:
    a, b = two_servers
    scenario = {
        "topics": [{"name": "orders", "partitions": 2}],
        "producers": [
            {
                "name": "checkout",
                "topic": "orders",
                "event": "OrderPlaced",
                "rate": 40,
                "arrival": "constant",
            }
        ],
        "consumers": [
            {
                "name": "email",
                "topics": ["orders"],
                "processing": {"dist": "constant", "mean_ms": 5},
            }
        ],
    }
    created = post(f"{a}/api/simulations", scenario)  # its runner lives in process A
    sim_id, token = created["id"], created["control_token"]
    ws_path = f"/ws/simulations/{sim_id}/"
    with (
        connect(b.replace("http", "ws") + ws_path, origin=b) as on_b,
        connect(a.replace("http", "ws") + ws_path, origin=a) as on_a,
    ):
        first = frames(on_b, until=lambda m: m.get("full"))
        assert first["state"]["id"] == sim_id and first["state"]["t"] == 0
        # a command sent to process B reaches the runner in process A ...
        reply = post(
            f"{b}/api/simulations/{sim_id}/commands", {"command": "step", "value": 2}, token
        )
        assert reply["state"]["t"] == 2.0
        post(
            f"{b}/api/simulations/{sim_id}/commands",
            {"command": "consumer.down", "consumer": "email"},
            token,
        )
        post(f"{b}/api/simulations/{sim_id}/commands", {"command": "step", "value": 1}, token)
        # ... and viewers on both processes see the same frames from it
        seen_b = frames(on_b, until=lambda m: m["t"] >= 3.0)
        seen_a = frames(on_a, until=lambda m: m["t"] >= 3.0)
        for seen in (seen_a, seen_b):
            g = seen["state"]["groups"]["email"]
            assert (g["status"], g["lag"]) == ("down", 40)
            assert seen["state"]["producers"]["checkout"]["produced"] == 120
    with urllib.request.urlopen(f"{b}/api/simulations/{sim_id}", timeout=10) as r:
        assert json.load(r)["t"] == 3.0
    # both processes served it and one runner ran it: its lease was claimed once, in all
    with sqlite3.connect(tmp_path / "shared.sqlite3") as db:
        (epoch,) = db.execute(
            "SELECT runner_epoch FROM dashboard_simulationrecord WHERE id = ?", (sim_id,)
        ).fetchone()
    assert epoch == 1


def browser_session(base: str, path: str) -> tuple[Any, str]:
    """An HTTP client with a cookie jar that opened ``path`` (its session and CSRF cookies),
    and the CSRF token of the page's forms."""
    import http.cookiejar
    import re

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    with opener.open(base + path, timeout=10) as r:
        html = r.read().decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    return opener, token.group(1) if token else ""


def cookie_header(opener: Any) -> str:
    jar = next(h for h in opener.handlers if hasattr(h, "cookiejar")).cookiejar
    return "; ".join(f"{c.name}={c.value}" for c in jar)


def test_a_student_on_process_b_answers_the_question_the_teacher_asks_on_process_a(
    two_servers: list[str],
) -> None:
    import urllib.parse

    a, b = two_servers
    teacher, token = browser_session(a, "/lessons/temporal-decoupling/")
    form = urllib.parse.urlencode(
        {"csrfmiddlewaretoken": token, "preset": "lesson-outage", "lesson": "temporal-decoupling"}
    ).encode()
    with teacher.open(f"{a}/compare/", data=form, timeout=30) as r:
        sim_path = urllib.parse.urlparse(r.geturl()).path  # followed the redirect to its page
    assert sim_path.startswith("/simulations/")
    ws_path = "/ws" + sim_path
    student, _ = browser_session(b, sim_path)  # the student opens the shared link on B
    with (
        connect(
            a.replace("http", "ws") + ws_path,
            origin=a,
            additional_headers={"Cookie": cookie_header(teacher)},
        ) as on_a,
        connect(
            b.replace("http", "ws") + ws_path,
            origin=b,
            additional_headers={"Cookie": cookie_header(student)},
        ) as on_b,
    ):
        frames(on_a, until=lambda m: m.get("full"))
        frames(on_b, until=lambda m: m.get("full"))
        on_a.send(json.dumps({"command": "step", "value": 30}))
        frames(on_b, until=lambda m: m["state"].get("guide", {}).get("phase") == "asking")
        on_b.send(json.dumps({"type": "vote", "choice": "unchanged"}))
        for _ in range(100):
            m = json.loads(on_b.recv(timeout=10))
            if m.get("type") in ("vote", "error"):
                break
        assert m == {"type": "vote", "choice": "unchanged"}
        seen = frames(on_a, until=lambda m: m["state"]["guide"]["votes"] == 1)
        assert seen["state"]["guide"]["tally"]["unchanged"] == 1
