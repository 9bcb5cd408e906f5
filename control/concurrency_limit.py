"""``runq concurrency-limit ...``: named limits on runs in flight across queues and deployments.

The commands follow Prefect 2's ``prefect concurrency-limit`` (a limit is named by a tag;
every run carrying that tag holds one slot while it is in flight), with runq's additions:
a rate (``--rate 10/1m``) and per-value limits (``customer:*``). What a limit does to runs
is the broker's (``broker/concurrency_limits.py``, ``broker/limit_slots.py``); these
commands only create, show, change and delete them.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import click
from rich.table import Table

from runq.broker import Broker, InvalidInput, LimitDetail
from runq.broker.concurrency_limits import MAX_LIMIT, ConcurrencyLimit, checked_limit_value
from runq.broker.text import strip_controls
from runq.display.runs import run_names
from runq.display.text import quoted
from runq.display.time_text import both

from .common import (
    add_row,
    new_table,
    output_option,
    print_json,
    print_table,
    render_record,
    wants_json,
    with_broker,
)

#: Runs of each value listed by ``inspect`` (holders, and waiting runs, apiece).
MAX_LISTED = 100
#: A limit as typed: digits, perhaps a sign (a negative one gets the broker's range message).
_INTEGER = re.compile(r"[+-]?[0-9]{1,18}")


def parse_limit(text: str) -> int:
    """LIMIT as typed on the command line; anything but an integer from 0 to a million is
    one InvalidInput line (Click's own int type would print its usage block)."""
    if not _INTEGER.fullmatch(text.strip()):
        raise InvalidInput(
            f"Invalid concurrency limit {text!r}: it must be an integer from 0 to {MAX_LIMIT}."
        )
    return checked_limit_value(int(text))


def cap_text(value: Any) -> str:
    """A limit or a rate as the tables show it; ``None`` when it has none."""
    return "None" if value is None else str(value)


@click.group("concurrency-limit")
def concurrency_limit() -> None:
    """Manage concurrency limits: caps on the runs carrying a tag, across queues.

    A run holds a slot of limit NAME from its claim to its end when NAME is one of its
    tags (its deployment's tags and its own, `runq deployment run --tag`). A run that
    finds a limit full waits (state AwaitingConcurrencySlot) and starts when a slot
    frees, in line. A limit named KEY:* caps each value of the tags KEY:VALUE apart.

    \b
    Examples:
        runq concurrency-limit create warehouse 5
        runq concurrency-limit create 'customer:*' 1 --rate 10/1m
        runq concurrency-limit ls
        runq concurrency-limit inspect warehouse
    """


@concurrency_limit.command(
    "create",
    context_settings={"ignore_unknown_options": True},  # so "-1" reaches the limit check
)
@click.argument("name")
@click.argument("limit", required=False)
@click.option("--rate", metavar="N/DURATION", help="At most N starts per rolling DURATION.")
@click.option("-d", "--description", default="", help="Free text shown by inspect.")
@with_broker
def create(
    broker: Broker, name: str, limit: str | None, rate: str | None, description: str
) -> None:
    """Create concurrency limit NAME: at most LIMIT runs tagged NAME in flight at once,
    and/or at most --rate starts per window (give one or both). An existing name is an
    error and is left unchanged.

    \b
    Examples:
        runq concurrency-limit create warehouse 5
        runq concurrency-limit create api-calls --rate 10/1m -d 'the partner API'
        runq concurrency-limit create 'customer:*' 1
    """
    slots = None if limit is None else parse_limit(limit)
    created = broker.create_concurrency_limit(name, slots, rate=rate, description=description)
    lines = [
        "Created concurrency limit with properties:",
        f"    name - {created.name!r}",
        f"    limit - {created.limit}",
        f"    rate - {cap_text(created.rate)}",
    ]
    if created.description:
        lines.append(f"    description - {created.description!r}")
    tag = f"{created.name[:-1]}VALUE" if created.per_value else created.name
    lines += [
        "",
        f"Runs tagged {tag!r} now hold a slot of it while they are in flight"
        + (" (each VALUE its own limit)." if created.per_value else "."),
        "",
        "Inspect the concurrency limit:",
        f"    runq concurrency-limit inspect {quoted(created.name)}",
    ]
    click.echo("\n".join(lines))


@concurrency_limit.command("ls")
@output_option
@with_broker
def ls(broker: Broker, output: str) -> None:
    """List concurrency limits with their slots in use and their waiting runs.

    \b
    Examples:
        runq concurrency-limit ls
        runq concurrency-limit ls -o json
    """
    limits = broker.list_concurrency_limits()
    if wants_json(output):
        print_json(limits)
        return
    table = new_table(
        "Concurrency Limits", ["Name", "Limit", "Rate", "Active", "Waiting", "Description"]
    )
    for item in limits:
        add_row(
            table,
            item.name,
            cap_text(item.limit),
            cap_text(item.rate),
            item.active,
            item.waiting,
            strip_controls(item.description),
        )
    print_table(table)


@concurrency_limit.command("inspect")
@click.argument("name")
@output_option
@with_broker
def inspect(broker: Broker, name: str, output: str) -> None:
    """Show a concurrency limit, the runs holding its slots and the runs waiting for one,
    in the order they will start (the first 100 of each value).

    \b
    Examples:
        runq concurrency-limit inspect warehouse
        runq concurrency-limit inspect 'customer:*' -o json
    """
    detail = broker.inspect_concurrency_limit(name, max_listed=MAX_LISTED)
    listed = [h.run_id for h in detail.holders] + [w.run_id for w in detail.waiting]
    names = run_names(broker, listed)
    if wants_json(output):
        print_json(detail_json(detail, names))
        return
    now = broker.server_time()
    click.echo(render_record("ConcurrencyLimit", limit_fields(detail.limit, now)))
    per_value = detail.limit.per_value
    print_table(holders_table(detail, names, now, per_value))
    print_table(waiting_table(detail, names, now, per_value))


def limit_fields(limit: ConcurrencyLimit, now: datetime) -> dict[str, Any]:
    return {
        "name": limit.name,
        "limit": limit.limit,
        "rate": None if limit.rate is None else str(limit.rate),
        "description": limit.description,
        "active": limit.active,
        "waiting": limit.waiting,
        "created": both(limit.created, now),
        "updated": both(limit.updated, now),
    }


def detail_json(detail: LimitDetail, names: dict[str, str]) -> dict[str, Any]:
    """The LimitDetail's fields, each holder and waiting run with its ``run_name``."""
    data: dict[str, Any] = detail.model_dump(mode="json")
    for entry in [*data["holders"], *data["waiting"]]:
        entry["run_name"] = names.get(entry["run_id"], "")
    return data


def holders_table(
    detail: LimitDetail, names: dict[str, str], now: datetime, per_value: bool
) -> Table:
    more = detail.limit.active - len(detail.holders)
    table = new_table(
        "Holders",
        ["Run", "Run ID", "Work Queue", *(["Value"] if per_value else []), "Since"],
        caption=f"and {more} more" if more > 0 else None,
    )
    for holder in detail.holders:
        value = [holder.value] if per_value else []
        since = both(holder.since, now)
        add_row(table, names.get(holder.run_id, ""), holder.run_id, holder.queue, *value, since)
    return table


def waiting_table(
    detail: LimitDetail, names: dict[str, str], now: datetime, per_value: bool
) -> Table:
    more = detail.limit.waiting - len(detail.waiting)
    table = new_table(
        "Waiting Runs (in the order they start)",
        ["Place", "Run", "Run ID", "Work Queue", *(["Value"] if per_value else []), "Due"],
        caption=f"and {more} more" if more > 0 else None,
    )
    for waiter in detail.waiting:
        value = [waiter.value] if per_value else []
        due = both(waiter.due, now)
        name = names.get(waiter.run_id, "")
        add_row(table, waiter.place, name, waiter.run_id, waiter.queue, *value, due)
    return table


@concurrency_limit.command("update")
@click.argument("name")
@click.option("-l", "--limit", metavar="N", help="The new limit on runs in flight (0 holds all).")
@click.option("--no-limit", is_flag=True, help="Remove the limit on runs in flight.")
@click.option("--rate", metavar="N/DURATION", help="The new rate: N starts per DURATION.")
@click.option("--no-rate", is_flag=True, help="Remove the rate.")
@click.option("-d", "--description", help="The new description ('' clears it).")
@with_broker
def update(
    broker: Broker,
    name: str,
    limit: str | None,
    no_limit: bool,
    rate: str | None,
    no_rate: bool,
    description: str | None,
) -> None:
    """Change a concurrency limit; what is not given stays. A raised limit starts the
    runs waiting for it at once. A limit keeps a cap: a limit, a rate or both.

    \b
    Examples:
        runq concurrency-limit update warehouse --limit 8
        runq concurrency-limit update api-calls --rate 20/1m --no-limit
        runq concurrency-limit update warehouse -d 'nightly loads'
    """
    if limit is not None and no_limit:
        raise click.UsageError("Give --limit N or --no-limit, not both.")
    if rate is not None and no_rate:
        raise click.UsageError("Give --rate R or --no-rate, not both.")
    changes: dict[str, Any] = {}
    if limit is not None or no_limit:
        changes["limit"] = None if no_limit else parse_limit(limit or "")
    if rate is not None or no_rate:
        changes["rate"] = None if no_rate else rate
    if description is not None:
        changes["description"] = description
    if not changes:
        raise click.UsageError(
            "Nothing to update: give --limit, --no-limit, --rate, --no-rate or --description."
        )
    updated = broker.update_concurrency_limit(name, **changes)
    lines = [f"Updated concurrency limit {updated.name!r}:"]
    if "limit" in changes:
        lines.append(f"    limit - {updated.limit}")
    if "rate" in changes:
        lines.append(f"    rate - {cap_text(updated.rate)}")
    if "description" in changes:
        lines.append(f"    description - {updated.description!r}")
    click.echo("\n".join(lines))


@concurrency_limit.command("delete")
@click.argument("name")
@with_broker
def delete(broker: Broker, name: str) -> None:
    """Delete a concurrency limit; the runs waiting for it go back to their queues at once.

    \b
    Example:
        runq concurrency-limit delete warehouse
    """
    waiting = broker.read_concurrency_limit(name).waiting
    broker.delete_concurrency_limit(name)
    click.echo(f"Deleted concurrency limit {name!r}")
    if waiting:
        click.echo(f"{waiting} waiting run(s) went back to their work queues.")
