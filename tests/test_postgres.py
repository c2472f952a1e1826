"""With DATABASE_URL, server processes on different machines share one PostgreSQL store:
simulations, their runner leases and saved scenarios. Two daphne processes, each with its own
working directory and no SQLite file in common, share a fresh PostgreSQL database and Redis."""

from __future__ import annotations

import http.cookiejar
import json
import re
import secrets
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import redis
from websockets.sync.client import connect

from tests.conftest import run_daphne, skip_or_fail
from tests.test_scale_out import frames, post

PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"
REDIS_DB = 13  # a database of its own, flushed before and after


def _admin() -> Any:
    import psycopg

    try:
        return psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as e:
        skip_or_fail(f"No PostgreSQL answers at {PG_ADMIN} ({e})")


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test, dropped afterwards."""
    name = "fanout_it_" + secrets.token_hex(4)
    with _admin() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgres://postgres@127.0.0.1:5432/{name}"
    finally:
        with _admin() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def two_machines(
    postgres_url: str, redis_url: str, tmp_path: Path, artifacts_dir: Path
) -> Iterator[tuple[str, str, str]]:
    url = redis_url.rsplit("/", 1)[0] + f"/{REDIS_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    env = {"REDIS_URL": url, "DATABASE_URL": postgres_url}
    try:
        with ExitStack() as stack:
            a = stack.enter_context(
                run_daphne(
                    db_path=tmp_path / "a" / "unused.sqlite3",
                    log_path=artifacts_dir / "daphne-pg-a.log",
                    env=env,
                )
            )
            b = stack.enter_context(
                run_daphne(
                    db_path=tmp_path / "b" / "unused.sqlite3",
                    log_path=artifacts_dir / "daphne-pg-b.log",
                    env=env,
                )
            )
            yield a, b, postgres_url
    finally:
        client.flushdb()


def _one(db_url: str, sql: str, *args: Any) -> Any:
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(sql, args).fetchone()
        return row[0] if row else None


def test_two_machines_share_simulations_leases_and_saved_scenarios(
    two_machines: tuple[str, str, str], tmp_path: Path
) -> None:
    a, b, db_url = two_machines
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
    created = post(f"{a}/api/simulations", scenario)
    sim_id, token = created["id"], created["control_token"]
    # the simulation is a row in PostgreSQL, not in either machine's files
    assert not (tmp_path / "a" / "unused.sqlite3").exists()
    assert (
        _one(db_url, "SELECT count(*) FROM dashboard_simulationrecord WHERE id = %s", sim_id) == 1
    )

    ws_path = f"/ws/simulations/{sim_id}/"
    with connect(b.replace("http", "ws") + ws_path, origin=b) as on_b:
        frames(on_b, until=lambda m: m.get("full"))
        reply = post(
            f"{b}/api/simulations/{sim_id}/commands", {"command": "step", "value": 2}, token
        )
        assert reply["state"]["t"] == 2.0
        seen = frames(on_b, until=lambda m: m["t"] >= 2.0)
        assert seen["state"]["producers"]["checkout"]["produced"] == 80
    with urllib.request.urlopen(f"{b}/api/simulations/{sim_id}", timeout=10) as r:
        assert json.load(r)["t"] == 2.0
    # both machines served it, one runner ran it: the lease was claimed once, in all
    assert (
        _one(db_url, "SELECT runner_epoch FROM dashboard_simulationrecord WHERE id = %s", sim_id)
        == 1
    )

    # a scenario saved through machine A opens on machine B
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    opener.open(f"{a}/scenarios/", timeout=10).read()
    csrf = next(c.value for c in jar if c.name == "csrftoken")
    form = urllib.parse.urlencode({"csrfmiddlewaretoken": csrf, "preset": "ecommerce"}).encode()
    req = urllib.request.Request(f"{a}/scenarios/new", data=form, headers={"Referer": a + "/"})
    with opener.open(req, timeout=10) as r:
        editor_url = r.geturl()
    match = re.search(r"/scenarios/([^/]+)/$", editor_url)
    assert match, editor_url
    with urllib.request.urlopen(f"{b}/scenarios/{match.group(1)}/", timeout=10) as r:
        assert "E-commerce order flow" in r.read().decode()
