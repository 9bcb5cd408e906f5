"""Turning an infrastructure's output chunks into the run's log lines.

Each infrastructure reads its output its own way (a pipe, a container's attach stream,
a pod's log); all of them hand chunks to a LineSink, which splits them into lines,
stores each chunk's complete lines in one round trip (a quiet flow's line is stored at
once, a chatty flow's lines batch themselves) and echoes them when asked.
"""

from __future__ import annotations

import sys

from broker import Broker, FlowRun


class LineSink:
    """The run's log stream, fed with raw output chunks per stream (stdout, stderr)."""

    def __init__(self, broker: Broker, run: FlowRun, echo: bool) -> None:
        self.broker, self.run_id, self.echo = broker, run.id, echo
        self.prefix = f"{run.name} | "
        self.pending: dict[str, bytes] = {}

    def feed(self, stream: str, chunk: bytes) -> None:
        """Store the complete lines of ``chunk``; keep a partial last line for later."""
        *lines, self.pending[stream] = (self.pending.get(stream, b"") + chunk).split(b"\n")
        self.store(stream, lines)

    def close(self) -> None:
        """Store what is left of each stream (a last line without a newline)."""
        for stream, rest in self.pending.items():
            if rest:
                self.store(stream, [rest])
        self.pending.clear()

    def store(self, stream: str, raw_lines: list[bytes]) -> None:
        lines = [raw.decode("utf-8", "replace").rstrip("\r") for raw in raw_lines]
        if not lines:
            return
        if self.echo:
            out = sys.stderr if stream == "stderr" else sys.stdout
            out.write("".join(f"{self.prefix}{line}\n" for line in lines))
            out.flush()
        try:
            self.broker.append_logs(self.run_id, [(stream, line) for line in lines])
        except Exception as error:  # logs are best effort; the run's state is not
            print(f"runq: could not store log lines of {self.run_id}: {error}", file=sys.stderr)
