"""The agent's /healthz endpoint (agent/health.py): what the Kubernetes probes see."""

from __future__ import annotations

import http.client
import socket
import threading

import pytest

from runq.agent.health import HealthServer


def get(port: int, path: str = "/healthz") -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_answers_200_while_healthy_and_503_once_not() -> None:
    healthy = threading.Event()
    healthy.set()
    with HealthServer(0, healthy.is_set, host="127.0.0.1") as server:
        assert get(server.port) == (200, b"ok\n")
        healthy.clear()
        assert get(server.port) == (503, b"unhealthy\n")
        healthy.set()
        assert get(server.port)[0] == 200


def test_a_failing_check_is_unhealthy_not_a_crash() -> None:
    def broken() -> bool:
        raise RuntimeError("redis is gone")

    with HealthServer(0, broken, host="127.0.0.1") as server:
        assert get(server.port)[0] == 503
        assert get(server.port)[0] == 503  # and it keeps answering


def test_other_paths_are_404_and_a_query_string_is_ignored() -> None:
    with HealthServer(0, lambda: True, host="127.0.0.1") as server:
        assert get(server.port, "/")[0] == 404
        assert get(server.port, "/healthz?probe=liveness")[0] == 200


def test_answers_while_the_check_of_another_probe_blocks() -> None:
    """Probes are served in threads: one slow check does not starve the next probe."""
    release, entered = threading.Event(), threading.Event()
    calls = []

    def check() -> bool:
        calls.append(1)
        if len(calls) == 1:
            entered.set()
            return release.wait(120)
        return True

    with HealthServer(0, check, host="127.0.0.1") as server:
        slow = threading.Thread(target=get, args=(server.port,))
        slow.start()
        assert entered.wait(60)
        assert get(server.port)[0] == 200
        release.set()
        slow.join(60)


def test_stop_frees_the_port_and_a_taken_port_is_an_error() -> None:
    server = HealthServer(0, lambda: True, host="127.0.0.1").start()
    port = server.port
    with pytest.raises(OSError):
        HealthServer(port, lambda: True, host="127.0.0.1").start()
    server.stop()
    with socket.create_server(("127.0.0.1", port)):
        pass  # free again
