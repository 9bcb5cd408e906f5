#!/usr/bin/env bash
# `make demo`: the whole loop on the embedded default (no Redis to set up).
# A work queue with a concurrency limit of 2, a deployment of examples/flows.py:hello,
# five runs, then agents started with --run-once until the queue is drained (each pass
# may take only two runs: the limit), and the final `flow-run ls` table.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNQ=${RUNQ:-.venv/bin/runq}
PY=${PY:-.venv/bin/python}

step() { printf '\n\033[1m$ runq %s\033[0m\n' "$*"; "$RUNQ" "$@"; }

# Start from a clean slate so the demo can be run again and again.
"$RUNQ" work-queue delete demo --force >/dev/null 2>&1 || true
"$RUNQ" deployment delete hello-demo >/dev/null 2>&1 || true

step work-queue create demo --limit 2 --description "runq demo"
step deployment create hello-demo --entrypoint examples/flows.py:hello -q demo --param name=runq
for times in 1 2 3 1 2; do
    "$RUNQ" deployment run hello-demo --param times=$times >/dev/null
done
step work-queue preview demo

scheduled() { "$RUNQ" work-queue inspect demo -o json | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["scheduled_runs"])'; }
pass=1
while [ "$(scheduled)" != "0" ]; do
    if [ "$pass" = 1 ]; then
        step agent start -q demo --run-once
    else
        step agent start -q demo --run-once --hide-welcome
    fi
    pass=$((pass + 1))
done
step flow-run ls --queue demo

echo
echo "See it in the browser: $RUNQ ui   (then open http://127.0.0.1:4200/)"
