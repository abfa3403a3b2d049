"""How times and durations read, on the pages and in the terminal alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def when(value: datetime | None) -> str:
    return "—" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def left(deadline: datetime | None, now: datetime) -> str:
    """Time to ``deadline`` in words ("2d 3h 4m 5s left", "passed 1m 2s ago")."""
    if deadline is None:
        return "—"
    remaining = deadline - now
    past = remaining < timedelta()
    seconds = int(abs(remaining.total_seconds()))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    text = (f"{days}d " if days else "") + (f"{hours}h " if days or hours else "")
    text += f"{minutes}m {seconds}s"
    return f"passed {text} ago" if past else f"{text} left"


def milliseconds(value: float) -> str:
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.1f} ms"
