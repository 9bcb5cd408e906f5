"""The warm engine: one fork server per agent that starts process runs in milliseconds.

A cold process run spends 300 ms or more before RUNNING, nearly all of it Python
starting and importing redis-py and pydantic. The warm engine imports the engine once,
then forks a fresh child for each run: one fresh process per run stays the rule, only
the imports are shared (copy-on-write). The agent starts it (see
``runq.agent.infrastructure.process.WarmEngine``) and talks to it over a socket pair
(:mod:`.warm_wire`).

What must not cross the fork, and how it is kept out:
- no Redis connection: this process never opens one (it imports the broker, never
  builds one); the child connects after the fork, as a cold engine does;
- no thread or lock: this process starts no thread; children use nothing of it but the
  imported modules;
- no descriptor: the child keeps only the run's stdin, stdout and stderr (sent by the
  agent, ``SCM_RIGHTS``) as 0, 1 and 2 and closes every other one before the engine runs;
- no user code: the flow is imported by the child, after the fork.

The child gets its own session and process group (``setsid``, before the agent hears its
pid, so a cancellation always reaches its group), the run's environment, working
directory and ``sys.argv``. It runs the engine only once this server has told the agent
it started: if this server dies before that, the child finds its start pipe closed and
exits without running anything, so a submission in flight either started once (and the
agent knows it) or did not start at all. A started child does not depend on this
server: it runs on when the server or the agent stops, and the agent or its successor
watches it by its process group (agent/adoption.py), as it does a cold run.

This server reaps its children (it is their parent) and reports each exit status to the
agent; it exits when the agent's end of the socket closes, or quietly when the agent
left before its imports were done (``--run-once`` on an empty queue). What a fork shares
and a fresh interpreter would not: the hash seed, fixed when this server started (a
running interpreter cannot change it: every str caches its hash and every dict is laid
out by it), and the interpreter's start-up environment. A run whose environment changes
the latter (PYTHON*, LD_*, locale...), or whose deployment asks for a seed of its own
(``PYTHONHASHSEED=random``, see ``process.wants_own_hash_seed``), is started the cold way
by the agent.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import os
import socket
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from typing import Any, NoReturn

from runq.engine import entry as engine
from runq.engine.records import echo_format_is_json, json_stderr

from . import ENGINE_ARGS
from . import warm_wire as wire

#: What the engine imports, done once here rather than in every child.
PRELOAD = (
    "runq.engine.execution",
    "pydantic.validate_call_decorator",
    "email.parser",  # redis-py reads its version from the package metadata on connect
    "encodings.idna",  # a host name's encoding, on connect
    "importlib.resources.readers",
)
SETSID_TIMEOUT = 10.0


@dataclass
class ChildTask:
    """What a forked child does once it has left the server's loop."""

    argv: list[str]
    env: dict[str, str]
    stdio: list[int]
    go: int  # read end of the start pipe: one byte once the agent knows the pid


def main() -> None:
    """``python -c '...warm_engine import main; main()' FD``: FD is this server's end of
    the socket pair."""
    sock = socket.socket(fileno=int(sys.argv[1]))
    name_process(b"runq-warm")  # its runs are "runq-flow-run"
    if echo_format_is_json():  # the agent's --log-format json, inherited
        json_stderr()  # what it (or a fork) prints on stderr: records
    for name in PRELOAD:
        importlib.import_module(name)
    task = serve(sock)
    if task is not None:  # the child, out of the server's loop and frames
        sys.exit(run_child(task))


def serve(sock: socket.socket) -> ChildTask | None:
    """Answer start requests and report exits until the agent hangs up (returns None);
    in a forked child, returns what the child is to do."""
    children: dict[int, int] = {}  # pidfd -> pid
    try:
        wire.send(sock, {"op": "ready", "pid": os.getpid()})
    except wire.WireError:
        return None  # the agent left while this server imported (--run-once, a quick stop)
    gc.freeze()  # keep the imported heap shared: the collector would write to every page
    agent = sock.fileno()
    while True:
        ready = wire.readable([agent, *children], None)
        for pidfd in ready:
            if pidfd != agent and not report_exit(sock, pidfd, children):
                return None
        if agent not in ready:
            continue
        try:
            received = wire.receive(sock, 0)
        except wire.WireError:
            return None  # the agent is gone: the runs go on, their engines report
        if received is None:
            continue
        message, fds = received
        if message["op"] != "start":
            wire.close_all(fds)
            continue
        try:
            task = start(sock, message, fds, children)
        except wire.WireError:
            return None
        if task is not None:
            return task


def report_exit(sock: socket.socket, pidfd: int, children: dict[int, int]) -> bool:
    """Reap the child behind a readable pidfd and tell the agent; False if it is gone."""
    pid = children.pop(pidfd)
    os.close(pidfd)
    _, status = os.waitpid(pid, 0)
    try:
        wire.send(sock, {"op": "exit", "pid": pid, "status": os.waitstatus_to_exitcode(status)})
    except wire.WireError:
        return False
    return True


