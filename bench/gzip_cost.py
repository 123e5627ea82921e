"""What gzip costs per page: compressing (the emulator's side) and inflating (a client's), by level.

Walks ``--pages`` pages of ``GET /api/events?page[size]=1000`` from an in-process emulator (identity),
then compresses each page at each level as the emulator does (`gzip_body`: ISA-L at level 1, zlib
otherwise) and inflates the result with ISA-L, as the connector does (`source_klaviyo/http.py`), and
with zlib, sized as the connector sizes it, timing each with ``time.process_time``
(the best of ``--repeat`` rounds, so a busy machine inflates the figures less). The emulator's own CPU
per page, cold and warm, comes from ``bench/emulator_bench.py --gzip``.

    ./dev run python bench/gzip_cost.py                      # medium scale, 20 pages, levels 1 and 6
    ./dev run python bench/gzip_cost.py --levels 1 3 6 9
"""

from __future__ import annotations

import argparse
import sys
import zlib
from functools import partial
from pathlib import Path

from isal import isal_zlib

from klaviyo_emulator.encoding import gzip_body
from klaviyo_emulator.runner import EmulatorOptions, run_emulator_in_thread

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import best_ms_per_call, identity_pages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default="medium", choices=["tiny", "small", "medium", "large"])
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 6])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    with run_emulator_in_thread(EmulatorOptions(seed=1, scale=args.scale, rate_limits=False)) as emu:
        bodies = identity_pages(emu.url, "/api/events?page%5Bsize%5D=1000", args.pages)
    identity = sum(map(len, bodies)) / len(bodies)
    print(f"{len(bodies)} pages of 1,000 events ({args.scale}): {identity / 1024:,.0f} KiB each, identity")
    print(f"{'level':>5} {'KiB sent':>9} {'ratio':>6} {'compress ms':>12} {'inflate ms':>11} {'zlib ms':>8}")
    for level in args.levels:
        packed = [gzip_body(body, level) for body in bodies]
        size = sum(map(len, packed)) / len(packed)
        compress = best_ms_per_call(bodies, partial(gzip_body, level=level), args.repeat)
        inflate = best_ms_per_call(packed, partial(isal_zlib.decompress, wbits=31, bufsize=int(identity)),
                                   args.repeat)
        by_zlib = best_ms_per_call(packed, partial(zlib.decompress, wbits=31, bufsize=int(identity)),
                                   args.repeat)
        print(f"{level:>5} {size / 1024:>9,.0f} {identity / size:>6.2f} {compress:>12.1f} {inflate:>11.1f} "
              f"{by_zlib:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
