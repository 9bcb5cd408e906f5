"""Time-ordered run ids (UUID version 7, RFC 9562).

Runs due in the same millisecond share a sorted-set score, and Redis then orders them by
member, i.e. by id. Version-7 ids sort by creation time (with a per-process counter
inside one millisecond), so such runs are claimed first-created, first-served.
"""

from __future__ import annotations

import random
import threading
import time

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
    # Uniqueness comes from the time and counter; the random tail only separates
    # processes, so the fast non-cryptographic generator is enough.
    tail = random.getrandbits(62)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | tail
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"
