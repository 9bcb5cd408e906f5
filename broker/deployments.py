"""Deployments: their records, name index and the schedules they hand the scheduler."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from pydantic import ValidationError

from .checks import JSON, check_bytes, validated
from .code_check import API_SKIP_HINT, CodeNotChecked, locate_code, missing_code
from .core import BrokerCore
from .errors import DeploymentNotFound, InvalidInput, WorkQueueNotFound
from .models import Deployment, DeploymentSpec, WorkQueue
from .parameters import check_parameters
from .settings import ENV_SETTINGS, RunqSettings

if TYPE_CHECKING:  # imported when used: engines read deployments, never schedule them
    from .scheduling import Scheduler

log = logging.getLogger("runq.broker")


class Deployments(BrokerCore):
    """The Broker's deployment methods (``ensure_work_queue`` comes from WorkQueues)."""

    if TYPE_CHECKING:  # what WorkQueues, which it is composed with, provides

        def ensure_work_queue(self, name: str) -> tuple[WorkQueue, bool]: ...

        def work_queue_name(self, name_or_id: str | UUID) -> str: ...

        def sync_deployment_limit(self, deployment: Deployment) -> None: ...

        def drop_deployment_limit(self, deployment: Deployment) -> None: ...

    def create_deployment(
        self,
        spec: DeploymentSpec | None = None,
        *,
        check_code: bool | None = None,
        code_from: str | os.PathLike[str] | None = None,
        **fields: Any,
    ) -> Deployment:
        """Store a new deployment; its work queue is created if needed.

        Its code is located and checked as ``runq deployment create`` does, in a child
        process (the broker imports no user code): the entrypoint's file and function
        must exist and import; the deployment records its ``path`` (the directory the
        engine enters, so a relative entrypoint never depends on the agent's own
        directory) and the function's parameter schema, which the defaults and every
        run's parameters are checked against before anything is written.

        Args:
            spec: the deployment, or its fields as keyword arguments (``name``,
                ``entrypoint`` or ``command``, ``parameters``, ``work_queue_name``,
                ``infrastructure``, ``tags``, ``retries``, ``retry_delay_seconds``,
                ``path``, ``parameter_schema``, ...); ``work_queue_name`` may be a
                queue's id. With a ``parameter_schema`` the default parameters are
                checked against it (every required one too when a schedule is active).
            check_code: True: check the code as the CLI does, refusing code that is not
                found from ``code_from``; None (the default): the same when the code is
                found, else store the deployment as given with a ``CodeNotChecked``
                warning; False: skip the check and store ``path`` and
                ``parameter_schema`` as given (code that exists only where the agents
                run: a relative file without ``path`` is then found in the directory
                the infrastructure runs the engine in, and only the engine checks
                parameters).
            code_from: the directory relative names mean, as ``deployment create``
                uses the one it runs in (default: the current directory).

        Returns:
            The stored deployment with its id.

        Raises:
            InvalidInput: a field is invalid, the defaults do not fit the parameter
                schema, or the parameters or the whole record are over
                ``settings.max_parameters_bytes`` / ``max_deployment_bytes``.
            EntrypointError: (an InvalidInput) the code is found but does not import or
                has no such function, or is not found and ``check_code`` is True.
            WorkQueueNotFound: ``work_queue_name`` is an id no queue has.
            DeploymentExists: the name is taken; nothing was written.
        """
        spec = self._located(spec or validated(DeploymentSpec, fields), check_code, code_from)
        now = self.server_time()
        deployment = Deployment(
            **{**spec.model_dump(), "work_queue_name": self._queue_named(spec.work_queue_name)},
            created=now,
            updated=now,
        )
        # Saved first: a taken name is refused before the queue is created.
        self._save_deployment("create", deployment, deployment.name)
        self.sync_deployment_limit(deployment)
        self.ensure_work_queue(deployment.work_queue_name)
        if deployment.schedule is not None:
            self.scheduler().reschedule(deployment)  # preview shows it with no scheduler up
        return deployment

    @staticmethod
    def _located(
        spec: DeploymentSpec, check_code: bool | None, code_from: str | os.PathLike[str] | None
    ) -> DeploymentSpec:
        """The spec with its code located and checked (``broker/code_check.py``) as
        ``check_code`` says (see :meth:`create_deployment`)."""
        if check_code is False or spec.entrypoint is None:
            return spec
        base = Path(code_from) if code_from is not None else Path.cwd()
        missing = missing_code(spec, base) if check_code is None else None
        if missing is not None:
            warnings.warn(
                CodeNotChecked(
                    f"Deployment {spec.name!r} stored without checking its code: {missing} "
                    "(no parameter schema; a relative file without `path` is found where the "
                    "agent runs it). Give code_from= the directory holding it, or "
                    "check_code=False for code that exists only where the agents run."
                ),
                stacklevel=4,
            )
            return spec
        timeout = RunqSettings.from_env().entrypoint_check_seconds
        return locate_code(spec, base, skip_validation=False, timeout=timeout, hint=API_SKIP_HINT)

    def scheduler(self) -> Scheduler:
        """The schedule materializer over this broker (see :mod:`broker.scheduling`)."""
        from .scheduling import Scheduler

        return Scheduler(self)

    def update_deployment(
        self,
        name_or_id: str | UUID,
        *,
        check_code: bool | None = None,
        code_from: str | os.PathLike[str] | None = None,
        **changes: Any,
    ) -> Deployment:
        """Change fields of a deployment (validated as a whole before anything is written).

        A change of ``entrypoint`` or ``path`` without a ``parameter_schema`` locates and
        checks the code again, as :meth:`create_deployment` does with ``check_code`` and
        ``code_from`` (the old schema is dropped when the new code is not checked).

        Returns:
            The updated deployment.

        Raises:
            DeploymentNotFound: no such deployment.
            InvalidInput: the result would be invalid (EntrypointError: its new code).
            DeploymentExists: a rename to a name another deployment holds.
        """
        current = self.read_deployment(name_or_id)
        data = current.model_dump(exclude={"id", "created", "updated"})
        data.update(changes)
        moved_code = any(
            data.get(field) != getattr(current, field) for field in ("entrypoint", "path")
        )
        if moved_code and "parameter_schema" not in changes:
            data["parameter_schema"] = None  # derived from the old code: no longer known
        spec = validated(DeploymentSpec, data)
        if moved_code and "parameter_schema" not in changes:
            spec = self._located(spec, check_code, code_from)
        deployment = Deployment(
            **{**spec.model_dump(), "work_queue_name": self._queue_named(spec.work_queue_name)},
            id=current.id,
            created=current.created,
            updated=self.server_time(),
        )
        self._save_deployment("update", deployment, current.name)
        self.sync_deployment_limit(deployment)
        self.ensure_work_queue(deployment.work_queue_name)
        if current.schedule is not None or deployment.schedule is not None:
            self.scheduler().reschedule(deployment, old_queue=current.work_queue_name)
        return deployment

    def _queue_named(self, name_or_id: str) -> str:
        """The name of the queue a deployment names by name or id.

        A queue id is resolved (never taken as the name of a new queue); other text is a
        name, and that queue is created if needed.

        Raises:
            WorkQueueNotFound: an id-shaped text that no queue has as id or name.
        """
        name = self.work_queue_name(name_or_id)
        if name != name_or_id or not _is_uuid(name_or_id):
            return name
        if self.client.sismember(self.keys.queue_names, name_or_id):
            return name  # a queue named like an id, made before ids were resolved
        raise WorkQueueNotFound(name_or_id)

    def _save_deployment(self, mode: str, deployment: Deployment, old_name: str) -> None:
        """Store the record, refused (nothing written) over the parameters' or the
        document's byte bound, or with defaults that do not fit the parameter schema."""
        self._check_parameters(JSON.encode(deployment.parameters), "Default parameters are")
        check_default_parameters(deployment)
        document = deployment.model_dump_json().encode("utf-8")
        check_bytes(
            "The deployment is",
            len(document),
            self.settings.max_deployment_bytes,
            ENV_SETTINGS["max_deployment_bytes"],
        )
        deployment_id = str(deployment.id)
        self.scripts.deployment_save(
            self.keys.deployment_names,
            self.keys.deployment(deployment_id),
            mode=mode,
            deployment_id=deployment_id,
            name=deployment.name,
            document=document,
            old_name=old_name,
        )

    def read_deployment(self, name_or_id: str | UUID) -> Deployment:
        """A deployment by name, id, or Prefect's ``FLOW/DEPLOYMENT``.

        Raises:
            DeploymentNotFound: no such deployment.
        """
        text = str(name_or_id)
        deployment_id = self.client.hget(self.keys.deployment_names, text) or text
        raw = self.client.get(self.keys.deployment(deployment_id))
        if raw is None:
            return self._read_flow_slash_deployment(text)
        return Deployment.model_validate_json(raw)

    def _read_flow_slash_deployment(self, text: str) -> Deployment:
        """Prefect's ``FLOW/DEPLOYMENT`` form (deployment names are unique here, so the
        flow part must match the deployment's flow). Names may hold ``/``: every split is
        tried, the deployment part from the shortest."""
        flow, slash, rest = text.partition("/")
        while slash:
            deployment_id = self.client.hget(self.keys.deployment_names, rest)
            raw = self.client.get(self.keys.deployment(deployment_id)) if deployment_id else None
            if raw is not None:
                found = Deployment.model_validate_json(raw)
                if found.flow_name == flow:
                    return found
            head, slash, rest = rest.partition("/")
            flow = f"{flow}/{head}"
        raise DeploymentNotFound(text)

    def list_deployments(self) -> list[Deployment]:
        """Every deployment, sorted by name."""
        ids = self.client.hvals(self.keys.deployment_names)
        if not ids:
            return []
        found = []
        for deployment_id, raw in zip(
            ids, self.client.mget([self.keys.deployment(i) for i in ids])
        ):
            if not raw:
                continue
            try:
                found.append(Deployment.model_validate_json(raw))
            except ValidationError as error:  # one bad record must not hide the others
                log.warning(
                    "Skipping unreadable deployment %s: %s", deployment_id, error.errors()[0]["msg"]
                )
        return sorted(found, key=lambda d: d.name)

    def delete_deployment(self, name_or_id: str | UUID) -> Deployment:
        """Delete a deployment; the SCHEDULED runs its schedule made go too (others stay).

        Returns:
            The deleted deployment.

        Raises:
            DeploymentNotFound: no such deployment.
        """
        deployment = self.read_deployment(name_or_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(self.keys.deployment(str(deployment.id)))
        pipe.hdel(self.keys.deployment_names, deployment.name)
        pipe.execute()
        self.drop_deployment_limit(deployment)
        if deployment.schedule is not None:
            scheduler = self.scheduler()
            scheduler.unschedule(str(deployment.id), deployment.work_queue_name)
            scheduler.forget(str(deployment.id))
        return deployment


def check_default_parameters(deployment: DeploymentSpec) -> None:
    """Refuse default parameters that do not fit the deployment's parameter schema.

    Defaults need not name every required parameter (each run may give it), unless an
    active schedule makes runs: those runs get the defaults alone.

    Raises:
        InvalidInput: one line naming the parameter.
    """
    scheduled = deployment.schedule is not None and deployment.is_schedule_active
    try:
        check_parameters(deployment.parameter_schema, deployment.parameters, partial=not scheduled)
    except InvalidInput as error:
        reason = " (the schedule's runs get the defaults alone)" if scheduled else ""
        raise InvalidInput(f"Default parameters: {str(error).rstrip('.')}{reason}.") from None


def _is_uuid(text: str) -> bool:
    try:
        UUID(text)
    except ValueError:
        return False
    return True
