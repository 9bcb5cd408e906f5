"""A throwaway redis-server for a benchmark, unless ``--url`` names one to use."""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.redis_server import RedisServer, available_binaries  # noqa: E402


@contextlib.contextmanager
def redis_url(url: str | None) -> Iterator[str]:
    """``url`` itself, or the URL of a fresh Redis (7 when installed, else 6.2, no
    append-only file) stopped and removed on exit."""
    if url is not None:
        yield url
        return
    workdir = tempfile.mkdtemp(prefix="runq-bench-")
    binaries = available_binaries()
    server = RedisServer(
        binaries["redis7"] or binaries["redis6"], Path(workdir), extra_args=("--appendonly", "no")
    )
    server.start()
    try:
        yield server.url
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
