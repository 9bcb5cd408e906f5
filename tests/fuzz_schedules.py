"""Hypothesis strategies for times and schedules: durations, instants, zones, cron, rrule.

Valid values with the edge cases that broke (or could break) the parsers of ``--cron``,
``--interval``, ``--rrule``, ``--timezone``, ``--anchor`` and the durations (retry delay,
lateness). One family of inputs with its own syntaxes, so it lives apart from the names
(tests/fuzz_names.py) and from the deployment and run inputs and command lines
(tests/fuzz_deployment_inputs.py).
"""

from __future__ import annotations

from datetime import datetime

from hypothesis import strategies as st

from tests.fuzz_names import value

# ---- strategies: times and schedules -------------------------------------------------

DURATION = value(
    st.one_of(
        st.integers(0, 10**6).map(str),
        st.from_regex(
            r"([1-9][0-9]?d)?([1-9]h)?([1-9][0-9]?m)?([1-9][0-9]?s)?", fullmatch=True
        ).filter(bool),
    ),
    "0",
    "nan",
    "inf",
    "-1",
    "1e400",
    "1e300",
    "1e18",
    "1h 30m",
    "0.0000001",
    "99999999999d",
    "1.5h",
)
ISO_TIME = value(
    st.datetimes(
        min_value=datetime(1, 1, 3),
        max_value=datetime(9999, 12, 29),
        timezones=st.none() | st.timezones(),
    ).map(lambda moment: moment.isoformat()),
    "0001-01-01T00:00:00",
    "9999-12-31T23:59:59",
    "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00+23:59",
    "2026-03-08T02:30",
    "2026-13-01",
    "2026-03-08",
)
TIMEZONE = value(
    st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata", "Pacific/Apia"]),
    "",
    "utc",
    "UTC ",
    "Etc/GMT+14",
    "Etc/GMT-14",
    "EST5EDT",
    "localtime",
    "posixrules",
    "/etc/localtime",
    "../../etc/passwd",
    "Europe/Paris\x00",
    "Europe",
    "Factory",
    "Europe/Paris" * 50,
    "a/" * 400,
)
CRON = value(
    st.builds(
        lambda *fields: " ".join(fields),
        st.sampled_from(["0", "*/5", "15,45", "*", "0-59/20"]),
        st.sampled_from(["*", "9", "*/2", "1-23/2", "0,12"]),
        st.sampled_from(["*", "1", "L", "15W", "1-7"]),
        st.sampled_from(["*", "1", "jan", "*/3", "2"]),
        st.sampled_from(["*", "1-5", "mon", "5#3", "5L", "0"]),
    ),
    "@hourly",
    "@daily",
    "@reboot",
    "* * * * * *",
    "0 0 30 2 *",
    "R * * * *",
    "0 0 31 4 *",
    "0 0 1 1 * 0 2019",
    "0 0 1 1 * 0 2099",
    "*/0 * * * *",
    "60 * * * *",
    "0 24 * * *",
    "99999999999999999999 * * * *",
    "0 0 29 2 1",
    "* * * * 8",
    "0 0 0 * *",
)
INTERVAL = value(
    st.one_of(
        st.floats(min_value=1, max_value=10**7).map(str),
        st.from_regex(
            r"([1-9]w)?([1-9]d)?([1-9]h)?([1-9][0-9]?m)?([1-9][0-9]?s)?", fullmatch=True
        ).filter(bool),
    ),
    "0",
    "-60",
    "1e-7",
    "0.000001",
    "0.001",
    "1e300",
    "1e400",
    "nan",
    "inf",
    "1h 30m",
    "30m1h",
    "99999999999999w",
    "1e15",
    "1e12",
)
RRULE = value(
    st.builds(
        lambda freq, extra: f"FREQ={freq}{extra}",
        st.sampled_from(["SECONDLY", "MINUTELY", "HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY"]),
        st.sampled_from(
            [
                "",
                ";BYHOUR=9",
                ";INTERVAL=2",
                ";COUNT=3",
                ";BYDAY=MO,FR",
                ";BYMONTHDAY=31",
                ";UNTIL=20300101T000000Z",
                ";BYSETPOS=-1;BYDAY=MO",
            ]
        ),
    ),
    "DTSTART:20260101T090000 RRULE:FREQ=WEEKLY",
    "DTSTART;TZID=Europe/Paris:20260101T090000\nRRULE:FREQ=DAILY",
    "DTSTART:20260101T090000Z\\nRRULE:FREQ=DAILY",
    "FREQ=DAILY;UNTIL=20000101T000000Z",
    "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",
    "FREQ=MINUTELY;BYMONTHDAY=311",
    "FREQ=DAILY;INTERVAL=0",
    "FREQ=DAILY;COUNT=0",
    "FREQ=DAILY;BYHOUR=25",
    "RRULE:",
    "EXDATE:x",
    "DTSTART:99991231T235959\nRRULE:FREQ=SECONDLY",
    "DTSTART:00010101T000000\nRRULE:FREQ=YEARLY",
    "FREQ=DAILY;INTERVAL=99999999999999999999",
    "FREQ=DAILY;UNTIL=99991231T235959Z",
    "RRULE:FREQ=DAILY\nEXRULE:FREQ=DAILY;INTERVAL=0",
)
