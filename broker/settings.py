"""runq's settings: every tunable, its default and the ``RUNQ_*`` variable it is read from.

:class:`RunqSettings` is the one place a ``RUNQ_*`` variable is read (pydantic-settings,
prefix ``RUNQ_``: field ``lease_seconds`` is ``RUNQ_LEASE_SECONDS``), each with its one
default. The broker, the CLI, the agent, the engine and the scheduler take their values
from it; :class:`BrokerSettings` is the broker's part of it (a plain model, so a Broker
built in code never reads the environment). An empty variable counts as unset. A bad
value is one line naming the variable: ``Invalid RUNQ_LEASE_SECONDS '0': ...``.

Kept import-light (pydantic only, no rich/click/yaml): the engine reads it at start-up.
Test-only switches (``RUNQ_TEST_*``) are not settings and stay with their tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    Field,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    TypeAdapter,
    ValidationError,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import InvalidInput
from .models import MAX_DEPLOYMENT_BYTES, MAX_PARAMETERS_BYTES, BoundBytes
from .text import LOG_MAX_BYTES_PER_RUN, LogBudget

ENV_PREFIX = "RUNQ_"
TRUTHY = frozenset({"1", "true", "yes", "on"})


def _flag(value: Any) -> bool:
    """``1``, ``true``, ``yes``, ``on`` (any case) are true; anything else is false.

    Lenient on purpose: a switch such as ``RUNQ_DEBUG`` must never turn an error report
    into a settings error."""
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in TRUTHY


Flag = Annotated[bool, BeforeValidator(_flag)]

#: Groups, in the order ``runq config view`` shows them.
GROUPS = ("connection", "broker", "agent", "engine", "infrastructure", "cli")


def _setting(
    default: Any, group: str, help: str, *, secret: bool = False, url: bool = False
) -> Any:
    return Field(
        default, description=help, json_schema_extra={"group": group, "secret": secret, "url": url}
    )


class RunqSettings(BaseSettings):
    """Every ``RUNQ_*`` setting; :meth:`from_env` reads them (the variable is the field's
    name in capitals after ``RUNQ_``)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        case_sensitive=False,
        env_ignore_empty=True,
        extra="ignore",
        validate_default=True,
    )

    # ---- connection ----
    api_url: str | None = _setting(
        None, "connection", "Redis URL; unset: the embedded local server.", url=True
    )
    api_url_file: str | None = _setting(
        None, "connection", "A file holding the Redis URL (read when RUNQ_API_URL is unset)."
    )
    redis_cluster: Flag = _setting(
        False, "connection", "Read a redis:// URL as a Redis Cluster's seed node."
    )
    redis_ca_file: str | None = _setting(None, "connection", "CA certificate for rediss:// URLs.")
    home: str = _setting("~/.runq", "connection", "Directory of the embedded Redis server.")

    # ---- broker ----
    prefix: str = _setting("runq", "broker", "Prefix of every Redis key.")
    lease_seconds: PositiveFloat = _setting(
        30.0, "broker", "A claimed run's lease: silent that long, it is reclaimed or CRASHED."
    )
    run_retention_seconds: PositiveFloat = _setting(
        7 * 24 * 3600.0, "broker", "How long terminal runs are kept."
    )
    late_runs_after_seconds: NonNegativeFloat = _setting(
        15.0, "broker", "Seconds past its due time after which a SCHEDULED run is Late."
    )
    scheduler_min_runs: PositiveInt = _setting(
        3, "broker", "Fewest future runs the scheduler makes per schedule."
    )
    scheduler_max_runs: PositiveInt = _setting(
        100, "broker", "Most future runs the scheduler makes per schedule."
    )
    scheduler_min_ahead_seconds: NonNegativeFloat = _setting(
        3600.0, "broker", "The scheduler makes runs at least this many seconds ahead."
    )
    scheduler_max_ahead_seconds: PositiveFloat = _setting(
        100 * 24 * 3600.0, "broker", "The scheduler makes no run further ahead than this (seconds)."
    )
    max_parameters_bytes: BoundBytes = _setting(
        MAX_PARAMETERS_BYTES, "broker", "Bytes of compact JSON a run's parameters may take."
    )
    max_deployment_bytes: BoundBytes = _setting(
        MAX_DEPLOYMENT_BYTES, "broker", "Bytes of compact JSON a deployment record may take."
    )
    log_max_bytes_per_run: LogBudget = _setting(
        LOG_MAX_BYTES_PER_RUN, "broker", "Bytes of log each run keeps (the oldest lines go first)."
    )

    # ---- agent ----
    agent_prefetch_seconds: NonNegativeFloat = _setting(
        10.0, "agent", "Claim runs this long before they are due."
    )
    agent_query_interval: PositiveFloat = _setting(
        5.0, "agent", "Fallback poll of the agent, in seconds."
    )
    heartbeat_seconds: PositiveFloat = _setting(
        5.0, "agent", "Heartbeat interval of agents and engines."
    )
    cancel_grace_seconds: NonNegativeFloat = _setting(
        30.0, "agent", "Grace between SIGTERM and SIGKILL when a run is stopped."
    )
    scheduler_loop_seconds: Annotated[float, Field(ge=0.1)] = _setting(
        10.0, "agent", "Seconds between scheduler passes."
    )
    engine_api_url: str | None = _setting(
        None, "agent", "The Redis URL engines get instead of the agent's own.", url=True
    )
    agent_metrics: Flag = _setting(
        True,
        "agent",
        "Agents count their work as Prometheus metrics, served at /metrics on --health-port (false: off).",
    )

    # ---- engine (the agent sets these in the engine's environment) ----
    agent_id: str | None = _setting(None, "engine", "The agent that started this engine.")
    flow_run_token: str | None = _setting(None, "engine", "The claim's fencing token.", secret=True)
    engine_patience_seconds: NonNegativeFloat = _setting(
        120.0, "engine", "How long an engine waits out an unreachable Redis."
    )
    log_echo: Flag = _setting(
        True, "engine", "Echo the flow's output lines to the engine's stdout."
    )

    # ---- infrastructure ----
    docker_url_file: str | None = _setting(
        None,
        "infrastructure",
        "File on the Docker host holding the engines' Redis URL (bind-mounted).",
    )
    kubernetes_url_secret: str | None = _setting(
        None, "infrastructure", "Secret holding the engines' Redis URL for Kubernetes Jobs."
    )
    kubernetes_url_secret_key: str = _setting("url", "infrastructure", "Key of that Secret.")

    # ---- cli ----
    debug: Flag = _setting(False, "cli", "Show full tracebacks instead of one-line errors.")
    entrypoint_check_seconds: PositiveFloat = _setting(
        30.0,
        "cli",
        "How long `deployment create`/`apply` may take importing a flow's code to check it.",
    )
    log_format: Literal["text", "json"] = _setting(
        "text",
        "cli",
        "Log lines of agents, the scheduler, the exporter and the UI: text, or json (one object a line).",
    )
    ui_token: str | None = _setting(
        None, "cli", "Token every write of `runq ui` needs (required off 127.0.0.1).", secret=True
    )
    ui_public_url: str | None = _setting(
        None,
        "cli",
        "URL browsers use to reach `runq ui` behind a TLS proxy (its origin may write).",
    )

    @classmethod
    def from_env(cls) -> RunqSettings:
        """The settings of this process's environment; a bad value names its variable.

        Raises:
            InvalidInput: a variable does not hold a valid value.
        """
        try:
            return cls()
        except ValidationError as error:
            first = error.errors()[0]
            var = variable(str(first["loc"][0]))
            message = first["msg"].rstrip(".")
            raise InvalidInput(f"Invalid {var} {environ_value(var)!r}: {message}.") from None

    @property
    def broker(self) -> BrokerSettings:
        """The broker's part."""
        return BrokerSettings(
            **{field: getattr(self, name) for field, name in BROKER_FIELDS.items()}
        )

    @property
    def home_path(self) -> Path:
        """``RUNQ_HOME`` (``~`` expanded)."""
        return Path(self.home).expanduser()

    def redis_url(self, url: str | None = None) -> str | None:
        """The Redis URL to use: ``url`` (``--api``), else ``RUNQ_API_URL``, else the URL in
        the file ``RUNQ_API_URL_FILE`` names; None for the embedded server.

        Raises:
            InvalidInput: the URL file cannot be read, is empty or holds several lines.
        """
        if url or self.api_url:
            return url or self.api_url
        if self.api_url_file:
            from .connection import read_url_file

            return read_url_file(self.api_url_file)
        return None

    def source(self, name: str) -> str:
        """``env`` when the field came from its variable, else ``default``."""
        return "env" if name in self.model_fields_set else "default"

    def entries(self) -> Iterator[dict[str, Any]]:
        """Each setting (group order) for display: variable, value (secrets masked), source."""
        fields = type(self).model_fields
        for group in GROUPS:
            for name, info in fields.items():
                extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
                if extra.get("group") != group:
                    continue
                yield {
                    "variable": variable(name),
                    "value": shown_value(
                        getattr(self, name), bool(extra.get("secret")), bool(extra.get("url"))
                    ),
                    "source": self.source(name),
                    "group": group,
                    "description": info.description or "",
                }


