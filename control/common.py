"""What every ``runq`` command shares, under one import: ``from .common import ...``.

Each concept lives in its own module and is re-exported here, so commands stay thin
(parse, call the broker, print):

* :mod:`.errors`: the one-line error contract (:func:`fail`);
* :mod:`.connection`: the ``--api`` / ``--cluster`` options and the broker connection;
* :mod:`.output`: the ``--output`` option, JSON and rich-table output, ``inspect`` records;
* :mod:`.durations`: the duration grammar (``45s``, ``1h30m``) and its parameter type;
* :mod:`.param_types`: ISO-8601 times, ``k=v`` pairs and JSON objects on the command line.

What the UI shows too (times for people, how runs and queues are shown, shell quoting)
is runq.display's, imported from there by the commands that print it.
"""

from __future__ import annotations

from .connection import CLUSTER, api_option, connect_broker, refuse_undecodable, with_broker
from .durations import DURATION_EXAMPLES, Duration, parse_duration
from .errors import fail, printable
from .output import (
    PIPE_WIDTH,
    add_row,
    console,
    marked,
    new_table,
    output_option,
    print_json,
    print_table,
    render_record,
    to_json,
    wants_json,
)
from .param_types import (
    IsoDateTime,
    LocalIsoTime,
    env_callback,
    json_object_callback,
    params_callback,
    parse_value,
    split_pair,
)

__all__ = [
    "CLUSTER",
    "DURATION_EXAMPLES",
    "PIPE_WIDTH",
    "Duration",
    "IsoDateTime",
    "LocalIsoTime",
    "add_row",
    "api_option",
    "connect_broker",
    "console",
    "env_callback",
    "fail",
    "json_object_callback",
    "marked",
    "new_table",
    "output_option",
    "params_callback",
    "parse_duration",
    "parse_value",
    "print_json",
    "print_table",
    "printable",
    "refuse_undecodable",
    "render_record",
    "split_pair",
    "to_json",
    "wants_json",
    "with_broker",
]
