"""How runs take and give back the slots of named concurrency limits.

A queue's scripts touch only its own cluster slot and a limit lives in another
(``{l:NAME}``), so a run's limits cannot be checked inside the claim. The protocol:

1. The claim makes the run PENDING under the agent's fencing token, as for any run.
2. The agent takes a slot of each limit the run's tags name, one script per limit, in
   name order; a slot is held under the claim's id (the SHA-1 of its token).
3. One limit full: the agent gives back what it took, the run joins that limit's line
   (the same script that found it full) and is parked (run_park.lua): SCHEDULED with the
   state name ``AwaitingConcurrencySlot``, out of its queue's due runs, its queue slot
   freed. Waiting costs nothing: no one polls for it, and its queue's other runs are
   delivered as if it were not there.
4. A freed slot (a release, a raised or deleted limit, a rate window moving on) sends the
   first runs in line back to their queues (run_unpark.lua), at their own due time; they
   keep their turn for ``LIMIT_TURN_MS``, so a run that was not waiting cannot take it.
5. The run's end gives its slots back (the agent, when the run's infrastructure is done).
   A release that never came (the agent killed -9) is found by the limit pass
   (:meth:`LimitSlots.pass_limits`, every agent runs it): a holder whose run has ended,
   is gone or is held under another claim gives its slot back. A run's own lease is what
   ends it when its agent dies, so slots come back within a lease plus one pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from .core import BrokerCore
from .errors import FlowRunNotFound, InvalidTransition
from .keys import LimitKeys
from .models import Deployment, FlowRun, StateType, claim_id_of
from .timeutil import datetime_to_ms

WAITING_STATE_NAME = "AwaitingConcurrencySlot"
LIMIT_TURN_MS = 10_000  # how long a run sent back to its queue keeps its turn
CHECKED_HOLDERS = 200  # holders of one value checked per pass at most
_SEND_BACK_ROUNDS = 50  # runs dropped from a line in a row at most (a bound, not a count)
_LIVE = {"PENDING", "RUNNING", "CANCELLING"}


@dataclass(frozen=True, order=True)
class LimitSlot:
    """One slot a run needs: limit ``name``, at ``value`` of a ``KEY:*`` limit."""

    name: str
    value: str = ""

    def __str__(self) -> str:
        return f"{self.name[:-1]}{self.value}" if self.value else self.name


@dataclass(frozen=True)
class Waiting:
    """A claimed run that does not start: it waits for ``slot`` (parked), or it was
    ``cancelled`` by its deployment's collision strategy ``cancel-new``."""

    slot: LimitSlot
    message: str
    cancelled: bool = False


def deployment_limit_name(deployment_id: object) -> str:
    """The limit a deployment's ``concurrency_limit`` is kept as (Prefect 3's naming)."""
    return f"deployment:{deployment_id}"


def matching_limits(tags: list[str], names: set[str]) -> list[LimitSlot]:
    """The slots a run with ``tags`` needs, in the order every taker takes them."""
    wanted: set[LimitSlot] = set()
    for tag in tags:
        if tag in names:
            wanted.add(LimitSlot(tag))
        key, colon, value = tag.partition(":")
        if colon and value and f"{key}:*" in names:
            wanted.add(LimitSlot(f"{key}:*", value))
    return sorted(wanted)


def text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def flat_pairs(flat: Any) -> list[tuple[str, str]]:
    """``[a, b, c, d]`` as ``[(a, b), (c, d)]``, as text."""
    items = [text(item) for item in flat]
    return list(zip(items[::2], items[1::2], strict=True))


