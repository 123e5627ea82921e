"""Deterministic synthetic Klaviyo data: every record is a pure function of (seed, resource, index)."""
