#!/usr/bin/env bash
# Run a command (default: `make test`) while CPU-bound processes keep every core busy, to
# show that the suite does not depend on the machine's speed. The load is one busy loop
# per core (`nproc`, or RUNQ_LOAD_PROCESSES) at the default priority (nice 0), the same as
# the tests'. It is stopped however the command ends (success, failure, Ctrl-C, SIGTERM:
# the command is stopped first), and the command's exit status is this script's.
#
#   tests/load.sh                                  # make test, under load
#   tests/load.sh sh -c 'make test && make test'   # twice in a row, under one load
#   tests/load.sh .venv/bin/python -m pytest tests/test_agent.py -q
set -uo pipefail
cd "$(dirname "$0")/.."

count=${RUNQ_LOAD_PROCESSES:-$(nproc)}
python=$(command -v python3)
load=()
command_pid=""

stop_load() {
    for pid in "${load[@]}"; do
        kill "$pid" 2>/dev/null
    done
    for pid in "${load[@]}"; do
        wait "$pid" 2>/dev/null
    done
    load=()
}

stop_command() {  # a signal to this script stops the command, then the load (EXIT)
    if [ -n "$command_pid" ]; then
        kill "-$1" "$command_pid" 2>/dev/null
        wait "$command_pid" 2>/dev/null
    fi
    exit "$2"
}

trap stop_load EXIT
trap 'stop_command INT 130' INT
trap 'stop_command TERM 143' TERM

for _ in $(seq 1 "$count"); do
    "$python" -c 'while True: pass' &
    load+=($!)
done
echo "load: $count busy loop(s) at nice 0 (pids ${load[*]})" >&2

if (($#)); then
    "$@" &
else
    make test &
fi
command_pid=$!
wait "$command_pid"  # returns at once when a trapped signal arrives
exit $?
