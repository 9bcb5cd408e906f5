"""``runq ui`` over a Redis Cluster: queues on every node listed, and live events from
every node (a plain PUBLISH reaches all nodes, so the UI's one pattern subscription
on one node sees every queue's changes)."""

from __future__ import annotations

import httpx

from runq.broker import Broker
from tests.ui_helpers import EventListener, UIServers, ui_servers, wait_for  # noqa: F401

ONLY_CLUSTER = True
QUEUES = [f"queue-{i}" for i in range(6)]  # hash tags spread over the three masters


def test_the_ui_lists_and_follows_queues_on_every_node(
    ui_servers: UIServers, broker: Broker
) -> None:
    runs = {name: broker.create_flow_run(name) for name in QUEUES}
    ui = ui_servers.start()
    with httpx.Client(base_url=ui.url, timeout=60) as http:
        assert [q["name"] for q in http.get("/api/work-queues").json()] == QUEUES
        assert {r["id"] for r in http.get("/api/flow-runs").json()} == {
            str(r.id) for r in runs.values()
        }
        for name, run in runs.items():
            assert http.get(f"/api/flow-runs/{run.id}").json()["work_queue_name"] == name
            assert http.get(f"/work-queues/{name}").status_code == 200
        listener = EventListener(ui.url, lambda events: {e["queue"] for e in events} >= set(QUEUES))

        def every_queue_heard() -> bool:  # each change is published; repeat until all are heard
            for name in set(QUEUES) - {e["queue"] for e in listener.events}:
                assert http.post(f"/api/work-queues/{name}/pause").status_code == 200
            return {e["queue"] for e in listener.events} >= set(QUEUES)

        wait_for(every_queue_heard, 120, "an event from every queue")