def variable(name: str) -> str:
    """The variable of a :class:`RunqSettings` field: ``lease_seconds`` -> ``RUNQ_LEASE_SECONDS``."""
    if name not in RunqSettings.model_fields:
        raise KeyError(f"no runq setting {name!r}")
    return f"{ENV_PREFIX}{name.upper()}"


def environ_value(var: str) -> str | None:
    """The raw value of ``var`` in the environment (matched in any case, as settings are)."""
    if var in os.environ:
        return os.environ[var]
    return next((value for key, value in os.environ.items() if key.upper() == var), None)


def shown_value(value: Any, secret: bool, url: bool) -> Any:
    """A value as ``runq config view`` prints it: secrets starred, URL passwords masked."""
    if value is None or value == "":
        return value
    if secret:
        return "********"
    if url:
        from .connection import mask_url  # redis: not in the engine's start-up path

        return mask_url(str(value))
    return value


def _default(name: str) -> Any:
    return RunqSettings.model_fields[name].default


class BrokerSettings(BaseModel):
    """The broker's tunables; :meth:`from_env` takes them from :class:`RunqSettings`.
    Built in code (``BrokerSettings(lease_seconds=2)``) it reads no environment."""

    prefix: str = _default("prefix")
    lease_seconds: PositiveFloat = _default("lease_seconds")
    retention_seconds: PositiveFloat = _default("run_retention_seconds")
    reclaim_batch: int = 100
    agent_window_seconds: float = 3600.0
    agent_ttl_seconds: float = 24 * 3600.0
    late_after_seconds: NonNegativeFloat = _default("late_runs_after_seconds")
    scheduler_min_runs: PositiveInt = _default("scheduler_min_runs")
    scheduler_max_runs: PositiveInt = _default("scheduler_max_runs")
    scheduler_min_ahead_seconds: NonNegativeFloat = _default("scheduler_min_ahead_seconds")
    scheduler_max_ahead_seconds: PositiveFloat = _default("scheduler_max_ahead_seconds")
    #: Bytes of compact JSON: a run's parameters (and a deployment's defaults), and a
    #: whole deployment record (after YAML alias expansion); larger ones are refused.
    max_parameters_bytes: BoundBytes = _default("max_parameters_bytes")
    max_deployment_bytes: BoundBytes = _default("max_deployment_bytes")
    #: Bytes of log each run keeps (a line costs its UTF-8 length + LOG_LINE_OVERHEAD):
    #: beyond it the oldest lines are dropped and readers are told how many.
    log_max_bytes_per_run: LogBudget = _default("log_max_bytes_per_run")

    @classmethod
    def from_env(cls) -> BrokerSettings:
        """Settings from ``RUNQ_*`` variables; a bad value names its variable.

        Raises:
            InvalidInput: a variable does not hold a valid value.
        """
        return RunqSettings.from_env().broker


