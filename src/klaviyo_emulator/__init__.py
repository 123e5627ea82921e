"""Klaviyo API emulator: revision 2026-07-15, JSON:API, rate limits, faults, deterministic data."""
