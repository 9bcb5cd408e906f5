"""The engine: executes one flow run inside its infrastructure.

The agent starts it with the run id, ``RUNQ_API_URL`` and the claim's fencing token
(``RUNQ_FLOW_RUN_TOKEN``) in the environment. The engine waits for the run's due time
(prefetched runs start on time, not early), moves it PENDING -> RUNNING with the token,
heartbeats from a thread, calls the entrypoint with validated parameters (or runs the
deployment's command), and reports COMPLETED, FAILED, or AwaitingRetry when the
deployment allows another attempt; the heartbeat goes on until that report is written,
which under full memory waits for memory to come back. Every write is fenced, so an
engine whose claim was taken over can neither start nor finish the run.

Kept lean on imports: the time from submission to RUNNING is the engine's start-up.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any, NoReturn, TypeVar

from runq.broker import (
    Broker,
    Deployment,
    DeploymentNotFound,
    FlowRun,
    InvalidTransition,
    RunqError,
    StaleClaim,
    StateType,
    claim_id_of,
)
from runq.broker.settings import TOKEN_ENV, RunqSettings

from .heartbeat import EXIT_STALE, RunHeartbeat
from .loading import FlowLoadError, enter_path, load_entrypoint
from .output import OutputCapture
from .parameters import bind_parameters
from .patience import connect_patiently, patiently

T = TypeVar("T")

RESULT_LIMIT = 2000  # characters of a JSON result kept on the run record


def summarize(value: Any) -> Any:
    """A short JSON summary of a flow's return value for the run record."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        return {"type": type(value).__name__, "repr": repr(value)[:RESULT_LIMIT]}
    if len(text) <= RESULT_LIMIT:
        return value
    return {"type": type(value).__name__, "truncated": text[:RESULT_LIMIT]}


