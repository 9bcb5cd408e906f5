"""Watching the cluster: a kind of object kept current by list-then-watch (resumed from
its last ``resourceVersion``), and a pod's log followed to its end (reopened where it
broke off).

Nothing is concluded from a dropped connection: a watch that times out or breaks is
resumed, and only a 410 Gone (that version has been compacted away) makes it list again.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from calendar import timegm
from collections.abc import Callable, Generator, Iterator
from typing import Any

from kubernetes.client.exceptions import ApiException

from runq.broker.backoff import Backoff

from .api import TRANSIENT, KubeApi, describe

log = logging.getLogger("runq.agent.kubernetes")

WATCH_SECONDS = 60  # server-side timeout of one watch request; it is then resumed
Objects = dict[str, dict[str, Any]]  # name -> object
Stamp = tuple[int, int]  # a log line's time: (epoch seconds, nanoseconds)


def iter_lines(response: Any) -> Iterator[list[bytes]]:
    """The complete lines of a streamed response, one list per chunk received.

    A stream read to its end gives its connection back to the pool; one left early (or
    broken) is closed, since unread data would spoil the connection's next request."""
    pending, complete = b"", False
    try:
        for chunk in response.stream(amt=None, decode_content=False):
            *lines, pending = (pending + chunk).split(b"\n")
            if lines:
                yield lines
        if pending:
            yield [pending]
        complete = True
    finally:
        if complete:
            response.release_conn()
        else:
            response.close()


# ---- objects --------------------------------------------------------------------------


class ObjectWatch:
    """The current objects of one kind matching a selector, kept by list-then-watch.

    ``snapshots()`` yields the objects (name -> object) after the first list, after every
    event, and whenever a watch request ends, so the caller can check its own deadlines.
    A watch that ends (server timeout) or breaks (dropped connection, read timeout, a
    5xx) is resumed from the last resourceVersion seen; only a 410 Gone (that version
    has been compacted away) makes it list again.
    """

    def __init__(
        self, api: KubeApi, kind: str, selector: dict[str, str], stop: threading.Event
    ) -> None:
        self.api, self.kind, self.selector, self.stop = api, kind, selector, stop
        self.objects: Objects = {}
        self.version = ""
        self.backoff = Backoff(first=0.2, stop=stop)

    def snapshots(self, seconds: Callable[[], int]) -> Generator[Objects, None, None]:
        if not self._relist():
            return
        yield self.objects
        while not self.stop.is_set():
            try:
                response = self.api.watch(self.kind, self.selector, self.version, seconds())
                for lines in iter_lines(response):
                    for line in lines:
                        if self._apply(line):
                            yield self.objects
                self.backoff.reset()
            except _Gone:
                if not self._relist():
                    return
            except ApiException as error:
                if error.status != 410:
                    self._retry_later(error)
                elif not self._relist():
                    return
            except TRANSIENT as error:
                self._retry_later(error)
            if not self.stop.is_set():
                yield self.objects

    def _relist(self) -> bool:
        """List the objects afresh; False when told to stop first."""
        while not self.stop.is_set():
            try:
                listing = self.api.list(self.kind, self.selector)
            except TRANSIENT as error:
                self._retry_later(error)
                continue
            self.objects = {item["metadata"]["name"]: item for item in listing.get("items", [])}
            self.version = listing.get("metadata", {}).get("resourceVersion", "")
            return True
        return False

    def _apply(self, line: bytes) -> bool:
        """Fold one watch event into the objects; True when an object changed."""
        try:
            event = json.loads(line)
            kind, obj = event["type"], event["object"]
        except (ValueError, KeyError, TypeError):
            return False
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise _Gone()
            raise ApiException(
                status=obj.get("code", 500), reason=obj.get("message", "watch error")
            )
        self.version = obj.get("metadata", {}).get("resourceVersion") or self.version
        if kind == "BOOKMARK":
            return False
        name = obj["metadata"]["name"]
        if kind == "DELETED":
            self.objects.pop(name, None)
        else:
            self.objects[name] = obj
        return True

    def _retry_later(self, error: Exception) -> None:
        log.warning("Watching %s %s: %s; resuming.", self.kind, self.selector, describe(error))
        self.backoff.wait()


class _Gone(Exception):
    """The watch's resourceVersion is too old (410): list again."""


# ---- a pod's log ----------------------------------------------------------------------


_TIMESTAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?Z")


def log_timestamp(text: str) -> Stamp | None:
    """``2024-05-01T12:00:00.5Z`` -> (epoch seconds, nanoseconds), comparable; None if not one."""
    match = _TIMESTAMP.fullmatch(text)
    if not match:
        return None
    seconds = timegm(time.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S"))
    return seconds, int((match.group(2) or "0").ljust(9, "0"))


def follow_log(
    api: KubeApi,
    pod_name: str,
    stop: threading.Event,
    echo: Callable[[list[str]], None],
    ended: Callable[[], bool],
) -> None:
    """Hand the lines of the pod's log to ``echo`` until ``ended()`` says the log is
    complete (its container terminated, or the pod is gone), or ``stop`` is set.

    A stream that breaks before the container ended is reopened from a minute before
    the last line handed on (sinceSeconds; the margin absorbs clock skew); the reopened
    stream's lines stamped at or before that line are skipped, so none is echoed twice."""
    last: Stamp | None = None
    backoff = Backoff(first=0.2, stop=stop)
    while not stop.is_set():
        echoed_before = last
        try:
            since = max(1, math.ceil(time.time() - last[0]) + 60) if last else None
            for raw_lines in iter_lines(api.pod_log(pod_name, since)):
                lines, newest = new_lines(raw_lines, echoed_before)
                if lines:
                    echo(lines)
                last = newest or last
                backoff.reset()
        except TRANSIENT as error:
            log.info("Log stream of pod %s: %s", pod_name, describe(error))
        if ended():
            return
        backoff.wait()


def new_lines(raw_lines: list[bytes], after: Stamp | None) -> tuple[list[str], Stamp | None]:
    """The messages of timestamped log lines newer than ``after`` (an unstamped line is
    kept whole), and the newest timestamp among them."""
    lines: list[str] = []
    newest: Stamp | None = None
    for raw in raw_lines:
        stamp_text, _, message = raw.decode("utf-8", "replace").rstrip("\r").partition(" ")
        stamp = log_timestamp(stamp_text)
        if stamp is None:
            message = f"{stamp_text} {message}" if message else stamp_text
        elif after is not None and stamp <= after:
            continue
        lines.append(message)
        newest = stamp or newest
    return lines, newest
