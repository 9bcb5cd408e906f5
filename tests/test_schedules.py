"""Schedules and their due times (pure: no Redis), DST transitions above all.

The transition days of 2026 used throughout:

==================  ==================================  ===================================
zone                spring forward (a wall hour missing)  fall back (a wall hour doubled)
==================  ==================================  ===================================
America/New_York    2026-03-08, 02:00 -> 03:00            2026-11-01, 02:00 EDT -> 01:00 EST
Europe/London       2026-03-29, 01:00 -> 02:00            2026-10-25, 02:00 BST -> 01:00 GMT
Australia/Sydney    2026-10-04, 02:00 -> 03:00            2026-04-05, 03:00 AEDT -> 02:00 AEST
==================  ==================================  ===================================
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from dateutil.rrule import rrulestr
from pydantic import TypeAdapter, ValidationError

from runq.broker.errors import InvalidInput
from runq.broker.schedules import (
    CronSchedule,
    IntervalSchedule,
    RRuleSchedule,
    Schedule,
    due_times,
    parse_interval,
    parse_schedule,
)

UTC = UTC
HOUR = timedelta(hours=1)
NY, LONDON, SYDNEY = "America/New_York", "Europe/London", "Australia/Sydney"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def local_day(tz: str, day: date) -> tuple[datetime, datetime]:
    """The UTC instants where the local day starts and where the next one starts."""
    zone = ZoneInfo(tz)
    begin = datetime.combine(day, time(), tzinfo=zone).astimezone(UTC)
    finish = datetime.combine(day + timedelta(days=1), time(), tzinfo=zone).astimezone(UTC)
    return begin, finish


def runs_on(schedule: CronSchedule | IntervalSchedule | RRuleSchedule, day: date) -> list[datetime]:
    """The due times within the schedule's local ``day``."""
    begin, finish = local_day(schedule.timezone, day)
    return due_times(schedule, begin, end=finish - timedelta(microseconds=1))


def walls(moments: list[datetime], tz: str) -> list[str]:
    return [m.astimezone(ZoneInfo(tz)).strftime("%H:%M %Z") for m in moments]


# (zone, day, the wall time at issue, where its single run belongs in UTC, its local reading)
MISSING = [
    (NY, date(2026, 3, 8), time(2, 30), utc(2026, 3, 8, 7, 30), "03:30 EDT"),
    (LONDON, date(2026, 3, 29), time(1, 30), utc(2026, 3, 29, 1, 30), "02:30 BST"),
    (SYDNEY, date(2026, 10, 4), time(2, 30), utc(2026, 10, 3, 16, 30), "03:30 AEDT"),
]
DOUBLED = [
    (NY, date(2026, 11, 1), time(1, 30), utc(2026, 11, 1, 5, 30), "01:30 EDT"),
    (LONDON, date(2026, 10, 25), time(1, 30), utc(2026, 10, 25, 0, 30), "01:30 BST"),
    (SYDNEY, date(2026, 4, 5), time(2, 30), utc(2026, 4, 4, 15, 30), "02:30 AEDT"),
]
# (zone, day, hours in that local day)
DAY_LENGTHS = [
    (NY, date(2026, 3, 8), 23),
    (NY, date(2026, 11, 1), 25),
    (LONDON, date(2026, 3, 29), 23),
    (LONDON, date(2026, 10, 25), 25),
    (SYDNEY, date(2026, 10, 4), 23),
    (SYDNEY, date(2026, 4, 5), 25),
]
EVERY_CASE = pytest.mark.parametrize("tz, day, wall, instant, reading", MISSING + DOUBLED)


# ---- cron across DST ------------------------------------------------------------------


@EVERY_CASE
def test_daily_cron_at_a_missing_or_doubled_time_runs_once(
    tz: str, day: date, wall: time, instant: datetime, reading: str
) -> None:
    """Missing: shifted forward by the gap. Doubled: the first occurrence only."""
    schedule = CronSchedule(cron=f"{wall.minute} {wall.hour} * * *", timezone=tz)
    runs = runs_on(schedule, day)
    assert runs == [instant]
    assert walls(runs, tz) == [reading]


