"""Which timeframes a report stream asks: from its declaration (`streams.Report`), its state, the
config and today. Pure functions, so that the plan is known, and counted, before any request.

Records are read once their day is over: a plan ends at the start of today (UTC), and a stream whose
state is at today's start asks nothing (a second sync on the same day sends no report request). A
state `{"date": D}` means the stream read everything it reads up to D.

- **"days"** (a daily series): the days from the saved day, else from the first whole day at or
  after `start_date`, but never more than `history_days` before today; windows of
  `days_per_request` days (60: the API's longest daily series).
- **"sent"** (values by send date: a campaign message's totals over its life): the send dates from
  the saved day minus the config's `campaign_lookback_days` (statistics keep changing for days after
  a send), else from `start_date`, else from the declaration's `earliest`; windows of up to a year.
- **"trailing"** (values over a year): one window, the year before today (from `start_date` where
  that is later), read again on each new day.

No window starts before the declaration's `earliest` (the API has no data before it). Each window is
asked once per conversion metric (once for a report without one).

**The budget rule.** Klaviyo's reporting quota is 225 requests a day per endpoint. A sync plans every
report stream of its catalog together (`plan_reports`) and spends at most one day's quota, 225, for
all of them together, so that one day's quota of every endpoint is left whole for the next day, for a
retried sync and for other integrations. The plans are bounded whatever `start_date` says: a series
reads at most `history_days`, a values report at most one year-long window per year since its
`earliest`, a trailing report one window (`tests/connector/test_reports.py` counts a first sync from
2010 exactly, and asserts the rule for any start date up to 2040 and a few conversion metrics). A
plan over the budget is cut fairly (`allot`): each stream reads its oldest windows, one window per
stream in turn, while the budget lasts, and the rest waits for the next sync.

    >>> from source_klaviyo.streams import STREAMS_BY_NAME
    >>> series = STREAMS_BY_NAME["flow_series_reports"].report
    >>> now = datetime(2026, 3, 10, 15, 30, tzinfo=UTC)
    >>> start, windows = plan_windows(series, None, datetime(2010, 1, 1, tzinfo=UTC), now)
    >>> start, len(windows)  # a year of days at most, in windows of 60 days
    (datetime.datetime(2025, 3, 10, 0, 0, tzinfo=datetime.timezone.utc), 7)
    >>> plan_windows(series, datetime(2026, 3, 10, tzinfo=UTC), None, now)[1]  # read today already
    []
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .streams import TIERS, Report, Stream

ONE_DAY = timedelta(days=1)

Window = tuple[datetime, datetime]
# One day's reporting quota: what one sync may spend on all its report streams together.
DAILY_BUDGET = TIERS["REPORTING"].daily or 0


def start_of_day(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def first_whole_day(moment: datetime) -> datetime:
    day = start_of_day(moment)
    return day if day == moment else day + ONE_DAY


def plan_windows(report: Report, saved: datetime | None, start_date: datetime | None, now: datetime, *,
                 lookback: timedelta = timedelta(0)) -> tuple[datetime, list[Window]]:
    """(where the plan starts, its request windows `[low, high)` up to the start of today, oldest
    first). `lookback` is how far before the saved day a "sent" report reads again."""
    today = start_of_day(now)
    if saved is not None and start_of_day(saved) >= today:
        return today, []  # read today already (or a state in the future: pulled back to today)
    start = min(_start(report, saved, start_date, today, lookback), today)
    step = report.days_per_request * ONE_DAY
    windows: list[Window] = []
    low = start
    while low < today:
        windows.append((low, min(low + step, today)))
        low += step
    return start, windows


def _start(report: Report, saved: datetime | None, start_date: datetime | None, today: datetime,
           lookback: timedelta) -> datetime:
    floors = [report.earliest] if report.earliest is not None else []
    if report.history_days is not None:
        floors.append(today - report.history_days * ONE_DAY)
    if report.timeframes == "trailing":
        floors.append(today - report.days_per_request * ONE_DAY)
    if report.timeframes == "days":
        # Whole days: a mid-day legacy cursor has that day read again; start_date's own day is partial.
        begin = start_of_day(saved) if saved is not None else start_date and first_whole_day(start_date)
    elif report.timeframes == "sent" and saved is not None:
        begin = start_of_day(saved) - lookback
        if start_date is not None:
            begin = max(begin, start_date)
    else:
        begin = start_date
    candidates = [*floors, *([begin] if begin is not None else [])]
    if not candidates:
        raise ValueError(f"{report.type}: a report needs `earliest` or `history_days` to start without "
                         "start_date")
    return max(candidates)


@dataclass(frozen=True)
class StreamPlan:
    """One report stream's part of a sync: where it starts, its windows and the requests per window."""

    name: str
    start: datetime
    windows: tuple[Window, ...]
    per_window: int  # the conversion metrics, or 1 for a report without

    @property
    def requests(self) -> int:
        return len(self.windows) * self.per_window


