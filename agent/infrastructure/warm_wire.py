"""The warm engine's wire: JSON messages, with file descriptors, over a Unix socket pair.

The agent and its warm engine (:mod:`.warm_engine`) talk over one ``SOCK_SEQPACKET``
socket pair, so every message arrives whole or not at all (a message boundary is a
packet boundary: no framing to get wrong, no partial read to resume). File descriptors
travel beside a message as ``SCM_RIGHTS`` ancillary data: the run's stdin, stdout and
stderr from the agent, a pidfd of each forked engine from the warm engine. No pickle:
JSON only, bounded in bytes (a request that does not fit is started the cold way).

Messages (``op``):
- warm engine -> agent: ``ready`` (imports done), ``started`` (``id``, ``pid``, one pidfd
  attached), ``failed`` (``id``, ``error``: nothing was started), ``exit`` (``pid``,
  ``status`` as ``Popen.returncode``: negative for a signal).
- agent -> warm engine: ``start`` (``id``, ``argv``, ``env``, ``cwd``; stdin, stdout and
  stderr attached).
"""

from __future__ import annotations

import json
import math
import os
import select
import socket
from collections.abc import Sequence
from typing import Any

#: The largest message either side sends (a start request holds the run's whole
#: environment); larger requests take the cold path.
MAX_MESSAGE = 160 * 1024
MAX_FDS = 4


class WireError(Exception):
    """The other side is gone or sent something that is not a message of this wire."""


def socket_pair() -> tuple[socket.socket, socket.socket]:
    """The agent's end and the warm engine's end, with room for the largest message."""
    ends = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for end in ends:
        end.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 2 * MAX_MESSAGE)
        end.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2 * MAX_MESSAGE)
    return ends


def encode(message: dict[str, Any]) -> bytes:
    """One message as bytes; ValueError when it is larger than :data:`MAX_MESSAGE`."""
    data = json.dumps(message, separators=(",", ":")).encode()
    if len(data) > MAX_MESSAGE:
        raise ValueError(f"a warm engine message of {len(data)} bytes (at most {MAX_MESSAGE})")
    return data


def send(sock: socket.socket, message: dict[str, Any], fds: Sequence[int] = ()) -> None:
    """Send one message (and ``fds``, duplicated into the receiver); WireError if the
    other side is gone."""
    data = encode(message)
    try:
        if fds:
            socket.send_fds(sock, [data], list(fds))
        else:
            sock.send(data)
    except OSError as error:
        raise WireError(f"the other side is gone: {error.strerror or error}") from None


def receive(sock: socket.socket, timeout: float | None) -> tuple[dict[str, Any], list[int]] | None:
    """The next message and the descriptors that came with it (the caller owns them), or
    None when nothing came within ``timeout`` seconds. WireError at end of stream."""
    if timeout is not None:
        if not readable([sock.fileno()], timeout):
            return None
    try:
        data, fds, flags, _ = socket.recv_fds(sock, MAX_MESSAGE, MAX_FDS)
    except BlockingIOError:
        return None
    except OSError as error:
        raise WireError(f"the other side is gone: {error.strerror or error}") from None
    if not data:
        close_all(fds)
        raise WireError("the other side closed the connection")
    if flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
        close_all(fds)
        raise WireError("a truncated message")
    try:
        message = json.loads(data)
    except ValueError:
        close_all(fds)
        raise WireError("a message that is not JSON") from None
    if not isinstance(message, dict) or not isinstance(message.get("op"), str):
        close_all(fds)
        raise WireError("a message without an op")
    return message, fds


def close_all(fds: Sequence[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def readable(fds: Sequence[int], timeout: float | None) -> list[int]:
    """Those of ``fds`` readable (or at end: hung up, a pidfd whose process ended) within
    ``timeout`` seconds (None: no limit). poll(), not select(): an agent with many runs
    has descriptors past 1024, which select() cannot watch."""
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    wait_ms = None if timeout is None else math.ceil(max(0.0, timeout) * 1000)
    return [fd for fd, _ in poller.poll(wait_ms)]