@EVERY_CASE
def test_daily_cron_is_back_on_its_wall_time_the_next_day(
    tz: str, day: date, wall: time, instant: datetime, reading: str
) -> None:
    schedule = CronSchedule(cron=f"{wall.minute} {wall.hour} * * *", timezone=tz)
    runs = due_times(schedule, instant, count=3)
    assert runs[0] == instant
    expected = wall.strftime("%H:%M")
    assert [w[:5] for w in walls(runs[1:], tz)] == [expected, expected]


@pytest.mark.parametrize("tz, day, hours", DAY_LENGTHS)
def test_hourly_cron_runs_once_per_distinct_instant(tz: str, day: date, hours: int) -> None:
    runs = runs_on(CronSchedule(cron="0 * * * *", timezone=tz), day)
    begin, _ = local_day(tz, day)
    assert runs == [begin + k * HOUR for k in range(hours)]


@pytest.mark.parametrize("tz, day, hours", DAY_LENGTHS)
@pytest.mark.parametrize("cron", ["*/30 * * * *", "0,30 0-23 * * *"])
def test_half_hourly_cron_keeps_real_time_cadence(
    tz: str, day: date, hours: int, cron: str
) -> None:
    runs = runs_on(CronSchedule(cron=cron, timezone=tz), day)
    begin, _ = local_day(tz, day)
    assert runs == [begin + k * HOUR / 2 for k in range(2 * hours)]


def test_a_step_in_the_hour_field_counts_as_hourly() -> None:
    """1-23/2 includes the doubled 01:00 in New York: both occurrences run."""
    runs = runs_on(CronSchedule(cron="0 1-23/2 * * *", timezone=NY), date(2026, 11, 1))
    assert walls(runs[:3], NY) == ["01:00 EDT", "01:00 EST", "03:00 EST"]
    assert len(runs) == len(set(runs)) == 13


def test_a_fixed_hour_with_a_minute_step_runs_the_doubled_hour_once() -> None:
    runs = runs_on(CronSchedule(cron="*/15 1 * * *", timezone=NY), date(2026, 11, 1))
    assert walls(runs, NY) == ["01:00 EDT", "01:15 EDT", "01:30 EDT", "01:45 EDT"]


def test_a_start_after_the_gap_still_gets_the_shifted_run() -> None:
    """02:30 (missing) runs at 07:30 UTC; a start of 07:10 UTC (03:10 EDT) must see it."""
    schedule = CronSchedule(cron="30 2 * * *", timezone=NY)
    assert due_times(schedule, utc(2026, 3, 8, 7, 10), count=1) == [utc(2026, 3, 8, 7, 30)]


def test_a_start_in_the_first_occurrence_still_gets_the_second() -> None:
    """From 01:30 EDT, an hourly cron's next runs are 01:00 EST then 02:00 EST."""
    schedule = CronSchedule(cron="0 * * * *", timezone=NY)
    runs = due_times(schedule, utc(2026, 11, 1, 5, 30), count=2)
    assert runs == [utc(2026, 11, 1, 6), utc(2026, 11, 1, 7)]


def test_a_skipped_calendar_day_gives_no_double_run() -> None:
    """Samoa skipped 2011-12-30 (UTC-10 -> UTC+14): its noon shifts onto the 31st's noon."""
    schedule = CronSchedule(cron="0 12 * * *", timezone="Pacific/Apia")
    runs = due_times(schedule, utc(2011, 12, 28), count=4)
    assert runs == [
        utc(2011, 12, 28, 22),
        utc(2011, 12, 29, 22),
        utc(2011, 12, 30, 22),
        utc(2011, 12, 31, 22),
    ]


