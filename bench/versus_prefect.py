"""runq against Prefect 2.20's agent, side by side on this machine, in one run.

Run: ``make bench-peers`` or ``.venv/bin/python bench/versus_prefect.py [--samples N]
[--runs N] [--claims N]``. It installs ``prefect==2.20.*`` into a virtual environment of
its own under ~/.cache/runq-bench/ (once; later runs reuse it), starts Prefect's server
on SQLite (temporary PREFECT_HOME and database, a free port) and its agents with the
process infrastructure, and for runq a redis-server on a free port (append-only file on)
and real ``runq agent start`` processes. The same workload runs on both:

- ad-hoc runs of a no-op flow deployment, created one by one (after a random pause) with
  an agent waiting, each waited for until it ends: created-to-Pending and -Running, p50
  and p90, from each system's records (Prefect's flow run states, runq's state history),
  Prefect's agent at PREFECT_AGENT_QUERY_INTERVAL=1 and at its default (15 s);
- ``--runs`` (200) runs through one agent on a work queue with a concurrency limit of 10,
  created one by one: first create to all completed (Prefect's agent at a 1 s poll);
- runs created per second, one by one through each system's client, then claimed per
  second through each system's own API with no agent running: runq's ``Broker.claim``,
  Prefect's ``get_runs_in_work_queue`` plus the proposal of Pending, as its agent does.

The ratios are runq's speed-ups (Prefect's time / runq's, runq's rate / Prefect's).
Progress goes to stderr; stdout gets a rich table, then one JSON object as its last line.
Every process it starts (servers, agents, their flow runs) is stopped on exit, error or
Ctrl-C. Not part of ``make test`` or CI: it downloads Prefect and takes minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from runq.broker import Broker, RunqError  # noqa: E402
from runq.broker.states import TERMINAL_STATES, StateType  # noqa: E402
from tests.redis_server import available_binaries, free_port  # noqa: E402

PREFECT_SPEC = "prefect==2.20.*"
PREFECT_PINS: tuple[str, ...] = ()  # none needed today: 2.20.27 runs with pydantic 2.12, anyio 4
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "runq-bench"
VENV = CACHE / "prefect-2.20"
PREFECT_SIDE = Path(__file__).resolve().parent / "prefect_side.py"
PREFECT_DEFAULT_POLL_S = 15.0  # PREFECT_AGENT_QUERY_INTERVAL's default in 2.20
NOOP_FLOW = "def noop():\n    return None\n"


class BenchError(Exception):
    """A failure worth one line (the logs stay in the work directory)."""


def say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def ensure_prefect() -> Path:
    """The Python of a venv with Prefect 2.20, installed once and cached."""
    python, stamp = VENV / "bin" / "python", VENV / ".installed"
    wanted = " ".join((PREFECT_SPEC, *PREFECT_PINS))
    if stamp.exists() and stamp.read_text() == wanted and python.exists():
        return python
    say(f"installing {wanted} into {VENV} (once; about 2 minutes)")
    subprocess.run(["rm", "-rf", str(VENV)], check=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", PREFECT_SPEC, *PREFECT_PINS],
        capture_output=True,
        text=True,
    )
    if pip.returncode != 0:
        raise BenchError(f"pip could not install {wanted}: {pip.stderr.strip().splitlines()[-1:]}")
    version = subprocess.run(
        [str(python), "-c", "import prefect; print(prefect.__version__)"],
        capture_output=True,
        text=True,
    )
    if version.returncode != 0 or not version.stdout.startswith("2.20."):
        raise BenchError(
            f"Prefect does not import in {VENV}: {(version.stderr or version.stdout).strip()[-300:]}"
        )
    stamp.write_text(wanted)
    return python


class Processes:
    """Every long-lived process this benchmark starts, each in its own session, so that
    Ctrl-C reaches only this script, which then stops them and all their descendants."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        with open(self.workdir / f"{name}.log", "wb") as log:  # the child keeps its own copy
            process = subprocess.Popen(
                argv,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.workdir,
            )
        self.started[name] = process
        return process

    def check(self, name: str) -> None:
        """Raise with the tail of its log when the process ``name`` has exited."""
        if self.started[name].poll() is not None:
            tail = (
                (self.workdir / f"{name}.log").read_text(errors="replace").strip().splitlines()[-3:]
            )
            raise BenchError(
                f"{name} exited with {self.started[name].returncode}: {' | '.join(tail)}"
            )

    def stop(self, name: str, grace: float = 10) -> None:
        if (process := self.started.pop(name, None)) is None:
            return
        tree = descendants(process.pid)
        signal_all([process.pid, *tree], signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=grace)
        signal_all([process.pid, *tree, *descendants(process.pid)], signal.SIGKILL)
        process.wait()

    def stop_all(self) -> None:
        for name in reversed(list(self.started)):
            self.stop(name)