@dataclass(frozen=True)
class ReportPlan:
    """Every report stream of a sync, and how many of its windows this sync may read (`allowed`)."""

    streams: dict[str, StreamPlan]
    budget: int
    allowed: dict[str, int]

    @property
    def total(self) -> int:
        return sum(plan.requests for plan in self.streams.values())

    @property
    def spent(self) -> int:
        """The requests this sync sends: the whole plan, or what fits the budget."""
        return sum(self.allowed[name] * plan.per_window for name, plan in self.streams.items())

    def describe(self) -> str:
        parts = ", ".join(f"{name} {plan.requests}" for name, plan in self.streams.items())
        text = f"report plan: {self.total} requests ({parts}) of Klaviyo's {DAILY_BUDGET} a day"
        if self.spent < self.total:
            text += (f"; this sync sends {self.spent} (the budget is {self.budget}), the next one "
                     "resumes the rest")
        return text


def plan_reports(positions: Mapping[Stream, datetime | None], start_date: datetime | None, now: datetime, *,
                 conversion_metrics: int, lookback: timedelta = timedelta(0),
                 budget: int = DAILY_BUDGET) -> ReportPlan:
    """The plan of a sync reading these report streams from their saved positions (None: from the
    start), each conversion-metric report asked `conversion_metrics` times per window."""
    streams: dict[str, StreamPlan] = {}
    for stream, saved in positions.items():
        report = stream.report
        assert report is not None, f"{stream.name} is not a report stream"
        start, windows = plan_windows(report, saved, start_date, now, lookback=lookback)
        per_window = conversion_metrics if report.conversion_metric else 1
        streams[stream.name] = StreamPlan(stream.name, start, tuple(windows), per_window)
    return ReportPlan(streams, budget, allot(list(streams.values()), budget))


def allot(plans: list[StreamPlan], budget: int) -> dict[str, int]:
    """How many of its windows, oldest first, each stream may read within `budget` requests: all of
    them when the plan fits, else one window per stream in turn while the budget lasts.

    >>> a = StreamPlan("a", datetime(2024, 1, 1, tzinfo=UTC), (None,) * 5, 2)  # type: ignore[arg-type]
    >>> b = StreamPlan("b", datetime(2024, 1, 1, tzinfo=UTC), (None,) * 1, 1)  # type: ignore[arg-type]
    >>> allot([a, b], 100), allot([a, b], 6)
    ({'a': 5, 'b': 1}, {'a': 2, 'b': 1})
    """
    allowed = {plan.name: 0 for plan in plans}
    left = budget
    granted = True
    while granted:
        granted = False
        for plan in plans:
            if allowed[plan.name] < len(plan.windows) and 0 < plan.per_window <= left:
                allowed[plan.name] += 1
                left -= plan.per_window
                granted = True
    return allowed
