"""Hostile or broken input is refused with a clear message: a deployment without its static
files, bad settings, scenario files that are huge, deep or out of range, preset names that try
to leave the presets directory, and WebSockets from another origin (port included)."""

from __future__ import annotations

import io
import os
import resource
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from pytest_django import Settings

from dashboard.asgi import application
from dashboard.origin import origin_allowed
from simulator.cli import PRESETS, main
from simulator.scenario import MAX_TEXT
from tests.web_helpers import create, stop_all_runners

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION_ENV = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
    "DJANGO_ALLOWED_HOSTS": "example.com",
}
VALID_SCENARIO = """\
duration: 5
topics: [{name: orders}]
producers: [{name: checkout, topic: orders, event: OrderPlaced, rate: 10}]
consumers:
  - {name: email, topics: [orders], processing: {dist: constant, mean_ms: 5}}
"""


def clean_env(env: dict[str, str]) -> dict[str, str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "REDIS_"))}
    return {**full, **env}


def run(
    *args: str, env: dict[str, str] | None = None, memory_limit: int | None = None
) -> subprocess.CompletedProcess[str]:
    def limit() -> None:
        if memory_limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=clean_env(env or {}),
        capture_output=True,
        text=True,
        timeout=30,
        preexec_fn=limit,
    )


def run_cli(*args: str, memory_limit: int | None = None) -> subprocess.CompletedProcess[str]:
    return run("-m", "simulator", *args, memory_limit=memory_limit)


