"""Materializing schedules into flow runs: what the scheduler does on each pass.

For every deployment with an active schedule, runq keeps the runs due within a horizon
(Prefect's defaults: at least 3 runs and at least 1 hour ahead, at most 100 runs and
100 days ahead) as SCHEDULED runs on its work queue. Each run's idempotency key is the
deployment id plus the due time in UTC, so any number of scheduler replicas may run the
same pass at once and none is ever doubled: correctness never depends on who runs it.

The work of a pass does not grow with the number of deployments. A sorted set holds, per
deployment, the moment it next needs runs (when fewer than 3 would be ahead, or less than
an hour); a pass visits only the deployments whose moment has come, and creates only the
due times after the last one it made (also stored).

The scheduler works through the Broker's core (client, keys, settings, scripts): it stores
runs as the Broker does (``broker/enqueue.py``), and its Redis calls fail as the
Broker's do (:func:`broker.core.names_redis_on_failure`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import redis
from pydantic import BaseModel

from .backoff import Backoff
from .checks import ms
from .core import BrokerCore, names_redis_on_failure
from .enqueue import enqueue_runs, unschedule_runs
from .errors import BrokerUnavailable
from .keys import QueueKeys
from .models import Deployment, FlowRunCreate
from .schedules import due_times
from .timeutil import datetime_to_ms

log = logging.getLogger("runq.scheduler")

AUTO_TAG = "auto-scheduled"


class Horizon(BaseModel):
    """How far ahead runs are materialized."""

    min_runs: int = 3
    max_runs: int = 100
    min_ahead: timedelta = timedelta(hours=1)
    max_ahead: timedelta = timedelta(days=100)

    @classmethod
    def from_settings(cls, settings: Any) -> Horizon:
        """From BrokerSettings (``RUNQ_SCHEDULER_MIN_RUNS`` and friends)."""
        return cls(
            min_runs=settings.scheduler_min_runs,
            max_runs=settings.scheduler_max_runs,
            min_ahead=timedelta(seconds=settings.scheduler_min_ahead_seconds),
            max_ahead=timedelta(seconds=settings.scheduler_max_ahead_seconds),
        )


@dataclass
class PassResult:
    """What one pass did."""

    deployments: int = 0
    created: int = 0
    purged: int = 0  # runs of deleted queues purged at the end of their retention


def idempotency_key(deployment: Deployment, due: datetime) -> str:
    """``DEPLOYMENT_ID:YYYY-MM-DDTHH:MM:SSZ``: the same due time always gives the same key."""
    return f"{deployment.id}:{due.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"


def desired_times(deployment: Deployment, now: datetime, horizon: Horizon) -> list[datetime]:
    """The due times the deployment should have materialized at ``now``."""
    if deployment.schedule is None or not deployment.is_schedule_active:
        return []
    candidates = due_times(
        deployment.schedule, now, end=now + horizon.max_ahead, count=horizon.max_runs
    )
    wanted: list[datetime] = []
    for due in candidates:
        wanted.append(due)
        if len(wanted) >= horizon.min_runs and due >= now + horizon.min_ahead:
            break
    return wanted


def revisit_at(times: list[datetime], horizon: Horizon) -> datetime | None:
    """When the horizon will no longer hold with ``times``: the deployment's next visit."""
    if not times:
        return None
    moments = [times[-1] - horizon.min_ahead]
    if len(times) >= horizon.min_runs:
        moments.append(times[-horizon.min_runs])
    return min(moments)


#: What "Redis is away" looks like from here: every public method translates redis-py's
#: errors as the Broker's do (BrokerUnavailable); the others are a belt and braces.
_UNREACHABLE = (BrokerUnavailable, redis.ConnectionError, redis.TimeoutError)


