"""Conversions between the integer timestamps Redis stores and aware datetimes.

Run records keep microseconds (the resolution of Redis ``TIME``) so that the order of two
events is never lost to rounding; sorted-set scores (due times, lease deadlines) keep
milliseconds, which a Lua number formats without losing digits.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import overload

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@overload
def us_to_datetime(value: int) -> datetime: ...
@overload
def us_to_datetime(value: str | bytes | None) -> datetime | None: ...
def us_to_datetime(value: str | bytes | int | None) -> datetime | None:
    """Turn a stored microsecond timestamp into an aware UTC datetime (``None`` stays)."""
    if value in (None, b"", ""):
        return None
    return EPOCH + timedelta(microseconds=int(value))


def ms_to_datetime(value: float | int) -> datetime:
    """Turn a millisecond sorted-set score into an aware UTC datetime."""
    return EPOCH + timedelta(milliseconds=int(value))


def datetime_to_ms(value: datetime) -> int:
    """Milliseconds since the epoch; a naive datetime is taken to be UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - EPOCH) // timedelta(milliseconds=1)


def datetime_to_us(value: datetime) -> int:
    """Microseconds since the epoch; a naive datetime is taken to be UTC."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - EPOCH) // timedelta(microseconds=1)