def assert_refused(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit 2, nothing on stdout, and an error message on stderr, never a traceback: one
    ``error:`` line, then (for a scenario's own problems) the problems, indented."""
    assert (proc.returncode, proc.stdout) == (2, ""), proc.stderr
    assert "Traceback" not in proc.stderr
    first, *rest = proc.stderr.rstrip("\n").split("\n")
    assert first.startswith("error: "), proc.stderr
    assert all(line.startswith("  ") for line in rest), proc.stderr
    for word in words:
        assert word in proc.stderr


def assert_refused_in_one_line(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert_refused(proc, *words)
    assert proc.stderr.count("\n") == 1, proc.stderr


# --- production settings -------------------------------------------------------------------


def test_deploy_check_fails_until_collectstatic_has_written_the_manifest(tmp_path: Path) -> None:
    env = {**PRODUCTION_ENV, "DJANGO_STATIC_ROOT": str(tmp_path)}

    before = run("manage.py", "check", "--deploy", env=env)
    collected = run("manage.py", "collectstatic", "--noinput", env=env)
    after = run("manage.py", "check", "--deploy", "--fail-level", "WARNING", env=env)

    assert before.returncode != 0
    assert "fanout.E001" in before.stderr
    assert "run `python manage.py collectstatic --noinput`" in before.stderr
    assert collected.returncode == 0, collected.stderr
    assert (tmp_path / "staticfiles.json").is_file()
    assert after.returncode == 0, after.stdout + after.stderr
    assert "fanout.E001" not in after.stdout + after.stderr


@pytest.mark.parametrize("value", ["abc", "-5", "1e3", "99999999999"])
def test_a_bad_hsts_seconds_names_the_variable_and_its_range(value: str) -> None:
    proc = run(
        "-c", "import dashboard.settings", env={**PRODUCTION_ENV, "DJANGO_HSTS_SECONDS": value}
    )

    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("django.core.exceptions.ImproperlyConfigured: DJANGO_HSTS_SECONDS")
    assert "from 0 to 315360000" in last


def test_a_good_hsts_seconds_is_used() -> None:
    code = "import dashboard.settings as s; print(s.SECURE_HSTS_SECONDS)"
    proc = run("-c", code, env={**PRODUCTION_ENV, "DJANGO_HSTS_SECONDS": " 3600 "})

    assert (proc.returncode, proc.stdout.strip()) == (0, "3600"), proc.stderr


# --- the command line ----------------------------------------------------------------------


def test_cli_reads_at_most_the_size_limit_from_an_endless_file() -> None:
    # Reading /dev/zero to the end would fill memory: under a 512 MB cap that is a MemoryError.
    proc = run_cli("run", "/dev/zero", memory_limit=512 * 1024 * 1024)

    assert_refused_in_one_line(proc, "/dev/zero", f"{MAX_TEXT:,} bytes")


def test_cli_refuses_a_file_over_the_size_limit(tmp_path: Path) -> None:
    big = tmp_path / "big.yaml"
    big.write_text("#" * (MAX_TEXT + 1))
    out, err = io.StringIO(), io.StringIO()

    assert main(["run", str(big)], out=out, err=err) == 2
    assert err.getvalue() == f"error: {big}: the file is larger than the limit of 1,000,000 bytes\n"


def test_cli_refuses_a_directory_in_one_line(tmp_path: Path) -> None:
    assert_refused_in_one_line(run_cli("run", str(tmp_path)), "is a directory")


@pytest.mark.parametrize(
    ("name", "text"),
    [("deep.json", "[" * 100_000), ("deep.yaml", "a: " + "[" * 100_000)],
)
def test_cli_refuses_a_deeply_nested_document_without_a_traceback(
    tmp_path: Path, name: str, text: str
) -> None:
    path = tmp_path / name
    path.write_text(text)

    assert_refused(run_cli("run", str(path)), str(path))


@pytest.mark.parametrize(
    "fault",
    [
        "{at: 1, consumer: email, action: instances, value: 100000000}",
        "{at: 1, consumer: email, action: slow, value: 1.0e+308}",
    ],
)
def test_cli_refuses_an_out_of_range_fault_without_a_traceback(tmp_path: Path, fault: str) -> None:
    path = tmp_path / "fault.yaml"
    path.write_text(VALID_SCENARIO + f"faults: [{fault}]\n")

    assert_refused(run_cli("run", str(path)), str(path), "must be a number between")


@pytest.mark.parametrize(
    "error",
    [
        ValueError("bad value"),
        RecursionError("maximum recursion depth exceeded"),
        OverflowError("int too large to convert to float"),
        MemoryError(),
        UnicodeDecodeError("utf-8", b"\xe9", 0, 1, "invalid continuation byte"),
    ],
)
@pytest.mark.parametrize("where", ["simulator.cli.parse_scenario", "simulator.cli.Simulation"])
def test_cli_turns_any_error_from_a_bad_input_into_exit_2_and_one_line(
    monkeypatch: pytest.MonkeyPatch, where: str, error: BaseException
) -> None:
    # Whatever the parser or the engine raises for a hostile input (today or after a change
    # to them), the command line says so in one line.
    def fail(*args: object, **kwargs: object) -> None:
        raise error

    monkeypatch.setattr(where, fail)
    out, err = io.StringIO(), io.StringIO()

    assert main(["run", "basic", "--until", "1"], out=out, err=err) == 2
    assert out.getvalue() == ""
    assert err.getvalue().startswith("error: basic: ") and err.getvalue().count("\n") == 1


def test_cli_refuses_a_non_utf8_file_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: caf\xe9\n")

    assert_refused_in_one_line(run_cli("run", str(path)), "not UTF-8")


def test_a_preset_name_cannot_leave_the_presets_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A scenario outside presets/, named relative to presets/ and without its suffix: the old
    # lookup joined the name to PRESETS and found it.
    (tmp_path / "outside.yaml").write_text(VALID_SCENARIO)
    name = os.path.relpath(tmp_path / "outside", PRESETS)
    monkeypatch.chdir(tmp_path / "..")
    out, err = io.StringIO(), io.StringIO()

    assert main(["run", name], out=out, err=err) == 2
    assert out.getvalue() == ""
    assert err.getvalue() == f"error: {name}: no such file\n"


def test_an_unknown_bare_name_lists_the_presets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    err = io.StringIO()

    assert main(["run", "no-such-preset"], out=io.StringIO(), err=err) == 2
    message = err.getvalue()
    assert message.startswith("error: no-such-preset: no scenario file or preset named")
    assert "basic, ecommerce," in message and message.count("\n") == 1


def test_a_bare_preset_name_and_an_explicit_file_path_still_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.yaml").write_text(VALID_SCENARIO)

    assert main(["run", "basic", "--until", "1"], out=io.StringIO(), err=io.StringIO()) == 0
    assert main(["run", "mine.yaml"], out=io.StringIO(), err=io.StringIO()) == 0


@pytest.mark.parametrize("seed", ["-1", str(2**63)])
def test_cli_refuses_a_seed_outside_0_to_2_63(seed: str) -> None:
    err = io.StringIO()

    assert main(["run", "basic", "--seed", seed, "--until", "1"], out=io.StringIO(), err=err) == 2
    assert err.getvalue().startswith("error: --seed must be between 0 and 9223372036854775807")


@pytest.mark.parametrize("until", ["nan", "inf", "1e999", "-1"])
def test_cli_refuses_an_until_that_is_not_a_finite_positive_time(until: str) -> None:
    # In a subprocess: the old code ran `--until inf` forever.
    proc = run_cli("run", "basic", f"--until={until}")

    assert_refused_in_one_line(proc, "--until must be")


# --- WebSocket origins -----------------------------------------------------------------------


@pytest.fixture
async def _runners() -> AsyncIterator[None]:
    yield
    await stop_all_runners()


async def connects(sim_id: str, headers: list[tuple[bytes, bytes]]) -> bool:
    comm = WebsocketCommunicator(application, f"/ws/simulations/{sim_id}/", headers=headers)
    connected, _ = await comm.connect()
    if connected:
        await comm.disconnect()
    return bool(connected)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_runners")
async def test_a_websocket_from_another_port_of_the_same_host_is_refused() -> None:
    sim_id, _ = await create()
    host = (b"host", b"127.0.0.1:8000")

    assert await connects(sim_id, [(b"origin", b"http://127.0.0.1:9999"), host]) is False
    assert await connects(sim_id, [(b"origin", b"http://127.0.0.1:8000"), host]) is True


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("_runners")
async def test_a_websocket_from_a_trusted_origin_is_accepted(settings: Settings) -> None:
    settings.CSRF_TRUSTED_ORIGINS = ["https://teach.example.com"]
    sim_id, _ = await create()
    host = (b"host", b"127.0.0.1:8000")

    assert await connects(sim_id, [(b"origin", b"https://teach.example.com"), host]) is True
    assert await connects(sim_id, [(b"origin", b"https://teach.example.com:8443"), host]) is False


def scope(**headers: str) -> dict[str, Any]:
    return {
        "type": "websocket",
        "headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()],
    }


def test_origin_check_normalises_default_ports_and_follows_the_proxy_header(
    settings: Settings,
) -> None:
    settings.ALLOWED_HOSTS = ["fanout.example.com"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    site = "fanout.example.com"

    assert origin_allowed(scope(origin=f"http://{site}", host=f"{site}:80"))
    assert origin_allowed(scope(origin=f"https://{site}", host=site, x_forwarded_proto="https"))
    # the proxy says plain http: an https page is another origin
    assert not origin_allowed(scope(origin=f"https://{site}", host=site, x_forwarded_proto="http"))
    assert not origin_allowed(scope(origin=f"http://{site}:8080", host=site))


def test_origin_check_refuses_hosts_not_allowed_and_bad_origins(settings: Settings) -> None:
    settings.ALLOWED_HOSTS = ["fanout.example.com"]

    # same origin, but the Host is not one of ALLOWED_HOSTS
    assert not origin_allowed(scope(origin="http://evil.example", host="evil.example"))
    assert not origin_allowed(scope(host="fanout.example.com"))  # no Origin
    # no Host (only test clients omit it): Channels' check, the Origin's host is allowed
    assert origin_allowed(scope(origin="http://fanout.example.com:8000"))
    assert not origin_allowed(scope(origin="http://evil.example:8000"))
    for bad in ("null", "http://fanout.example.com:99999", "ftp://fanout.example.com", "x"):
        assert not origin_allowed(scope(origin=bad, host="fanout.example.com")), bad