@names_redis_on_failure
class Scheduler:
    """Materializes schedules; every method is safe to run from many processes at once."""

    def __init__(self, core: BrokerCore, horizon: Horizon | None = None) -> None:
        self.core = core
        self.url = core.url  # named by the failure translation
        self.horizon = horizon or Horizon.from_settings(core.settings)
        self.due_key = core.keys.schedule_due  # ZSET id -> visit (ms)
        self.made_key = core.keys.materialized  # HASH id -> last due (ms)
        self.lease_key = core.keys.scheduler_lease  # STRING holder, expires

    def run_forever(self, holder: str, loop_seconds: float, stop: threading.Event) -> None:
        """A pass every ``loop_seconds`` while ``holder`` gets the lease, until ``stop``.

        It never ends on an error: while Redis is unreachable it retries with a growing
        delay (one log line per attempt, naming the URL) and says when Redis is back, so
        a restart or failover costs a few lines, not the service.
        """
        outage = Backoff(self.core.url)
        while not stop.is_set():
            wait = loop_seconds
            try:
                result = self.run_pass_if_leader(holder, lease_seconds=loop_seconds)
            except _UNREACHABLE as error:
                wait, notice = outage.failed(error)
                log.warning(notice)
            except Exception as error:  # a bad record, a refused command: try next time
                log.warning("Scheduler pass failed: %s", error)
            else:
                if back := outage.recovered():
                    log.info(back)
                if result and result.created:
                    log.info(
                        "Scheduled %d flow run(s) for %d deployment(s).",
                        result.created,
                        result.deployments,
                    )
            stop.wait(wait)

    def run_pass_if_leader(self, holder: str, lease_seconds: float) -> PassResult | None:
        """Run a pass unless another scheduler holds the lease; None when it does.

        The lease only spares the others the work (so the total does not grow with the
        number of replicas); two passes at once would still create each run once.
        """
        acquired = self.core.client.set(
            self.lease_key, holder, nx=True, px=max(1, int(lease_seconds * 1000))
        )
        if not acquired and self.core.client.get(self.lease_key) != holder:
            return None
        self.core.client.pexpire(self.lease_key, max(1, int(lease_seconds * 1000)))
        return self.run_pass()

    def run_pass(self, limit: int = 10_000) -> PassResult:
        """Materialize every deployment whose visit time has come (at most ``limit``)."""
        now = self.core.server_time()
        ids = self.core.client.zrangebyscore(
            self.due_key, "-inf", datetime_to_ms(now), start=0, num=limit
        )
        deployments = self._read(ids)
        for deployment_id in set(ids) - set(deployments):
            self.forget(deployment_id)
        created = self.materialize_many(list(deployments.values()), now)
        purged = self.sweep_retired()
        return PassResult(deployments=len(deployments), created=created, purged=purged)

    def sweep_retired(self) -> int:
        """Purge the history of deleted queues as its retention ends; returns how many
        runs went. No agent sweeps a deleted queue, so the pass does: the sweep script
        purges a queue without a config. A name leaves the retired set once its runs
        are all gone, or when its queue exists again (then its agents sweep it)."""
        core, purged = self.core, 0
        for name in sorted(core.client.smembers(core.keys.retired_queues)):
            keys = core.keys.queue(name)
            if not core.client.exists(keys.config):
                purged += self._purge_retired(keys)
            if core.client.exists(keys.config) or not core.client.zcard(keys.runs):
                self._unretire(name, keys)
        return purged

    def _purge_retired(self, keys: QueueKeys) -> int:
        """Sweep one retired queue until nothing more is due for purging."""
        core, settings, purged = self.core, self.core.settings, 0
        while True:
            ids = core.scripts.sweep(
                keys,
                batch=settings.reclaim_batch,
                retention_ms=ms(settings.retention_seconds),
                agent_ttl_ms=ms(settings.agent_ttl_seconds),
                lease_ms=ms(settings.lease_seconds),
            )[3]
            if ids:
                core.client.hdel(core.keys.run_index, *ids)
            purged += len(ids)
            if len(ids) < settings.reclaim_batch:
                return purged

    def _unretire(self, name: str, keys: QueueKeys) -> None:
        """Drop ``name`` from the retired set, then put it back if a delete made it
        retired meanwhile (a deleted queue with history again): whatever the order of
        this and a concurrent delete's writes, a history is never left unlisted."""
        retired = self.core.keys.retired_queues
        self.core.client.srem(retired, name)
        if not self.core.client.exists(keys.config) and self.core.client.zcard(keys.runs):
            self.core.client.sadd(retired, name)

    def _read(self, ids: Iterable[str]) -> dict[str, Deployment]:
        ids = list(ids)
        if not ids:
            return {}
        raws = self.core.client.mget([self.core.keys.deployment(i) for i in ids])
        return {i: Deployment.model_validate_json(raw) for i, raw in zip(ids, raws) if raw}

    def materialize(self, deployment: Deployment, now: datetime | None = None) -> int:
        """Create the deployment's missing runs within the horizon; returns how many."""
        return self.materialize_many([deployment], now or self.core.server_time())

    def materialize_many(self, deployments: list[Deployment], now: datetime) -> int:
        """Create the missing runs of many deployments: one bulk enqueue per work queue."""
        if not deployments:
            return 0
        made = self.core.client.hmget(self.made_key, [str(d.id) for d in deployments])
        by_queue: dict[str, list[FlowRunCreate]] = {}
        pipe = self.core.client.pipeline(transaction=False)
        with_new: list[Deployment] = []
        for deployment, last_ms in zip(deployments, made):
            wanted = desired_times(deployment, now, self.horizon)
            after = int(last_ms) if last_ms else None
            new = [due for due in wanted if after is None or datetime_to_ms(due) > after]
            if new:
                with_new.append(deployment)
                by_queue.setdefault(deployment.work_queue_name, []).extend(
                    self._run(deployment, due) for due in new
                )
            self._record(pipe, deployment, wanted)
        for queue, runs in by_queue.items():
            enqueue_runs(self.core, queue, runs)
        pipe.execute()
        changed, deleted = self._changed_since(with_new)
        for deployment in changed:
            self.reschedule(deployment)  # its schedule changed while we worked: redo it
        for deployment in deleted:  # deleted while we worked: take back what we made
            self.unschedule(str(deployment.id), deployment.work_queue_name)
            self.forget(str(deployment.id))
        return sum(len(runs) for runs in by_queue.values())

    def _record(self, pipe: Any, deployment: Deployment, wanted: list[datetime]) -> None:
        """Remember the last due time made and when to visit the deployment again."""
        key = str(deployment.id)
        if wanted:
            pipe.hset(self.made_key, key, datetime_to_ms(wanted[-1]))
        visit = revisit_at(wanted, self.horizon)
        if visit is None:
            pipe.zrem(self.due_key, key)
        else:
            pipe.zadd(self.due_key, {key: datetime_to_ms(visit)})

    def _changed_since(
        self, deployments: list[Deployment]
    ) -> tuple[list[Deployment], list[Deployment]]:
        """The deployments changed after we read them (fresh copies), and those deleted."""
        if not deployments:
            return [], []
        current = self._read(str(d.id) for d in deployments)
        changed = [
            current[str(d.id)]
            for d in deployments
            if str(d.id) in current and current[str(d.id)].updated != d.updated
        ]
        deleted = [d for d in deployments if str(d.id) not in current]
        return changed, deleted

    @staticmethod
    def _run(deployment: Deployment, due: datetime) -> FlowRunCreate:
        return FlowRunCreate(
            parameters=deployment.parameters,
            deployment_id=deployment.id,
            flow_name=deployment.flow_name,
            tags=[*deployment.tags, AUTO_TAG],
            idempotency_key=idempotency_key(deployment, due),
            scheduled_start_time=due,
            auto_scheduled=True,
            timeout_seconds=deployment.timeout_seconds,
        )

    def unschedule(self, deployment_id: str, queue: str) -> int:
        """Remove the SCHEDULED runs the deployment's schedule made on ``queue``."""
        deleted = unschedule_runs(self.core, queue, deployment_id)
        self.core.client.hdel(self.made_key, deployment_id)
        return len(deleted)

    def reschedule(self, deployment: Deployment, old_queue: str | None = None) -> int:
        """After a schedule change: drop the old schedule's future runs, make the new ones."""
        for queue in {deployment.work_queue_name, old_queue or deployment.work_queue_name}:
            self.unschedule(str(deployment.id), queue)
        self.core.client.zadd(self.due_key, {str(deployment.id): 0})
        return self.materialize(deployment)

    def forget(self, deployment_id: str) -> None:
        pipe = self.core.client.pipeline(transaction=False)
        pipe.zrem(self.due_key, deployment_id)
        pipe.hdel(self.made_key, deployment_id)
        pipe.execute()