# An oracle for cron on transition days, independent of the code under test: walk every
# UTC minute of the local day, read it on the wall, keep it when the expression matches
# (only the first occurrence of a doubled wall time unless hourly); add every missing wall
# time that matches, read after the gap.
ORACLE_CRONS: list[tuple[str, Callable[[datetime], bool], bool]] = [
    ("0 * * * *", lambda w: w.minute == 0, True),
    ("*/20 * * * *", lambda w: w.minute % 20 == 0, True),
    ("15,45 */2 * * *", lambda w: w.minute in (15, 45) and w.hour % 2 == 0, True),
    ("0 0-23 * * *", lambda w: w.minute == 0, True),
    ("30 1-3 * * *", lambda w: w.minute == 30 and 1 <= w.hour <= 3, False),
    ("*/10 2 * * *", lambda w: w.minute % 10 == 0 and w.hour == 2, False),
    ("5 1,2 * * *", lambda w: w.minute == 5 and w.hour in (1, 2), False),
    ("59 0,1,2,3 * * *", lambda w: w.minute == 59 and w.hour <= 3, False),
]


def oracle(tz: str, day: date, matches: Callable[[datetime], bool], hourly: bool) -> list[datetime]:
    zone = ZoneInfo(tz)
    begin, finish = local_day(tz, day)
    found = set()
    moment = begin
    while moment < finish:
        local = moment.astimezone(zone)
        if matches(local.replace(tzinfo=None)) and (hourly or local.fold == 0):
            found.add(moment)
        moment += timedelta(minutes=1)
    wall = datetime.combine(day, time())
    while wall.date() == day:
        aware = wall.replace(tzinfo=zone)
        if aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != wall and matches(wall):
            gap = wall.replace(tzinfo=zone, fold=1).utcoffset() - aware.utcoffset()
            found.add((wall + gap).replace(tzinfo=zone).astimezone(UTC))
        wall += timedelta(minutes=1)
    return sorted(found)


@pytest.mark.parametrize("tz, day, hours", DAY_LENGTHS)
@pytest.mark.parametrize("cron, matches, hourly", ORACLE_CRONS, ids=[c[0] for c in ORACLE_CRONS])
def test_cron_matches_the_oracle_on_transition_days(
    tz: str, day: date, hours: int, cron: str, matches: Callable[[datetime], bool], hourly: bool
) -> None:
    runs = runs_on(CronSchedule(cron=cron, timezone=tz), day)
    assert runs == oracle(tz, day, matches, hourly)
    assert all(a < b for a, b in zip(runs, runs[1:]))


HALF_HOUR_ZONE = "Australia/Lord_Howe"  # 30-minute DST: 02:00 -> 02:30, 02:00 -> 01:30


@pytest.mark.parametrize("day", [date(2026, 10, 4), date(2026, 4, 5)])
@pytest.mark.parametrize(
    "cron, matches, hourly",
    [
        ("20,45 2 * * *", lambda w: w.minute in (20, 45) and w.hour == 2, False),
        ("20,45 * * * *", lambda w: w.minute in (20, 45), True),
        ("*/15 1,2 * * *", lambda w: w.minute % 15 == 0 and w.hour in (1, 2), False),
    ],
    ids=["20,45 2", "20,45 *", "*/15 1,2"],
)
def test_cron_matches_the_oracle_with_half_hour_dst(
    day: date, cron: str, matches: Callable[[datetime], bool], hourly: bool
) -> None:
    """A 30-minute gap shifts 02:20 to 02:50, after the real 02:45: order must still hold."""
    runs = runs_on(CronSchedule(cron=cron, timezone=HALF_HOUR_ZONE), day)
    assert runs == oracle(HALF_HOUR_ZONE, day, matches, hourly)


def test_a_shifted_time_after_a_real_one_comes_in_order() -> None:
    runs = runs_on(CronSchedule(cron="20,45 2 * * *", timezone=HALF_HOUR_ZONE), date(2026, 10, 4))
    assert walls(runs, HALF_HOUR_ZONE) == ["02:45 +11", "02:50 +11"]


