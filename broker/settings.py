"""runq's settings: every tunable, its default and the ``RUNQ_*`` variable it is read from."""

from __future__ import annotations

import os

from pydantic import BaseModel, NonNegativeFloat, PositiveFloat, PositiveInt, ValidationError

from .errors import InvalidInput
from .models import MAX_DEPLOYMENT_BYTES, MAX_PARAMETERS_BYTES, BoundBytes
from .text import LOG_MAX_BYTES_PER_RUN, LogBudget


class BrokerSettings(BaseModel):
    """Tunables, read from ``RUNQ_*`` environment variables by :meth:`from_env`."""

    prefix: str = "runq"
    lease_seconds: PositiveFloat = 30.0
    retention_seconds: PositiveFloat = 7 * 24 * 3600.0
    reclaim_batch: int = 100
    agent_window_seconds: float = 3600.0
    agent_ttl_seconds: float = 24 * 3600.0
    late_after_seconds: NonNegativeFloat = 15.0
    scheduler_min_runs: PositiveInt = 3
    scheduler_max_runs: PositiveInt = 100
    scheduler_min_ahead_seconds: NonNegativeFloat = 3600.0
    scheduler_max_ahead_seconds: PositiveFloat = 100 * 24 * 3600.0
    #: Bytes of compact JSON: a run's parameters (and a deployment's defaults), and a
    #: whole deployment record (after YAML alias expansion); larger ones are refused.
    max_parameters_bytes: BoundBytes = MAX_PARAMETERS_BYTES
    max_deployment_bytes: BoundBytes = MAX_DEPLOYMENT_BYTES
    #: Bytes of log each run keeps (a line costs its UTF-8 length + LOG_LINE_OVERHEAD):
    #: beyond it the oldest lines are dropped and readers are told how many.
    log_max_bytes_per_run: LogBudget = LOG_MAX_BYTES_PER_RUN

    @classmethod
    def from_env(cls) -> "BrokerSettings":
        """Settings from ``RUNQ_*`` variables; a bad value names its variable.

        Raises:
            InvalidInput: a variable does not hold a valid value.
        """
        values = {field: os.environ[var] for field, var in ENV_SETTINGS.items() if os.environ.get(var)}
        try:
            return cls.model_validate(values)
        except ValidationError as error:
            first = error.errors()[0]
            var = ENV_SETTINGS[str(first["loc"][0])]
            raise InvalidInput(f"Invalid {var} {os.environ[var]!r}: {first['msg']}.") from None


#: Settings read from the environment, and the variable of each.
ENV_SETTINGS = {
    "prefix": "RUNQ_PREFIX",
    "lease_seconds": "RUNQ_LEASE_SECONDS",
    "retention_seconds": "RUNQ_RUN_RETENTION_SECONDS",
    "late_after_seconds": "RUNQ_LATE_RUNS_AFTER_SECONDS",
    "scheduler_min_runs": "RUNQ_SCHEDULER_MIN_RUNS",
    "scheduler_max_runs": "RUNQ_SCHEDULER_MAX_RUNS",
    "scheduler_min_ahead_seconds": "RUNQ_SCHEDULER_MIN_AHEAD_SECONDS",
    "scheduler_max_ahead_seconds": "RUNQ_SCHEDULER_MAX_AHEAD_SECONDS",
    "max_parameters_bytes": "RUNQ_MAX_PARAMETERS_BYTES",
    "max_deployment_bytes": "RUNQ_MAX_DEPLOYMENT_BYTES",
    "log_max_bytes_per_run": "RUNQ_LOG_MAX_BYTES_PER_RUN",
}