def descendants(root: int) -> list[int]:
    """Every live process below ``root`` (children that left its session included)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            children.setdefault(int(stat.read_text().rsplit(")", 1)[1].split()[1]), []).append(
                int(stat.parent.name)
            )
    found, todo = [], [root]
    while todo:
        found.extend(kids := children.get(todo.pop(), []))
        todo.extend(kids)
    return found


def signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signum)


def wait_for(
    what: str, ready: Callable[[], bool], alive: Callable[[], None], timeout: float = 120
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive()
        with contextlib.suppress(OSError, redis.ConnectionError):  # not listening yet
            if ready():
                return
        time.sleep(0.2)
    raise BenchError(f"{what} was not ready within {timeout:.0f} s")


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def summary(prefix: str, latency: dict[str, list[float]]) -> dict[str, float]:
    figures = {}
    for kind, key in (("pending", "pending_ms"), ("running", "running_ms")):
        figures[f"{prefix}_created_to_{kind}_p50_ms"] = round(statistics.median(latency[key]), 1)
        figures[f"{prefix}_created_to_{kind}_p90_ms"] = round(percentile(latency[key], 0.9), 1)
    return figures


def runq_wait_ended(broker: Broker, run_id: str, timeout: float = 120) -> StateType:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = broker.read_flow_run(run_id).state.type
        if state in TERMINAL_STATES:
            return state
        time.sleep(0.01)
    raise BenchError(f"runq flow run {run_id} did not end within {timeout:.0f} s")


def runq_latency(
    broker: Broker, queue: str, deployment: str, samples: int, jitter: float
) -> dict[str, list[float]]:
    pending: list[float] = []
    running: list[float] = []
    for i in range(samples):  # one at a time, after a random pause: creations fall at any phase
        time.sleep(random.uniform(0, jitter))
        run = broker.create_flow_run(queue, deployment=deployment)
        if (final := runq_wait_ended(broker, str(run.id))) is not StateType.COMPLETED:
            raise BenchError(f"runq flow run {run.id} ended {final.value}")
        done = broker.read_flow_run(run.id)
        stamped = {
            state.type: state.timestamp for state in reversed(done.state_history)
        }  # first of each
        pending.append((stamped[StateType.PENDING] - done.created).total_seconds() * 1000)
        running.append((stamped[StateType.RUNNING] - done.created).total_seconds() * 1000)
        if samples <= 20 or (i + 1) % 10 == 0:
            say(
                f"  [runq] run {i + 1}/{samples}: Pending {pending[-1]:.1f} ms, Running {running[-1]:.0f} ms"
            )
    return {"pending_ms": pending, "running_ms": running}


def runq_batch(
    broker: Broker, queue: str, deployment: str, runs: int, timeout: float = 1800
) -> float:
    started = time.perf_counter()
    ids = [str(broker.create_flow_run(queue, deployment=deployment).id) for _ in range(runs)]
    deadline = time.monotonic() + timeout
    while (state := broker.read_work_queue(queue)).scheduled_runs or state.active_runs:  # all ended
        if time.monotonic() > deadline:
            raise BenchError(f"runq: {runs} runs did not end within {timeout:.0f} s")
        time.sleep(0.02)
    seconds = time.perf_counter() - started
    completed = sum(
        broker.read_flow_run(run_id).state.type is StateType.COMPLETED for run_id in ids
    )
    if completed != runs:
        raise BenchError(f"runq: only {completed} of {runs} runs completed")
    return seconds


def runq_claims(broker: Broker, queue: str, deployment: str, runs: int) -> dict[str, float]:
    started = time.perf_counter()
    for _ in range(runs):
        broker.create_flow_run(queue, deployment=deployment)
    creates_per_s, claimed = runs / (time.perf_counter() - started), 0
    started = time.perf_counter()
    while broker.claim(queue, "versus-prefect-bench", max_runs=1):
        claimed += 1
    claims_per_s = claimed / (time.perf_counter() - started)
    if claimed != runs:
        raise BenchError(f"runq: claimed {claimed} of {runs} runs")
    return {"creates_per_s": creates_per_s, "claims_per_s": claims_per_s}


def runq_side(procs: Processes, args: argparse.Namespace) -> dict[str, Any]:
    if (binary := available_binaries()["redis7"] or available_binaries()["redis6"]) is None:
        raise BenchError("no redis-server binary found")
    port = free_port()
    procs.start(
        "redis",
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(procs.workdir),
            "--appendonly",
            "yes",
            "--save",
            "",
        ],
        dict(os.environ),
    )
    url = f"redis://127.0.0.1:{port}"
    with redis.Redis.from_url(url) as ping:
        wait_for("redis-server", lambda: bool(ping.ping()), lambda: procs.check("redis"))
    broker = Broker.from_url(url)
    (flow_dir := procs.workdir / "runq-flow").mkdir()
    (flow_dir / "noop_flow.py").write_text(NOOP_FLOW)
    broker.create_work_queue("batch", concurrency_limit=10)
    for queue in ("adhoc", "batch", "claims"):
        broker.create_deployment(
            name=f"noop-{queue}",
            entrypoint=f"{flow_dir}/noop_flow.py:noop",
            work_queue_name=queue,
            infrastructure={"type": "process", "stream_output": False},
        )
    env = {**os.environ, "RUNQ_API_URL": url}
    figures: dict[str, Any] = {}
    for queue in ("adhoc", "batch"):
        name = f"runq-agent-{queue}"
        procs.start(
            name,
            [sys.executable, "-m", "runq", "agent", "start", "-q", queue, "--hide-welcome"],
            env,
        )
        wait_for(
            f"the runq agent on {queue}",
            lambda: bool(broker.read_work_queue(queue).agents),
            lambda: procs.check(name),
        )
        runq_wait_ended(
            broker, str(broker.create_flow_run(queue, deployment=f"noop-{queue}").id)
        )  # warm-up
        if queue == "adhoc":
            say(f"runq: {args.samples} ad-hoc runs, one by one")
            figures["latency"] = runq_latency(broker, queue, "noop-adhoc", args.samples, jitter=0.5)
        else:
            say(f"runq: {args.runs} runs through one agent at a queue limit of 10")
            figures["batch_s"] = runq_batch(broker, queue, "noop-batch", args.runs)
            say(f"  [runq] {args.runs} runs completed in {figures['batch_s']:.1f} s")
        procs.check(name)
        procs.stop(name)
    say(f"runq: {args.claims} runs created one by one, then claimed one by one")
    figures.update(runq_claims(broker, "claims", "noop-claims", args.claims))
    say(
        f"  [runq] {figures['creates_per_s']:.0f} creates/s, {figures['claims_per_s']:.0f} claims/s"
    )
    broker.close()
    procs.stop("redis")
    return figures


def prefect_call(python: Path, env: dict[str, str], *argv: str) -> Any:
    """One subcommand of prefect_side.py; its progress passes through to stderr."""
    done = subprocess.run(
        [str(python), str(PREFECT_SIDE), *argv], env=env, stdout=subprocess.PIPE, text=True
    )
    if done.returncode != 0:
        raise BenchError(
            f"prefect_side.py {argv[0]} failed with exit {done.returncode} (its error is above)"
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def prefect_side(procs: Processes, python: Path, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    inherited = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "RUNQ_API_URL")}
    env = {
        **inherited,
        "PREFECT_HOME": str(procs.workdir / "prefect-home"),
        "PREFECT_API_URL": api,
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{procs.workdir}/prefect.db",
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PYTHONWARNINGS": "ignore",
    }
    prefect = str(python.parent / "prefect")
    say("Prefect: starting its server on SQLite")
    procs.start(
        "prefect-server",
        [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env,
    )
    wait_for(
        "the Prefect server",
        lambda: urllib.request.urlopen(f"{api}/health", timeout=5).status == 200,
        lambda: procs.check("prefect-server"),
        timeout=300,
    )
    deployments = prefect_call(
        python, env, "setup", str(procs.workdir / "prefect-flow"), "adhoc", "batch:10", "claims"
    )
    figures: dict[str, Any] = {}
    phases = (
        ("adhoc", 1.0, "latency_1s"),
        ("adhoc", None, "latency_default"),
        ("batch", 1.0, "batch"),
    )
    for queue, poll, key in phases:
        name = f"prefect-agent-{key}"
        agent_env = {**env, "PREFECT_AGENT_QUERY_INTERVAL": str(poll)} if poll else env
        procs.start(name, [prefect, "agent", "start", "-q", queue], agent_env)
        prefect_call(
            python, env, "latency", deployments[queue], "--samples", "1", "--jitter", "0"
        )  # warm-up
        if key == "batch":
            say(
                f"Prefect: {args.runs} runs through one agent (1 s poll) at a work queue limit of 10"
            )
            batch = prefect_call(python, env, "batch", deployments[queue], "--runs", str(args.runs))
            figures["batch_s"] = batch["seconds"]
            say(f"  [prefect] {args.runs} runs completed in {figures['batch_s']:.1f} s")
        else:
            interval = poll or PREFECT_DEFAULT_POLL_S
            say(
                f"Prefect: {args.samples} ad-hoc runs, one by one, agent polling every {interval:g} s"
            )
            figures[key] = prefect_call(
                python,
                env,
                "latency",
                deployments[queue],
                "--samples",
                str(args.samples),
                "--jitter",
                str(interval),
            )
        procs.check(name)
        procs.stop(name)
    say(f"Prefect: {args.claims} runs created one by one, then claimed one by one")
    figures.update(
        prefect_call(
            python, env, "claims", "claims", deployments["claims"], "--runs", str(args.claims)
        )
    )
    procs.stop("prefect-server")
    return figures


def ratio(slow: float, fast: float) -> float:
    return round(slow / fast, 1) if fast else float("inf")


def figures_of(
    runq: dict[str, Any], prefect: dict[str, Any], args: argparse.Namespace
) -> dict[str, Any]:
    figures: dict[str, Any] = {
        **summary("runq", runq["latency"]),
        **summary("prefect_1s", prefect["latency_1s"]),
        **summary("prefect_default", prefect["latency_default"]),
    }
    for kind in ("pending", "running"):
        for p in ("p50", "p90"):
            runq_ms = figures[f"runq_created_to_{kind}_{p}_ms"]
            figures[f"ratio_created_to_{kind}_{p}"] = ratio(
                figures[f"prefect_1s_created_to_{kind}_{p}_ms"], runq_ms
            )
            figures[f"ratio_created_to_{kind}_{p}_default"] = ratio(
                figures[f"prefect_default_created_to_{kind}_{p}_ms"], runq_ms
            )
    for key, measured, ratio_key in (
        ("runs_200_limit_10_s", "batch_s", "ratio_runs_200_limit_10"),
        ("claims_per_s", "claims_per_s", "ratio_claims_per_s"),
        ("creates_per_s", "creates_per_s", "ratio_creates_per_s"),
    ):
        figures[f"{key}_runq"], figures[f"{key}_prefect"] = (
            round(runq[measured], 1),
            round(prefect[measured], 1),
        )
        slow, fast = (
            (prefect, runq) if measured == "batch_s" else (runq, prefect)
        )  # a time, else rates
        figures[ratio_key] = ratio(slow[measured], fast[measured])
    figures.update(
        {
            "samples": args.samples,
            "batch_runs": args.runs,
            "claim_runs": args.claims,
            "cpus": os.cpu_count(),
            "load_average_1m_at_start": args.load_at_start,
        }
    )
    return figures


def print_table(f: dict[str, Any], args: argparse.Namespace) -> None:
    table = Table(
        title=f"runq vs Prefect 2.20 (agent, process infrastructure), {os.cpu_count()} CPUs, "
        f"load {args.load_at_start} at start"
    )
    for column in (
        "measure",
        "runq",
        "Prefect, 1 s poll",
        "Prefect, default 15 s poll",
        "runq speed-up",
    ):
        table.add_column(column, justify="left" if column == "measure" else "right")
    for kind, label in (("pending", "created -> Pending"), ("running", "created -> Running")):
        for p in ("p50", "p90"):
            table.add_row(
                f"{label} {p}",
                f"{f[f'runq_created_to_{kind}_{p}_ms']} ms",
                f"{f[f'prefect_1s_created_to_{kind}_{p}_ms']} ms",
                f"{f[f'prefect_default_created_to_{kind}_{p}_ms']} ms",
                f"{f[f'ratio_created_to_{kind}_{p}']}x / {f[f'ratio_created_to_{kind}_{p}_default']}x",
            )
    table.add_row(
        f"{args.runs} runs, queue limit 10, one agent",
        f"{f['runs_200_limit_10_s_runq']} s",
        f"{f['runs_200_limit_10_s_prefect']} s",
        "",
        f"{f['ratio_runs_200_limit_10']}x",
    )
    for key, label in (
        ("claims_per_s", "claims/s through the API"),
        ("creates_per_s", "runs created/s, one by one"),
    ):
        table.add_row(
            label, f"{f[f'{key}_runq']}", f"{f[f'{key}_prefect']}", "", f"{f[f'ratio_{key}']}x"
        )
    console = Console(
        width=None if sys.stdout.isatty() else 130
    )  # a pipe or a file gets whole rows
    console.print(table)
    console.print(
        f"{args.samples} ad-hoc samples per column; speed-ups: Prefect's time over runq's "
        "(vs 1 s poll / vs default poll), runq's rate over Prefect's."
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="example: .venv/bin/python bench/versus_prefect.py --samples 5 --runs 50",
    )
    parser.add_argument(
        "--samples", type=int, default=20, help="ad-hoc runs per latency column (default 20)"
    )
    parser.add_argument(
        "--runs", type=int, default=200, help="runs through the agent at limit 10 (default 200)"
    )
    parser.add_argument(
        "--claims", type=int, default=200, help="runs created, then claimed (default 200)"
    )
    args = parser.parse_args()
    if min(args.samples, args.runs, args.claims) < 1:
        parser.error("--samples, --runs and --claims must be at least 1")
    args.load_at_start = round(os.getloadavg()[0], 1)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # even where SIGINT was ignored
        signal.signal(
            signum, signal.default_int_handler
        )  # KeyboardInterrupt: the cleanup below runs
    workdir = Path(tempfile.mkdtemp(prefix="runq-vs-prefect-"))
    procs = Processes(workdir)
    failed = True
    try:
        python = ensure_prefect()  # first: a failed install costs no measurement
        runq, prefect = runq_side(procs, args), prefect_side(procs, python, args)
        failed = False
    except (BenchError, RunqError) as error:
        print(f"versus_prefect: {error} (logs in {workdir})", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"versus_prefect: interrupted (logs in {workdir})", file=sys.stderr)
        sys.exit(130)
    finally:
        say("stopping every process this benchmark started")
        procs.stop_all()
        if not failed:
            subprocess.run(["rm", "-rf", str(workdir)], check=False)
    figures = figures_of(runq, prefect, args)
    print_table(figures, args)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
