"""runq against RQ, side by side on one private redis-server, in one run.

Run: ``make bench-peers`` or ``.venv/bin/python bench/versus_rq.py [--quick] [--rounds N]
[--unix-socket]``. It installs RQ (``--rq-spec``, default ``rq==2.*``, with the redis-py
and hiredis of runq's venv) into a venv of its own under ~/.cache/runq-bench/ (once), starts
one redis-server (append-only file on, no snapshots) on loopback TCP, or on a Unix socket
with ``--unix-socket``, and runs each measurement on both sides, RQ first in even rounds and
runq first in odd ones. Both sides run the same jobs (bench/versus_rq_jobs.py). Measured:

- ``floor_fork_connect_ms``: this warm process forks; the child builds a redis-py client,
  connects and sends PING; p50 from before the fork to the PING's answer (and
  ``floor_fork_ms``: to the child's first statement);
- ``*_start_p50_ms``: enqueue -> the job's code starts, one job at a time with the worker
  or agent idle (a random 50-150 ms after the previous job ended): the job writes
  ``time.time()`` to a file, the enqueuer took it just before ``Queue.enqueue`` or
  ``Broker.create_flow_run`` of a deployment. RQ: one default (forking) worker; runq: one
  ``runq agent start`` (warm engine, no limit);
- ``*_serial_per_s``: N no-op jobs enqueued in one batch while one forking worker, or one
  agent started with ``--limit 1``, waits; N over the time to the last one ended;
- ``*_4_per_s``: the same with four forking workers against four agents (``--limit 1``
  each); also one agent at ``--limit 4`` (``runq_1_agent_limit_4_per_s``);
- ``*_inprocess_per_s``: RQ's SimpleWorker against an agent whose infrastructure completes
  each run in-process (bench/noop_infrastructure.py, no limit);
- ``*_enqueue_per_s``: single ``Queue.enqueue`` against single ``create_flow_run`` of a
  deployment from one process (also runq without a deployment), and batches of
  ``enqueue_many`` against ``enqueue_flow_runs``.

Latencies are p50 over all rounds' samples; rates the median of the rounds'. Speed-ups
are runq over RQ (above 1: runq ahead). Progress goes to stderr; stdout gets a rich table,
then one JSON object as its last line, with the load average at start and end. Every
process it starts is stopped on exit, error or Ctrl-C, and so is any run's process that a
stopped agent left running (found by a marker in its environment). Not part of ``make
test`` or CI: it downloads RQ and takes about 10 minutes on 2 cores (``--quick``: 1-2).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis  # noqa: E402
from noop_infrastructure import percentile  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from runq_side import RunqSide  # noqa: E402
from versus_prefect import CACHE, BenchError, Processes, say, wait_for  # noqa: E402
from versus_rq_jobs import STAMPS_ENV  # noqa: E402

from runq.broker import Broker, RunqError  # noqa: E402
from tests.redis_server import available_binaries, free_port  # noqa: E402

BENCH = Path(__file__).resolve().parent
JOBS, RQ_SIDE = BENCH / "versus_rq_jobs.py", BENCH / "rq_side.py"
MARKER = "VERSUS_RQ_WORKDIR"  # in the environment of every process this benchmark starts
COUNTS = {
    "start_jobs": (100, 10),
    "serial_jobs": (500, 30),
    "four_jobs": (500, 40),
    "inprocess_jobs": (500, 100),
    "enqueue_jobs": (2000, 200),
    "batch": (500, 100),
    "floor_samples": (100, 20),
}  # option: (full, --quick)


def ensure_rq(spec: str) -> Path:
    """The Python of a venv with ``spec`` and runq's own redis-py (with hiredis), made once."""
    venv = CACHE / re.sub(r"[^A-Za-z0-9]+", "-", spec).strip("-")  # rq==2.* -> rq-2
    python, stamp = venv / "bin" / "python", venv / ".installed"
    wanted = [spec, f"redis[hiredis]=={redis.__version__}"]
    if stamp.exists() and stamp.read_text() == " ".join(wanted) and python.exists():
        return python
    say(f"installing {' '.join(wanted)} into {venv} (once)")
    subprocess.run(["rm", "-rf", str(venv)], check=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run(
        [python, "-m", "pip", "install", "-q", *wanted], capture_output=True, text=True, check=False
    )
    if pip.returncode != 0:
        raise BenchError(
            f"pip could not install {' '.join(wanted)}: {pip.stderr.strip().splitlines()[-1:]}"
        )
    stamp.write_text(" ".join(wanted))
    return python


@dataclass
class Bench:
    """The shared parts of one benchmark run, and the samples gathered so far."""

    procs: Processes
    url: str
    runq: RunqSide
    rq_python: Path
    args: argparse.Namespace
    samples: dict[str, list[float]] = field(default_factory=dict)

    def add(self, key: str, values: list[float]) -> None:
        self.samples.setdefault(key, []).extend(values)

    def rq_call(self, *argv: str) -> Any:
        """One subcommand of rq_side.py in its own session (stopped here on Ctrl-C)."""
        process = subprocess.Popen(
            [str(self.rq_python), str(RQ_SIDE), *argv],
            env=rq_env(),
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            out, _ = process.communicate()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        if process.returncode != 0:
            raise BenchError(
                f"rq_side.py {argv[0]} failed with exit {process.returncode} (its error is above)"
            )
        return json.loads(out.strip().splitlines()[-1])

    @contextlib.contextmanager
    def rq_workers(self, queue: str, count: int, simple: bool = False) -> Iterator[None]:
        """``count`` ``rq worker`` processes on ``queue``: RQ's default Worker, which forks a
        work horse per job, or SimpleWorker, which runs jobs in its own process. rq_side.py
        waits for them to register and warms them up."""
        env = {**rq_env(), STAMPS_ENV: str(self.procs.workdir / f"rq-{queue}.stamps")}
        names = [f"rq-worker-{queue}-{i}" for i in range(count)]
        kind = ["-w", "rq.worker.SimpleWorker"] if simple else []
        try:
            for name in names:
                self.procs.start(
                    name,
                    [
                        str(self.rq_python.parent / "rq"),
                        "worker",
                        "-u",
                        self.url,
                        "--path",
                        str(BENCH),
                        *kind,
                        queue,
                    ],
                    env,
                )
            yield
        finally:
            for name in names:  # after "unsubscribing from channel" a worker may hang in its pubsub
                self.procs.stop(
                    name, grace=3
                )  # thread's 60 s read: it is killed then, as it would at 10 s


def rq_env() -> dict[str, str]:
    """This environment without what would point RQ's Python at runq's venv."""
    return {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
    }


def floor(url: str, samples: int) -> tuple[list[float], list[float]]:
    """Fork of this warm process (to the child's first statement) and fork + a new
    redis-py connection + PING (to its answer), in ms, sampled one at a time."""
    forks, connects = [], []
    for _ in range(samples):
        time.sleep(0.01)
        read, write = os.pipe()
        started = time.monotonic()
        if (pid := os.fork()) == 0:
            try:
                forked = time.monotonic()  # CLOCK_MONOTONIC: one clock for both processes
                redis.Redis.from_url(url).ping()
                os.write(write, struct.pack("dd", forked, time.monotonic()))
            finally:
                os._exit(0)
        os.close(write)
        data = os.read(read, 16)
        os.close(read)
        os.waitpid(pid, 0)
        if len(data) != 16:
            raise BenchError(f"the floor's child could not reach Redis at {url}")
        forked, answered = struct.unpack("dd", data)
        forks.append((forked - started) * 1000)
        connects.append((answered - started) * 1000)
    return forks, connects


Side = tuple[str, Callable[[], None]]  # a figure's key, and what measures it on one side


def rq_drain(b: Bench, key: str, queue: str, workers: int, jobs: int, simple: bool = False) -> Side:
    def measure() -> None:
        with b.rq_workers(queue, workers, simple):
            b.add(
                key,
                [
                    b.rq_call(
                        "drain", b.url, queue, "--jobs", str(jobs), "--workers", str(workers)
                    )["per_s"]
                ],
            )

    return key, measure


def runq_drain(
    b: Bench, key: str, queue: str, agents: int, jobs: int, limit: int | None, noop: bool = False
) -> Side:
    def measure() -> None:
        with b.runq.agents(queue, agents, limit, noop):
            b.add(key, [b.runq.drain(queue, jobs)])

    return key, measure


def start_sides(b: Bench, queue: str, jobs: int) -> list[Side]:
    def rq() -> None:
        with b.rq_workers(queue, 1):
            b.add(
                "rq_start",
                b.rq_call(
                    "start",
                    b.url,
                    queue,
                    "--jobs",
                    str(jobs),
                    "--stamps",
                    str(b.procs.workdir / f"rq-{queue}.stamps"),
                )["ms"],
            )

    def runq() -> None:
        with b.runq.agents(queue, 1):
            b.add("runq_start", b.runq.start_latency(queue, jobs))

    return [("rq_start", rq), ("runq_start", runq)]


def enqueue_sides(b: Bench, queue: str) -> list[Side]:
    jobs, batch = b.args.enqueue_jobs, b.args.batch

    def rq() -> None:
        rates = b.rq_call("enqueue", b.url, queue, "--jobs", str(jobs), "--batch", str(batch))
        b.add("rq_enqueue", [rates["single_per_s"]])
        b.add("rq_batch_enqueue", [rates["batch_per_s"]])

    def runq() -> None:
        rates = b.runq.enqueue(queue, jobs, batch)
        for key, rate in (
            ("runq_enqueue", "single"),
            ("runq_enqueue_no_deployment", "bare"),
            ("runq_batch_enqueue", "batch"),
        ):
            b.add(key, [rates[rate]])

    return [("rq_enqueue", rq), ("runq_enqueue", runq)]


def plan(b: Bench, n: str) -> list[tuple[str, list[Side]]]:
    """The measurements of round ``n``, each with its sides (queues named by the round)."""
    a, start_jobs = b.args, max(1, b.args.start_jobs // b.args.rounds)
    return [
        (
            f"enqueue -> code starts, {start_jobs} jobs one at a time",
            start_sides(b, f"start-{n}", start_jobs),
        ),
        (
            f"{a.serial_jobs} jobs, one forking worker / one agent at --limit 1",
            [
                rq_drain(b, "rq_serial", f"serial-{n}", 1, a.serial_jobs),
                runq_drain(b, "runq_serial", f"serial-{n}", 1, a.serial_jobs, 1),
            ],
        ),
        (
            f"{a.four_jobs} jobs, four forking workers / four agents at --limit 1 / one agent at --limit 4",
            [
                rq_drain(b, "rq_4", f"four-{n}", 4, a.four_jobs),
                runq_drain(b, "runq_4", f"four-{n}", 4, a.four_jobs, 1),
                runq_drain(b, "runq_1_agent_limit_4", f"limit4-{n}", 1, a.four_jobs, 4),
            ],
        ),
        (
            f"{a.inprocess_jobs} jobs in-process: SimpleWorker / no-op infrastructure",
            [
                rq_drain(b, "rq_inprocess", f"inprocess-{n}", 1, a.inprocess_jobs, simple=True),
                runq_drain(
                    b, "runq_inprocess", f"inprocess-{n}", 1, a.inprocess_jobs, None, noop=True
                ),
            ],
        ),
        (
            f"{a.enqueue_jobs} enqueues one by one, then in batches of {a.batch}",
            enqueue_sides(b, f"enqueue-{n}"),
        ),
    ]


def one_round(b: Bench, r: int) -> None:
    """The floor, then every measurement on each side: RQ first when ``r`` is even."""
    forks, connects = floor(b.url, max(1, b.args.floor_samples // b.args.rounds))
    b.add("floor_fork", forks)
    b.add("floor_fork_connect", connects)
    say(
        f"round {r + 1}: floor p50 fork {statistics.median(forks):.1f} ms, "
        f"fork + connect + PING {statistics.median(connects):.1f} ms"
    )
    for title, sides in plan(b, f"r{r}"):
        say(f"round {r + 1}: {title}")
        for key, measure in sides if r % 2 == 0 else sides[::-1]:
            began = time.monotonic()
            measure()
            say(f"  {key}: {time.monotonic() - began:.1f} s with its set-up")


def figures_of(b: Bench, extra: dict[str, Any]) -> dict[str, Any]:
    s = b.samples
    f: dict[str, Any] = {
        "floor_fork_connect_ms": round(statistics.median(s["floor_fork_connect"]), 2),
        "floor_fork_ms": round(statistics.median(s["floor_fork"]), 2),
    }
    for side in ("rq", "runq"):
        f[f"{side}_start_p50_ms"] = round(statistics.median(s[f"{side}_start"]), 1)
        f[f"{side}_start_p90_ms"] = round(percentile(s[f"{side}_start"], 0.9), 1)
    for key in ("serial", "4", "inprocess", "enqueue", "batch_enqueue"):
        for side in ("rq", "runq"):
            f[f"{side}_{key}_per_s"] = round(statistics.median(s[f"{side}_{key}"]), 1)
    for key in ("runq_1_agent_limit_4", "runq_enqueue_no_deployment"):
        f[f"{key}_per_s"] = round(statistics.median(s[key]), 1)
    f["runq_4_is"] = "four agents, --limit 1 each"
    f["speedup_start"] = round(f["rq_start_p50_ms"] / f["runq_start_p50_ms"], 2)
    f["runq_start_over_floor"] = round(f["runq_start_p50_ms"] / f["floor_fork_connect_ms"], 2)
    for key in ("serial", "4", "inprocess", "enqueue", "batch_enqueue"):
        f[f"speedup_{key}"] = round(f[f"runq_{key}_per_s"] / f[f"rq_{key}_per_s"], 2)
    f["speedup_4_one_agent_limit_4"] = round(f["runq_1_agent_limit_4_per_s"] / f["rq_4_per_s"], 2)
    f["targets_met"] = {
        "start_vs_rq": f["speedup_start"] >= 1,
        "start_vs_floor": f["runq_start_over_floor"] <= 1.5,
        "serial": f["speedup_serial"] >= 1.2,
        "four": f["speedup_4"] >= 1.2,
        "enqueue": f["speedup_enqueue"] >= 1,
    }
    return {
        **f,
        **extra,
        "rounds": b.args.rounds,
        "cpus": os.cpu_count(),
        **{key: getattr(b.args, key) for key in COUNTS},
    }


def print_table(f: dict[str, Any], b: Bench) -> None:
    def rate(key: str) -> str:
        values = b.samples[key]
        spread = f" ({min(values):.1f}-{max(values):.1f})" if len(values) > 1 else ""
        return f"{statistics.median(values):.1f}{spread}"

    def mark(ok: bool) -> str:
        return "[green]met[/]" if ok else "[red]not met[/]"

    t = f["targets_met"]
    table = Table(
        title=f"runq vs RQ {f['rq_version']}, one redis-server {f['redis_server']} ({f['transport']}), "
        f"{os.cpu_count()} CPUs, load {f['load_average_1m_at_start']} at start, "
        f"{f['load_average_1m_at_end']} at end"
    )
    for column in ("figure", "RQ", "runq", "runq speed-up", "target"):
        table.add_column(column, justify="left" if column in ("figure", "target") else "right")
    table.add_row(
        "enqueue -> job code starts, p50 (p90)",
        f"{f['rq_start_p50_ms']} ({f['rq_start_p90_ms']}) ms",
        f"{f['runq_start_p50_ms']} ({f['runq_start_p90_ms']}) ms",
        f"{f['speedup_start']}x",
        f"<= RQ: {mark(t['start_vs_rq'])}; <= 1.5x floor ({f['runq_start_over_floor']}x): "
        f"{mark(t['start_vs_floor'])}",
    )
    rows = (
        ("serial", "jobs/s, one forking worker / agent --limit 1", ">= 1.2x: ", "serial"),
        ("4", "jobs/s, four forking workers / four agents", ">= 1.2x: ", "four"),
        ("inprocess", "jobs/s, SimpleWorker / no-op infrastructure", "", None),
        ("enqueue", "single enqueue / create_flow_run of a deployment, /s", ">= 1x: ", "enqueue"),
        (
            "batch_enqueue",
            f"enqueue_many / enqueue_flow_runs, batches of {b.args.batch}, /s",
            "",
            None,
        ),
    )
    for key, label, target, met in rows:
        table.add_row(
            label,
            rate(f"rq_{key}"),
            rate(f"runq_{key}"),
            f"{f[f'speedup_{key}']}x",
            f"{target}{mark(t[met])}" if met else "",
        )
    table.add_row(
        "  jobs/s, one agent --limit 4 (not four agents)",
        "",
        rate("runq_1_agent_limit_4"),
        f"{f['speedup_4_one_agent_limit_4']}x",
        "",
    )
    table.add_row(
        "  create_flow_run without a deployment, /s",
        "",
        rate("runq_enqueue_no_deployment"),
        f"{round(f['runq_enqueue_no_deployment_per_s'] / f['rq_enqueue_per_s'], 2)}x",
        "",
    )
    console = Console(width=None if sys.stdout.isatty() else 180)  # a pipe or a file: whole rows
    console.print(table)
    console.print(
        f"floor, p50 of {len(b.samples['floor_fork'])}: fork of this warm Python {f['floor_fork_ms']} ms; "
        f"fork + new Redis connection + PING {f['floor_fork_connect_ms']} ms. Rates: median of "
        f"{b.args.rounds} round(s) (min-max); sides alternated; speed-up: runq over RQ."
    )


def start_redis(procs: Processes, unix_socket: bool) -> tuple[str, str]:
    if (binary := available_binaries()["redis7"] or available_binaries()["redis6"]) is None:
        raise BenchError("no redis-server binary found")
    if unix_socket:
        where = [
            "--port",
            "0",
            "--unixsocket",
            str(procs.workdir / "redis.sock"),
            "--unixsocketperm",
            "700",
        ]
        url, transport = f"unix://{procs.workdir / 'redis.sock'}", "Unix socket"
    else:
        where = ["--port", str(port := free_port()), "--bind", "127.0.0.1"]
        url, transport = f"redis://127.0.0.1:{port}", "loopback TCP"
    procs.start(
        "redis",
        [binary, *where, "--dir", str(procs.workdir), "--appendonly", "yes", "--save", ""],
        dict(os.environ),
    )
    with redis.Redis.from_url(url) as ping:
        wait_for("redis-server", lambda: bool(ping.ping()), lambda: procs.check("redis"))
    return url, transport


def measure(procs: Processes, args: argparse.Namespace) -> tuple[dict[str, Any], Bench]:
    rq_python = ensure_rq(args.rq_spec)  # first: a failed install costs no measurement
    url, transport = start_redis(procs, args.unix_socket)
    broker = Broker.from_url(url)
    for name in ("noop", "stamp"):
        broker.create_deployment(
            name=name,
            entrypoint=f"{JOBS}:{name}",
            work_queue_name="versus-rq",
            infrastructure={"type": "process", "stream_output": False},
        )
    b = Bench(
        procs, url, RunqSide(procs, url, broker, broker.read_deployment("noop").id), rq_python, args
    )
    info = b.rq_call("info")
    extra = {
        "rq_version": info["rq"],
        "redis_py": info["redis_py"],
        "rq_hiredis": info["hiredis"],
        "redis_server": broker.client.info("server")["redis_version"],
        "transport": transport,
        "load_average_1m_at_start": args.load_at_start,
    }
    for r in range(args.rounds):
        one_round(b, r)
    extra["load_average_1m_at_end"] = round(os.getloadavg()[0], 2)
    broker.close()
    return figures_of(b, extra), b


def sweep(workdir: Path) -> None:
    """Kill what outlived its parent, found by the marker in its environment: a run's
    process in its own session, left running by a stopped agent (runs outlive agents)."""
    marker = f"{MARKER}={workdir}\0".encode()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        with contextlib.suppress(OSError, ValueError):
            if (pid := int(environ.parent.name)) != os.getpid() and marker in environ.read_bytes():
                os.kill(pid, signal.SIGKILL)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="example: .venv/bin/python bench/versus_rq.py --quick",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small counts: a smoke run of a minute or two"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="rounds, sides alternated (default 2)"
    )
    parser.add_argument(
        "--unix-socket", action="store_true", help="Redis on a Unix socket, not loopback TCP"
    )
    parser.add_argument(
        "--rq-spec", default="rq==2.*", help="what pip installs for RQ (default rq==2.*)"
    )
    for key, (full, quick) in COUNTS.items():
        parser.add_argument(
            f"--{key.replace('_', '-')}", type=int, help=f"default {full}, --quick {quick}"
        )
    args = parser.parse_args()
    for key, (full, quick) in COUNTS.items():
        setattr(args, key, getattr(args, key) or (quick if args.quick else full))
    if min(args.rounds, *(getattr(args, key) for key in COUNTS)) < 1:
        parser.error("--rounds and every count must be at least 1")
    args.load_at_start = round(os.getloadavg()[0], 2)
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # even where SIGINT was ignored
        signal.signal(
            signum, signal.default_int_handler
        )  # KeyboardInterrupt: the cleanup below runs
    procs = Processes(workdir := Path(tempfile.mkdtemp(prefix="runq-vs-rq-")))
    os.environ[MARKER] = str(workdir)  # every process started from here inherits it
    failed = True
    try:
        figures, bench = measure(procs, args)
        failed = False
    except (BenchError, RunqError, redis.RedisError) as error:
        print(f"versus_rq: {error} (logs in {workdir})", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"versus_rq: interrupted (logs in {workdir})", file=sys.stderr)
        sys.exit(130)
    finally:
        say("stopping every process this benchmark started")
        procs.stop_all()
        sweep(workdir)
        if not failed:
            subprocess.run(["rm", "-rf", str(workdir)], check=False)
    print_table(figures, bench)
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