@pytest.mark.parametrize(
    "cron, day_or",
    [
        ("0 9 * * 1-5", True),
        ("30 8 1,15 * *", True),
        ("0 0 13 * 5", True),
        ("0 0 13 * 5", False),
        ("0 12 L * *", True),
        ("0 6 * * 1#2", True),
        ("*/7 3 * JAN,JUL *", True),
        ("0 0 29 2 *", True),
        ("15 10 * * * 30", True),
        ("@weekly", True),
    ],
)
def test_cron_in_utc_agrees_with_croniter(cron: str, day_or: bool) -> None:
    """Days come from croniter and times of day from its fields: the split loses nothing."""
    start = datetime(2026, 5, 4, 13, 17)
    expected = []
    it = croniter(cron, start - timedelta(seconds=1), day_or=day_or)
    for _ in range(25):
        expected.append(it.get_next(datetime).replace(tzinfo=UTC))
    schedule = CronSchedule(cron=cron, day_or=day_or)
    assert due_times(schedule, start, count=25) == expected


# ---- intervals across DST -------------------------------------------------------------


@pytest.mark.parametrize("tz, day, hours", DAY_LENGTHS)
def test_daily_interval_keeps_the_local_wall_time(tz: str, day: date, hours: int) -> None:
    schedule = IntervalSchedule(interval=86400, anchor_date=datetime(2026, 1, 1, 9), timezone=tz)
    begin, _ = local_day(tz, day - timedelta(days=1))
    runs = due_times(schedule, begin, count=3)
    assert walls(runs, tz)[0][:5] == walls(runs, tz)[1][:5] == walls(runs, tz)[2][:5] == "09:00"
    assert runs[1] - runs[0] == timedelta(hours=hours)


@EVERY_CASE
def test_daily_interval_anchored_at_a_missing_or_doubled_time_runs_once(
    tz: str, day: date, wall: time, instant: datetime, reading: str
) -> None:
    anchor = datetime.combine(date(2026, 1, 1), wall)
    schedule = IntervalSchedule(interval=timedelta(days=1), anchor_date=anchor, timezone=tz)
    assert runs_on(schedule, day) == [instant]


def test_weekly_interval_keeps_the_local_wall_time() -> None:
    schedule = IntervalSchedule(interval="1w", anchor_date=datetime(2026, 3, 1, 9), timezone=NY)
    runs = due_times(schedule, utc(2026, 3, 1), count=2)
    assert walls(runs, NY) == ["09:00 EST", "09:00 EDT"]
    assert runs[1] - runs[0] == timedelta(days=7) - HOUR


@pytest.mark.parametrize("tz, day, hours", DAY_LENGTHS)
def test_half_hour_interval_steps_in_absolute_time(tz: str, day: date, hours: int) -> None:
    schedule = IntervalSchedule(interval=1800, timezone=tz)
    runs = runs_on(schedule, day)
    begin, _ = local_day(tz, day)
    assert runs == [begin + k * HOUR / 2 for k in range(2 * hours)]


def test_short_interval_from_a_naive_anchor_in_the_zone() -> None:
    """A naive anchor is a wall time in the zone: 00:00 EST is 05:00 UTC."""
    schedule = IntervalSchedule(interval=5 * 3600, anchor_date=datetime(2026, 1, 1), timezone=NY)
    runs = due_times(schedule, utc(2026, 1, 1, 1), count=2)
    assert runs == [utc(2026, 1, 1, 5), utc(2026, 1, 1, 10)]


def test_short_interval_from_an_aware_anchor() -> None:
    anchor = datetime(2026, 1, 1, 0, 7, tzinfo=ZoneInfo("Asia/Kolkata"))  # 18:37 UTC the day before
    schedule = IntervalSchedule(interval=3600, anchor_date=anchor, timezone=NY)
    assert due_times(schedule, utc(2026, 6, 1), count=1) == [utc(2026, 6, 1, 0, 37)]


