"""runq's exceptions, and the one place where script error replies become them.

Scripts reply ``RUNQ <CODE> <detail>``; the code picks the exception class and the
detail completes its message. Every message is one line a person can act on, because
the CLI prints it as is.
"""

from __future__ import annotations

import redis


class RunqError(Exception):
    """Base class of every error runq raises on purpose."""


class InvalidInput(RunqError, ValueError):
    """A name, limit, parameter or other input was refused before anything was written."""


class NotFound(RunqError, LookupError):
    """The named object does not exist."""


class WorkQueueNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"No work queue named {name!r} found.")
        self.name = name


class FlowRunNotFound(NotFound):
    def __init__(self, run_id: str) -> None:
        super().__init__(f"No flow run with id {run_id!r} found.")
        self.run_id = run_id


class DeploymentNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"No deployment named {name!r} found.")
        self.name = name


class ConcurrencyLimitNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"No concurrency limit named {name!r} found.")
        self.name = name


class AlreadyExists(RunqError):
    """An object with that name exists already; nothing was changed."""


class WorkQueueExists(AlreadyExists):
    def __init__(self, name: str) -> None:
        super().__init__(f"Work queue {name!r} already exists.")
        self.name = name


class DeploymentExists(AlreadyExists):
    def __init__(self, name: str) -> None:
        super().__init__(f"Deployment {name!r} already exists.")
        self.name = name


class ConcurrencyLimitExists(AlreadyExists):
    def __init__(self, name: str) -> None:
        super().__init__(f"Concurrency limit {name!r} already exists.")
        self.name = name


class WorkQueueBusy(RunqError):
    """The queue still has runs in flight (PENDING, RUNNING or CANCELLING)."""

    def __init__(self, name: str, active: int) -> None:
        super().__init__(
            f"Work queue {name!r} has {active} run(s) in flight; force the delete to remove it anyway."
        )
        self.name = name
        self.active = active


class InvalidTransition(RunqError):
    """The run is not in a state the requested transition may leave."""

    def __init__(self, run_id: str, current: str, target: str) -> None:
        super().__init__(f"Flow run {run_id} is {current}; it cannot become {target}.")
        self.run_id = run_id
        self.current = current
        self.target = target


class StaleClaim(RunqError):
    """The caller's fencing token is not the run's current one: another owner holds it."""

    def __init__(self, run_id: str, token: str | None = None, *, unfenced: bool = False) -> None:
        message = (
            f"Flow run {run_id} is claimed: only its owner, with the claim's token, changes "
            "its state (cancel it with `runq flow-run cancel`); the write was refused."
            if unfenced
            else f"Flow run {run_id} was claimed again since this owner's claim; its write was refused."
        )
        super().__init__(message)
        self.run_id = run_id
        self.token = token


class BrokerUnavailable(RunqError):
    """Redis could not be reached or refused the connection (URL shown with its password masked)."""


class RedisOutOfMemory(BrokerUnavailable):
    """Redis refused a write because its memory is full (maxmemory with noeviction).
    Nothing of the refused operation was written; it can be retried once memory is back."""

    def __init__(self, where: str = "Redis") -> None:
        super().__init__(
            f"{where} is out of memory (used memory is over maxmemory): the write was "
            "refused and nothing of it was written; free memory or raise maxmemory."
        )


def is_out_of_memory(error: Exception) -> bool:
    """True for Redis' refusal of a write under full memory (a script's or a command's)."""
    return isinstance(error, redis.exceptions.OutOfMemoryError) or (
        "command not allowed when used memory" in str(error)
    )


class ScriptError(RunqError):
    """A script replied with an error that is not one of runq's own codes."""


def _busy(detail: str) -> WorkQueueBusy:
    active, _, name = detail.partition(" ")
    return WorkQueueBusy(name, int(active))


def _bad_transition(detail: str) -> InvalidTransition:
    run_id, current, target = detail.split(" ", 2)
    return InvalidTransition(run_id, current, target)


#: Script error codes (``RUNQ <CODE> <detail>``) and the exception each one becomes.
SCRIPT_ERRORS = {
    "QUEUE_NOT_FOUND": WorkQueueNotFound,
    "QUEUE_EXISTS": WorkQueueExists,
    "QUEUE_BUSY": _busy,
    "RUN_NOT_FOUND": FlowRunNotFound,
    "BAD_TRANSITION": _bad_transition,
    "STALE": StaleClaim,
    "UNFENCED": lambda run_id: StaleClaim(run_id, unfenced=True),
    "DEPLOYMENT_EXISTS": DeploymentExists,
    "LIMIT_EXISTS": ConcurrencyLimitExists,
    "LIMIT_NOT_FOUND": ConcurrencyLimitNotFound,
    "DEPLOYMENT_NOT_FOUND": DeploymentNotFound,
}


def translate_script_error(error: redis.ResponseError) -> Exception:
    """The exception for a script's error reply; anything not ours is a ScriptError."""
    text = str(error)
    if is_out_of_memory(error):
        return RedisOutOfMemory()
    marker = text.find("RUNQ ")
    if marker == -1:
        return ScriptError(text)
    code, _, detail = text[marker + 5 :].partition(" ")
    factory = SCRIPT_ERRORS.get(code)
    if factory is None:
        return ScriptError(text)
    return factory(detail)
