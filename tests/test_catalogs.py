"""Every resident-facing message has a Thai translation, and the compiled catalogs are in use."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

from geo.i18n import LANGUAGES, locale_dir, pick_language, translate
from geo.maps.i18n import labels, status_labels
from geo.vocabulary import REPORT_STATUSES

ROOT = Path(__file__).resolve().parent.parent
KEYWORDS = {"_": None, "gettext": None, "N_": None, "translate": (2,)}


def _extracted() -> dict[str, str]:
    """Every message id marked in the sources, with where it was found."""
    found: dict[str, str] = {}
    for folder in ("geo", "api"):
        method_map = [
            ("**/templates/**.j2", "jinja2"),
            ("**/templates/**.html", "jinja2"),
            ("**.py", "python"),
        ]
        for filename, lineno, message, _comments, _context in extract_from_dir(
            ROOT / folder, method_map=method_map, keywords=KEYWORDS
        ):
            if isinstance(message, str) and message:
                found.setdefault(message, f"{folder}/{filename}:{lineno}")
    return found


def _catalog(lang: str) -> dict[str, str]:
    with (ROOT / "geo" / "locale" / lang / "LC_MESSAGES" / "issuemap.po").open("rb") as po:
        catalog = read_po(po, locale=lang)
    fuzzy = [m.id for m in catalog if m.id and m.fuzzy]
    assert not fuzzy, f"fuzzy {lang} entries need a translator's check: {fuzzy}"
    return {str(m.id): str(m.string) for m in catalog if m.id}


def test_every_message_has_a_thai_translation() -> None:
    thai = _catalog("th")
    messages = _extracted()
    assert len(messages) >= len(REPORT_STATUSES)  # the extraction itself found the marks
    missing = {m: where for m, where in messages.items() if not thai.get(m, "").strip()}
    assert not missing, "messages without a Thai translation (run `make messages`):\n" + "\n".join(
        f"  {where}: {message!r}" for message, where in sorted(missing.items())
    )


def test_thai_translations_keep_their_placeholders() -> None:
    import string

    for message, thai in _catalog("th").items():
        wanted = {f for _, f, _, _ in string.Formatter().parse(message) if f}
        got = {f for _, f, _, _ in string.Formatter().parse(thai) if f}
        assert got == wanted, f"{message!r} -> {thai!r}: placeholders differ"


@pytest.mark.parametrize("lang", LANGUAGES)
def test_the_compiled_catalog_matches_its_source(lang: str) -> None:
    po = _catalog(lang)
    with (locale_dir() / lang / "LC_MESSAGES" / "issuemap.mo").open("rb") as handle:
        compiled = {str(m.id): str(m.string) for m in read_mo(handle) if m.id}
    assert compiled == {k: v for k, v in po.items() if v}, "run `make setup` to recompile"


def test_statuses_and_labels_read_in_thai() -> None:
    thai = status_labels("th")
    assert set(thai) == set(REPORT_STATUSES)
    assert thai["resolved"] == "แก้ไขแล้ว"
    assert status_labels("en")["in_progress"] == "In progress"
    assert labels("th")["overdue"] == "เกินกำหนด"
    assert translate("th", "Showing {shown} of {total} reports.", shown=3, total=9) == (
        "แสดง 3 จาก 9 เรื่อง"
    )


def test_thai_is_the_default_language_of_pages() -> None:
    assert pick_language(None, None) == "th"
    assert pick_language(None, "en-US,en;q=0.9") == "en"
    assert pick_language("EN", "th") == "en"
