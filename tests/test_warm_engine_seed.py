"""``hash()`` seeds of process runs, warm and cold, with real agents and flows.

An interpreter draws its hash seed when it starts and cannot change it, so the runs one
warm engine forks share its seed. What the user states holds either way: a fixed
``PYTHONHASHSEED`` gives the same ``hash()`` values warm or cold, and a deployment whose
own environment says ``PYTHONHASHSEED=random`` gets a seed of its own for every run
(started cold), even on an agent that runs with that setting itself.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runq.broker import Broker, StateType
from tests import agent_helpers
from tests.agent_helpers import Agents, deploy, records, state_of, wait_for
from tests.test_warm_engine import is_warm_engine

redis_server = agent_helpers.redis_server
agents = agent_helpers.agents

pytestmark = pytest.mark.slow

SEED = """

def seed(record_to: str) -> int:
    import json, os
    with open(record_to, "a") as out:
        out.write(json.dumps({"ppid": os.getppid(), "hash": hash("runq seed")}) + "\\n")
    return 0
"""


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "flows.py").write_text(agent_helpers.FLOWS + SEED)
    return tmp_path


def run_all(broker: Broker, deployment: str, count: int) -> None:
    for _ in range(count):  # one after the other: no two share a moment
        run = broker.create_flow_run(deployment=deployment)
        wait_for(
            lambda: state_of(broker, run.id) is StateType.COMPLETED, 60, f"a run of {deployment}"
        )


def seeded_hash(seed: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", "print(hash('runq seed'))"],
        env={"PYTHONHASHSEED": seed},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(out.stdout)


def test_a_deployment_asking_for_a_random_seed_gets_one_per_run(
    broker: Broker, agents: Agents, workdir: Path
) -> None:
    trace = workdir / "trace.jsonl"
    deploy(
        broker,
        "own-seed",
        "seed",
        "seeds",
        parameters={"record_to": str(trace)},
        infrastructure={"type": "process", "env": {"PYTHONHASHSEED": "random"}},
    )
    agent = agents.start("seeds", env={"PYTHONHASHSEED": "random"})
    run_all(broker, "own-seed", 3)
    seen = records(trace)
    assert len({run["hash"] for run in seen}) == 3, f"a seed of each run's own: {seen}"
    assert all(run["ppid"] == agent.pid for run in seen), "fresh interpreters (cold)"


def test_runs_of_one_warm_engine_share_its_seed_and_a_fixed_seed_holds_warm_or_cold(
    broker: Broker, agents: Agents, workdir: Path
) -> None:
    shared, fixed = workdir / "shared.jsonl", workdir / "fixed.jsonl"
    deploy(broker, "plain", "seed", "shared", parameters={"record_to": str(shared)})
    agents.start("shared")
    run_all(broker, "plain", 2)
    runs = records(shared)
    assert runs[0]["ppid"] == runs[1]["ppid"] and is_warm_engine(runs[0]["ppid"])
    assert runs[0]["hash"] == runs[1]["hash"], "documented: a fork keeps its warm engine's seed"

    deploy(broker, "warm", "seed", "fixed", parameters={"record_to": str(fixed)})
    deploy(
        broker,
        "cold",
        "seed",
        "fixed",
        parameters={"record_to": str(fixed)},
        infrastructure={"type": "process", "warm_engine": False},
    )
    deploy(
        broker,
        "own",
        "seed",
        "fixed",
        parameters={"record_to": str(fixed)},
        infrastructure={"type": "process", "env": {"PYTHONHASHSEED": "8"}},
    )
    agent = agents.start("fixed", env={"PYTHONHASHSEED": "7"})
    for name in ("warm", "cold", "own"):
        run_all(broker, name, 1)
    warm, cold, own = records(fixed)
    assert is_warm_engine(warm["ppid"]) and cold["ppid"] == own["ppid"] == agent.pid
    assert warm["hash"] == cold["hash"] == seeded_hash("7"), "the agent's fixed seed, both ways"
    assert own["hash"] == seeded_hash("8"), "a deployment's own fixed seed: a fresh interpreter"
