"""The engine: what runs inside a run's infrastructure.

It loads the deployment's entrypoint, checks the run's parameters against it, captures
the flow's output into the run's log, heartbeats while the flow runs and reports the
run's states. Its entry point is ``python -m runq.engine RUN_ID`` (which ``runq flow-run
execute RUN_ID``, the command the infrastructures start, also calls). The agent's
infrastructures, the warm engine server and the deployment check are its callers; it
imports only the broker, and this package imports nothing at all, so that each caller
pays for the modules it uses and no more: the engine's start-up is the delay between a
run's submission and its RUNNING state.
"""
