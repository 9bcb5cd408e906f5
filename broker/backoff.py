"""Backoff while Redis is away, and the lines that say so.

Every long-running part of runq (agent, wake-up listener, scheduler, engine,
``flow-run logs --follow``) rides out a Redis restart the same way: the delay doubles
from ``first`` to ``cap`` so a restart is noticed within a fraction of a second while a
long outage costs one line every ``cap`` seconds, each line names the URL and the next
delay, and one line says when Redis is back. The caller decides where the lines go (a
logger, or stderr when stdout is the program's output).
"""

from __future__ import annotations

from dataclasses import dataclass

from .connection import describe_failure, mask_url
from .errors import BrokerUnavailable


@dataclass
class Backoff:
    """The retry delays and notices of one outage at a time."""

    url: str
    first: float = 0.1
    cap: float = 5.0
    attempts: int = 0
    delay: float = 0.0

    def failed(self, error: Exception) -> tuple[float, str]:
        """Count a failed attempt: the seconds to wait, and the line that says so."""
        self.delay = min(self.delay * 2, self.cap) if self.attempts else self.first
        self.attempts += 1
        if not isinstance(error, BrokerUnavailable):  # BrokerUnavailable already names the URL
            error = BrokerUnavailable(describe_failure(self.url, error))
        return self.delay, f"{error} Retrying in {self.delay:.1f} s."

    def recovered(self) -> str | None:
        """After a success: the line saying Redis is back, once per outage (else None)."""
        attempts, self.attempts = self.attempts, 0
        if not attempts:
            return None
        return f"Redis at {mask_url(self.url)} is back after {attempts} failed attempt(s)."
