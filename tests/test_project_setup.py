"""The project skeleton: settings per environment, the home page, static files, a real server."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest
from django.test import Client
from playwright.sync_api import Page
from pytest_django import Settings
from pytest_django.asserts import assertTemplateUsed

BASE_DIR = Path(__file__).resolve().parent.parent
PRODUCTION_ENV = {
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
    "DJANGO_ALLOWED_HOSTS": "example.com",
}


def run_manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run manage.py in a fresh interpreter, with `env` on top of a clean Django environment."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "REDIS_"))}
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def settings_in_subprocess(*names: str, env: dict[str, str]) -> dict[str, object]:
    """Load dashboard.settings under `env` and return the named settings (JSON-able ones)."""
    code = (
        "import json; from django.conf import settings; "
        f"print(json.dumps({{n: getattr(settings, n) for n in {list(names)!r}}}))"
    )
    result = run_manage("shell", "-c", code, env=env)
    assert result.returncode == 0, result.stderr
    loaded: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


# --- home page, Django test client -------------------------------------------------------


@pytest.mark.django_db  # the home page gives the browser its session
def test_home_page_renders(client: Client) -> None:
    response = client.get("/")

    assert response.status_code == 200
    assertTemplateUsed(response, "home.html")
    html = response.content.decode()
    assert "<title>Fanout</title>" in html
    assert 'id="page-heading"' in html
    # htmx comes from django-htmx's static files, next to our own stylesheet.
    assert "/static/django_htmx/htmx-2.min.js" in html
    assert "/static/css/app.css" in html


@pytest.mark.django_db
def test_htmx_middleware_is_installed(client: Client) -> None:
    response = client.get("/", headers={"HX-Request": "true"})

    assert response.status_code == 200
    assert response.wsgi_request.htmx  # type: ignore[attr-defined]


# --- settings per environment -----------------------------------------------------------


def test_development_defaults() -> None:
    loaded = settings_in_subprocess("DEBUG", "ALLOWED_HOSTS", "CHANNEL_LAYERS", env={})

    assert loaded["DEBUG"] is True
    assert loaded["ALLOWED_HOSTS"] == ["127.0.0.1", "localhost", "testserver"]
    assert loaded["CHANNEL_LAYERS"] == {
        "default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}
    }


def test_redis_url_selects_the_redis_channel_layer() -> None:
    loaded = settings_in_subprocess("CHANNEL_LAYERS", env={"REDIS_URL": "redis://127.0.0.1:6379/0"})

    assert loaded["CHANNEL_LAYERS"] == {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:6379/0"], "capacity": 2000},
        }
    }


def test_deploy_check_passes_with_production_environment(tmp_path: Path) -> None:
    env = {**PRODUCTION_ENV, "DJANGO_STATIC_ROOT": str(tmp_path / "static")}
    collected = run_manage("collectstatic", "--noinput", env=env)
    assert collected.returncode == 0, collected.stdout + collected.stderr
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=env)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


@pytest.mark.parametrize("missing", ["DJANGO_SECRET_KEY", "DJANGO_ALLOWED_HOSTS"])
def test_production_refuses_to_start_without(missing: str) -> None:
    env = {k: v for k, v in PRODUCTION_ENV.items() if k != missing}

    result = run_manage("check", env=env)

    assert result.returncode != 0
    assert f"{missing} must be set when DJANGO_DEBUG is off" in result.stderr


# --- channel layers ----------------------------------------------------------------------


async def test_in_memory_channel_layer_delivers_group_messages(
    settings: Settings,
) -> None:
    from channels.layers import get_channel_layer

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    layer = get_channel_layer()
    assert layer is not None
    channel = await layer.new_channel()
    await layer.group_add("sim.test", channel)

    await layer.group_send("sim.test", {"type": "sim.frame", "seq": 1})

    async with asyncio.timeout(5):
        assert await layer.receive(channel) == {"type": "sim.frame", "seq": 1}


async def test_redis_channel_layer_delivers_group_messages(redis_url: str) -> None:
    from channels_redis.core import RedisChannelLayer

    # A unique prefix keeps this run's keys apart from anything else on the server.
    layer = RedisChannelLayer(hosts=[redis_url], prefix=f"fanout-test-{uuid.uuid4().hex}")
    try:
        channel = await layer.new_channel()
        await layer.group_add("sim.test", channel)

        await layer.group_send("sim.test", {"type": "sim.frame", "seq": 1})

        async with asyncio.timeout(5):
            assert await layer.receive(channel) == {"type": "sim.frame", "seq": 1}
    finally:
        await layer.flush()
        await layer.close_pools()


# --- a real server: daphne, static files, Chromium -----------------------------------------


def test_daphne_serves_static_files(live_server_url: str, vendor_assets: Path) -> None:
    for path in (
        "/static/css/app.css",
        "/static/django_htmx/htmx-2.min.js",
        "/static/vendor/uplot/uPlot.iife.min.js",
        "/static/vendor/uplot/uPlot.min.css",
    ):
        with urllib.request.urlopen(live_server_url + path, timeout=10) as response:
            assert response.status == 200, path
            assert len(response.read()) > 0, path


def test_home_page_in_chromium(page: Page, live_server_url: str, artifacts_dir: Path) -> None:
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on(
        "response",
        lambda response: (
            errors.append(f"{response.status} {response.url}") if response.status >= 400 else None
        ),
    )

    page.goto(live_server_url + "/")
    page.wait_for_load_state("load")

    assert page.title() == "Fanout"
    assert page.locator("#page-heading").inner_text() == "Event-driven architecture, live"
    assert page.locator(".brand").inner_text() == "Fanout"
    # The stylesheet and htmx both arrived and ran.
    event_colour = page.evaluate(
        "getComputedStyle(document.documentElement).getPropertyValue('--event-produced')"
    )
    assert event_colour.strip() == "#0072b2"  # Okabe-Ito blue: an event on its way
    assert page.evaluate("typeof window.htmx") == "object"
    page.screenshot(path=artifacts_dir / "home.png", full_page=True)
    assert errors == []
