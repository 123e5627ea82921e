"""`source-klaviyo demo`: the bundled emulator, a real sync of it into DuckDB, and what a marketer asks next.

Rate limits stay on, on both sides, but multiplied by `RATE_LIMIT_SCALE`: Klaviyo's own tiers would
make the demo wait minutes on endpoints like `lists/{id}` (XS tier: 15 requests a minute), while the
point is to show the pacing, progress and the resulting tables in well under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import replace

import duckdb
from rich.console import Console
from rich.table import Table

from source_klaviyo.streams import TIERS, Tier, TierName
from source_klaviyo.sync.run import SyncOptions, sync
from source_klaviyo.sync.summary import SyncSummary

RATE_LIMIT_SCALE = 50.0
DEMO_API_KEY = "pk_emulator"

# On the views (docs/local-sync.md, "Views") and plain typed columns. The emulator plants a few 23-digit
# `$value`s (a serializer's test): kept exact in `event_properties`, they are filtered out of sums here.
QUERIES: tuple[tuple[str, str], ...] = (
    (
        "Revenue per metric over the last 30 days (the daily_metrics view)",
        """SELECT metric_name, sum(events) AS events, round(sum(revenue), 2) AS revenue
FROM daily_metrics
WHERE day >= current_date - 30 AND revenue < 1e9
GROUP BY metric_name ORDER BY revenue DESC LIMIT 8""",
    ),
    (
        "Conversions and revenue attributed to campaigns (the campaign_performance view)",
        """SELECT campaign_name, metric_name, conversions, converters, round(revenue, 2) AS revenue
FROM campaign_performance
WHERE revenue < 1e9
ORDER BY revenue DESC LIMIT 8""",
    ),
    (
        "List growth: members today and joined in the last 30 days (the list_growth view)",
        """SELECT list_name, max(members) AS members,
       coalesce(sum(joined) FILTER (WHERE day >= current_date - 30), 0) AS joined_last_30_days
FROM list_growth
GROUP BY list_name ORDER BY members DESC LIMIT 8""",
    ),
    (
        "Suppressed profiles by reason (the suppressions_by_reason view)",
        """SELECT * FROM suppressions_by_reason ORDER BY profiles DESC""",
    ),
    (
        "Profiles per country (plain columns: attributes.location.country is location__country)",
        """SELECT location__country AS country, count(*) AS profiles,
       count(*) FILTER (WHERE subscriptions__email__marketing__consent = 'SUBSCRIBED') AS subscribed
FROM profiles
GROUP BY country ORDER BY profiles DESC LIMIT 8""",
    ),
)


def scaled_tiers(scale: float) -> dict[TierName, Tier]:
    """Klaviyo's tiers multiplied by `scale`, to match an emulator started with the same scale."""
    return {
        name: replace(
            tier,
            burst_per_second=max(1, int(tier.burst_per_second * scale)),
            steady_per_minute=max(1, int(tier.steady_per_minute * scale)),
            daily=int(tier.daily * scale) if tier.daily else None,
        )
        for name, tier in TIERS.items()
    }


def demo(args: argparse.Namespace, options: SyncOptions) -> int:
    out = Console(file=sys.stdout, highlight=False, width=None if sys.stdout.isatty() else 132)
    summary = asyncio.run(_sync_emulator(args, options, out))
    out.print()
    out.print(f"DuckDB file: {options.db_path.resolve()}", markup=False)
    if any(s.rows for s in summary.streams):
        out.print(f"Open it with `duckdb {options.db_path}` or Python's duckdb.connect(); for example:")
        show_queries(str(options.db_path), out)
    return 0 if summary.status == "SUCCEEDED" else 1


async def _sync_emulator(args: argparse.Namespace, options: SyncOptions, out: Console) -> SyncSummary:
    from klaviyo_emulator.runner import EmulatorOptions, start_emulator
    from source_klaviyo.config import parse_config
    from source_klaviyo.http import KlaviyoClient

    # the demo reads each page once: a small page cache is enough (retries of faulted pages only)
    emulator_options = EmulatorOptions(seed=args.seed, scale=args.scale, rate_limits=True,
                                       rate_limit_scale=RATE_LIMIT_SCALE, api_key=DEMO_API_KEY,
                                       page_cache_mb=8)
    handle, url = await start_emulator(emulator_options)
    try:
        out.print(
            f"Klaviyo emulator ({args.scale} scale, seed {args.seed}) serving at {url}.\n"
            f"Rate limits are on, at {RATE_LIMIT_SCALE:g}x Klaviyo's tiers on both the emulator and the "
            "client, so the demo shows pacing without waiting minutes on the slowest endpoints.",
            markup=False,
        )
        config, _ = parse_config({"api_key": DEMO_API_KEY, "base_url": url})
        # The demo's emulator is on this machine: no proxy of the environment applies (environ={}).
        async with KlaviyoClient(config, tiers=scaled_tiers(RATE_LIMIT_SCALE), environ={}) as client:
            return await sync(config, options, client=client)
    finally:
        await handle.close()


def show_queries(db_path: str, out: Console) -> None:
    with duckdb.connect(db_path, read_only=True) as con:
        for title, sql in QUERIES:
            out.print()
            out.print(f"-- {title}", markup=False, style="bold")
            out.print(sql + ";", markup=False)
            try:
                cursor = con.execute(sql)
                names = [d[0] for d in cursor.description or ()]
                rows = cursor.fetchall()
            except duckdb.Error as error:
                out.print(f"(query failed: {error})", markup=False)
                continue
            table = Table(*names)
            for row in rows:
                table.add_row(*("" if v is None else str(v) for v in row))
            out.print(table)
