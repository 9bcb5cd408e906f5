"""An engine's heartbeat thread (:class:`RunHeartbeat`): its one run's lease, renewed.

An engine renews its run's lease from the moment the run is RUNNING until its final
state is written: under full memory Redis refuses that write for as long as memory stays
full, while it still runs the renewal (heartbeat.lua runs whatever memory holds), so a
run is never CRASHED for a result that waits for memory to come back. The agent's own
heartbeat (its runs' leases, its registration) is agent/heartbeats.py.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from runq.broker import (
    Broker,
    BrokerUnavailable,
    FlowRun,
    FlowRunNotFound,
    RedisOutOfMemory,
    RunqError,
    StaleClaim,
    StateType,
)
from runq.broker.states import LIVE_STATES

EXIT_STALE = 3  # the claim was lost: this engine must not go on


class RunHeartbeat(threading.Thread):
    """An engine's renewal of its run's lease; stops the process if the claim is lost.

    When the run turns CANCELLING and no agent stops it within the grace period (its
    agent may be gone), the engine cancels itself. Once the flow has returned or raised
    (``finishing``) a reply is news for the engine's final write, never a reason to stop
    this process: :attr:`holds_claim` says whether the claim is still this engine's.
    """

    def __init__(self, broker: Broker, run: FlowRun, token: str, interval: float, grace: float):
        super().__init__(name="runq-heartbeat", daemon=True)
        self.broker, self.run_id, self.token = broker, run.id, token
        self.interval, self.grace = interval, grace
        self.stopped = threading.Event()
        self.finishing = threading.Event()
        #: False once a renewal while finishing found the claim lost or the run ended.
        self.holds_claim = True

    def run(self) -> None:
        cancelling_since: float | None = None
        while not self.stopped.wait(self.interval):
            try:
                state = self.broker.heartbeat(self.run_id, self.token)
            except (StaleClaim, FlowRunNotFound):
                if self.finishing.is_set():
                    self.holds_claim = False  # the final write says so, and the engine exits
                    continue
                print("runq: this run was claimed again elsewhere; stopping", file=sys.stderr)
                os._exit(EXIT_STALE)
            except RunqError as error:  # Redis briefly away: the lease has slack
                print(f"runq: heartbeat failed: {error}", file=sys.stderr)
                continue
            if self.stopped.is_set():
                break  # the engine wrote its final state meanwhile
            if self.finishing.is_set():
                self.holds_claim = state in LIVE_STATES
                continue
            if state not in LIVE_STATES:  # ended elsewhere (a lost lease): not ours to run
                print(f"runq: this run is {state.value} now; stopping", file=sys.stderr)
                self.kill_own_processes()
            if state is StateType.CANCELLING:
                cancelling_since = cancelling_since or time.monotonic()
                if time.monotonic() - cancelling_since >= self.grace:
                    self.cancel_self()

    def waits_out(self, error: BrokerUnavailable) -> bool:
        """True when the final write was refused for full memory while this thread still
        renews the claim: waiting then costs the run nothing, so it does not count against
        the engine's patience (which is for a Redis that does not answer)."""
        return isinstance(error, RedisOutOfMemory) and self.holds_claim and self.is_alive()

    def cancel_self(self) -> None:
        try:
            self.broker.set_state(
                self.run_id,
                StateType.CANCELLED,
                token=self.token,
                message="cancelled; stopped by its own engine",
            )
        finally:
            self.kill_own_processes()

    @staticmethod
    def kill_own_processes() -> None:
        """End the flow and every process it started, then this engine."""
        try:
            os.killpg(os.getpgrp(), signal.SIGKILL)  # its own group (the process infra)
        except OSError:
            pass  # PID 1 of a container: its exit below ends the others
        os._exit(EXIT_STALE)