class Engine:
    """Executes one claimed run."""

    def __init__(
        self, broker: Broker, run_id: str, token: str, settings: RunqSettings | None = None
    ) -> None:
        self.broker, self.run_id, self.token = broker, run_id, token
        self.settings = settings or RunqSettings.from_env()
        self.capture: OutputCapture | None = None
        self.heartbeat_seconds = self.settings.heartbeat_seconds
        self.patience = self.settings.engine_patience_seconds
        self.cancel_grace = self.settings.cancel_grace_seconds
        self.pid = os.getpid()  # the engine's process: a process the flow forks is another
        self.heartbeat: RunHeartbeat | None = None  # from RUNNING until the final state

    def log(self, message: str) -> None:
        print(f"runq: {message}", file=sys.stderr, flush=True)

    def wait_until_due(self, run: FlowRun) -> None:
        """Sleep until the due time by Redis' clock: prefetched runs start on time."""
        early = (run.expected_start_time - self.patiently(self.broker.server_time)).total_seconds()
        if early > 0:
            time.sleep(early)

    def patiently(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return patiently(self.patience, call, *args, redis_url=self.broker.url, **kwargs)

    def transition(self, state: StateType, **fields: Any) -> FlowRun:
        """A fenced state change that survives a lost reply: if a retried write finds the
        run already where it was going (the first attempt did land), that is success.
        While the run's heartbeat renews its claim, full memory is waited out for as long
        as it lasts (RunHeartbeat.waits_out): the write lands once memory is back."""
        try:
            return patiently(
                self.patience,
                self.broker.set_state,
                self.run_id,
                state,
                token=self.token,
                redis_url=self.broker.url,
                wait_out=self.heartbeat.waits_out if self.heartbeat is not None else None,
                **fields,
            )
        except InvalidTransition:
            run = self.patiently(self.broker.read_flow_run, self.run_id)
            landed = run.state.type is state and (
                run.claim_id == claim_id_of(self.token) or state is StateType.SCHEDULED
            )
            if landed:
                return run
            raise

    def execute(self) -> int:
        run = self.patiently(self.broker.read_flow_run, self.run_id)
        self.capture = OutputCapture(self.broker, run, echo=self.settings.log_echo)
        self.capture.start()
        try:
            return self.execute_captured(run)
        finally:
            self.end_capture()

    def end_capture(self) -> None:
        """Stop capturing output and store what is left (idempotent): the last lines
        reach the log before the final state is written."""
        if self.capture is not None:
            self.capture.stop(self.patience)
            self.capture = None

    def execute_captured(self, run: FlowRun) -> int:
        self.wait_until_due(run)
        try:
            deployment = self.deployment_of(run)
        except DeploymentNotFound:  # deleted while the run waited (a prefetched run)
            self.end_capture()
            self.finish(
                StateType.CANCELLED,
                message=f"not started: its deployment {run.deployment_id} was deleted",
            )
            return 0
        try:
            policy = (deployment.retries, deployment.retry_delay_seconds) if deployment else None
            run = self.transition(StateType.RUNNING, retries=policy)
        except (StaleClaim, InvalidTransition) as error:
            self.log(f"not starting: {error}")
            return EXIT_STALE
        self.heartbeat = RunHeartbeat(
            self.broker, run, self.token, self.heartbeat_seconds, self.cancel_grace
        )
        self.heartbeat.start()
        try:
            return self.run_and_report(run, deployment)
        finally:
            self.heartbeat.stopped.set()  # the final state is written (or never will be)

    def run_and_report(self, run: FlowRun, deployment: Deployment | None) -> int:
        """Call the flow, store its last lines, write its final state: the run's lease is
        renewed all along (the heartbeat stops only once this returns)."""
        try:
            result = self.call_flow_here(run, deployment)
        except Exception as error:  # the flow's own failure, reported on the run
            return self.failed(run, deployment, error)
        self.end_capture()
        self.finish(StateType.COMPLETED, result=summarize(result))
        return 0

    def call_flow_here(self, run: FlowRun, deployment: Deployment | None) -> Any:
        """Call the flow, in this process only. A process the flow forked runs the flow's
        code on, and when that returns or raises it comes back here: it ends at once
        (:func:`end_forked_child`), for the run is this engine's to report, not a copy's,
        and the copy holds the engine's locks as its threads held them at the fork, which
        no thread of its own will ever release. Then the heartbeat only renews: the
        flow's end is the engine's news now."""
        try:
            result = self.call_flow(run, deployment)
        except BaseException as error:
            if os.getpid() != self.pid:
                end_forked_child(error)
            self.flow_ended()
            raise
        if os.getpid() != self.pid:
            end_forked_child(None)
        self.flow_ended()
        return result

    def flow_ended(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.finishing.set()

    def deployment_of(self, run: FlowRun) -> Deployment | None:
        if run.deployment_id is None:
            return None
        return self.patiently(self.broker.read_deployment, run.deployment_id)

    def call_flow(self, run: FlowRun, deployment: Deployment | None) -> Any:
        if deployment is None or deployment.entrypoint is None:
            command = deployment.command if deployment else None
            if not command:
                raise FlowLoadError("the run has no deployment with an entrypoint or command")
            enter_path(deployment.path if deployment else None)
            return self.run_command(command)
        enter_path(deployment.path)
        call = bind_parameters(
            load_entrypoint(deployment.entrypoint, deployment.path), run.parameters
        )
        result = call()
        if inspect.isawaitable(result):
            result = asyncio.run(_awaited(result))
        return result

    def run_command(self, command: list[str]) -> dict[str, int]:
        code = subprocess.call(command)
        if code != 0:
            raise RuntimeError(f"command {command[0]!r} exited with status {code}")
        return {"exit_code": code}

    def failed(self, run: FlowRun, deployment: Deployment | None, error: Exception) -> int:
        traceback.print_exception(error, file=sys.stderr)
        sys.stderr.flush()
        self.end_capture()
        message = f"{type(error).__name__}: {error}"[:1000]
        retries = deployment.retries if deployment else 0
        attempt = self.patiently(self.broker.read_flow_run, self.run_id).run_count
        if not isinstance(error, FlowLoadError) and attempt <= retries:
            delay = timedelta(seconds=deployment.retry_delay_seconds if deployment else 0)
            self.finish(
                StateType.SCHEDULED,
                name="AwaitingRetry",
                message=f"attempt {attempt} of {retries + 1} failed: {message}",
                scheduled_start_time=self.patiently(self.broker.server_time) + delay,
            )
            return 0
        self.finish(StateType.FAILED, message=message)
        return 1

    def finish(self, state: StateType, **fields: Any) -> None:
        try:
            self.transition(state, **fields)
        except (StaleClaim, InvalidTransition) as error:
            self.log(f"result not recorded: {error}")
            raise SystemExit(EXIT_STALE) from None


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def end_forked_child(error: BaseException | None) -> NoReturn:
    """End a process the flow forked that came back into the engine, with the status
    the interpreter would give it (``sys.exit``'s, or a traceback and 1), its output
    flushed, and nothing of the engine's: no state written, no thread joined, no atexit
    handler of the engine run twice."""
    code, text = 0, ""
    if isinstance(error, SystemExit):
        code = error.code if isinstance(error.code, int) else 0 if error.code is None else 1
        text = "" if isinstance(error.code, int) or error.code is None else f"{error.code}\n"
    elif error is not None:
        code, text = 1, "".join(traceback.format_exception(error))
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    data = text.encode(errors="replace")
    while data:
        try:
            data = data[os.write(2, data) :]
        except OSError:
            break
    os._exit(code & 0xFF)


def execute(run_id: str, url: str | None = None) -> int:
    """Execute ``run_id`` with the token from ``RUNQ_FLOW_RUN_TOKEN``; returns the exit code."""
    settings = RunqSettings.from_env()
    token = settings.flow_run_token
    if not token:
        raise RunqError(f"{TOKEN_ENV} is not set: flow runs are executed by their agent.")
    broker = connect_patiently(url, settings)
    try:
        return Engine(broker, run_id, token, settings).execute()
    finally:
        broker.close()
