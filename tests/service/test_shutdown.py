"""SIGTERM drains: `recserve serve` stops accepting connections, finishes the requests in flight, and with
--timeout-graceful-shutdown gives up on them after that long (what a Kubernetes pod's grace period needs,
docs/deploy.md). A request is kept in flight by sending its body in two parts."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from recserve.options import COUNT as positive_seconds  # --timeout-graceful-shutdown's type
from tests.service.processes import free_port, wait_for

BODY = b'{"model": "bert4rec", "history": ["i1"], "candidates": ["i2", "i3"]}'
HEAD = (f"POST /rank HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(BODY)}\r\n\r\n").encode()


def start(artifacts, *options: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "RECSERVE_REDIS_URL": "", "RECSERVE_LOG_LEVEL": "warning"}
    proc = subprocess.Popen([sys.executable, "-m", "recserve", "serve", "--artifacts", str(artifacts),
                             "--port", str(port), *options], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200)
    except AssertionError:
        proc.kill()
        raise
    return proc, port


def half_sent_request(port: int) -> socket.socket:
    """A connection whose request has its headers and half its body sent: in flight, not yet answered."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn.sendall(HEAD + BODY[: len(BODY) // 2])
    conn.settimeout(0.3)
    with pytest.raises(TimeoutError):  # no answer before the body is complete
        conn.recv(1)
    conn.settimeout(5)
    return conn


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def test_sigterm_finishes_the_request_in_flight_and_refuses_new_connections(tmp_path):
    proc, port = start(tmp_path, "--timeout-graceful-shutdown", "20")
    try:
        conn = half_sent_request(port)
        proc.send_signal(signal.SIGTERM)
        wait_for(lambda: refused(port), timeout_s=10)  # the listening socket closed at once...
        assert proc.poll() is None                      # ...while the process waits for the request
        conn.sendall(BODY[len(BODY) // 2:])
        answer = b""
        while b"\r\n\r\n" not in answer and (chunk := conn.recv(4096)):
            answer += chunk
        status, headers = answer.split(b"\r\n", 1)
        assert status.startswith(b"HTTP/1.1 ") and b"connection: close" in headers.lower()
        # Then the app shuts down, and uvicorn re-raises the SIGTERM it caught: the usual exit by that signal.
        assert proc.wait(10) == -signal.SIGTERM
        conn.close()
    finally:
        proc.kill()
        proc.wait(10)


def test_the_graceful_shutdown_timeout_bounds_the_wait(tmp_path):
    proc, port = start(tmp_path, "--timeout-graceful-shutdown", "1")
    try:
        conn = half_sent_request(port)  # never completed
        began = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == -signal.SIGTERM
        assert time.monotonic() - began < 10
        conn.close()
    finally:
        proc.kill()
        proc.wait(10)


@pytest.mark.parametrize("text, ok", [("15", True), ("1", True), ("0", False), ("-3", False), ("2.5", False),
                                      ("soon", False)])
def test_the_timeout_is_a_whole_positive_number_of_seconds(text, ok):
    import argparse

    if ok:
        assert positive_seconds(text) == int(text)
    else:
        with pytest.raises(argparse.ArgumentTypeError):
            positive_seconds(text)
