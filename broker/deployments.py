"""Deployments: their records, name index and the schedules they hand the scheduler."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from uuid import UUID

from pydantic import ValidationError

from .checks import JSON, check_bytes, validated
from .core import BrokerCore
from .errors import DeploymentNotFound
from .models import Deployment, DeploymentSpec, WorkQueue
from .scheduling import Scheduler
from .settings import ENV_SETTINGS

log = logging.getLogger("runq.broker")


class Deployments(BrokerCore):
    """The Broker's deployment methods (``ensure_work_queue`` comes from WorkQueues)."""

    if TYPE_CHECKING:  # what WorkQueues, which it is composed with, provides

        def ensure_work_queue(self, name: str) -> tuple[WorkQueue, bool]: ...

    def create_deployment(self, spec: DeploymentSpec | None = None, **fields: Any) -> Deployment:
        """Store a new deployment; its work queue is created if needed.

        Args:
            spec: the deployment, or its fields as keyword arguments (``name``,
                ``entrypoint`` or ``command``, ``parameters``, ``work_queue_name``,
                ``infrastructure``, ``tags``, ``retries``, ``retry_delay_seconds``, ...).

        Returns:
            The stored deployment with its id.

        Raises:
            InvalidInput: a field is invalid, or the parameters or the whole record are
                over ``settings.max_parameters_bytes`` / ``max_deployment_bytes``.
            DeploymentExists: the name is taken; nothing was written.
        """
        spec = spec or validated(DeploymentSpec, fields)
        now = self.server_time()
        deployment = Deployment(**spec.model_dump(), created=now, updated=now)
        # Saved first: a taken name is refused before the queue is created.
        self._save_deployment("create", deployment, deployment.name)
        self.ensure_work_queue(deployment.work_queue_name)
        if deployment.schedule is not None:
            self.scheduler().reschedule(deployment)  # preview shows it with no scheduler up
        return deployment

    def scheduler(self) -> Scheduler:
        """The schedule materializer over this broker (see :mod:`broker.scheduling`)."""
        return Scheduler(self)

    def update_deployment(self, name_or_id: str | UUID, **changes: Any) -> Deployment:
        """Change fields of a deployment (validated as a whole before anything is written).

        Returns:
            The updated deployment.

        Raises:
            DeploymentNotFound: no such deployment.
            InvalidInput: the result would be invalid.
            DeploymentExists: a rename to a name another deployment holds.
        """
        current = self.read_deployment(name_or_id)
        data = current.model_dump(exclude={"id", "created", "updated"})
        data.update(changes)
        spec = validated(DeploymentSpec, data)
        deployment = Deployment(
            **spec.model_dump(), id=current.id, created=current.created, updated=self.server_time()
        )
        self._save_deployment("update", deployment, current.name)
        self.ensure_work_queue(deployment.work_queue_name)
        if current.schedule is not None or deployment.schedule is not None:
            self.scheduler().reschedule(deployment, old_queue=current.work_queue_name)
        return deployment

    def _save_deployment(self, mode: str, deployment: Deployment, old_name: str) -> None:
        """Store the record, refused (nothing written) over the parameters' or the
        document's byte bound."""
        self._check_parameters(JSON.encode(deployment.parameters), "Default parameters are")
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
        """A deployment by name or id.

        Raises:
            DeploymentNotFound: no such deployment.
        """
        text = str(name_or_id)
        deployment_id = self.client.hget(self.keys.deployment_names, text) or text
        raw = self.client.get(self.keys.deployment(deployment_id))
        if raw is None:
            raise DeploymentNotFound(text)
        return Deployment.model_validate_json(raw)

    def list_deployments(self) -> list[Deployment]:
        """Every deployment, sorted by name."""
        ids = self.client.hvals(self.keys.deployment_names)
        if not ids:
            return []
        found = []
        for deployment_id, raw in zip(ids, self.client.mget([self.keys.deployment(i) for i in ids])):
            if not raw:
                continue
            try:
                found.append(Deployment.model_validate_json(raw))
            except ValidationError as error:  # one bad record must not hide the others
                log.warning("Skipping unreadable deployment %s: %s", deployment_id, error.errors()[0]["msg"])
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
        if deployment.schedule is not None:
            scheduler = self.scheduler()
            scheduler.unschedule(str(deployment.id), deployment.work_queue_name)
            scheduler.forget(str(deployment.id))
        return deployment
