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

from datetime import UTC, datetime, timedelta

from .streams import Report

ONE_DAY = timedelta(days=1)

Window = tuple[datetime, datetime]


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
