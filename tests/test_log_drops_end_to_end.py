"""A real flow that writes faster than Redis stores: its log counts every line it lost.

The engine's backlog overflows while Redis takes no write (CLIENT PAUSE WRITE, a real
stall of every script); what the log then says (the head marker, the notices left) plus
the lines it kept is the number of lines the flow printed, exactly
(see test_log_drops.py for the parts).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from runq.broker import Broker, StateType
from tests import agent_helpers
from tests.agent_helpers import Agents, deploy, state_of, wait_for
from tests.figures import Figure
from tests.test_log_drops import accounted

redis_server = agent_helpers.redis_server
agents = agent_helpers.agents
workdir = agent_helpers.workdir

pytestmark = pytest.mark.slow

SPAM = """

def spam(lines: int, go: str, done: str) -> None:
    import os, sys, time
    while not os.path.exists(go):
        time.sleep(0.05)
    write = sys.stdout.write
    for i in range(lines):
        write(f"line {i:07d}\\n")
    sys.stdout.flush()
    open(done, "w").close()
"""


def test_a_flow_writing_faster_than_redis_stores_is_counted_line_for_line(
    broker: Broker, redis_url: str, agents: Agents, workdir: Path, figure: Figure
) -> None:
    """A real agent and engine: Redis takes no write while the flow prints 200,000 lines
    (CLIENT PAUSE WRITE), so the engine's 4 MiB backlog overflows; the log keeps 256 KiB."""
    (workdir / "flows.py").write_text((workdir / "flows.py").read_text() + SPAM)
    total, go, done = 200_000, workdir / "go", workdir / "done"
    deploy(
        broker,
        "spam",
        "spam",
        "drops",
        parameters={"lines": total, "go": str(go), "done": str(done)},
    )
    run = broker.create_flow_run(deployment="spam")
    agents.start("drops", env={"RUNQ_LOG_MAX_BYTES_PER_RUN": str(256 * 1024)})
    wait_for(lambda: state_of(broker, run.id) is StateType.RUNNING, 60, "the flow to run")
    admin = redis.Redis.from_url(redis_url)
    admin.client_pause(120_000, all=False)  # writes wait; reads go on
    try:
        go.touch()
        wait_for(done.exists, 60, "the flow to print everything")
    finally:
        admin.client_unpause()
        admin.close()
    wait_for(lambda: state_of(broker, run.id) is StateType.COMPLETED, 120, "the run to complete")
    dropped, lost, kept = accounted(broker.read_logs(run.id, count=1_000_000))
    figure("log_lines_printed", total)
    figure("log_lines_kept", len(kept))
    figure("log_lines_counted_as_dropped_or_lost", dropped + lost)
    figure("log_lines_unaccounted", total - dropped - lost - len(kept))
    assert kept and kept == list(range(total - len(kept), total)), "the newest lines, in order"
    assert dropped + lost + len(kept) == total