def test_interval_default_anchor_is_2020_in_the_zone() -> None:
    """7 hours does not divide a day, so the phase shows the 2020-01-01 00:00 local anchor."""
    schedule = IntervalSchedule(interval=7 * 3600, timezone="Asia/Tokyo")
    anchor = datetime(2020, 1, 1, tzinfo=ZoneInfo("Asia/Tokyo"))
    runs = due_times(schedule, utc(2026, 5, 4, 13, 17), count=5)
    assert all((run - anchor) % timedelta(hours=7) == timedelta(0) for run in runs)
    assert runs[0] - utc(2026, 5, 4, 13, 17) < timedelta(hours=7)


# ---- rrule across DST -----------------------------------------------------------------


@EVERY_CASE
def test_daily_rrule_at_a_missing_or_doubled_time_runs_once(
    tz: str, day: date, wall: time, instant: datetime, reading: str
) -> None:
    rule = f"DTSTART:20260101T{wall:%H%M%S}\nRRULE:FREQ=DAILY"
    assert runs_on(RRuleSchedule(rrule=rule, timezone=tz), day) == [instant]
    by_fields = f"FREQ=DAILY;BYHOUR={wall.hour};BYMINUTE={wall.minute}"
    assert runs_on(RRuleSchedule(rrule=by_fields, timezone=tz), day) == [instant]


@pytest.mark.parametrize("tz, day, hours", DAY_LENGTHS)
def test_hourly_rrule_runs_once_per_distinct_instant(tz: str, day: date, hours: int) -> None:
    runs = runs_on(RRuleSchedule(rrule="FREQ=HOURLY", timezone=tz), day)
    begin, _ = local_day(tz, day)
    assert runs == [begin + k * HOUR for k in range(hours)]


def test_rrule_dtstart_is_read_in_the_schedule_zone() -> None:
    schedule = RRuleSchedule(rrule="DTSTART:20260105T090000\nRRULE:FREQ=WEEKLY", timezone=NY)
    assert due_times(schedule, utc(2026, 1, 1), count=1) == [utc(2026, 1, 5, 14)]


@pytest.mark.parametrize(
    "rule, tz",
    [
        ("DTSTART;TZID=America/New_York:20260105T090000\nRRULE:FREQ=WEEKLY", NY),
        ("DTSTART:20260105T140000Z\nRRULE:FREQ=WEEKLY", "UTC"),
        ("DTSTART:20260105T140000Z RRULE:FREQ=WEEKLY", "Etc/UTC"),
    ],
)
def test_rrule_dtstart_may_name_the_schedule_zone(rule: str, tz: str) -> None:
    assert due_times(RRuleSchedule(rrule=rule, timezone=tz), utc(2026, 1, 1), count=1) == [
        utc(2026, 1, 5, 14)
    ]


def test_rrule_until_in_utc_is_an_instant() -> None:
    """UNTIL ...Z is 08:59:59 EST on the 3rd, so the 3rd's 09:00 is not included."""
    rule = "DTSTART:20260101T090000\nRRULE:FREQ=DAILY;UNTIL=20260103T135959Z"
    runs = due_times(RRuleSchedule(rrule=rule, timezone=NY), utc(2026, 1, 1), count=10)
    assert runs == [utc(2026, 1, 1, 14), utc(2026, 1, 2, 14)]


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=DAILY;INTERVAL=3;BYHOUR=7,19",
        "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,FR;BYHOUR=9",
        "FREQ=HOURLY;INTERVAL=5",
        "DTSTART:20251231T000700\nRRULE:FREQ=MINUTELY;INTERVAL=17",
        "FREQ=MONTHLY;INTERVAL=7;BYMONTHDAY=15,-1",
        "FREQ=YEARLY;INTERVAL=3;BYMONTH=3",
        "FREQ=MONTHLY;BYDAY=MO;BYSETPOS=1",
        "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29",
        "DTSTART:20210131T060000\nRRULE:FREQ=MONTHLY",
        "DTSTART:20230103T101500\nRRULE:FREQ=DAILY;INTERVAL=4",
        "RRULE:FREQ=DAILY;INTERVAL=2\nRRULE:FREQ=HOURLY;INTERVAL=7\nEXDATE:20260505T000000",
        "RRULE:FREQ=DAILY;COUNT=2500",
    ],
)
def test_rrule_in_utc_agrees_with_dateutil(rule: str) -> None:
    """Moving DTSTART forward by whole periods (to skip 2020..now) changes nothing."""
    start = datetime(2026, 5, 4, 13, 17)
    expected = list(rrulestr(rule, dtstart=datetime(2020, 1, 1)).xafter(start, count=20, inc=True))
    got = due_times(RRuleSchedule(rrule=rule), start, count=20)
    assert got == [moment.replace(tzinfo=UTC) for moment in expected]


