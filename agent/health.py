"""The agent's health endpoint, for Kubernetes liveness and readiness probes.

``runq agent start --health-port 8080`` serves ``GET /healthz``: 200 while the agent is
healthy, 503 when it is not (its check says so, or the check itself fails). It runs in
its own thread so a probe is answered even while the agent's loop is busy, and the
answer still reflects the loop's health because the agent's check looks at the loop.
"""

from __future__ import annotations

import socketserver
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

HealthCheck = Callable[[], bool]


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path.split("?", 1)[0] != "/healthz":
            self._reply(404, b"not found\n")
            return
        try:
            healthy = bool(self.server.is_healthy())
        except Exception:  # a failing check is an unhealthy agent, not a crashed endpoint
            healthy = False
        if healthy:
            self._reply(200, b"ok\n")
        else:
            self._reply(503, b"unhealthy\n")

    def _reply(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Probes every few seconds would drown the agent's own output: stay quiet."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    is_healthy: HealthCheck

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup of the address (slow where DNS is)."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])


class HealthServer:
    """``/healthz`` on ``port`` (0: any free port, see ``.port``), answered by ``is_healthy``.

    Usable as a context manager; ``start()`` returns at once, ``stop()`` frees the port.
    """

    def __init__(self, port: int, is_healthy: HealthCheck, host: str = "0.0.0.0") -> None:
        self._server = _Server((host, port), _Handler, bind_and_activate=False)
        self._server.is_healthy = is_healthy
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> "HealthServer":
        """Bind and serve in a daemon thread (raises OSError when the port is taken)."""
        self._server.server_bind()
        self._server.server_activate()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="runq-health", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> "HealthServer":
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