def checked_request(
    message: dict[str, Any], fds: list[int]
) -> tuple[list[str], dict[str, str], str | None]:
    """The argv, environment and working directory of a start request; ValueError if
    the agent sent something else."""
    argv, env, cwd = message.get("argv"), message.get("env"), message.get("cwd")
    if not (isinstance(argv, list) and all(isinstance(arg, str) for arg in argv)):
        raise ValueError("argv must be a list of strings")
    if not (isinstance(env, dict) and all(isinstance(v, str) for v in env.values())):
        raise ValueError("env must map names to strings")
    if cwd is not None and not isinstance(cwd, str):
        raise ValueError("cwd must be a string")
    if len(fds) != 3:
        raise ValueError("stdin, stdout and stderr must come with the request")
    return argv, env, cwd


def start(
    sock: socket.socket, message: dict[str, Any], fds: list[int], children: dict[int, int]
) -> ChildTask | None:
    """Fork one run's engine; in the child, return its task, in this server, None."""
    request = message.get("id")
    home = os.getcwd()
    try:
        argv, env, cwd = checked_request(message, fds)
        if cwd:
            os.chdir(cwd)  # inherited by the child; a bad directory fails the request here
    except (OSError, ValueError) as error:
        wire.close_all(fds)
        reason = f"{error.strerror}: {cwd!r}" if isinstance(error, OSError) else str(error)
        wire.send(sock, {"op": "failed", "id": request, "error": reason})
        return None
    setsid_read, setsid_write = os.pipe()
    go_read, go_write = os.pipe()
    try:
        pid = os.fork()
    except OSError as error:
        os.chdir(home)
        wire.close_all([*fds, setsid_read, setsid_write, go_read, go_write])
        wire.send(sock, {"op": "failed", "id": request, "error": f"fork: {error.strerror}"})
        return None
    if pid == 0:
        os.close(sock.detach())  # the agent's socket, at once: it must see EOF when we die
        os.close(setsid_read)
        os.close(go_write)
        os.setsid()
        os.write(setsid_write, b"s")
        os.close(setsid_write)
        return ChildTask(argv, env, fds, go_read)
    os.chdir(home)
    os.close(setsid_write)
    os.close(go_read)
    wire.close_all(fds)
    pidfd = os.pidfd_open(pid)  # this server's, to reap it; the agent gets a copy
    children[pidfd] = pid
    try:
        in_session = wire.readable([setsid_read], SETSID_TIMEOUT) and os.read(setsid_read, 1)
        os.close(setsid_read)
        if in_session:
            wire.send(sock, {"op": "started", "id": request, "pid": pid}, [pidfd])
            os.write(go_write, b"g")  # the agent knows the pid: now it may run
        else:
            wire.send(sock, {"op": "failed", "id": request, "error": "the child did not start"})
    except wire.WireError:
        pass  # the agent is gone: the child finds its start pipe closed and exits unstarted
    finally:
        os.close(go_write)
    return None


def run_child(task: ChildTask) -> int:
    """In the child: wait for the go, become the run's engine process, run the engine
    (its exit status is the process's, as ``python -m runq flow-run execute`` would give).

    ``sys.argv`` reads as that command's would (``runq flow-run execute RUN_ID``); the
    engine's entry point gets what follows ``flow-run execute``."""
    go = os.read(task.go, 1)
    os.close(task.go)
    if go != b"g":
        os._exit(1)  # the server died before the agent heard of us: never started
    for target, fd in enumerate(task.stdio):
        os.dup2(fd, target)
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # nothing of the server's stays open
    name_process(b"runq-flow-run")  # its command line is the warm engine's: a fork keeps it
    os.environ.clear()
    os.environ.update(task.env)
    time.tzset()
    sys.argv = ["runq", *task.argv]
    sys.path[0] = os.getcwd()  # as `python -m runq` run here would have it
    importlib.invalidate_caches()  # the flow's files may be newer than the server's view
    args = task.argv
    if args[: len(ENGINE_ARGS)] == list(ENGINE_ARGS):
        args = args[len(ENGINE_ARGS) :]
    try:
        code = exit_status(engine.main(args))
    except SystemExit as done:
        code = exit_status(done.code)
    except BaseException:  # as the interpreter would: the traceback, status 1
        traceback.print_exc()
        code = 1
    return finish(code)


def name_process(name: bytes) -> None:
    """What ``ps -o comm`` and ``top`` show for this process (best effort)."""
    try:
        with open("/proc/self/comm", "wb") as comm:
            comm.write(name)
    except OSError:
        pass


def exit_status(code: object) -> int:
    """The process status of ``sys.exit(code)``, as the interpreter makes it."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def finish(code: int) -> NoReturn:
    """End the child as the interpreter's exit would (non-daemon threads joined, atexit
    handlers run, output flushed) but without tearing down the heap it shares with the
    warm engine: that teardown writes to every page, some 30 ms of a run's CPU."""
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)
