"""`source-klaviyo` for a conformance read of every stream against an emulator without rate limits.

The emulator of the suite answers as fast as it can, but the client still paces itself by Klaviyo's
tiers (XS: one request a second), so a read of every stream would take minutes. This launcher scales
the tier table by `CONFORMANCE_TIER_SCALE` and then runs the same entry point as the console script;
everything else (files, stdout, exit status) is the command the platform runs.

    python tests/conformance/launch.py read --config C.json --catalog K.json
"""

from __future__ import annotations

import dataclasses
import os

from source_klaviyo.cli import run
from source_klaviyo.streams import TIERS

TIER_SCALE_ENV = "CONFORMANCE_TIER_SCALE"


def scale_tiers(factor: float) -> None:
    # In place: the client and the engine hold this very dict.
    for name, tier in list(TIERS.items()):
        TIERS[name] = dataclasses.replace(tier, burst_per_second=max(1, int(tier.burst_per_second * factor)),
                                          steady_per_minute=max(1, int(tier.steady_per_minute * factor)))


if __name__ == "__main__":
    scale_tiers(float(os.environ.get(TIER_SCALE_ENV, "1")))
    run()
