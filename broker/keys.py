"""Every Redis key and channel name runq uses, in one place.

All keys of one work queue share the hash tag ``{q:NAME}`` so each Lua script touches a
single Redis Cluster slot. Global indexes live outside any queue's tag and are written
outside the queue scripts, idempotently. Each script receives in KEYS the names its
header declares (broker/scripts/specs.py maps them to the fields and properties here).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QueueKeys:
    """The keys of one work queue; all hash to the same cluster slot."""

    config: str  # HASH  the queue's settings and counters
    scheduled: str  # ZSET  run id -> due time (ms)
    ready: str  # STREAM due runs; consumer group "agents", one consumer per agent id
    active: str  # ZSET  run id -> lease deadline (ms); its size is the slot count
    runs: str  # ZSET  run id -> creation time (ms); every run record of the queue
    done: str  # ZSET  run id -> time it ended (ms); terminal runs awaiting purge
    idempotency: str  # HASH  idempotency key -> run id
    agents: str  # ZSET  agent id -> last poll (ms)
    run_prefix: str  # prefix of the run records: run_prefix + run id (slot-sharing)
    wake: str  # pub/sub channel: "wake" on new work or a freed slot, "cancel ID"
    auto_prefix: str  # prefix of the per-deployment ZSETs of schedule-made runs
    index_prefix: str  # prefix of the listing indexes (by state, deployment, flow, name)
    events: str  # pub/sub channel: every change of a run or of the queue, for watchers (UI)
    waiters: str  # ZSET  idle agent id -> since (ms): whom a wake-up goes to

    def auto(self, deployment_id: str) -> str:
        """The future runs deployment ``deployment_id``'s schedule made on this queue."""
        return self.auto_prefix + deployment_id

    def run(self, run_id: str) -> str:
        return self.run_prefix + run_id

    def wake_for(self, agent_id: str) -> str:
        """The channel on which this queue wakes one waiting agent alone (the scripts
        build it as the queue's wake channel .. ':' .. agent id, the agent read from the
        waiters: same hash tag, same node)."""
        return f"{self.wake}:{agent_id}"

    def logs(self, run_id: str) -> str:
        """The run's log lines: a capped STREAM beside its record (same slot)."""
        return self.run_prefix + run_id + ":logs"

    def history(self, run_id: str) -> str:
        """The run's state history: a capped LIST beside its record (same slot)."""
        return self.run_prefix + run_id + ":history"

    def index(self, kind: str, value: str) -> str:
        """A listing index (ZSET of run ids by creation ms): kind state | sname | dep | flow."""
        return f"{self.index_prefix}{kind}:{value}"

    @property
    def names_index(self) -> str:
        """ZSET, score 0, members ``NAME + "\\0" + RUN_ID``: runs by name (ZRANGEBYLEX)."""
        return self.index_prefix + "names"

    @property
    def ended_index(self) -> str:
        """HASH run id -> what the purge of an ended run must remove (its index entries),
        should its record expire first."""
        return self.index_prefix + "ended"


@dataclass(frozen=True)
class LimitKeys:
    """The keys of one named concurrency limit; all hash to the slot ``{l:NAME}``.

    A limit named ``KEY:*`` caps each value of the tags ``KEY:VALUE`` on its own: its
    holders, waiters and starts are kept per value (``""`` for a limit on one tag), all
    in the limit's slot, so one script sees the limit and every count it checks.
    """

    config: str  # HASH  limit, rate_count, rate_ms, description, created, updated
    values: str  # SET   the values that have holders or waiting runs now
    value_prefix: str  # prefix of the per-value keys: value_prefix + kind + ":" + value

    def holders(self, value: str) -> str:
        """ZSET run id -> when it took its slot (ms): its size is the slots in use."""
        return f"{self.value_prefix}holders:{value}"

    def claims(self, value: str) -> str:
        """HASH run id -> the claim id (fencing) under which the holder took its slot."""
        return f"{self.value_prefix}claims:{value}"

    def waiting(self, value: str) -> str:
        """ZSET run id -> its due time (ms): the runs parked until a slot frees."""
        return f"{self.value_prefix}waiting:{value}"

    def notified(self, value: str) -> str:
        """ZSET run id -> until when (ms) a waiter sent back to its queue keeps its turn."""
        return f"{self.value_prefix}notified:{value}"

    def where(self, value: str) -> str:
        """HASH run id -> the queue of a holder or a waiting run."""
        return f"{self.value_prefix}where:{value}"

    def starts(self, value: str) -> str:
        """ZSET start id -> when (ms): the slots taken within the rate's window."""
        return f"{self.value_prefix}starts:{value}"


class Keys:
    """Key names under a prefix (``runq`` unless a test or tenant chooses another)."""

    def __init__(self, prefix: str = "runq") -> None:
        self.prefix = prefix
        self.queue_names = f"{prefix}:queues"  # SET of queue names
        self.queue_ids = f"{prefix}:queue-ids"  # HASH queue id -> name
        # SET of deleted queues whose run history is kept until its retention ends:
        self.retired_queues = f"{prefix}:retired-queues"
        self.run_index = f"{prefix}:index:runs"  # HASH run id -> queue name
        self.deployment_names = f"{prefix}:{{deployments}}:names"  # HASH name -> id
        self.deployment_prefix = f"{prefix}:{{deployments}}:deployment:"  # STRING json
        self.agent_registry = f"{prefix}:agents"  # ZSET agent id -> heartbeat (µs)
        self.agent_prefix = f"{prefix}:agent:"  # HASH agent record
        # The scheduler's (see broker/scheduling.py):
        self.schedule_due = f"{prefix}:{{deployments}}:schedule-due"  # ZSET id -> visit (ms)
        self.materialized = f"{prefix}:{{deployments}}:materialized"  # HASH id -> last due (ms)
        self.scheduler_lease = f"{prefix}:scheduler:lease"  # STRING holder, expires
        # runq ui's (see broker/ui_sessions.py), one slot {ui}: a session's STRING (PX
        # its age) is ui_session_prefix + digest, ui_sessions the ZSET digest -> opened (ms);
        # failed logins: ui_login_prefix + client counts them, ui_login_clients orders them
        self.ui_sessions = f"{prefix}:{{ui}}:sessions"
        self.ui_session_prefix = f"{prefix}:{{ui}}:session:"
        self.ui_login_clients = f"{prefix}:{{ui}}:login-clients"
        self.ui_login_prefix = f"{prefix}:{{ui}}:login-failures:"
        self.limit_names = f"{prefix}:limits"  # SET of named concurrency limits

    def limit(self, name: str) -> LimitKeys:
        base = f"{self.prefix}:{{l:{name}}}"
        return LimitKeys(config=f"{base}:limit", values=f"{base}:values", value_prefix=f"{base}:")

    def queue(self, name: str) -> QueueKeys:
        base = f"{self.prefix}:{{q:{name}}}"
        return QueueKeys(
            config=f"{base}:queue",
            scheduled=f"{base}:scheduled",
            ready=f"{base}:ready",
            active=f"{base}:active",
            runs=f"{base}:runs",
            done=f"{base}:done",
            idempotency=f"{base}:idempotency",
            agents=f"{base}:agents",
            run_prefix=f"{base}:run:",
            wake=f"{base}:wake",
            auto_prefix=f"{base}:auto:",
            index_prefix=f"{base}:index:",
            events=f"{base}:events",
            waiters=f"{base}:waiters",
        )

    def deployment(self, deployment_id: str) -> str:
        return self.deployment_prefix + deployment_id

    def agent(self, agent_id: str) -> str:
        return self.agent_prefix + agent_id
