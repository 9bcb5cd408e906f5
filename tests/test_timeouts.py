"""Run timeouts as Redis judges them: a RUNNING run's lease never outlives its deadline,
and the script that settles the lease ends it TimedOut, or puts it back for a retry while
its deployment's retries last. On Redis 6.2, 7 and a three-master cluster; the agent's
side (a hung flow stopped on its infrastructure) is tests/test_agent_timeouts.py.
"""

from __future__ import annotations

import pytest
from click.testing import Result

from runq.agent.infrastructure.kubernetes.manifest import TIMEOUT_BACKSTOP_MARGIN, job_manifest
from runq.broker import Broker, FlowRun, InvalidInput, KubernetesInfrastructure, StateType
from tests.agent_helpers import wait_for
from tests.cli_helpers import Invoke

ON_CLUSTER = True  # conftest also runs this module on a three-master Redis Cluster


def deploy(broker: Broker, timeout: float | None, retries: int = 0) -> None:
    broker.create_deployment(
        name="etl",
        entrypoint="flows.py:f",
        work_queue_name="q",
        timeout_seconds=timeout,
        retries=retries,
        check_code=False,
    )


def start(broker: Broker) -> FlowRun:
    """Claim the next run and make it RUNNING as its engine does (with its retries)."""
    [run] = broker.claim("q", "agent-1", max_runs=1)
    deployment = broker.read_deployment("etl")
    return broker.set_state(
        run.id,
        StateType.RUNNING,
        token=run.claim_token,
        retries=(deployment.retries, deployment.retry_delay_seconds),
    ).model_copy(update={"claim_token": run.claim_token})


def timed_out(broker: Broker, run: FlowRun) -> FlowRun:
    """Heartbeats renew the run all along (a healthy engine) until Redis ends it."""

    def ended() -> FlowRun | None:
        broker.heartbeat_runs("q", [(str(run.id), str(run.claim_token))])
        broker.sweep("q")
        found = broker.read_flow_run(run.id)
        return None if found.state.type is StateType.RUNNING else found

    found = wait_for(ended, 60, "the run's timeout")
    assert isinstance(found, FlowRun)
    return found


def test_a_run_past_its_timeout_ends_failed_timed_out_and_frees_its_slot(broker: Broker) -> None:
    deploy(broker, 1.5)
    created = broker.create_flow_run(deployment="etl")
    assert created.timeout_seconds == 1.5, "the deployment's timeout, on the run"
    run = start(broker)
    found = timed_out(broker, run)
    assert (found.state.type, found.state.name) == (StateType.FAILED, "TimedOut")
    assert "1.5 s" in (found.state.message or "")
    assert broker.read_work_queue("q").active_runs == 0


def test_a_timed_out_run_is_retried_as_its_deployment_says(broker: Broker) -> None:
    deploy(broker, 1, retries=1)
    broker.create_flow_run(deployment="etl")
    first = timed_out(broker, start(broker))
    assert (first.state.type, first.state.name) == (StateType.SCHEDULED, "AwaitingRetry")
    assert "attempt 1 of 2 timed out" in (first.state.message or "")
    second = timed_out(broker, start(broker))
    assert (second.state.type, second.state.name) == (StateType.FAILED, "TimedOut")
    assert second.run_count == 2


def test_a_runs_own_timeout_wins_and_a_run_without_one_is_untouched(broker: Broker) -> None:
    deploy(broker, None)
    broker.create_flow_run(deployment="etl", timeout_seconds=1)
    run = start(broker)
    assert run.timeout_seconds == 1
    assert timed_out(broker, run).state.name == "TimedOut"
    plain = broker.create_flow_run(deployment="etl")
    assert plain.timeout_seconds is None
    running = start(broker)
    for _ in range(3):
        broker.sweep("q")
        broker.heartbeat_runs("q", [(str(running.id), str(running.claim_token))])
    assert broker.read_flow_run(running.id).state.type is StateType.RUNNING


@pytest.mark.parametrize("timeout", [0, -1, float("nan")])
def test_a_bad_timeout_is_refused_and_nothing_is_written(broker: Broker, timeout: float) -> None:
    with pytest.raises(InvalidInput):
        deploy(broker, timeout)
    with pytest.raises(InvalidInput):
        broker.create_flow_run("q", timeout_seconds=timeout)
    assert broker.list_deployments() == [] and broker.list_flow_runs() == []


def test_the_cli_takes_a_timeout_and_refuses_zero(runq: Invoke, broker: Broker) -> None:
    runq(
        "deployment",
        "create",
        "etl",
        "--entrypoint",
        "flows.py:f",
        "--skip-validation",
        "--timeout",
        "30m",
    )
    assert broker.read_deployment("etl").timeout_seconds == 1800
    runq("deployment", "run", "etl", "--timeout", "1h")
    [run] = broker.list_flow_runs()
    assert run.timeout_seconds == 3600
    refused: Result = runq("deployment", "run", "etl", "--timeout", "0", code=2)
    assert "--timeout" in refused.stderr
    assert len(broker.list_flow_runs()) == 1


def test_a_kubernetes_job_gets_the_timeout_as_its_backstop(broker: Broker) -> None:
    broker.create_flow_run("q", timeout_seconds=600)
    [run] = broker.list_flow_runs()
    settings = KubernetesInfrastructure(image="runq:latest")
    manifest = job_manifest(run, settings, {})
    assert manifest["spec"]["activeDeadlineSeconds"] == 600 + TIMEOUT_BACKSTOP_MARGIN
