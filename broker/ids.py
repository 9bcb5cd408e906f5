"""Time-ordered run ids (UUID version 7, RFC 9562).

Runs due in the same millisecond share a sorted-set score, and Redis then orders them by
member, i.e. by id. Version-7 ids sort by creation time (with a per-process counter
inside one millisecond), so such runs are claimed first-created, first-served.
"""

from __future__ import annotations

import os
import threading
import time
from uuid import UUID

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def new_run_id() -> str:
    """A fresh UUIDv7 string, greater than every id this process made before."""
    global _last_ms, _counter
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms > _last_ms:
            _last_ms, _counter = now_ms, 0
        else:  # same millisecond (or the clock stepped back): count on from the last id
            _counter += 1
            if _counter > 0xFFF:
                _last_ms, _counter = _last_ms + 1, 0
        ms, counter = _last_ms, _counter
    tail = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | tail
    return str(UUID(int=value))
