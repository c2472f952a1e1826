"""Fixtures shared by every test module.

External things a test may need, and what happens when they are missing:

- Chromium (`chromium_path`, `browser`, `page`): Debian's /usr/bin/chromium, driven through
  Playwright's sync API. Playwright's own browser downloads are never used.
- Redis (`redis_url`): a server answering on 127.0.0.1:6379.

Locally a missing one skips the test with the command that installs it. Under CI (CI=true)
it fails the test instead: `.ci/run` installs and starts both, so a skip there would hide a
broken pipeline.

Tests that use these fixtures get the `browser` or `redis` marker automatically, so
`pytest -m "not browser"` works without decorating each test.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

BASE_DIR = Path(__file__).resolve().parent.parent
ARTIFACTS_DIR = BASE_DIR / "test-artifacts"
CHROMIUM_PATH = Path("/usr/bin/chromium")
# Flags for a root user in a container with no network beyond loopback: without the
# background-networking ones Chromium keeps trying (and failing) to reach Google's hosts.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
REDIS_HOST = "127.0.0.1"
REDIS_PORT = 6379
SERVER_START_TIMEOUT = 30.0
ASGI_APP = "dashboard.asgi:application"


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def skip_or_fail(reason: str) -> NoReturn:
    """Skip locally; under CI a missing dependency is a failure, not a skip."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: required, not skipped)", pytrace=False)
    pytest.skip(reason)


def redis_answers(host: str = REDIS_HOST, port: int = REDIS_PORT) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- collection -------------------------------------------------------------------------

_FIXTURE_MARKERS = {
    "browser": "browser",
    "page": "browser",
    "chromium_path": "browser",
    "redis_url": "redis",
}


@pytest.hookimpl(trylast=True)  # after pytest-django's own reordering, so browser tests stay last
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixturenames = getattr(item, "fixturenames", ())
        for fixture, marker in _FIXTURE_MARKERS.items():
            if fixture in fixturenames and item.get_closest_marker(marker) is None:
                item.add_marker(marker)
    # Browser tests run last. Playwright's sync API runs its own asyncio loop on this thread
    # and, while the session-wide browser is open, leaves that loop marked as running, so an
    # async test scheduled after it could not start its own loop.
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


# --- files --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """test-artifacts/: screenshots and server logs that outlive the run (git-ignored)."""
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    return ARTIFACTS_DIR


# --- Redis ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def redis_url() -> str:
    if not redis_answers():
        skip_or_fail(
            f"No Redis server answers on {REDIS_HOST}:{REDIS_PORT}: "
            "apt-get install redis-server, then start it"
        )
    return f"redis://{REDIS_HOST}:{REDIS_PORT}/0"


# --- Chromium -----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not CHROMIUM_PATH.exists():
        skip_or_fail("Chromium not installed: apt-get install chromium")
    return str(CHROMIUM_PATH)


@pytest.fixture(scope="session")
def browser(chromium_path: str) -> Iterator[Browser]:
    """One headless Chromium for the whole session. Use it from plain (sync) tests only.

    Playwright's sync API refuses to start inside a running asyncio loop, and while it is
    open Django treats this thread as async (SynchronousOnlyOperation on ORM calls): drive
    the app through `live_server_url`, not the ORM, in browser tests.
    """
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        playwright.stop()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page in its own context (no cookies or storage shared between tests)."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        yield context.new_page()
    finally:
        context.close()


# --- a real ASGI server ---------------------------------------------------------------------


def _wait_until_answering(url: str, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = log_path.read_text(errors="replace")
            raise RuntimeError(f"daphne exited with {process.returncode}:\n{log}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answered, even if not with 200: the test will say what it expected
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"daphne did not answer at {url} within {SERVER_START_TIMEOUT} s")


@contextmanager
def run_daphne(
    *, db_path: Path, log_path: Path, env: Mapping[str, str] | None = None
) -> Iterator[str]:
    """Migrate a SQLite database, serve the project with daphne on a free port, yield its URL.

    Development settings (DEBUG on, so static files are served straight from the finders,
    and the in-memory channel layer) unless `env` says otherwise.
    """
    server_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "dashboard.settings",
        "DJANGO_DEBUG": "1",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_DB_PATH": str(db_path),
        "PYTHONUNBUFFERED": "1",
    }
    server_env.pop("REDIS_URL", None)
    server_env.update(env or {})
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=BASE_DIR,
        env=server_env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), ASGI_APP],
            cwd=BASE_DIR,
            env=server_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_until_answering(f"{url}/", process, log_path)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@pytest.fixture(scope="session")
def live_server_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The SQLite database of ``live_server_url``'s server."""
    return tmp_path_factory.mktemp("live-server") / "db.sqlite3"


@pytest.fixture(scope="session")
def live_server_url(live_server_db: Path, artifacts_dir: Path) -> Iterator[str]:
    """Base URL (no trailing slash) of daphne serving the project, on its own temp database.

    Its output goes to test-artifacts/daphne.log.
    """
    with run_daphne(db_path=live_server_db, log_path=artifacts_dir / "daphne.log") as url:
        yield url


@pytest.fixture(scope="session")
def vendor_assets() -> Path:
    """static/vendor/, filled by `make assets`."""
    vendor = BASE_DIR / "static" / "vendor"
    if not (vendor / "uplot" / "uPlot.iife.min.js").exists():
        hint = "run `make assets`" if shutil.which("npm") else "install npm, then `make assets`"
        skip_or_fail(f"Front-end packages missing from static/vendor/: {hint}")
    return vendor
