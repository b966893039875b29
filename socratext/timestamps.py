"""The one way Socratext writes a time: ISO 8601 in UTC, milliseconds, with a `Z` — in events, the model
registry's manifests and pointers, and replay markers, so that they sort and compare as text."""

from __future__ import annotations

from datetime import datetime, timezone


def format_time(dt: datetime) -> str:
    """`dt` in UTC, to the millisecond, `Z`-suffixed (a naive `dt` is taken as local time by Python)."""
    return dt.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now_iso() -> str:
    return format_time(datetime.now(timezone.utc))
