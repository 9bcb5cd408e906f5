"""The agent's health endpoint, for Kubernetes liveness and readiness probes.

``runq agent start --health-port 8080`` serves ``GET /healthz``: 200 while the agent is
healthy, 503 when it is not (its check says so, or the check itself fails), and
``GET /metrics``: the agent's Prometheus metrics (404 when they are off). It runs in
its own thread so a probe is answered even while the agent's loop is busy, and the
answer still reflects the loop's health because the agent's check looks at the loop.

Each connection has a thread of its own while it lasts; a client that connects and
sends nothing (or too slowly) is dropped after ``idle_timeout`` seconds, so idle or
half-open connections cannot pile up threads. Neither endpoint has authentication:
``--health-host`` picks the address they listen on.
"""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HealthCheck = Callable[[], bool]
#: The body of a /metrics answer (Prometheus' text format).
MetricsPage = Callable[[], bytes]
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Seconds a connection may stay silent (no request, or a request sent too slowly)
#: before it is closed: far beyond a probe's own timeout (1 s by default).
IDLE_TIMEOUT_SECONDS = 10.0


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def setup(self) -> None:
        """A timeout on the connection's socket: a silent client's read ends in a
        timeout, which closes the connection and ends its thread."""
        super().setup()
        self.connection.settimeout(self.server.idle_timeout)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        if path == "/metrics" and self.server.metrics is not None:
            self._reply(200, self.server.metrics(), METRICS_CONTENT_TYPE)
            return
        if path != "/healthz":
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

    def _reply(
        self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8"
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Probes every few seconds would drown the agent's own output: stay quiet."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    is_healthy: HealthCheck
    metrics: MetricsPage | None
    idle_timeout: float

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse DNS lookup of the address (slow where DNS is)."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = (
            str(self.server_address[0]),
            int(self.server_address[1]),
        )


class _Server6(_Server):
    address_family = socket.AF_INET6


class HealthServer:
    """``/healthz`` on ``host``:``port`` (0: any free port, see ``.port``), answered by
    ``is_healthy``; ``/metrics`` answered by ``metrics`` when given. A connection silent
    for ``idle_timeout`` seconds is closed.

    Usable as a context manager; ``start()`` returns at once, ``stop()`` frees the port.
    """

    def __init__(
        self,
        port: int,
        is_healthy: HealthCheck,
        host: str = "0.0.0.0",
        metrics: MetricsPage | None = None,
        idle_timeout: float = IDLE_TIMEOUT_SECONDS,
    ) -> None:
        server_class = _Server6 if ":" in host else _Server
        self._server = server_class((host.strip("[]"), port), _Handler, bind_and_activate=False)
        self._server.is_healthy = is_healthy
        self._server.metrics = metrics
        self._server.idle_timeout = idle_timeout
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> HealthServer:
        """Bind and serve in a daemon thread (raises OSError when the port is taken)."""
        self._server.server_bind()
        self._server.server_activate()
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="runq-health",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> HealthServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
