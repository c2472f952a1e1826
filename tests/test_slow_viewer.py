"""A viewer that stops reading never makes the server buffer without bound."""

from __future__ import annotations

import base64
import json
import os
import socket
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_daphne

STALLED = 5
SECONDS = 15


def stalled_socket(url: str, path: str) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads again."""
    host, port = url.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\nOrigin: {url}\r\n\r\n"
        ).encode()
    )
    assert b"101" in s.recv(1024)
    return s


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def server_pid(port: str) -> int:
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"daphne" in b" ".join(cmd) and port.encode() in cmd:
                return int(proc.name)
    raise AssertionError("daphne not found")


def start_ecommerce(url: str, *, speed: float, duration: float | None = None) -> dict[str, Any]:
    """Create the e-commerce preset through the API and start it at ``speed``."""
    import yaml

    preset = Path(__file__).resolve().parent.parent / "simulator/presets/ecommerce.yaml"
    doc = yaml.safe_load(preset.read_text())
    if duration is not None:
        doc["duration"] = duration
    req = urllib.request.Request(
        f"{url}/api/simulations",
        data=json.dumps(doc).encode(),
        headers={"Content-Type": "application/json"},
    )
    created: dict[str, Any] = json.load(urllib.request.urlopen(req, timeout=10))
    for cmd in ({"command": "speed", "value": speed}, {"command": "start"}):
        urllib.request.urlopen(
            urllib.request.Request(
                f"{url}/api/simulations/{created['id']}/commands",
                data=json.dumps(cmd).encode(),
                headers={
                    "Content-Type": "application/json",
                    "Authorization": f"Bearer {created['control_token']}",
                },
            ),
            timeout=10,
        )
    return created


def growth_with_stalled_viewers(
    tmp_path: Path, log: Path, window: int, send_buffer: int = 1024 * 1024
) -> float:
    with run_daphne(
        db_path=tmp_path / f"w{window}.sqlite3",
        log_path=log,
        env={
            "FANOUT_FRAME_WINDOW": str(window),
            "FANOUT_MAX_SEND_BUFFER": str(send_buffer),
            # every frame whole, the heaviest a server sends (deltas are ten times smaller: the
            # kernel's socket buffers would hold 15 s of them, unbounded or not)
            "FANOUT_SNAPSHOT_EVERY": "1",
        },
    ) as url:
        created = start_ecommerce(url, speed=10)
        sockets = [stalled_socket(url, created["ws"]) for _ in range(STALLED)]
        pid = server_pid(url.rsplit(":", 1)[1])
        time.sleep(3)  # let the kernel buffers fill
        before = rss_mb(pid)
        time.sleep(SECONDS)
        after = rss_mb(pid)
        for s in sockets:
            s.close()
        return after - before


@pytest.mark.slow
def test_stalled_viewers_leave_the_server_memory_flat(tmp_path: Path, artifacts_dir: Path) -> None:
    bounded = growth_with_stalled_viewers(tmp_path, artifacts_dir / "daphne-window.log", 8)
    # the same without the window: what "buffer without bound" looks like, so the bound above
    # is a measured difference and not a threshold picked to pass
    unbounded = growth_with_stalled_viewers(
        tmp_path, artifacts_dir / "daphne-nowindow.log", 10**9, send_buffer=10**12
    )
    print(
        f"RSS growth over {SECONDS} s with {STALLED} stalled viewers: "
        f"window 8: {bounded:.1f} MB, no window: {unbounded:.1f} MB"
    )
    # the bounded server still grows a little: the simulation itself keeps records (at x10)
    assert bounded < 15
    # Without the window the server buffers every frame for them. A frame's bytes are made once
    # and shared by every socket they wait for (dashboard/transport.py), so that grows with the
    # frames (about 0.9 MB a second here, less what the kernel's socket buffers take), no longer
    # with frames x sockets: 5.5-6 MB more over the 15 s, where the bounded server adds none.
    assert unbounded > bounded + 4


def masked_text(payload: bytes) -> bytes:
    """One client-to-server WebSocket text frame (clients must mask)."""
    mask = os.urandom(4)
    n = len(payload)
    header = bytes([0x81, 0x80 | n]) if n < 126 else bytes([0x81, 0xFE]) + n.to_bytes(2, "big")
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


@pytest.mark.slow
def test_a_client_that_acks_frames_it_never_reads_is_closed(
    tmp_path: Path, artifacts_dir: Path
) -> None:
    """The attack: never read, but acknowledge every frame number (they are easy to guess), so
    flow control keeps releasing frames into daphne's buffer. The send buffer bound closes it."""
    log = artifacts_dir / "daphne-ackflood.log"
    with run_daphne(
        db_path=tmp_path / "ackflood.sqlite3",
        log_path=log,
        env={"FANOUT_MAX_SEND_BUFFER": str(256 * 1024)},
    ) as url:
        created = start_ecommerce(url, speed=5, duration=3600)
        s = stalled_socket(url, created["ws"])
        closed_after = None
        start = time.monotonic()
        acks = 0
        try:
            while time.monotonic() - start < 60:
                # frames go out at 20 a second from seq 1: ack every seq near the current one
                # frames go out at up to 20 a second from seq 1; a busy server sends fewer. Any
                # outstanding seq releases every frame before it, and 8 are outstanding at a
                # time: an ack for every 8th seq from a third of the guess up hits one
                guess = int((time.monotonic() - start) * 20)
                for seq in range(max(1, guess // 3), guess + 8, 8):
                    s.sendall(masked_text(json.dumps({"type": "ack", "seq": seq}).encode()))
                    acks += 1
                time.sleep(0.01)
        except OSError:
            closed_after = time.monotonic() - start
        finally:
            s.close()
        # the server is still there for everyone else
        with urllib.request.urlopen(f"{url}/api/simulations/{created['id']}", timeout=5) as r:
            assert json.load(r)["t"] > 0
    print(f"closed after {closed_after} s, {acks} acks sent")
    assert closed_after is not None, "the server kept buffering for a client that never reads"
    assert "unread bytes (limit 262144): closing it" in log.read_text()


@pytest.mark.slow
def test_a_client_that_sends_faster_than_the_server_reads_is_closed(
    tmp_path: Path, artifacts_dir: Path
) -> None:
    """Daphne queues a socket's incoming messages without limit; the bound closes a client
    that has more than FANOUT_MAX_INBOUND_QUEUE of them waiting."""
    log = artifacts_dir / "daphne-inbound.log"
    with run_daphne(
        db_path=tmp_path / "inbound.sqlite3", log_path=log, env={"FANOUT_MAX_INBOUND_QUEUE": "64"}
    ) as url:
        created = start_ecommerce(url, speed=1)
        s = stalled_socket(url, created["ws"])
        burst = masked_text(b'{"type": "nonsense"}') * 20_000  # 20,000 messages at once
        closed = False
        try:
            s.sendall(burst)
            s.settimeout(10)
            while s.recv(65536):
                pass
            closed = True
        except OSError:
            closed = True
        finally:
            s.close()
        with urllib.request.urlopen(f"{url}/api/simulations/{created['id']}", timeout=5) as r:
            assert r.status == 200  # everyone else is still served
    assert closed
    assert "messages the server has not read yet: closing it" in log.read_text()
