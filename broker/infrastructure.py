"""Where a flow run executes: a process, a Docker container or a Kubernetes Job."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, NonNegativeInt, PositiveInt

from .field_types import JsonObject


def validate_env(env: dict[str, str]) -> dict[str, str]:
    """An environment no process can take is refused here, not when a run starts (where
    it failed as a crash): no NUL anywhere, no empty name, no '=' in a name."""
    for name, value in env.items():
        if not name or "=" in name or "\0" in name:
            raise ValueError(f"env: {name!r} is not a variable name (no '=', no NUL, not empty)")
        if "\0" in value:
            raise ValueError(f"env: the value of {name!r} contains a NUL byte")
    return env


#: Environment variables of a run's infrastructure.
EnvVars = Annotated[dict[str, str], AfterValidator(validate_env)]


class ProcessInfrastructure(BaseModel):
    """Run the flow as a local process of the agent's machine."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["process"] = "process"
    command: list[str] | None = Field(
        None,
        description="the engine command, the run id appended; default: the agent's "
        "Python running `runq flow-run execute`",
    )
    env: EnvVars = Field(default_factory=dict)
    working_dir: str | None = None
    stream_output: bool = True
    warm_engine: bool = Field(
        True,
        description="fork the run from the agent's warm engine (imports done once); "
        "false: start a fresh Python for it (the agent's --no-warm-engine does it for all)",
    )


PullPolicy = Literal["always", "if-not-present", "never"]


class DockerInfrastructure(BaseModel):
    """Run the flow in a Docker container (agent/infrastructure/docker.py)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["docker"] = "docker"
    image: str = "runq:latest"
    command: list[str] | None = Field(
        None, description="the engine command in the container, the run id appended"
    )
    env: EnvVars = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    network: str | None = None
    network_mode: str | None = None
    volumes: list[str] = Field(default_factory=list, description="HOST:CONTAINER[:ro]")
    mem_limit: str | None = None
    auto_remove: bool = False
    image_pull_policy: PullPolicy = "if-not-present"
    stream_output: bool = True
    docker_url: str | None = Field(None, description="the engine's URL; default from DOCKER_HOST")


class KubernetesInfrastructure(BaseModel):
    """Run the flow as a Kubernetes Job (agent/infrastructure/kubernetes.py)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["kubernetes"] = "kubernetes"
    image: str = "runq:latest"
    namespace: str = "default"
    command: list[str] | None = None
    env: EnvVars = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    service_account_name: str | None = None
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    resources: dict[str, dict[str, str]] = Field(
        default_factory=dict, description="requests / limits, as in a container spec"
    )
    node_selector: dict[str, str] = Field(default_factory=dict)
    backoff_limit: NonNegativeInt = 0
    ttl_seconds_after_finished: NonNegativeInt | None = None
    pod_watch_timeout_seconds: PositiveInt = 60
    job_watch_timeout_seconds: PositiveInt | None = None
    customizations: list[JsonObject] = Field(
        default_factory=list, description="an RFC 6902 JSON patch applied to the Job"
    )
    cluster_config: Literal["auto", "in-cluster", "kubeconfig"] = "auto"
    kubeconfig: str | None = None
    context: str | None = None
    stream_output: bool = True


Infrastructure = Annotated[
    ProcessInfrastructure | DockerInfrastructure | KubernetesInfrastructure,
    Field(discriminator="type"),
]
