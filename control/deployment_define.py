"""``runq deployment create`` and ``apply``: define a deployment, by flags or a YAML file.

Both print what was stored and the commands an operator runs next. ``create`` builds
the ``infrastructure`` field from ``--infra``, ``--image`` and ``--env``; ``apply``
creates or updates, by name, from a file kept in version control. Both locate the code
(the deployment's ``path``) and check it, deriving its parameter schema, before anything
is written (``runq.broker.code_check``, which ``Broker.create_deployment`` uses too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from runq.broker import Broker, Deployment, DeploymentExists, DeploymentNotFound, DeploymentSpec
from runq.broker.checks import validated
from runq.broker.code_check import locate_code
from runq.broker.settings import RunqSettings
from runq.display.text import quoted

from .connection import with_broker
from .durations import Duration
from .errors import printable
from .param_types import env_callback, json_object_callback, param_option
from .schedule import AnySchedule, schedule_options
from .specfile import read_deployment_file

INFRASTRUCTURES = ("process", "docker", "kubernetes")


def infrastructure_settings(infra: str, image: str | None, env: dict[str, str]) -> dict[str, Any]:
    """The ``infrastructure`` field from the flags; ``--image`` needs a container."""
    settings: dict[str, Any] = {"type": infra, "env": env}
    if image is not None:
        if infra == "process":
            raise click.UsageError("--image needs --infra docker or --infra kubernetes.")
        settings["image"] = image
    return settings


skip_validation_option = click.option(
    "--skip-validation",
    is_flag=True,
    help="Do not look for the code here nor derive its parameter schema (code that exists "
    "only where the agents run); the engine still validates each run's parameters.",
)


def checked_code(spec: DeploymentSpec, base: Path, skip_validation: bool) -> DeploymentSpec:
    """The spec with its code located (``path``) and checked (``parameter_schema``)."""
    timeout = RunqSettings.from_env().entrypoint_check_seconds
    return locate_code(spec, base, skip_validation=skip_validation, timeout=timeout)


def print_next_steps(deployment: Deployment, verb: str) -> None:
    """What was stored, and the two commands an operator runs next."""
    click.echo(
        "\n".join(
            [
                f"{verb} deployment {deployment.name!r} with id '{deployment.id}'.",
                "",
                "To execute its flow runs, start an agent that pulls work from its work queue:",
                f"    runq agent start -q {quoted(deployment.work_queue_name)}",
                "",
                "To run it once now:",
                f"    runq deployment run {quoted(deployment.name)}",
            ]
        )
    )


@click.command("create")
@click.argument("name")
@click.option(
    "--entrypoint",
    required=True,
    metavar="PATH.py:FUNC|module:func",
    help="The function a run calls; a relative file is found in --path.",
)
@click.option(
    "--path",
    "code_path",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory the engine enters before importing (default for a relative file: "
    "this directory; for docker/kubernetes: the image's working directory).",
)
@skip_validation_option
@click.option(
    "-q",
    "--work-queue",
    "work_queue_name",
    default="default",
    show_default=True,
    help="The work queue its runs go to (created if needed).",
)
@param_option
@click.option(
    "--params-json",
    metavar="JSON",
    callback=json_object_callback,
    help="Default parameters as one JSON object (--param entries win).",
)
@click.option(
    "--infra",
    type=click.Choice(INFRASTRUCTURES),
    default="process",
    show_default=True,
    help="Where its runs execute.",
)
@click.option("--image", help="Container image (docker or kubernetes).")
@click.option(
    "--env",
    multiple=True,
    metavar="KEY=VALUE",
    callback=env_callback,
    help="An environment variable of the run. Repeatable.",
)
@click.option("--tag", "tags", multiple=True, help="A tag given to its runs. Repeatable.")
@click.option("--retries", type=int, default=0, show_default=True, help="Retries of a failed run.")
@click.option(
    "--retry-delay",
    type=Duration(),
    default=0,
    metavar="SECONDS",
    help="Wait before a retry: seconds or a duration such as 30s, 5m.",
)
@click.option("-d", "--description", default="", help="Free text.")
@schedule_options
@click.option(
    "--skip-if-late-by",
    type=Duration(),
    metavar="DURATION",
    help="Cancel, instead of start, a run claimed later than this past its due time.",
)
@click.option(
    "--timeout",
    type=Duration(minimum=1.0),
    metavar="DURATION",
    help="Stop a run, FAILED (TimedOut), still running this long after it started: 30m, 2h.",
)
@click.option(
    "--concurrency-limit",
    type=click.IntRange(min=0),
    metavar="N",
    help="At most N of its runs in flight at once (a named limit 'deployment:ID').",
)
@click.option(
    "--collision-strategy",
    type=click.Choice(["enqueue", "cancel-new", "cancel-in-progress"]),
    default="enqueue",
    show_default=True,
    help="A run due while N are in flight: waits, ends CANCELLED, or cancels the oldest.",
)
@with_broker
def create(
    broker: Broker,
    name: str,
    entrypoint: str,
    code_path: Path | None,
    skip_validation: bool,
    work_queue_name: str,
    params: dict[str, Any],
    params_json: dict[str, Any],
    infra: str,
    image: str | None,
    env: dict[str, str],
    tags: tuple[str, ...],
    retries: int,
    retry_delay: float,
    description: str,
    given_schedule: AnySchedule | None,
    skip_if_late_by: float | None,
    timeout: float | None,
    concurrency_limit: int | None,
    collision_strategy: str,
) -> None:
    """Create a deployment; an existing name is an error and is left unchanged.

    With a schedule (--cron, --interval or --rrule, in --timezone) its runs are created
    at once for the scheduler's horizon: `work-queue preview` shows them.

    The code is checked first: the file and function must exist (in --path, by default
    here) and the function's signature becomes the parameter schema that --param
    defaults and every run are checked against. A docker/kubernetes deployment's code is
    checked only when a copy is here. --skip-validation checks nothing.

    \b
    Examples:
        runq deployment create etl --entrypoint flows/etl.py:main -q nightly
        runq deployment create report --entrypoint reports.daily:build \\
            --param region=eu --param days=7 --infra docker --image acme/report:1.4 \\
            --env LOG_LEVEL=debug --tag reports --retries 2 --retry-delay 1m
        runq deployment create nightly --entrypoint flows/etl.py:main \\
            --cron '30 2 * * *' --timezone Europe/London --skip-if-late-by 1h
        runq deployment create etl --entrypoint etl.py:main --path /srv/flows
        runq deployment create sync --entrypoint sync.py:main \\
            --concurrency-limit 1 --collision-strategy cancel-new --timeout 30m
    """
    refuse_taken(broker, name)
    if code_path is not None and infra == "process":
        code_path = code_path.resolve()  # the agent's directory must not change its meaning
    fields = dict(
        name=name,
        entrypoint=entrypoint,
        path=str(code_path) if code_path is not None else None,
        work_queue_name=work_queue_name,
        parameters={**params_json, **params},
        infrastructure=infrastructure_settings(infra, image, env),
        tags=list(tags),
        retries=retries,
        retry_delay_seconds=retry_delay,
        description=description,
        schedule=given_schedule.model_dump() if given_schedule else None,
        skip_if_late_by_seconds=skip_if_late_by,
        timeout_seconds=timeout,
        concurrency_limit=concurrency_limit,
        collision_strategy=collision_strategy,
    )
    spec = checked_code(validated(DeploymentSpec, fields), Path.cwd(), skip_validation)
    print_next_steps(broker.create_deployment(spec, check_code=False), "Created")  # checked above


def refuse_taken(broker: Broker, name: str) -> None:
    """Refuse a name another deployment has, before anything is written.

    (Broker.create_deployment would create the work queue before it found the name taken.)
    """
    try:
        found = broker.read_deployment(name)
    except DeploymentNotFound:
        return
    if found.name == name:  # not merely a deployment whose id is this text
        raise DeploymentExists(name)


@click.command("apply")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@skip_validation_option
@with_broker
def apply(broker: Broker, file: Path, skip_validation: bool) -> None:
    """Create or update a deployment, by name, from a YAML file.

    The file holds the fields of `deployment create` under their model names. It is
    validated as a whole first: an invalid file changes nothing and the error names
    every wrong or unknown field with its line. Fields the file leaves out take their
    defaults. The document, YAML aliases expanded, may take RUNQ_MAX_DEPLOYMENT_BYTES of
    JSON (1 MiB by default).

    A `prefect deployment build` file applies as it is: Prefect 2 fields that mean
    nothing here (version, timestamp, manifest_path, parameter_openapi_schema, empty
    storage and infra_overrides, the infrastructure block's slugs, nulls) are ignored
    and named in one warning line; a storage block, overrides or a work pool, which
    would change what runs, are refused with why.

    A relative `path:` (and, without one, a relative file entrypoint) means the YAML
    file's directory, wherever apply runs from; the code there is checked as by
    `deployment create` (--skip-validation checks nothing).

    \b
    Example:
        runq deployment apply etl.yaml
    \b
    where etl.yaml holds:
        name: etl
        entrypoint: flows/etl.py:main
        work_queue_name: nightly
        parameters: {region: eu, days: 7}
        infrastructure: {type: docker, image: acme/etl:2.0, env: {LOG_LEVEL: info}}
        tags: [etl]
        retries: 2
        retry_delay_seconds: 60
    """
    spec, ignored = read_deployment_file(file, broker.settings.max_deployment_bytes)
    spec = checked_code(spec, file.parent.resolve(), skip_validation)
    try:
        broker.read_deployment(spec.name)
    except DeploymentNotFound:
        saved, verb = broker.create_deployment(spec, check_code=False), "Created"  # checked above
    else:
        saved = broker.update_deployment(spec.name, check_code=False, **spec.model_dump())
        verb = "Updated"
    if ignored:  # only once applied: a refusal stays one line
        click.echo(
            printable(
                f"Warning: {file}: ignored Prefect 2 fields that mean nothing in runq: {', '.join(ignored)}."
            ),
            err=True,
        )
    print_next_steps(saved, verb)