# ---- bounds ---------------------------------------------------------------------------


def test_start_and_end_are_inclusive() -> None:
    schedule = CronSchedule(cron="0 * * * *")
    assert due_times(schedule, utc(2026, 1, 1, 1), end=utc(2026, 1, 1, 3)) == [
        utc(2026, 1, 1, 1),
        utc(2026, 1, 1, 2),
        utc(2026, 1, 1, 3),
    ]


def test_naive_bounds_are_utc_and_results_are_aware_utc() -> None:
    runs = due_times(CronSchedule(cron="0 * * * *", timezone=NY), datetime(2026, 1, 1, 1), count=1)
    assert runs == [utc(2026, 1, 1, 1)]
    assert runs[0].tzinfo is UTC


def test_aware_bounds_in_another_zone() -> None:
    start = datetime(2026, 1, 1, 9, 30, tzinfo=ZoneInfo("Europe/Paris"))
    assert due_times(CronSchedule(cron="0 * * * *"), start, count=1) == [utc(2026, 1, 1, 9)]


def test_count_and_end_together_stop_at_the_first_reached() -> None:
    schedule = CronSchedule(cron="*/10 * * * *")
    assert len(due_times(schedule, utc(2026, 1, 1), end=utc(2026, 1, 1, 1), count=3)) == 3
    assert len(due_times(schedule, utc(2026, 1, 1), end=utc(2026, 1, 1, 0, 25), count=30)) == 3


@pytest.mark.parametrize(
    "schedule",
    [
        CronSchedule(cron="*/30 * * * *", timezone=NY),
        RRuleSchedule(rrule="FREQ=HOURLY;INTERVAL=2", timezone=LONDON),
        IntervalSchedule(interval="1d", timezone=SYDNEY),
    ],
    ids=["cron", "rrule", "interval"],
)
def test_count_is_a_prefix_of_the_end_bounded_answer(schedule) -> None:
    start = utc(2026, 10, 20)
    everything = due_times(schedule, start, end=utc(2027, 1, 10))
    assert due_times(schedule, start, count=40) == everything[:40]
    assert len(everything) > 40


def test_bounds_are_required_and_checked() -> None:
    schedule = CronSchedule(cron="0 * * * *")
    with pytest.raises(ValueError, match="end, a count"):
        due_times(schedule, utc(2026, 1, 1))
    with pytest.raises(ValueError, match="count -1"):
        due_times(schedule, utc(2026, 1, 1), count=-1)
    assert due_times(schedule, utc(2026, 1, 1), count=0) == []
    assert due_times(schedule, utc(2026, 1, 2), end=utc(2026, 1, 1)) == []


def test_a_finished_rule_has_no_more_due_times() -> None:
    schedule = RRuleSchedule(rrule="FREQ=DAILY;COUNT=3")
    assert due_times(schedule, utc(2019, 12, 31), count=10) == [
        utc(2020, 1, 1),
        utc(2020, 1, 2),
        utc(2020, 1, 3),
    ]
    assert due_times(schedule, utc(2026, 1, 1), count=10) == []


