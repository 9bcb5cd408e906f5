"""Named concurrency limits and run timeouts: what they cost and how well they hold.

Run: ``.venv/bin/python bench/limits.py [--url redis://...] [--runs N] ...``. Without
--url it starts a private redis-server on a free port (its data is flushed between
phases either way). Prints a table, then as its last line one JSON object:

- claim_per_s_with_limits / claim_per_s_without: runs claimed and started per second
  by ``--claimers`` Python processes on one queue, each doing per run what an agent
  does (Broker.claim, take_limit_slots, RUNNING and COMPLETED under its token,
  release_limit_slots); the runs' tag names a limit of 1000 (never binding), or no limit
  exists. Best of ``--rounds`` alternating rounds each. Target ratio >= 0.7.
- claims_per_delivered_run_90pct_waiting: one Agent (a thread here) serving a queue of
  ``--delivered-runs`` runs due at once, 90% tagged with a limit of ``--limit``: runs
  handed out by Broker.claim (first claims and re-claims of parked runs) per run started,
  until all ended. Target <= 2.
- idle_commands_per_s_0_waiting / _1000_waiting: one ``runq agent start`` process idle on
  a queue whose limit is full (held by runs no agent serves), no run parked vs 1,000:
  Redis commands per second over ``--window`` s (INFO commandstats calls, commands run
  by scripts included, less the sampling's own INFO). Target ratio <= 1.5.
- unblocked_due_to_claimed_p50_ms_with_0_waiting / _with_500_waiting: due -> claimed of
  untagged runs (Redis' clock: claimed_at - expected_start_time from the run's record)
  with an Agent serving the queue, before and after 500 runs are parked there on a full
  limit. Target ratio <= 2.
- timeout_overrun_p99_ms: a real agent process with tests/agent_helpers.py's FAST
  settings (lease 2 s, heartbeat 0.5 s, cancel grace 2 s), ``--timeout-runs`` runs of a
  flow sleeping 60 s under a 1 s timeout: when each flow's process was gone minus its
  run's start_time + timeout. Target: under the heartbeat plus the cancel grace.

Ratios in one run, not absolute numbers, are what to compare across machines.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402
from rich.progress import (  # noqa: E402
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table  # noqa: E402

from bench.limit_agents import (  # noqa: E402
    idle_command_rates,
    timeout_overruns,
    unblocked_latencies,
)
from bench.limit_claims import claim_rates, claims_per_started_run  # noqa: E402
from bench.noop_infrastructure import percentile  # noqa: E402
from bench.throwaway import redis_url  # noqa: E402
from runq.broker import Broker, RunqError  # noqa: E402
from tests.agent_helpers import FAST  # noqa: E402

IDLE_WAITING = 1000  # the figures' names say these two counts: they are not flags
UNBLOCK_WAITING = 500
TIMEOUT_SECONDS = 1.0


class Phases:
    """A rich progress bar per phase, on stderr (stdout is the table and the JSON)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress

    @contextmanager
    def phase(self, what: str, total: float) -> Iterator[Callable[..., None]]:
        """A bar for ``what``; yields ``advance(amount=1)``."""
        task = self.progress.add_task(what, total=total)

        def advance(amount: float = 1.0) -> None:
            self.progress.advance(task, amount)

        yield advance
        self.progress.update(task, completed=total)

    @contextmanager
    def counted(self, what: str, total: int) -> Iterator[Callable[[int], None]]:
        """A bar for ``what``; yields ``done(count)`` that sets its count."""
        task = self.progress.add_task(what, total=total)

        def done(count: int) -> None:
            self.progress.update(task, completed=count)

        yield done
        self.progress.update(task, completed=total)


def flushed(url: str) -> str:
    broker = Broker.from_url(url)
    broker.client.flushall()
    broker.close()
    return url


