"""How an agent behaves: :class:`AgentSettings`, the one place its knobs are named.

Kept apart from the agent's loop so the CLI, the tests and the benchmarks can build
settings without importing the machinery that acts on them; every default is
RunqSettings' own, so the two never drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runq.broker.settings import RunqSettings


def _default(name: str) -> Any:
    """The one default of a RunqSettings field."""
    return RunqSettings.model_fields[name].default


@dataclass
class AgentSettings:
    """How an agent behaves (the CLI fills these from flags and RunqSettings, see
    :meth:`from_settings`; the defaults are RunqSettings' own)."""

    work_queues: list[str]
    name: str | None = None
    limit: int | None = None
    prefetch_seconds: float = _default("agent_prefetch_seconds")
    query_interval: float = _default("agent_query_interval")
    heartbeat_seconds: float = _default("heartbeat_seconds")
    cancel_grace_seconds: float = _default("cancel_grace_seconds")
    run_once: bool = False
    kill_on_exit: bool = False
    scheduler: bool = True
    scheduler_loop_seconds: float = _default("scheduler_loop_seconds")
    #: Queue-name prefixes: also serve every queue whose name starts with one (``--match``).
    match: list[str] = field(default_factory=list)
    #: Threads that start claimed runs (at most the agent's limit): one slow submission
    #: holds up only its own.
    submit_workers: int = 8
    metrics: bool = _default("agent_metrics")  # Prometheus metrics (agent/metrics.py)
    #: Fork process runs from a warm engine (agent/infrastructure/warm_engine.py);
    #: False (``--no-warm-engine``): a fresh Python per run.
    warm_engine: bool = True

    @classmethod
    def from_settings(
        cls, work_queues: list[str], settings: RunqSettings | None = None, **flags: Any
    ) -> AgentSettings:
        """The RUNQ_* values of ``settings`` (default: this environment's), then ``flags``."""
        settings = settings or RunqSettings.from_env()
        values: dict[str, Any] = {
            "prefetch_seconds": settings.agent_prefetch_seconds,
            "query_interval": settings.agent_query_interval,
            "heartbeat_seconds": settings.heartbeat_seconds,
            "cancel_grace_seconds": settings.cancel_grace_seconds,
            "scheduler_loop_seconds": settings.scheduler_loop_seconds,
            "metrics": settings.agent_metrics,
        }
        values.update({key: value for key, value in flags.items() if value is not None})
        return cls(work_queues=work_queues, **values)
