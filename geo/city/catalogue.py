"""The catalogue: report categories, field teams and category routes."""

from __future__ import annotations

from sqlalchemy import Connection, text


def category_names(conn: Connection, lang: str) -> dict[str, str]:
    """Active category codes with their name in ``lang`` (``th`` or ``en``), by code."""
    column = "name_th" if lang == "th" else "name_en"
    rows = conn.execute(
        text(f"SELECT code, {column} AS name FROM categories WHERE active ORDER BY code")
    ).all()
    return {r.code: r.name for r in rows}
