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

QUERIES: tuple[tuple[str, str], ...] = (
    (
        "Revenue per metric (events' value, joined to metrics by metric_id)",
        """SELECT m.name AS metric, count(*) AS events, round(sum(e.value), 2) AS revenue
FROM events e JOIN metrics m ON m.id = e.metric_id
WHERE e.value < 1e9  -- the emulator plants a few 23-digit values (exact in event_properties)
GROUP BY metric ORDER BY revenue DESC NULLS LAST LIMIT 8""",
    ),
    (
        "List growth: members joined per month, and the running total",
        """SELECT strftime(date_trunc('month', joined_group_at), '%Y-%m') AS month, count(*) AS joined,
       sum(count(*)) OVER (ORDER BY month) AS members
FROM list_memberships
GROUP BY month ORDER BY month DESC LIMIT 12""",
    ),
    (
        "Suppressed profiles by reason (global exclusions)",
        """SELECT s.reason, count(DISTINCT g.id) AS profiles, max(s.timestamp) AS latest
FROM global_exclusions g, unnest(from_json(g.subscriptions__email__marketing__suppression,
                                           '[{"reason": "VARCHAR", "timestamp": "TIMESTAMPTZ"}]')) AS u(s)
GROUP BY s.reason ORDER BY profiles DESC""",
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
