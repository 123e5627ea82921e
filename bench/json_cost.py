"""What each JSON library costs the connector per page and per record, to choose one by measurement.

Walks ``--pages`` pages of events (1,000 a page) and of profiles (100 a page, with subscriptions and
predictive analytics) from an in-process emulator, uncompressed, then times with ``time.process_time``
(best of ``--repeat`` rounds):

- **decode**: one page to Python objects (`orjson.loads`, `msgspec.json.decode`), and the engine's
  `parse_page` as it is;
- **encode**: every record of those pages back to JSON (`orjson.dumps`, `msgspec.json.Encoder`),
  what the protocol writer does per record on the parsed path.

    ./dev run python bench/json_cost.py                  # medium scale, 20 pages of each
    ./dev run python bench/json_cost.py --pages 50 --repeat 5
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import orjson

from klaviyo_emulator.runner import EmulatorOptions, run_emulator_in_thread
from source_klaviyo.pages import parse_page

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import best_ms_per_call, identity_pages

CHAINS = {
    "events": "/api/events?page%5Bsize%5D=1000",
    "profiles": "/api/profiles?page%5Bsize%5D=100"
    "&additional-fields%5Bprofile%5D=subscriptions%2Cpredictive_analytics",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default="medium", choices=["tiny", "small", "medium", "large"])
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)

    with run_emulator_in_thread(EmulatorOptions(seed=1, scale=args.scale, rate_limits=False)) as emu:
        bodies = {name: identity_pages(emu.url, first, args.pages) for name, first in CHAINS.items()}
    # As the engine reads (engine.GC_THRESHOLD): the collector would otherwise walk each page while
    # it is built, a cost of the collector's setting rather than of the library.
    gc.set_threshold(50_000)
    decoders: dict[str, Callable[[bytes], Any]] = {
        "orjson.loads": orjson.loads,
        "msgspec.json.decode": msgspec.json.Decoder().decode,
        "pages.parse_page": parse_page,
    }
    encoders: dict[str, Callable[[Any], bytes]] = {
        "orjson.dumps": orjson.dumps,
        "msgspec.json.encode": msgspec.json.Encoder().encode,
    }
    print(f"{'stream':<9} {'pages':>5} {'records':>7} {'operation':<24} {'ms/page':>8} {'µs/record':>10}")
    for name, pages in bodies.items():
        records = [record for body in pages for record in orjson.loads(body)["data"]]
        per_page = len(records) / len(pages)
        for label, decode in decoders.items():
            ms = best_ms_per_call(pages, decode, args.repeat)
            print(f"{name:<9} {len(pages):>5} {len(records):>7} {'decode ' + label:<24} {ms:>8.2f}"
                  f" {1000 * ms / per_page:>10.2f}")
        for label, encode in encoders.items():
            ms = best_ms_per_call(records, encode, args.repeat)
            print(f"{name:<9} {len(pages):>5} {len(records):>7} {'encode ' + label:<24}"
                  f" {ms * per_page:>8.2f} {1000 * ms:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
