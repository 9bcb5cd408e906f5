"""Times and durations as people read them: ``3 minutes ago``, ``1h30m``, ``12 hours``."""

from __future__ import annotations

from datetime import datetime


def absolute(moment: datetime | None) -> str:
    """A timestamp in the local timezone, to the second."""
    if moment is None:
        return "never"
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def relative(moment: datetime | None, now: datetime) -> str:
    """``3 minutes ago`` or ``in 2 hours``: how far ``moment`` is from ``now``."""
    if moment is None:
        return "never"
    seconds = (moment - now).total_seconds()
    distance = round(abs(seconds))  # 599.9 s after "--start-in 10m" still reads "10 minutes"
    if distance < 1:
        return "just now"
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if distance >= size:
            count = int(distance // size)
            text = f"{count} {unit}{'' if count == 1 else 's'}"
            return f"in {text}" if seconds > 0 else f"{text} ago"
    raise AssertionError("unreachable")


def both(moment: datetime | None, now: datetime) -> str:
    """Relative and absolute together: ``2 minutes ago (2024-05-01 10:00:00 UTC)``."""
    if moment is None:
        return "never"
    return f"{relative(moment, now)} ({absolute(moment)})"


def seconds_text(seconds: float) -> str:
    """A duration for people: ``1h30m``, ``45s``."""
    remaining = int(round(seconds))
    if remaining == 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def hours_text(hours: float) -> str:
    """``1 hour``, ``12 hours``, ``0.5 hours``."""
    shown = f"{hours:g}"
    return f"{shown} hour" if hours == 1 else f"{shown} hours"
