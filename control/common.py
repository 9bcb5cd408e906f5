"""What every ``runq`` command shares, under one import: ``from .common import ...``.

Each concept lives in its own module and is re-exported here, so commands stay thin
(parse, call the broker, print):

* :mod:`.errors`: the one-line error contract (:func:`fail`);
* :mod:`.connection`: the ``--api`` / ``--cluster`` options and the broker connection;
* :mod:`.output`: the ``--output`` option, JSON and rich-table output, ``inspect`` records;
* :mod:`.time_text`: relative and absolute times, durations for people;
* :mod:`.durations`: the duration grammar (``45s``, ``1h30m``) and its parameter type;
* :mod:`.param_types`: ISO-8601 times, ``k=v`` pairs and JSON objects on the command line;
* :mod:`.run_display`: how runs are shown (their deployment's name, "Late", queue health).
"""

from __future__ import annotations

from .connection import CLUSTER, api_option, connect_broker, refuse_undecodable, with_broker
from .durations import DURATION_EXAMPLES, Duration, parse_duration
from .errors import fail, one_line, printable
from .output import (
    PIPE_WIDTH,
    add_row,
    console,
    marked,
    new_table,
    output_option,
    print_json,
    print_table,
    quoted,
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
from .run_display import HEALTHY_POLL_SECONDS, as_shown, deployment_namer, late_after_seconds
from .time_text import absolute, both, hours_text, relative, seconds_text

__all__ = [
    "CLUSTER",
    "DURATION_EXAMPLES",
    "HEALTHY_POLL_SECONDS",
    "PIPE_WIDTH",
    "Duration",
    "IsoDateTime",
    "LocalIsoTime",
    "absolute",
    "add_row",
    "api_option",
    "as_shown",
    "both",
    "connect_broker",
    "console",
    "deployment_namer",
    "env_callback",
    "fail",
    "hours_text",
    "json_object_callback",
    "late_after_seconds",
    "marked",
    "new_table",
    "one_line",
    "output_option",
    "params_callback",
    "parse_duration",
    "parse_value",
    "print_json",
    "print_table",
    "printable",
    "quoted",
    "refuse_undecodable",
    "relative",
    "render_record",
    "seconds_text",
    "split_pair",
    "to_json",
    "wants_json",
    "with_broker",
]