#: BrokerSettings field -> the RunqSettings field it comes from.
BROKER_FIELDS = {
    "prefix": "prefix",
    "lease_seconds": "lease_seconds",
    "retention_seconds": "run_retention_seconds",
    "late_after_seconds": "late_runs_after_seconds",
    "scheduler_min_runs": "scheduler_min_runs",
    "scheduler_max_runs": "scheduler_max_runs",
    "scheduler_min_ahead_seconds": "scheduler_min_ahead_seconds",
    "scheduler_max_ahead_seconds": "scheduler_max_ahead_seconds",
    "max_parameters_bytes": "max_parameters_bytes",
    "max_deployment_bytes": "max_deployment_bytes",
    "log_max_bytes_per_run": "log_max_bytes_per_run",
}

#: BrokerSettings field -> its variable (``ENV_SETTINGS["lease_seconds"]`` is
#: ``RUNQ_LEASE_SECONDS``), for messages that name the setting to raise.
ENV_SETTINGS = {field: variable(name) for field, name in BROKER_FIELDS.items()}

# The variables the agent sets in an engine's environment (and the engine reads back).
API_URL_ENV = variable("api_url")
API_URL_FILE_ENV = variable("api_url_file")
REDIS_CLUSTER_ENV = variable("redis_cluster")
AGENT_ID_ENV = variable("agent_id")
TOKEN_ENV = variable("flow_run_token")
HEARTBEAT_ENV = variable("heartbeat_seconds")
CANCEL_GRACE_ENV = variable("cancel_grace_seconds")
LEASE_ENV = variable("lease_seconds")
LOG_ECHO_ENV = variable("log_echo")
DOCKER_URL_FILE_ENV = variable("docker_url_file")
KUBERNETES_URL_SECRET_ENV = variable("kubernetes_url_secret")
KUBERNETES_URL_SECRET_KEY_ENV = variable("kubernetes_url_secret_key")


def settings() -> RunqSettings:
    """Shorthand for :meth:`RunqSettings.from_env` (read afresh at each call)."""
    return RunqSettings.from_env()


def setting(name: str) -> Any:
    """One setting read alone, by its field's type and default: for code that must not
    fail on another variable's bad value (the CA file of a connection, the debug switch
    asked while an error is reported, the embedded server's home).

    Raises:
        InvalidInput: this variable does not hold a valid value.
    """
    info = RunqSettings.model_fields[name]
    var = variable(name)
    raw = environ_value(var)
    if raw is None or raw == "":
        return info.default
    kind: Any = Annotated[info.annotation, *info.metadata] if info.metadata else info.annotation
    try:
        return TypeAdapter(kind).validate_python(raw)
    except ValidationError as error:
        message = error.errors()[0]["msg"].rstrip(".")
        raise InvalidInput(f"Invalid {var} {raw!r}: {message}.") from None


def home_path() -> Path:
    """``RUNQ_HOME`` (default ``~/.runq``), ``~`` expanded."""
    return Path(setting("home")).expanduser()


def debug_enabled() -> bool:
    """``RUNQ_DEBUG``: full tracebacks instead of one-line errors (lenient: never raises,
    a bad value elsewhere neither)."""
    return bool(setting("debug"))