class LimitSlots(BrokerCore):
    """Taking, giving back and mending the slots of named limits (agents call these)."""

    if TYPE_CHECKING:  # from Claims, which the Broker is composed with

        def set_state(
            self, run_id: str | UUID, state: StateType | str, *, token: str | None, message: str
        ) -> FlowRun: ...

        def cancel_flow_run(self, run_id: str | UUID, *, message: str | None = None) -> FlowRun: ...

    def _limit_keys(self, name: str) -> LimitKeys:
        return self.keys.limit(name)

    def take_limit_slots(
        self,
        run: FlowRun,
        queue: str,
        token: str,
        names: set[str],
        deployment: Deployment | None = None,
    ) -> list[LimitSlot] | Waiting:
        """Take every slot claimed ``run`` needs (``names``: the limits that exist), or
        none: the run then waits in the line of the first full limit, parked. With its
        ``deployment``, the deployment's own ``concurrency_limit`` is one more slot, and
        its collision strategy says what a run that finds it full does.

        Returns:
            The slots now held (empty when no limit names the run's tags), or
            :class:`Waiting` when the run was parked (or its claim lost: either way the
            caller does not start it).
        """
        run_id, held = str(run.id), claim_id_of(token)
        own = None
        if deployment is not None and deployment.concurrency_limit is not None:
            own = LimitSlot(deployment_limit_name(deployment.id))
        taken: list[LimitSlot] = []
        for slot in sorted({*matching_limits(run.tags, names), *([own] if own else [])}):
            reply = self.scripts.limit_acquire(
                self._limit_keys(slot.name),
                run_id=run_id,
                claim_id=held,
                queue=queue,
                due_ms=datetime_to_ms(run.expected_start_time),
                value=slot.value,
                notify_ms=LIMIT_TURN_MS,
            )
            kind = text(reply[0])
            if kind == "wait":
                self._send_back(slot, flat_pairs(reply[2:]))
                self.release_limit_slots(run_id, held, taken)
                strategy = deployment.collision_strategy if deployment and slot == own else ""
                if strategy == "cancel-new":
                    return self._cancel_new(run, token, slot, int(reply[1]))
                waiting = self._park(run, queue, token, slot, int(reply[1]))
                if strategy == "cancel-in-progress":
                    self._cancel_oldest(slot)
                return waiting
            if kind == "ok":
                taken.append(slot)
                self._send_back(slot, flat_pairs(reply[1:]))
        return taken

    def _park(self, run: FlowRun, queue: str, token: str, slot: LimitSlot, in_use: int) -> Waiting:
        """Park a run that joined ``slot``'s line; a turn that came meanwhile is resent."""
        message = f"Waiting for concurrency limit {str(slot)!r} ({in_use} in use)."
        parked = self.scripts.run_park(
            self._queue(queue),
            run_id=str(run.id),
            token=token,
            message=message,
            limit=f"{slot.name}\n{slot.value}",
        )
        if not int(parked):  # its claim was lost meanwhile: it is not ours to park
            self._release(slot, str(run.id), "")
        else:
            self._pass_value(slot, resend=str(run.id))
        return Waiting(slot, message)

    def _cancel_new(self, run: FlowRun, token: str, slot: LimitSlot, in_use: int) -> Waiting:
        """``cancel-new``: the run leaves the line and ends CANCELLED, saying why."""
        self._release(slot, str(run.id), "")
        message = (
            f"Cancelled: its deployment's concurrency limit has {in_use} run(s) in flight "
            "(collision strategy cancel-new)."
        )
        self.set_state(run.id, StateType.CANCELLED, token=token, message=message)
        return Waiting(slot, message, cancelled=True)

    def _cancel_oldest(self, slot: LimitSlot) -> None:
        """``cancel-in-progress``: cancel the oldest run in flight; its slot, once its
        infrastructure is stopped, goes to the run that waits first in line."""
        for run_id in self.client.zrange(self._limit_keys(slot.name).holders(slot.value), 0, 0):
            try:
                self.cancel_flow_run(
                    text(run_id),
                    message="Cancelled: a newer run of its deployment took its slot "
                    "(collision strategy cancel-in-progress).",
                )
            except (FlowRunNotFound, InvalidTransition):
                pass  # it ended meanwhile: its slot is on its way back

    def release_limit_slots(self, run_id: str, held: str, slots: list[LimitSlot]) -> None:
        """Give back ``slots`` held under claim id ``held`` (see :func:`~runq.broker.models.claim_id_of`)."""
        for slot in slots:
            self._release(slot, run_id, held)

    def _release(self, slot: LimitSlot, run_id: str, held: str) -> None:
        reply = self.scripts.limit_release(
            self._limit_keys(slot.name),
            run_id=run_id,
            claim_id=held,
            value=slot.value,
            notify_ms=LIMIT_TURN_MS,
        )
        self._send_back(slot, flat_pairs(reply[1:]))

    def _send_back(self, slot: LimitSlot, runs: list[tuple[str, str]]) -> None:
        """Put runs whose turn came back among their queues' due runs; one that no longer
        waits (cancelled, deleted) leaves the line, and its turn passes on."""
        for _ in range(_SEND_BACK_ROUNDS):
            if not runs:
                return
            gone: list[str] = []
            for run_id, queue in runs:
                sent = self.scripts.run_unpark(self._queue(queue), run_id=run_id) if queue else 0
                if not int(sent):
                    gone.append(run_id)
            runs = []
            for run_id in gone:
                reply = self.scripts.limit_release(
                    self._limit_keys(slot.name),
                    run_id=run_id,
                    claim_id="",
                    value=slot.value,
                    notify_ms=LIMIT_TURN_MS,
                )
                runs += flat_pairs(reply[1:])

    def pass_limits(self, names: set[str] | None = None) -> None:
        """The limit pass: for every limit (or ``names``) and each of its values, send
        waiting runs back for the slots free now (a rate's window moved on, a release
        was lost) and give back the slots of holders whose runs ended without saying so."""
        for name in sorted(self.limit_names() if names is None else names):
            self._pass_limit(name)

    def limit_names(self) -> set[str]:
        """The names of every limit (what an agent matches its runs' tags against)."""
        return {text(name) for name in self.client.smembers(self.keys.limit_names)}

    def _pass_limit(self, name: str) -> None:
        values = self.client.smembers(self._limit_keys(name).values)
        for value in sorted(text(v) for v in values):
            self._pass_value(LimitSlot(name, value))

    def _pass_value(self, slot: LimitSlot, resend: str = "") -> None:
        reply = self.scripts.limit_pass(
            self._limit_keys(slot.name),
            value=slot.value,
            notify_ms=LIMIT_TURN_MS,
            older_ms=0,
            max_holders=CHECKED_HOLDERS,
            resend=resend,
        )
        self._send_back(slot, flat_pairs(reply[0]))
        listed = [text(item) for item in reply[1]]
        holders = [(listed[i], listed[i + 1], listed[i + 2]) for i in range(0, len(listed), 3)]
        for run_id, held in self._ended_holders(holders):
            self._release(slot, run_id, held)

    def _ended_holders(self, holders: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
        """Of ``(run id, claim id, queue)``, the holders whose run no longer holds that
        claim in flight: ended, gone, parked or claimed again."""
        if not holders:
            return []
        ended = [(run_id, held) for run_id, held, queue in holders if not queue]
        holders = [holder for holder in holders if holder[2]]
        pipe = self.client.pipeline(transaction=False)
        for run_id, _, queue in holders:
            pipe.hmget(self._queue(queue).run(run_id), ["st", "token"])
        for (run_id, held, _), (state, token) in zip(holders, pipe.execute(), strict=True):
            if state is None or text(state) not in _LIVE or token is None or text(token) != held:
                ended.append((run_id, held))
        return ended