# ---- validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, bad",
    [
        (lambda: CronSchedule(cron="61 * * * *"), "61 * * * *"),
        (lambda: CronSchedule(cron="* * * *"), "* * * *"),
        (lambda: CronSchedule(cron="0 0 31 2 *"), "0 0 31 2 *"),
        (lambda: CronSchedule(cron="R * * * *"), "R * * * *"),
        (lambda: CronSchedule(cron="0 9 * * *", timezone="Mars/Olympus"), "Mars/Olympus"),
        (lambda: RRuleSchedule(rrule="FREQ=FORTNIGHTLY"), "FREQ=FORTNIGHTLY"),
        (lambda: RRuleSchedule(rrule="FREQ=DAILY;BYHOUR=25"), "FREQ=DAILY;BYHOUR=25"),
        (lambda: RRuleSchedule(rrule="FREQ=DAILY", timezone="Europe/Atlantis"), "Europe/Atlantis"),
        (
            lambda: RRuleSchedule(
                rrule="DTSTART;TZID=Europe/Paris:20260101T090000\nRRULE:FREQ=DAILY", timezone=NY
            ),
            "Europe/Paris",
        ),
        (lambda: IntervalSchedule(interval=0), "0"),
        (lambda: IntervalSchedule(interval=-5), "-5"),
        (lambda: IntervalSchedule(interval=float("inf")), "inf"),
        (lambda: IntervalSchedule(interval=timedelta(seconds=-1)), "timedelta"),
        (lambda: IntervalSchedule(interval="1h1h"), "1h1h"),
        (lambda: IntervalSchedule(interval=3600, timezone="Nowhere"), "Nowhere"),
    ],
)
def test_bad_schedules_name_the_bad_value(make: Callable[[], object], bad: str) -> None:
    with pytest.raises(ValueError) as caught:
        make()
    assert bad in str(caught.value)


@pytest.mark.parametrize(
    "data, message",
    [
        ({"cron": "61 * * * *"}, "invalid cron expression '61 * * * *': "),
        ({"rrule": "FREQ=FOO"}, "invalid rrule 'FREQ=FOO': "),
        ({"cron": "0 9 * * *", "timezone": "Mars/Olympus"}, "time zone 'Mars/Olympus'"),
        ({"interval": "soon"}, "invalid interval 'soon'"),
        ({"cron": "0 9 * * *", "every": 3}, "unknown schedule field 'every'"),
        ({"cron": "0 9 * * *", "rrule": "FREQ=DAILY"}, "exactly one of"),
    ],
)
def test_parse_schedule_gives_one_line(data: dict, message: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_schedule(data)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_schedule_union_is_discriminated_by_type() -> None:
    adapter = TypeAdapter(Schedule)
    interval = adapter.validate_python({"type": "interval", "interval": 60})
    assert isinstance(interval, IntervalSchedule)
    rrule = adapter.validate_python({"type": "rrule", "rrule": "FREQ=DAILY"})
    assert isinstance(rrule, RRuleSchedule)
    cron = adapter.validate_python({"type": "cron", "cron": "0 9 * * *", "timezone": NY})
    assert cron == CronSchedule(cron="0 9 * * *", timezone=NY)
    assert adapter.validate_json(cron.model_dump_json()) == cron
    with pytest.raises(ValidationError):
        adapter.validate_python({"type": "cron", "cron": "0 9 * * *", "interval": 5})


def test_interval_accepts_seconds_timedelta_and_text() -> None:
    assert IntervalSchedule(interval=90).interval == 90.0
    assert IntervalSchedule(interval=timedelta(minutes=90)).interval == 5400.0
    assert IntervalSchedule(interval="1h 30m").interval == 5400.0
    assert parse_schedule({"interval": "2d"}).interval == 172800.0
    with pytest.raises(ValueError, match="True"):
        IntervalSchedule(interval=True)


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("3600", 3600),
        ("90s", 90),
        ("1h30m", 5400),
        ("1h 30m", 5400),
        ("2d", 172800),
        ("1w", 604800),
        ("1.5h", 5400),
        (" 10M ", 600),
        ("0.25", 0.25),
        ("1d2h3m4s", 93784),
    ],
)
def test_parse_interval(text: str, seconds: float) -> None:
    assert parse_interval(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "0", "0s", "-5", "1x", "h", "30m1h", "1h1h", "nan", "inf", "1 h 30"]
)
def test_parse_interval_refuses(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_interval(text)
    message = str(caught.value)
    assert repr(text) in message and "\n" not in message