def measure(url: str, workdir: Path, args: argparse.Namespace, phases: Phases) -> dict[str, Any]:
    """Every phase in turn, on a flushed Redis each."""
    found: dict[str, Any] = {}
    with phases.phase("claim throughput, with and without a limit", 2 * args.rounds) as step:
        found["with"], found["without"] = claim_rates(
            flushed(url), args.claimers, args.runs, args.rounds, step
        )
    with phases.counted("runs started, 90% waiting for a limit", args.delivered_runs) as done:
        found["delivery"] = claims_per_started_run(
            flushed(url), args.delivered_runs, args.limit, done
        )
    with phases.phase("idle agent, 0 then 1,000 waiting (s)", 2 * args.window) as step:
        found["idle"] = idle_command_rates(flushed(url), workdir, IDLE_WAITING, args.window, step)
    with phases.phase("due -> claimed, 0 then 500 waiting", 2 * args.samples) as step:
        found["unblocked"] = unblocked_latencies(flushed(url), UNBLOCK_WAITING, args.samples, step)
    with phases.phase("timed-out flows stopped", args.timeout_runs) as step:
        found["timeouts"] = timeout_overruns(
            flushed(url), workdir, args.timeout_runs, TIMEOUT_SECONDS, FAST, step
        )
    return found


def figures_of(found: dict[str, Any]) -> dict[str, float]:
    delivery, idle = found["delivery"], found["idle"]
    none_waiting, with_waiting = found["unblocked"]
    return {
        "claim_per_s_with_limits": round(found["with"]),
        "claim_per_s_without": round(found["without"]),
        "claims_per_delivered_run_90pct_waiting": round(delivery.claims / delivery.runs, 3),
        "idle_commands_per_s_1000_waiting": round(idle["calls_n"], 1),
        "idle_commands_per_s_0_waiting": round(idle["calls_0"], 1),
        "unblocked_due_to_claimed_p50_ms_with_500_waiting": round(
            statistics.median(with_waiting), 2
        ),
        "unblocked_due_to_claimed_p50_ms_with_0_waiting": round(statistics.median(none_waiting), 2),
        "timeout_overrun_p99_ms": round(percentile(found["timeouts"].overruns_ms, 0.99), 1),
    }


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "n/a"


def print_table(figures: dict[str, float], found: dict[str, Any], args: argparse.Namespace) -> None:
    delivery, idle, timeouts = found["delivery"], found["idle"], found["timeouts"]
    none_waiting, with_waiting = found["unblocked"]
    heartbeat, grace = (
        float(FAST[k]) for k in ("RUNQ_HEARTBEAT_SECONDS", "RUNQ_CANCEL_GRACE_SECONDS")
    )
    budget_ms = (heartbeat + grace) * 1000
    table = Table(title="runq named limits and timeouts benchmark", caption=caption(args, delivery))
    for column in ("measure", "value", "target", "note"):
        table.add_column(column)
    table.add_row(
        "runs claimed+started/s, no limit",
        f"{figures['claim_per_s_without']:,}",
        "",
        f"{args.claimers} processes, best of {args.rounds}",
    )
    table.add_row(
        "  the same, tag limit 1000",
        f"{figures['claim_per_s_with_limits']:,}",
        "",
        "never binds",
    )
    table.add_row(
        "  with / without",
        ratio(figures["claim_per_s_with_limits"], figures["claim_per_s_without"]),
        ">= 0.7",
        "",
    )
    table.add_row(
        "runs claimed per run started, 90% waiting",
        f"{figures['claims_per_delivered_run_90pct_waiting']}",
        "<= 2",
        f"{delivery.runs} runs, limit {args.limit}: {delivery.parks} parks,"
        f" {delivery.claim_calls} claim calls, {delivery.seconds:.1f} s",
    )
    table.add_row(
        "idle agent: commands/s, 0 waiting",
        f"{figures['idle_commands_per_s_0_waiting']}",
        "",
        f"limit full; Redis CPU {idle['usec_0']:,.0f} us/s",
    )
    table.add_row(
        f"  {IDLE_WAITING:,} runs waiting",
        f"{figures['idle_commands_per_s_1000_waiting']}",
        "",
        f"Redis CPU {idle['usec_n']:,.0f} us/s",
    )
    table.add_row(
        "  1000 / 0 waiting",
        ratio(
            figures["idle_commands_per_s_1000_waiting"], figures["idle_commands_per_s_0_waiting"]
        ),
        "<= 1.5",
        "",
    )
    table.add_row(
        "untagged due -> claimed p50, 0 waiting",
        f"{figures['unblocked_due_to_claimed_p50_ms_with_0_waiting']} ms",
        "",
        f"{len(none_waiting)} runs; p99 {percentile(none_waiting, 0.99):.1f} ms",
    )
    table.add_row(
        f"  {UNBLOCK_WAITING} runs waiting",
        f"{figures['unblocked_due_to_claimed_p50_ms_with_500_waiting']} ms",
        "",
        f"{len(with_waiting)} runs; p99 {percentile(with_waiting, 0.99):.1f} ms",
    )
    table.add_row(
        "  500 / 0 waiting",
        ratio(
            figures["unblocked_due_to_claimed_p50_ms_with_500_waiting"],
            figures["unblocked_due_to_claimed_p50_ms_with_0_waiting"],
        ),
        "<= 2",
        "",
    )
    table.add_row(
        "timed-out flow ran past deadline, p99",
        f"{figures['timeout_overrun_p99_ms']} ms",
        f"< {budget_ms:.0f} ms",
        f"{timeouts.runs} runs, p50 {statistics.median(timeouts.overruns_ms):.0f} ms;"
        f" {timeouts.timed_out} TimedOut",
    )
    table.add_row(
        "agent heartbeat + cancel grace",
        f"{budget_ms:.0f} ms",
        "",
        f"{heartbeat:g} s + {grace:g} s (FAST)",
    )
    Console().print(table)


