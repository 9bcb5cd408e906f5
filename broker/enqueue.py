"""Storing flow runs on a queue in batches, and taking back the ones a schedule made.

Functions over the Broker's core, so that both the Broker's flow-run methods and the
scheduler (which works through the core, not the whole Broker) store runs the same way:
index first, record second, so an accepted run is always findable by id.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID, uuid4

import redis

from .checks import JSON, ms, validated
from .core import BrokerCore
from .errors import InvalidInput, RedisOutOfMemory
from .field_types import validate_run_name
from .ids import new_run_id
from .models import FlowRunCreate
from .names import generate_run_name
from .timeutil import datetime_to_ms

CREATE_BATCH = 1000  # runs per run_create call: bounds the time one script holds Redis


def encoded_batches(
    core: BrokerCore, runs: Iterable[FlowRunCreate | dict[str, Any]]
) -> Iterable[list[list[str]]]:
    """The runs as run_create.lua's fields, in batches of at most CREATE_BATCH."""
    batch: list[list[str]] = []
    for run in runs:
        if not isinstance(run, FlowRunCreate):
            run = validated(FlowRunCreate, run)
        batch.append(encode_run(core, run))
        if len(batch) == CREATE_BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def encode_run(core: BrokerCore, run: FlowRunCreate) -> list[str]:
    """One run's fields in run_create.lua's order."""
    try:
        parameters = JSON.encode(run.parameters)
    except (TypeError, ValueError) as error:
        raise InvalidInput(f"parameters: not JSON-serialisable ({error}).") from None
    core._check_parameters(parameters)
    if run.name:  # a model built without validation (model_construct) is checked too
        try:
            validate_run_name(run.name)
        except ValueError as error:
            raise InvalidInput(f"name: {error}.") from None
    due = "" if run.scheduled_start_time is None else str(datetime_to_ms(run.scheduled_start_time))
    return [
        new_run_id(),
        run.name or generate_run_name(),
        str(run.deployment_id) if run.deployment_id else "",
        run.flow_name or "",
        parameters,
        JSON.encode(run.tags) if run.tags else "",
        run.idempotency_key or "",
        due,
        str(ms(run.start_in_seconds)),
        "1" if run.auto_scheduled and run.deployment_id else "",
        "" if run.timeout_seconds is None else str(max(1, ms(run.timeout_seconds))),
    ]


def create_batch(
    core: BrokerCore, queue: str, batch: list[list[str]], *, with_records: bool
) -> tuple[list[str], list[list[str]]]:
    """Store one batch; returns the run ids in order and, if asked, their records."""
    keys = core._queue(queue)
    ids = [fields[0] for fields in batch]
    queue_id = str(uuid4())
    # Index first, record second: an accepted run is always findable by id.
    pipe = core.client.pipeline(transaction=False)
    pipe.sadd(core.keys.queue_names, queue)
    pipe.hset(core.keys.run_index, mapping=dict.fromkeys(ids, queue))
    try:
        if core.cluster:  # the index and the queue live on different nodes
            pipe.execute()
            created_queue, hits, records = core.scripts.run_create(
                keys, queue_id=queue_id, with_records=with_records, name=queue, runs=batch
            )
        else:
            core.scripts.run_create(
                keys,
                queue_id=queue_id,
                with_records=with_records,
                name=queue,
                runs=batch,
                client=pipe,
            )
            try:
                created_queue, hits, records = pipe.execute()[-1]
            except redis.ResponseError as error:
                raise core.scripts.translate(error) from None
    except (RedisOutOfMemory, redis.RedisError) as error:
        forget_index_entries(core, queue, ids, error)
        raise
    if hits:  # idempotency keys already known: those runs exist under other ids
        unused = []
        for position, existing in zip(hits[::2], hits[1::2]):
            unused.append(ids[int(position) - 1])
            ids[int(position) - 1] = existing
        core.client.hdel(core.keys.run_index, *unused)
    if created_queue:
        core.client.hset(core.keys.queue_ids, core.client.hget(keys.config, "id"), queue)
    return ids, records


def forget_index_entries(core: BrokerCore, queue: str, ids: list[str], error: Exception) -> None:
    """The runs were refused (full memory, say) after their index entries were
    written: remove those entries (a removal Redis allows under full memory), so no
    entry points at a run that does not exist. A lost connection leaves them, and
    then it cannot be known whether the runs were created: they stay findable."""
    if isinstance(error, (redis.ConnectionError, redis.TimeoutError)):
        return
    try:
        core.client.hdel(core.keys.run_index, *ids)
        if not core.client.exists(core._queue(queue).config):
            core.client.srem(core.keys.queue_names, queue)
    except redis.RedisError as cleanup_error:
        import logging

        logging.getLogger("runq.broker").warning(
            "Could not remove the index entries of refused runs: %s", cleanup_error
        )


def create_runs(
    core: BrokerCore, queue: str, runs: Iterable[FlowRunCreate | dict[str, Any]]
) -> list[list[str]]:
    """Store the runs; returns their records (flat HASH arrays) in request order."""
    records: list[list[str]] = []
    for batch in encoded_batches(core, runs):
        records.extend(create_batch(core, queue, batch, with_records=True)[1])
    return records


def enqueue_runs(
    core: BrokerCore, queue: str, runs: Iterable[FlowRunCreate | dict[str, Any]]
) -> list[str]:
    """Store the runs; returns only their ids. While Redis stores one batch, this thread
    encodes the next (the socket wait releases the GIL)."""
    ids: list[str] = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="runq-enqueue") as sender:
        sending = None
        for batch in encoded_batches(core, runs):
            if sending is not None:
                ids.extend(sending.result()[0])
            sending = sender.submit(create_batch, core, queue, batch, with_records=False)
        if sending is not None:
            ids.extend(sending.result()[0])
    return ids


def unschedule_runs(core: BrokerCore, queue: str, deployment_id: str | UUID) -> list[str]:
    """Delete the SCHEDULED runs deployment ``deployment_id``'s schedule made on
    ``queue`` (claimed ones are never touched); returns their ids."""
    try:
        keys = core._queue(queue)
    except InvalidInput:
        return []
    deleted: list[str] = core.scripts.runs_unschedule(keys, deployment_id=str(deployment_id))
    if deleted:
        core.client.hdel(core.keys.run_index, *deleted)
    return deleted
