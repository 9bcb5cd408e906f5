"""The agents registry: who is running, on which queues, last heard from when."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from .core import BrokerCore
from .models import Agent
from .timeutil import datetime_to_us, us_to_datetime

#: An agent is live (``online`` in ``runq agent ls``, counted by a queue) while its last
#: heartbeat in the registry is at most this old; agents heartbeat every few seconds.
AGENT_LIVE_SECONDS = 60.0


class AgentRegistry(BrokerCore):
    """The Broker's agents-registry methods."""

    def register_agent(
        self,
        agent_id: str,
        *,
        name: str,
        work_queues: Sequence[str],
        hostname: str = "",
        pid: int | None = None,
    ) -> Agent:
        """Record an agent in the registry (``runq agent ls`` reads it).

        Returns:
            The registered agent.
        """
        now = self.server_time()
        agent = Agent(
            id=agent_id,
            name=name,
            work_queues=list(work_queues),
            hostname=hostname,
            pid=pid,
            started=now,
            last_heartbeat=now,
        )
        pipe = self.client.pipeline(transaction=False)
        pipe.set(
            self.keys.agent(agent_id),
            agent.model_dump_json(),
            ex=int(self.settings.agent_ttl_seconds),
        )
        pipe.zadd(self.keys.agent_registry, {agent_id: datetime_to_us(now)})
        pipe.execute()
        return agent

    def agent_heartbeat(self, agent_id: str) -> None:
        """Mark the agent alive now (by Redis' clock)."""
        now = datetime_to_us(self.server_time())
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(self.keys.agent_registry, {agent_id: now})
        pipe.expire(self.keys.agent(agent_id), int(self.settings.agent_ttl_seconds))
        pipe.execute()

    def set_agent_at_limit(self, agent_id: str, limit: int | None) -> None:
        """Record that the agent holds ``limit`` runs, its own --limit (None: it has room
        again). A full agent claims nothing, so its polls stop: this is how its queues
        tell "served, but busy" from "nobody polls" (``broker/readiness.py``). Only the
        agent writes its record, so read-modify-write needs no lock; the record keeps
        its expiry."""
        key = self.keys.agent(agent_id)
        raw = self.client.get(key)
        if raw is None:
            return
        agent = Agent.model_validate_json(raw)
        if agent.at_limit != limit:
            agent.at_limit = limit
            self.client.set(key, agent.model_dump_json(), xx=True, keepttl=True)

    def live_agents(self) -> list[Agent]:
        """The agents whose registry heartbeat is fresh (AGENT_LIVE_SECONDS), with their
        records: what a queue's health is judged against. Two commands."""
        return read_live_agents(self)

    def deregister_agent(self, agent_id: str) -> None:
        """Remove the agent from the registry (a clean exit)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.zrem(self.keys.agent_registry, agent_id)
        pipe.delete(self.keys.agent(agent_id))
        pipe.execute()

    def list_agents(self) -> list[Agent]:
        """Registered agents, most recent heartbeat first (silent ones expire)."""
        entries = self.client.zrevrange(self.keys.agent_registry, 0, -1, withscores=True)
        if not entries:
            return []
        raws = self._mget([self.keys.agent(agent_id) for agent_id, _ in entries])
        agents = []
        for (agent_id, score), raw in zip(entries, raws):
            if raw is None:
                self.client.zrem(self.keys.agent_registry, agent_id)
                continue
            agent = Agent.model_validate_json(raw)
            agent.last_heartbeat = us_to_datetime(int(score))
            agents.append(agent)
        return agents

    def live_agent_ids(self, agent_ids: Sequence[str]) -> set[str]:
        """Those of ``agent_ids`` whose registry heartbeat is fresh (AGENT_LIVE_SECONDS):
        an agent that stopped, or was killed, stops counting within a minute, whatever
        its last poll of a queue says. One command for any number of agents."""
        if not agent_ids:
            return set()
        now = datetime_to_us(self.server_time())
        since = now - int(AGENT_LIVE_SECONDS * 1_000_000)
        scores = self.client.zmscore(self.keys.agent_registry, list(agent_ids))
        return {
            agent_id
            for agent_id, score in zip(agent_ids, scores)
            if score is not None and score >= since
        }


def read_live_agents(core: BrokerCore, now: datetime | None = None) -> list[Agent]:
    """The live agents' records (heartbeat at most AGENT_LIVE_SECONDS old, by Redis'
    clock, ``now`` when the caller read it), each with its last heartbeat; an entry
    whose record expired is left out."""
    since = datetime_to_us(now or core.server_time()) - int(AGENT_LIVE_SECONDS * 1_000_000)
    entries = core.client.zrangebyscore(core.keys.agent_registry, since, "+inf", withscores=True)
    if not entries:
        return []
    raws = core._mget([core.keys.agent(agent_id) for agent_id, _ in entries])
    agents = []
    for (_, score), raw in zip(entries, raws):
        if raw is not None:
            agent = Agent.model_validate_json(raw)
            agent.last_heartbeat = us_to_datetime(int(score))
            agents.append(agent)
    return agents