def caption(args: argparse.Namespace, delivery: Any) -> str:
    """What each figure counts, under the table."""
    fast = " ".join(f"{key}={value}" for key, value in FAST.items())
    return (
        f"Claim rate: {args.claimers} processes x {args.runs // args.claimers} runs per round,"
        " each run: claim, take_limit_slots, RUNNING, COMPLETED, release_limit_slots."
        f" Runs claimed per run started: runs handed out by Broker.claim (first claims and"
        f" re-claims of parked runs) / runs started, {delivery.runs} runs due at once, every"
        " tenth untagged, one Agent (thread) with a no-op infrastructure, until all ended."
        f" Idle: one `runq agent start` process (default settings), {args.window:g} s windows,"
        " INFO commandstats calls (commands inside scripts included) less the sampling's INFO;"
        " the limit is full in both. Due -> claimed: Redis clock (claimed_at -"
        " expected_start_time), one Agent (thread); half the runs due at once, half 0.2 s"
        f" later. Timeouts: timeout {TIMEOUT_SECONDS:g} s, the flow sleeps 60 s; overrun ="
        " when its pid was gone - (start_time + timeout); the agent runs with short settings"
        f" from the environment as tests/agent_helpers.py FAST: {fast}."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an existing Redis to use (its data is flushed!)")
    parser.add_argument("--runs", type=int, default=2000, help="runs per claim-rate round")
    parser.add_argument("--claimers", type=int, default=2, help="claimer processes")
    parser.add_argument("--rounds", type=int, default=2, help="claim-rate rounds per case")
    parser.add_argument("--delivered-runs", type=int, default=1000, help="runs, 90%% tagged")
    parser.add_argument("--limit", type=int, default=10, help="the limit most runs wait for")
    parser.add_argument("--window", type=float, default=20.0, help="idle window, seconds")
    parser.add_argument("--samples", type=int, default=100, help="due -> claimed samples")
    parser.add_argument("--timeout-runs", type=int, default=10, help="timed-out flow runs")
    args = parser.parse_args()
    for name in ("runs", "claimers", "rounds", "delivered_runs", "limit", "samples"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.window <= 0 or args.timeout_runs < 1:
        parser.error("--window must be > 0 and --timeout-runs at least 1")
    logging.getLogger("runq").setLevel(logging.WARNING + 10)  # the table is the output
    workdir = Path(tempfile.mkdtemp(prefix="runq-bench-limits-"))
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    try:
        with redis_url(args.url) as url:
            with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
                found = measure(url, workdir, args, Phases(progress))
    except (RuntimeError, RunqError) as error:  # a phase that could not finish says why
        sys.exit(f"bench/limits.py: {str(error).strip()}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    figures = figures_of(found)
    print_table(figures, found, args)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
