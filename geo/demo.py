"""The generated demo city around Nakhon Si Thammarat (work in progress)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Engine


def load_demo_city(engine: Engine, *, seed: int = 2026, now: datetime | None = None) -> str:
    """Load the demo city into an empty database and return a one-line summary."""
    raise NotImplementedError("the demo city generator is not written yet")
