"""Report import from CSV files: Traffy Fondue exports, Socrata 311 exports, or any CSV.

``import_reports`` reads the file with the ``csv`` module (so every row keeps its real line
number, multi-line quoted fields included), checks every row, routes the good ones
set-based in PostGIS (``geo.city.routing.route_points``) and stores them with
``geo.reports.store.insert_routed_reports``. The whole import is one transaction: it is
stored completely or not at all. Big files go in chunks of ``CHUNK_ROWS`` rows inside that
transaction, so memory stays flat and progress moves.

Rules, the same for every format:

* A row is stored or written to the rejects CSV with its line number (the header is line 1)
  and the reason. Nothing is dropped silently. The reasons are: a malformed row (wrong
  number of fields), no external id, no or bad coordinates, no usable category, a bad
  date, an unknown status, a description longer than ``geo.vocabulary.DESCRIPTION_MAX``
  (refused, never cut, so no report silently says less than its author wrote), an
  external id that already appeared earlier in the file (the first row is kept), and a
  point outside the service area.
* The external id is the key: a ``(source, external_id)`` already stored is counted as
  already present and left as it is (a re-import adds nothing), unless ``update`` is
  given: then a newer row's status and times replace the stored ones, with an audit event.
* The format (``geo.reports.import_formats``) is data: which columns it reads, under which
  names, how its statuses, categories and coordinates read. A column it needs that the
  file lacks refuses the file, naming the closest columns the file has.
* A file that cannot be used (missing, not decodable, not CSV, required columns missing,
  unknown options) is refused with ``InvalidInputError`` and the database is unchanged.
* Times without a UTC offset are read in the ``timezone`` given (UTC by default). Update
  and resolution times earlier than the creation time are taken as the creation time
  (Traffy writes ``last_activity`` a few milliseconds before ``timestamp``).
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import difflib
import io
import json
import os
import re
import tempfile
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
from sqlalchemy import Connection, Engine, text

from geo.city.catalogue import active_categories, put_category
from geo.city.coordinates import LAT_MAX, LON_MAX, SMALLEST_DEGREE
from geo.city.routing import route_points
from geo.errors import InvalidInputError, Message
from geo.i18n import N_
from geo.reports.export import spreadsheet_safe
from geo.reports.import_formats import (
    COLUMN_SYNONYMS,
    CSV_REQUIRED,
    FIELDS,
    FORMATS,
    LON_LAT,
    ImportFormat,
    SourceCategory,
)
from geo.reports.store import ROUTE_COLUMNS, insert_routed_reports
from geo.settings import RoutingSettings
from geo.vocabulary import DESCRIPTION_MAX, REPORT_STATUSES

if TYPE_CHECKING:
    from _csv import Reader as CsvReader

"""File formats ``import_reports`` reads."""

CHUNK_ROWS: Final = 50_000
"""Rows validated and stored at a time, all inside the one transaction."""

FIRST_REJECTS: Final = 5
"""Rejected rows the summary shows with their reasons."""

FIELD_MAX: Final = csv.field_size_limit()
"""Longest field the csv module reads (131,072 characters); a longer one refuses the file."""

MAX_REJECT_SHARE: Final = 0.5
"""Share of rejected rows above which ``issuemap reports import`` exits non-zero."""


SOURCE_MAX: Final = 32
"""Longest source name the schema stores."""

_T = TypeVar("_T")

Phase = Literal["reading", "validating", "storing"]
PHASES: Final[tuple[Phase, ...]] = ("reading", "validating", "storing")

STAGES: Final = ("reading", "validating", "routing", "storing")
"""The import's stages: reading the CSV, checking rows, looking them up and routing them,
and writing them with their audit events. Each runs on a thread of its own."""


@dataclass(frozen=True, slots=True)
class ImportProgress:
    """How far one phase has come: bytes of the file it has covered, and rows."""

    phase: Phase
    done_bytes: int
    total_bytes: int
    rows: int


ProgressCallback = Callable[[ImportProgress], None]


@dataclass(frozen=True, slots=True)
class ImportSummary:
    """What an import did. ``reasons`` counts rejected rows by kind of reason."""

    path: Path
    file_format: str
    source: str
    rows: int
    inserted: int
    already_present: int
    rejected: int
    reasons: dict[str, int]
    rejects_path: Path | None
    """The rejects file, or None when none was written (a dry run not asked for one)."""
    dry_run: bool
    seconds: float
    stage_seconds: dict[str, float] = field(default_factory=dict)
    """Seconds each stage (``STAGES``) took in all; they overlap, so they add up to more."""
    updated: int = 0
    """Reports already stored that the file's newer status or times updated (``update``)."""
    first_rejects: tuple[tuple[int, str], ...] = ()
    """The first rejected rows' lines and reasons (``FIRST_REJECTS`` of them)."""
    absent_columns: tuple[str, ...] = ()
    """Optional columns of the format the file does not have: those fields stay empty."""
    missing_categories: tuple[SourceCategory, ...] = ()
    """The source's categories the city lacks (with ``create_categories``: the ones added)."""
    created_categories: bool = False
    """Whether ``missing_categories`` were added by this import."""

    @property
    def stored(self) -> int:
        """Rows that are in the database now: new, updated or already present."""
        return self.inserted + self.already_present

    @property
    def reject_share(self) -> float:
        """Rejected rows as a share of all rows (0 for an empty file)."""
        return self.rejected / self.rows if self.rows else 0.0


@dataclass(frozen=True, slots=True)
class _Spec:
    """Where each of our fields is in one file, and how its values are read."""

    columns: dict[str, str]  # our field (or "coords" for a "lon,lat" column) -> file column
    status_map: dict[str, str]  # casefolded value -> status
    blank_status: str | None  # the status of a blank value, or None to reject it
    category_layout: str  # ImportFormat.category_layout
    category_separator: str | None
    coords_pattern: re.Pattern[str]
    status_note: re.Pattern[str] | None
    absent: tuple[str, ...] = ()  # optional columns the file lacks


@dataclass(slots=True)
class _Chunk:
    """Rows read from the file, with the line each starts on."""

    lines: list[int] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    malformed: list[tuple[int, list[str]]] = field(default_factory=list)
    end_bytes: int = 0


@dataclass(slots=True)
class _Totals:
    """Running counts over the chunks of one import."""

    rows: int = 0
    inserted: int = 0
    already_present: int = 0
    updated: int = 0
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    first_rejects: list[tuple[int, str]] = field(default_factory=list)

    @property
    def stored(self) -> int:
        """Rows that are in the database now: new or already present."""
        return self.inserted + self.already_present


class _StageClock:
    """Seconds spent in each of ``STAGES``.

    A stage runs on one thread only, so its figure is never written by two at once.
    """

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(STAGES, 0.0)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] += time.perf_counter() - started

    def timed(self, stage: str, items: Iterable[_T]) -> Iterator[_T]:
        """``items``, the time taken to make each one counted to ``stage``."""
        iterator = iter(items)
        while True:
            with self(stage):
                item = next(iterator, None)
            if item is None:
                return
            yield item


@dataclass(frozen=True, slots=True)
class _Rejects:
    """Rows refused, keyed by line: the reason text and the kinds of reason."""

    reasons: dict[int, str]
    kinds: dict[int, list[str]]


def parse_pg_array(value: str) -> list[str]:
    """Elements of a one-dimensional Postgres array literal such as ``{กีดขวาง,ถนน}``.

    Quoted elements may hold commas, braces and backslash escapes; unquoted ``NULL``
    elements are left out. A value without braces is taken as a single element. Raises
    ``ValueError`` for a literal that is not well formed.
    """
    value = value.strip()
    if not value:
        return []
    if not value.startswith("{"):
        return [value]
    if not value.endswith("}"):
        raise ValueError(f"{value!r} is not an array literal (no closing brace)")
    body = value[1:-1]
    if not body.strip():
        return []
    items: list[str] = []
    i, n = 0, len(body)
    while i < n:
        while i < n and body[i].isspace():
            i += 1
        if i < n and body[i] == '"':
            i += 1
            chars: list[str] = []
            while i < n and body[i] != '"':
                if body[i] == "\\" and i + 1 < n:
                    i += 1
                chars.append(body[i])
                i += 1
            if i >= n:
                raise ValueError(f"{value!r} has an unterminated quoted element")
            i += 1
            items.append("".join(chars))
            while i < n and body[i].isspace():
                i += 1
        else:
            start = i
            while i < n and body[i] != ",":
                if body[i] in '{}"':
                    raise ValueError(f"{value!r} is not a one-dimensional array literal")
                i += 1
            item = body[start:i].strip()
            if not item:
                raise ValueError(f"{value!r} has an empty element")
            if item.upper() != "NULL":
                items.append(item)
        if i < n:
            if body[i] != ",":
                raise ValueError(f"{value!r} has text after a quoted element")
            i += 1
            if i >= n:
                raise ValueError(f"{value!r} ends with a comma")
    return items


def parse_column_map(items: Sequence[str]) -> dict[str, str]:
    """Turn ``FIELD=COLUMN`` option values into a mapping, refusing unknown fields."""
    mapping: dict[str, str] = {}
    for item in items:
        name, sep, column = item.partition("=")
        name, column = name.strip(), column.strip()
        if not sep or not name or not column:
            raise InvalidInputError(
                "column_map", N_("{item!r} must look like FIELD=COLUMN, e.g. lat=LAT"), item=item
            )
        if name not in FIELDS:
            raise InvalidInputError(
                "column_map",
                N_("{name!r} is not a field; the fields are: {fields}"),
                name=name,
                fields=", ".join(FIELDS),
            )
        if name in mapping and mapping[name] != column:
            raise InvalidInputError(
                "column_map",
                N_("{name} is mapped to both {first!r} and {second!r}"),
                name=name,
                first=mapping[name],
                second=column,
            )
        mapping[name] = column
    return mapping


def _read_value_map(path: Path, option: str, target: str, encoding: str) -> dict[str, str]:
    """A value map from a CSV of ``value,TARGET`` rows or a JSON object, by compared value.

    A CSV's header row is optional (recognised by its second cell being ``target``).
    """
    _check_encoding(encoding)
    try:
        with _open_text(path, encoding)[0] as handle:
            content = handle.read(FIELD_MAX * 8 + 1)
    except OSError as error:
        raise InvalidInputError(
            option, N_("{path} could not be read: {reason}"), path=path, reason=error.strerror
        ) from error
    except UnicodeDecodeError as error:
        raise InvalidInputError(
            option, N_("{path} is not {encoding} text"), path=path, encoding=encoding
        ) from error
    if len(content) > FIELD_MAX * 8:
        raise InvalidInputError(option, N_("{path} is too big for a value map"), path=path)
    if "\x00" in content:
        raise InvalidInputError(option, N_("{path} holds binary data"), path=path)
    pairs: list[tuple[str, str]]
    if path.suffix.casefold() == ".json" or content.lstrip().startswith("{"):
        try:
            loaded = json.loads(content)
        except (json.JSONDecodeError, RecursionError) as error:
            raise InvalidInputError(
                option, N_("{path} is not valid JSON: {reason}"), path=path, reason=str(error)
            ) from error
        if not isinstance(loaded, dict) or not all(isinstance(v, str) for v in loaded.values()):
            raise InvalidInputError(
                option,
                N_('{path} must hold one JSON object of "value": "{target}" pairs'),
                path=path,
                target=target,
            )
        pairs = [(str(k), v) for k, v in loaded.items()]
    else:
        try:
            rows = [row for row in csv.reader(io.StringIO(content), strict=True) if row]
        except csv.Error as error:
            raise InvalidInputError(
                option, N_("{path} is not a well-formed CSV: {reason}"), path=path, reason=error
            ) from error
        if rows and len(rows[0]) >= 2 and rows[0][1].strip().casefold() == target:
            rows = rows[1:]
        for number, row in enumerate(rows, start=1):
            if len(row) != 2:
                raise InvalidInputError(
                    option,
                    N_("row {number} of {path} is not 'value,{target}': {row}"),
                    number=number,
                    path=path,
                    target=target,
                    row=repr(row)[:200],
                )
        pairs = [(row[0], row[1]) for row in rows]
    mapping: dict[str, str] = {}
    for value, to in pairs:
        key, to = _key(value), to.strip()
        if not key or not to:
            raise InvalidInputError(
                option,
                N_("{path} maps {value} to {to}: neither may be empty"),
                path=path,
                value=repr(value)[:80],
                to=repr(to)[:80],
            )
        if mapping.get(key, to) != to:
            raise InvalidInputError(
                option,
                N_("{path} maps {value} to both {first} and {second}"),
                path=path,
                value=repr(value)[:80],
                first=repr(mapping[key]),
                second=repr(to)[:80],
            )
        mapping[key] = to
    if not mapping:
        raise InvalidInputError(option, N_("{path} holds no rows"), path=path)
    return mapping


def read_category_map(path: Path | str, *, encoding: str = "utf-8") -> dict[str, str]:
    """Read a value-to-category-code map: a CSV of ``value,code`` rows, or a JSON object.

    A CSV's ``…,code`` header row is optional; a JSON object is ``{"value": "code"}``.

    Values are compared ignoring case and repeated spaces. The codes are checked against
    the database when the import starts.
    """
    return _read_value_map(Path(path), "category_map", "code", encoding)


def read_status_map(path: Path | str, *, encoding: str = "utf-8") -> dict[str, str]:
    """Read a value-to-status map: a CSV of ``value,status`` rows or a JSON object.

    Values are compared ignoring case and repeated spaces; every target must be one of our
    statuses (``geo.vocabulary.REPORT_STATUSES``). It adds to the format's own statuses and
    takes precedence over them.
    """
    path = Path(path)
    mapping = _read_value_map(path, "status_map", "status", encoding)
    unknown = sorted({status for status in mapping.values() if status not in REPORT_STATUSES})
    if unknown:
        raise InvalidInputError(
            "status_map",
            N_("{path} names statuses we do not have: {unknown}; the statuses are: {known}"),
            path=path,
            unknown=", ".join(repr(u)[:80] for u in unknown[:5]),
            known=", ".join(REPORT_STATUSES),
        )
    return mapping


def default_rejects_path(path: Path | str) -> Path:
    """Where rejected rows go unless told: ``<file stem>.rejects.csv`` in the current folder.

    The current folder rather than the file's own, which is often read-only shared data.
    """
    return Path.cwd() / f"{Path(path).stem}.rejects.csv"


def import_reports(
    engine: Engine,
    path: Path | str,
    *,
    file_format: str,
    column_map: Mapping[str, str] | None = None,
    category_map: Mapping[str, str] | None = None,
    status_map: Mapping[str, str] | None = None,
    default_category: str | None = None,
    create_categories: bool = False,
    category_separator: str | None = None,
    coords_pattern: str | None = None,
    update: bool = False,
    source: str | None = None,
    timezone: str = "UTC",
    encoding: str = "utf-8",
    rejects_path: Path | str | None = None,
    settings: RoutingSettings | None = None,
    actor: str = "import",
    dry_run: bool = False,
    chunk_rows: int = CHUNK_ROWS,
    progress: ProgressCallback | None = None,
) -> ImportSummary:
    """Check, route and store the reports in a CSV file, in one transaction.

    Parameters
    ----------
    engine
        The issuemap database. The import holds two of its connections: one writes, in
        the import's transaction; the other only looks rows up and routes them, and is
        never committed.
    path
        The CSV file.
    file_format
        ``"traffy"`` (Traffy Fondue export), ``"socrata"`` (a Socrata 311 export such as
        Chicago's) or ``"csv"`` (any CSV, described by ``column_map``).
    column_map
        ``csv`` only: our field (see ``FIELDS``) to the file's column name.
    category_map
        File value (Traffy type, Socrata ``sr_type``, or the mapped category column) to
        category code; see ``read_category_map``. It takes precedence over the category
        codes and names, and over the format's own type names (``ImportFormat.type_map``).
    status_map
        File status value to our status; see ``read_status_map``. It takes precedence over
        the format's own statuses.
    default_category
        Code of the category for rows whose category matches nothing; without it such
        rows are rejected.
    create_categories
        Add the source's own categories (``ImportFormat.categories``) that the city lacks,
        with their Thai and English names, in the import's transaction. Without it the
        summary names them (``ImportSummary.missing_categories``).
    category_separator
        Splits a category cell into several values; the first that names a category wins.
    coords_pattern
        ``csv`` only, with ``coords`` mapped: a regular expression with the groups ``lon``
        and ``lat`` that reads the coordinates column (default: "lon,lat", see
        ``geo.reports.import_formats.LON_LAT``).
    update
        For reports already stored (same source and external id): take the file's status
        and times when its update time is later than the stored one, with an audit event
        for each report changed. Without it they are left as they are.
    source
        Stored as the reports' ``source`` and, with the external id, the re-import key.
        Defaults to the format's name.
    timezone
        IANA time zone of times written without a UTC offset.
    encoding
        Text encoding of the file (a UTF-8 byte order mark is skipped).
    rejects_path
        Where the rejected rows go (line, reason, then the row as read); it is written,
        header only when nothing was rejected, except by a dry run not given one. Defaults
        to ``default_rejects_path(path)``.
    settings
        Routing settings; default the ``ISSUEMAP_*`` ones.
    actor
        Who is importing, for the audit trail.
    dry_run
        Check and route everything, then roll back; the summary shows the first rejects.
    chunk_rows
        Rows checked and stored at a time.
    progress
        Called as each phase moves on (see ``ImportProgress``).

    Raises
    ------
    InvalidInputError
        The file or an option was refused, with the reason; the database is unchanged and
        no rejects file is written.
    """
    started = time.perf_counter()
    path = Path(path)
    if file_format not in FORMATS:
        raise InvalidInputError(
            "file_format",
            N_("must be one of {choices}, not {value!r}"),
            choices=", ".join(FORMATS),
            value=file_format,
        )
    fmt = FORMATS[file_format]
    if column_map and not fmt.mapped:
        raise InvalidInputError(
            "column_map", N_("describes a generic CSV; use it with `file_format` csv")
        )
    if coords_pattern is not None and not fmt.mapped:
        raise InvalidInputError(
            "coords_pattern",
            N_("reads a generic CSV's coords column; use it with `file_format` csv"),
        )
    pattern = _coords_pattern(coords_pattern or fmt.coords_pattern)
    if category_separator is not None and not category_separator:
        raise InvalidInputError("category_separator", N_("must not be empty"))
    source = file_format if source is None else source.strip()
    if not source or len(source) > SOURCE_MAX:
        raise InvalidInputError("source", N_("must be 1 to {limit} characters"), limit=SOURCE_MAX)
    if chunk_rows < 1:
        raise InvalidInputError("chunk_rows", "must be at least 1")
    zone = _zone(timezone)
    _check_encoding(encoding)
    settings = settings or RoutingSettings()
    keep_rejects = rejects_path is not None or not dry_run
    rejects_path = Path(rejects_path) if rejects_path is not None else default_rejects_path(path)
    total_bytes = _check_file(path)

    if rejects_path.resolve() == path.resolve():
        raise InvalidInputError("rejects_path", N_("must not be the file being imported"))
    try:
        handle, binary = _open_text(path, encoding)
    except OSError as error:
        raise InvalidInputError(
            str(path), N_("could not be read: {reason}"), reason=error.strerror or str(error)
        ) from error
    totals = _Totals()
    clock = _StageClock()
    with handle:
        reader = csv.reader(handle, strict=True)
        header = _read_header(reader, path, encoding)
        spec = _spec(
            fmt,
            header,
            path,
            column_map or {},
            default_category=default_category,
            status_map=status_map or {},
            category_separator=category_separator,
            coords_pattern=pattern,
        )
        chunks = _read_chunks(
            reader,
            binary,
            path=path,
            encoding=encoding,
            width=len(header),
            first_line=reader.line_num + 1,
            chunk_rows=chunk_rows,
        )
        with (
            _RejectsFile(rejects_path, header) as rejects_file,
            engine.connect() as conn,
            engine.connect() as lookups,
        ):
            with conn.begin() as transaction:
                lookup, default_id, missing = _category_lookup(
                    conn,
                    fmt=fmt,
                    category_map=category_map or {},
                    default_category=default_category,
                )
                # The second connection only reads (and keeps its own temporary tables); it
                # is never committed, and goes back to the pool rolled back. Categories
                # this import adds are only seen by its own transaction, and routing needs
                # them: then that one connection does both, taking turns.
                router = lookups
                turns: contextlib.AbstractContextManager[object] = contextlib.nullcontext()
                if missing and create_categories:
                    _add_categories(conn, missing)
                    lookup, default_id, _ = _category_lookup(
                        conn,
                        fmt=fmt,
                        category_map=category_map or {},
                        default_category=default_category,
                    )
                    router, turns = conn, threading.Lock()
                router.execute(text(_SEEN_TABLE))
                id_column = spec.columns["external_id"]

                def check(frame: pd.DataFrame, rejects: _Rejects) -> _Checked:
                    with clock("routing"), turns:
                        return _check(
                            router,
                            frame,
                            rejects,
                            column=id_column,
                            source=source,
                            settings=settings,
                        )

                def store(chunk: _Chunk, checking: Future[_Checked], rejects: _Rejects) -> None:
                    checked = checking.result()
                    with clock("storing"), turns:
                        inserted = insert_routed_reports(conn, checked.rows, actor=actor)
                        if update:
                            totals.updated += update_from_source(
                                conn, checked.present_rows, source=source, actor=actor
                            )
                    totals.inserted += inserted
                    totals.already_present += (
                        len(checked.present_rows) + len(checked.rows) - inserted
                    )
                    _report(progress, "storing", chunk.end_bytes, total_bytes, totals.stored)
                    rejects_file.write_chunk(chunk, rejects)
                    totals.rejected += len(rejects.reasons)
                    # A row counts once, under its first reason: the counts add up to rows.
                    totals.reasons.update(kinds[0] for kinds in rejects.kinds.values())
                    room = FIRST_REJECTS - len(totals.first_rejects)
                    if room > 0:
                        totals.first_rejects += [
                            (line, rejects.reasons[line]) for line in sorted(rejects.reasons)
                        ][:room]

                # Three stages take turns on the machine's cores: this thread reads and
                # checks a chunk, the second connection finds its repeats and the rows
                # already stored and routes the rest, and the import's own connection
                # writes the chunk before. Every stage takes the chunks in file order, so
                # the transaction and the rejects file are as with one; at most three
                # chunks are held at once.
                with (
                    ThreadPoolExecutor(max_workers=1) as checker,
                    ThreadPoolExecutor(max_workers=1) as storer,
                ):
                    pending: deque[Future[None]] = deque()
                    try:
                        for chunk in clock.timed("reading", chunks):
                            totals.rows += len(chunk.lines) + len(chunk.malformed)
                            _report(progress, "reading", chunk.end_bytes, total_bytes, totals.rows)
                            with clock("validating"):
                                frame, rejects = _validate(
                                    chunk,
                                    header=header,
                                    spec=spec,
                                    lookup=lookup,
                                    default_id=default_id,
                                    zone=zone,
                                    source=source,
                                )
                            _report(
                                progress, "validating", chunk.end_bytes, total_bytes, totals.rows
                            )
                            checking = checker.submit(check, frame, rejects)
                            pending.append(storer.submit(store, chunk, checking, rejects))
                            while len(pending) > 1:
                                pending.popleft().result()
                        while pending:
                            pending.popleft().result()
                    except BaseException:
                        checker.shutdown(cancel_futures=True)
                        storer.shutdown(cancel_futures=True)
                        raise
                for phase in PHASES:
                    rows = totals.stored if phase == "storing" else totals.rows
                    _report(progress, phase, total_bytes, total_bytes, rows)
                if dry_run:
                    transaction.rollback()
            if keep_rejects:
                rejects_file.keep()
    return ImportSummary(
        path=path,
        file_format=file_format,
        source=source,
        rows=totals.rows,
        inserted=totals.inserted,
        already_present=totals.already_present,
        rejected=totals.rejected,
        reasons=dict(totals.reasons.most_common()),
        rejects_path=rejects_path if keep_rejects else None,
        dry_run=dry_run,
        seconds=time.perf_counter() - started,
        stage_seconds=dict(clock.seconds),
        updated=totals.updated,
        first_rejects=tuple(totals.first_rejects),
        absent_columns=spec.absent,
        missing_categories=tuple(
            missing if create_categories or totals.reasons["unknown category"] else ()
        ),
        created_categories=bool(missing) and create_categories,
    )


def parse_share(value: str) -> float:
    """A share from ``50%`` or ``0.5`` (0 to 1); anything else is refused."""
    text_ = value.strip()
    try:
        share = float(text_[:-1]) / 100 if text_.endswith("%") else float(text_)
    except ValueError:
        share = float("nan")
    if not 0 <= share <= 1:  # also refuses NaN
        raise InvalidInputError(
            "max_reject_share",
            N_("must be a share such as {examples}, not {value}"),
            examples="50% / 0.5",
            value=repr(value)[:40],
        )
    return share


def import_outcome(summary: ImportSummary, *, max_reject_share: float) -> Message | None:
    """Why an import should count as failed, or None when it did its job.

    It failed when it stored no row (a file that is all rejects, or empty), or when more
    than ``max_reject_share`` of its rows were rejected: both usually mean the wrong
    format or options, which the first rejects show.
    """
    if summary.stored == 0:
        return Message(
            N_("no row was stored: {rejected:,} of {rows:,} rows were rejected"),
            {"rejected": summary.rejected, "rows": summary.rows},
        )
    if summary.reject_share > max_reject_share:
        return Message(
            N_(
                "{share} of the rows were rejected, more than the {limit} that "
                "--max-reject-share allows"
            ),
            # Shares are written out beforehand: a "%" in a catalog message reads as printf.
            {"share": f"{summary.reject_share:.0%}", "limit": f"{max_reject_share:.0%}"},
        )
    return None


REASON_KINDS: Final[tuple[str, ...]] = (
    N_("malformed row"),
    N_("no external id"),
    N_("no coordinates"),
    N_("bad coordinates"),
    N_("bad category"),
    N_("unknown category"),
    N_("bad date"),
    N_("unknown status"),
    N_("description too long"),
    N_("bad text"),
    N_("duplicate in file"),
    N_("outside the service area"),
)
"""The kinds of reason a row is rejected for, as the summary counts them."""


def render_import_summary(summary: ImportSummary, lang: str = "en") -> str:
    """A few plain lines on what an import did, for people, in ``lang``."""

    def t(message: str, **values: object) -> str:
        return Message(message, values).text(lang)

    lines = [
        t(
            N_(
                "{name} ({file_format}, source '{source}'): "
                "{rows:,} rows checked in {seconds:.1f} s"
            )
            if summary.dry_run
            else N_(
                "{name} ({file_format}, source '{source}'): {rows:,} rows read in {seconds:.1f} s"
            ),
            name=summary.path.name,
            file_format=summary.file_format,
            source=summary.source,
            rows=summary.rows,
            seconds=summary.seconds,
        ),
    ]
    if summary.dry_run:
        lines.append("  " + t(N_("dry run: nothing was stored")))
    lines.append(
        "  "
        + t(
            N_("{inserted:,} new, {present:,} already present, {rejected:,} rejected"),
            inserted=summary.inserted,
            present=summary.already_present,
            rejected=summary.rejected,
        )
    )
    if summary.updated:
        lines.append(
            "  "
            + t(
                N_("{updated:,} already present were updated from the file"),
                updated=summary.updated,
            )
        )
    if summary.reasons:
        kinds = ", ".join(f"{count:,} {t(kind)}" for kind, count in summary.reasons.items())
        lines.append("  " + t(N_("rejected rows, by first reason: {kinds}"), kinds=kinds))
        for line, reason in summary.first_rejects:
            # The kind before the colon is ours to translate; the detail quotes the file.
            kind, sep, detail = reason.partition(": ")
            if sep and kind in REASON_KINDS:
                reason = t(kind) + sep + detail
            lines.append("    " + t(N_("line {line:,}: {reason}"), line=line, reason=reason))
        if summary.rejects_path is not None:
            lines.append(
                "  "
                + t(
                    N_("rejected rows, with line numbers and reasons: {path}"),
                    path=summary.rejects_path,
                )
            )
    if summary.absent_columns:
        lines.append(
            "  "
            + t(
                N_("the file has no column {columns}: those fields were left empty"),
                columns=", ".join(f"'{c}'" for c in summary.absent_columns),
            )
        )
    if summary.missing_categories:
        names = ", ".join(
            f"{c.code} ({c.name_th}, {c.name_en})" for c in summary.missing_categories
        )
        if summary.created_categories:
            lines.append("  " + t(N_("categories added: {names}"), names=names))
        else:
            lines.append(
                "  "
                + t(
                    N_(
                        "the city has no category for these {file_format} types: {names}; "
                        "to add them, run: issuemap reports import {name} --format "
                        "{file_format} --create-categories"
                    ),
                    names=names,
                    name=summary.path.name,
                    file_format=summary.file_format,
                )
            )
    return "\n".join(lines)


# --- reading -------------------------------------------------------------------------------


def _key(value: str) -> str:
    """How category values are compared: case and repeated spaces do not matter."""
    return " ".join(value.split()).casefold()


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise InvalidInputError(
            "timezone", N_("{name!r} is not an IANA time zone such as Asia/Bangkok"), name=name
        ) from error


def _check_encoding(encoding: str) -> None:
    try:
        codecs.lookup(encoding)
    except LookupError as error:
        raise InvalidInputError(
            "encoding", N_("{encoding!r} is not a known encoding"), encoding=encoding
        ) from error


def _check_file(path: Path) -> int:
    """Size of ``path`` in bytes; refuse what is not a readable file."""
    if not path.exists():
        raise InvalidInputError(str(path), "no such file")
    if path.is_dir():
        raise InvalidInputError(str(path), N_("is a folder; give the CSV file itself"))
    return path.stat().st_size


def _open_text(path: Path, encoding: str) -> tuple[io.TextIOWrapper, io.BufferedReader]:
    """Open ``path`` as text for the csv module, skipping a UTF-8 byte order mark.

    The binary file underneath is returned too: its position tells how far reading got.
    """
    if codecs.lookup(encoding).name == "utf-8":
        encoding = "utf-8-sig"
    binary = open(path, "rb")  # noqa: SIM115 - closed with the text wrapper
    # newline="" lets the csv module see the line ends inside quoted fields.
    return io.TextIOWrapper(binary, encoding=encoding, newline=""), binary


def _not_text(path: Path, encoding: str, line: int) -> InvalidInputError:
    return InvalidInputError(
        path.name,
        N_(
            "is not {encoding} text (undecodable bytes near line {line:,}); if it is a CSV in "
            "another encoding, give it with `encoding`, e.g. cp874"
        ),
        encoding=encoding,
        line=line,
    )


def _read_header(reader: CsvReader, path: Path, encoding: str) -> list[str]:
    try:
        header = next(reader, None)
    except UnicodeDecodeError as error:
        raise _not_text(path, encoding, 1) from error
    except csv.Error as error:
        raise InvalidInputError(
            path.name, N_("is not a well-formed CSV: {reason}"), reason=str(error)
        ) from error
    if not header or not any(name.strip() for name in header):
        raise InvalidInputError(path.name, "is empty; a CSV with a header row is expected")
    if any("\x00" in name for name in header):
        raise InvalidInputError(path.name, "is not a CSV file (it holds binary data)")
    return [name.strip() for name in header]


def _read_chunks(
    reader: CsvReader,
    binary: io.BufferedReader,
    *,
    path: Path,
    encoding: str,
    width: int,
    first_line: int,
    chunk_rows: int,
) -> Iterator[_Chunk]:
    """Yield the data rows in chunks, each with the line it starts on (header is line 1).

    A row whose number of fields differs from the header's (``width``) is kept aside as
    malformed, to be rejected with its line.
    """
    chunk = _Chunk()
    line = first_line
    while True:
        try:
            row = next(reader, None)
        except UnicodeDecodeError as error:
            raise _not_text(path, encoding, line) from error
        except csv.Error as error:
            if "field larger than field limit" in str(error):
                raise InvalidInputError(
                    path.name,
                    N_(
                        "has a field longer than {limit:,} characters near line {line:,}; no "
                        "report field is that long, so the file is refused"
                    ),
                    limit=FIELD_MAX,
                    line=line,
                ) from error
            raise InvalidInputError(
                path.name,
                N_("is not a well-formed CSV at line {line:,}: {reason}"),
                line=line,
                reason=str(error),
            ) from error
        if row is None:
            break
        start, line = line, reader.line_num + 1
        if not row:
            continue  # a blank line is not a row
        if len(row) != width:
            chunk.malformed.append((start, row))
        else:
            chunk.lines.append(start)
            chunk.rows.append(row)
        if len(chunk.lines) + len(chunk.malformed) >= chunk_rows:
            chunk.end_bytes = binary.tell()
            yield chunk
            chunk = _Chunk()
    if chunk.lines or chunk.malformed:
        chunk.end_bytes = binary.tell()
        yield chunk


def _coords_pattern(pattern: str) -> re.Pattern[str]:
    """``pattern`` compiled, if it has the groups ``lon`` and ``lat``."""
    try:
        compiled = re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as error:
        raise InvalidInputError(
            "coords_pattern", N_("is not a regular expression: {reason}"), reason=str(error)
        ) from error
    if not {"lon", "lat"} <= compiled.groupindex.keys():
        raise InvalidInputError(
            "coords_pattern",
            N_("needs the named groups (?P<lon>...) and (?P<lat>...); the default is {default}"),
            default=LON_LAT,
        )
    return compiled


def _no_column(field: str, column: str, header: list[str]) -> InvalidInputError:
    """The file lacks ``column``: name the header's closest columns, or all of them."""
    close = difflib.get_close_matches(column, header, n=3, cutoff=0.6)
    kin = {name for group in COLUMN_SYNONYMS if column.casefold() in group for name in group}
    close += [name for name in header if name.casefold() in kin and name not in close]
    close += [
        name
        for name in header
        if name not in close
        and len(close) < 3
        and (column.casefold() in name.casefold() or name.casefold() in column.casefold())
    ]
    if close:
        return InvalidInputError(
            field,
            N_("the file has no column '{column}'; did you mean {suggestions}?"),
            column=column,
            suggestions=" / ".join(f"'{name}'" for name in close),
        )
    return InvalidInputError(
        field,
        N_("the file has no column '{column}'; its columns are: {columns}"),
        column=column,
        columns=", ".join(header),
    )


def _spec(
    fmt: ImportFormat,
    header: list[str],
    path: Path,
    column_map: Mapping[str, str],
    *,
    default_category: str | None,
    status_map: Mapping[str, str],
    category_separator: str | None,
    coords_pattern: re.Pattern[str],
) -> _Spec:
    """Match the format's columns (or the column map) to the file's header.

    Every column the format needs must be there, and so must an optional column whose
    name is close to one the file has (a renamed column is a mistake, not an absence);
    other optional columns the file lacks are noted in ``_Spec.absent``.
    """
    present = set(header)
    absent: list[str] = []
    if fmt.mapped:
        for name in column_map:
            if name not in FIELDS:
                raise InvalidInputError(
                    "column_map",
                    N_("{name!r} is not a field; the fields are: {fields}"),
                    name=name,
                    fields=", ".join(FIELDS),
                )
        required = list(CSV_REQUIRED) + ([] if default_category else ["category"])
        if "coords" not in column_map:
            required[1:1] = ["lat", "lon"]
        elif {"lat", "lon"} & column_map.keys():
            raise InvalidInputError("column_map", N_("map either coords or lat and lon, not both"))
        missing = [name for name in required if name not in column_map]
        if missing:
            raise InvalidInputError(
                "column_map",
                N_("a generic CSV needs {fields}{id_note}{category_note}"),
                fields=", ".join(f"{m}=COLUMN" for m in missing),
                id_note=Message(
                    N_(" (the external id is how a re-import knows a row is already stored)")
                )
                if "external_id" in missing
                else "",
                category_note=Message(N_(" (or give `default_category`)"))
                if "category" in missing
                else "",
            )
        for column in column_map.values():
            if column not in present:
                raise _no_column("column_map", column, header)
        columns = dict(column_map)
    else:
        columns = {}
        for name, names in fmt.columns.items():
            found = next((c for c in names if c in present), None)
            if found is None:
                raise _no_column(path.name, names[0], header)
            columns[name] = found
        for name, names in fmt.optional.items():
            found = next((c for c in names if c in present), None)
            if found is not None:
                columns[name] = found
            elif difflib.get_close_matches(names[0], sorted(present - set(columns.values()))):
                raise _no_column(path.name, names[0], sorted(present - set(columns.values())))
            else:
                absent.append(names[0])
    _refuse_repeated_columns(header, columns.values(), path)
    return _Spec(
        columns=columns,
        status_map=dict(fmt.status_map) | dict(status_map),
        blank_status=fmt.blank_status,
        category_layout=fmt.category_layout,
        category_separator=category_separator or fmt.category_separator,
        coords_pattern=coords_pattern,
        status_note=re.compile(fmt.status_note) if fmt.status_note else None,
        absent=tuple(absent),
    )


def _refuse_repeated_columns(header: list[str], used: Iterable[str], path: Path) -> None:
    """A column we read must be named once in the header, or we cannot tell which is meant."""
    repeated = sorted({column for column in used if header.count(column) > 1})
    if repeated:
        raise InvalidInputError(
            path.name,
            N_("names the column(s) {columns} more than once in its header"),
            columns=", ".join(repeated),
        )


def _category_lookup(
    conn: Connection,
    *,
    fmt: ImportFormat,
    category_map: Mapping[str, str],
    default_category: str | None,
) -> tuple[dict[str, int], int | None, list[SourceCategory]]:
    """Compared value to category id, the default id, and the source categories unnamed.

    The last are the format's own categories (``ImportFormat.categories``) that no value
    names: the city lacks them.

    Precedence, highest first: the category map, the code, the Thai name, the English
    name, and the format's own category values (``ImportFormat.categories``). Codes that
    do not exist are refused for the map and the default, and left out for the format's.
    """
    rows = active_categories(conn)
    by_code = {row.code: int(row.id) for row in rows}
    known: str | Message = ", ".join(by_code) or Message(N_("(none: create categories first)"))
    if default_category is not None and default_category not in by_code:
        raise InvalidInputError(
            "default_category",
            N_("there is no active category {code!r}; the codes are: {known}"),
            code=default_category,
            known=known,
        )
    unknown = sorted({code for code in category_map.values() if code not in by_code})
    if unknown:
        raise InvalidInputError(
            "category_map",
            N_("names codes that are not active categories: {unknown}; the codes are: {known}"),
            unknown=", ".join(unknown),
            known=known,
        )
    lookup: dict[str, int] = {}
    lookup |= {_key(t): by_code[c] for t, c in fmt.type_map.items() if c in by_code}
    for attribute in ("name_en", "name_th", "code"):
        lookup |= {_key(getattr(row, attribute)): int(row.id) for row in rows}
    lookup |= {_key(value): by_code[code] for value, code in category_map.items()}
    missing = [
        category
        for category in fmt.categories
        if not any(_key(value) in lookup for value in category.values)
    ]
    return lookup, (by_code[default_category] if default_category is not None else None), missing


def _add_categories(conn: Connection, categories: Iterable[SourceCategory]) -> None:
    """Add a source's categories the city lacks, in the caller's transaction."""
    for category in categories:
        put_category(
            conn,
            code=category.code,
            name_th=category.name_th,
            name_en=category.name_en,
            sla_hours=48,
            active=True,
            create_only=True,
        )


# --- checking ------------------------------------------------------------------------------


class _Problems:
    """Reasons found for the rows of one chunk, check by check."""

    def __init__(self, index: pd.Index) -> None:
        self.index = index
        self.found: list[tuple[str, pd.Series]] = []

    def add(
        self, kind: str, mask: pd.Series, detail: str | Callable[[pd.Series], pd.Series]
    ) -> None:
        """Note ``kind`` with ``detail`` for every row where ``mask`` is true.

        ``detail`` is one text for all, or a function of ``mask`` giving each such row's
        text: only the refused rows' texts are made, never a whole chunk's.
        """
        mask = mask.fillna(False).astype(bool)
        if not mask.any():
            return
        if isinstance(detail, str):
            text_ = pd.Series(detail, index=self.index[mask.to_numpy()], dtype=object)
        else:
            text_ = detail(mask).astype(object)
        self.found.append((kind, kind + ": " + text_))

    def rejected(self) -> pd.Series:
        """True for every row with at least one problem."""
        out = pd.Series(False, index=self.index)
        for _, reasons in self.found:
            out[reasons.index] = True
        return out

    def collect(self, into: _Rejects) -> None:
        """Add every row's joined reasons and kinds to ``into``."""
        for kind, reasons in self.found:
            for line, reason in reasons.items():
                line = int(line)
                if line in into.reasons:
                    into.reasons[line] += "; " + reason
                    into.kinds[line].append(kind)
                else:
                    into.reasons[line] = reason
                    into.kinds[line] = [kind]


def _quoted(values: pd.Series, limit: int = 60) -> pd.Series:
    """Values quoted for a reason, long ones shortened."""
    return values.map(lambda v: repr(v if len(v) <= limit else v[: limit - 1] + "…"))


def _described(
    before: str, values: pd.Series, after: str, *, quote: bool = True
) -> Callable[[pd.Series], pd.Series]:
    """Reason texts ``before`` + value + ``after``, made for the refused rows only."""

    def detail(mask: pd.Series) -> pd.Series:
        shown = _quoted(values[mask]) if quote else values[mask].astype(str)
        return before + shown + after

    return detail


def _coordinates(
    frame: pd.DataFrame, spec: _Spec, problems: _Problems
) -> tuple[pd.Series, pd.Series]:
    """Longitude and latitude as floats; rows without usable ones are noted in ``problems``."""
    if "coords" in spec.columns:
        column = spec.columns["coords"]
        pair = frame["coords"]
        blank = pair.isin(["", "[]", "{}", "()"])
        problems.add("no coordinates", blank, f"{column} is empty")
        # One search a row in plain Python: pandas' str.extract costs ten times as much.
        search, lon_at, lat_at = (
            spec.coords_pattern.search,
            spec.coords_pattern.groupindex["lon"],
            spec.coords_pattern.groupindex["lat"],
        )
        found = [search(value) for value in pair.tolist()]
        parts = pd.DataFrame(
            {
                "lon": [m.group(lon_at) if m else None for m in found],
                "lat": [m.group(lat_at) if m else None for m in found],
            },
            index=pair.index,
            dtype=object,
        )
        shape = ~blank & (parts["lon"].isna() | parts["lat"].isna())
        layout = (
            "'lon,lat'" if spec.coords_pattern.pattern == LON_LAT else "the coordinates pattern"
        )
        problems.add(
            "bad coordinates",
            shape,
            _described(column + " ", pair, f" is not {layout}"),
        )
        lon_text = parts["lon"].fillna("").str.strip()
        lat_text = parts["lat"].fillna("").str.strip()
        names = {"lon": "longitude", "lat": "latitude"}
        skip = blank | shape
    else:
        lon_text, lat_text = frame["lon"], frame["lat"]
        names = {"lon": spec.columns["lon"], "lat": spec.columns["lat"]}
        blank = (lon_text == "") | (lat_text == "")
        problems.add("no coordinates", blank, f"{names['lat']} or {names['lon']} is empty")
        skip = blank
    values = {}
    for axis, raw, limit in (("lon", lon_text, LON_MAX), ("lat", lat_text, LAT_MAX)):
        number = pd.to_numeric(raw.where(~skip, "0"), errors="coerce").astype(float)
        not_number = ~skip & number.isna() & ~raw.str.casefold().isin(["nan", "inf", "-inf"])
        name = names[axis]
        problems.add(
            "bad coordinates",
            not_number,
            _described(name + " ", raw, " is not a number"),
        )
        infinite = ~skip & ~not_number & ~np.isfinite(number.fillna(np.inf))
        problems.add("bad coordinates", infinite, f"{names[axis]} is not a finite number")
        out_of_range = ~skip & np.isfinite(number.fillna(np.inf)) & (number.abs() > limit)
        problems.add(
            "bad coordinates",
            out_of_range,
            _described(name + " ", number, f" is outside -{limit:g}..{limit:g}", quote=False),
        )
        # The same refusal as every other entry point (geo.city.coordinates.check_degrees).
        subnormal = ~skip & (number != 0) & (number.abs() < SMALLEST_DEGREE)
        problems.add(
            "bad coordinates",
            subnormal,
            _described(name + " ", raw, " is too close to 0 to be a position"),
        )
        values[axis] = number
    return values["lon"], values["lat"]


def _category_ids(
    frame: pd.DataFrame,
    spec: _Spec,
    lookup: Mapping[str, int],
    default_id: int | None,
    problems: _Problems,
) -> pd.Series:
    """Category id of every row: its first value that names a category, else the default."""
    column = spec.columns.get("category")
    if column is None:  # a generic CSV without a category column: the default for all
        return pd.Series(default_id, index=frame.index, dtype="Int64")
    raw = frame["category"]
    cache: dict[str, int | str | None] = {}

    def resolve(value: str) -> int | str | None:
        """The id, an error text for a malformed array, or None when nothing matches."""
        if value not in cache:
            try:
                candidates = _category_values(value, spec)
            except ValueError as error:
                cache[value] = str(error)
                return cache[value]
            found = next((lookup[_key(c)] for c in candidates if _key(c) in lookup), None)
            cache[value] = found
        return cache[value]

    resolved = raw.map(resolve)
    malformed = resolved.map(lambda r: isinstance(r, str))
    problems.add("bad category", malformed, _described(column + " ", resolved, "", quote=False))
    unmatched = resolved.isna() & (default_id is None)
    problems.add(
        "unknown category",
        unmatched,
        lambda m: raw[m].map(
            lambda v: (
                f"{column} is empty"
                if v in ("", "{}", "[]")
                else f"{column} {v!r} names no category"
            )
        ),
    )
    ids = resolved.where(~malformed & resolved.notna(), default_id)
    return ids.astype("Int64")


_LIST_ITEM = re.compile(r"""\s*(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)"|([^,'"]*?))\s*(?:,|$)""")


def parse_list(value: str) -> list[str]:
    """Elements of a JSON- or Python-style list of strings or numbers, ``['a', "b", 3]``.

    Raises ``ValueError`` for a value that is not such a list.
    """
    body = value.strip()
    if not (body.startswith("[") and body.endswith("]")):
        raise ValueError(f"{value[:60]!r} is not a list")
    body = body[1:-1].strip()
    items: list[str] = []
    position = 0
    while position < len(body):
        match = _LIST_ITEM.match(body, position)
        if match is None or match.end() == position:
            raise ValueError(f"{value[:60]!r} is not a list of strings")
        quoted = match[1] if match[1] is not None else match[2]
        item = quoted if quoted is not None else (match[3] or "")
        if item.strip() and item.strip() not in ("None", "null"):
            items.append(item.strip())
        position = match.end()
    return items


def _category_values(value: str, spec: _Spec) -> list[str]:
    """A category cell's values, in order: list cells are parsed, then each is split."""
    if spec.category_layout == "list":
        values = parse_list(value) if value.lstrip().startswith("[") else parse_pg_array(value)
    else:
        values = [value]
    if spec.category_separator:
        values = [
            part.strip()
            for item in values
            for part in item.split(spec.category_separator)
            if part.strip()
        ]
    return values


def _parse_one(value: str, zone: ZoneInfo) -> pd.Timestamp:
    """One time in any format pandas recognises; naive ones are read in ``zone``."""
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError):
        return pd.NaT
    if stamp is pd.NaT:
        return pd.NaT
    if stamp.tzinfo is None:
        try:
            stamp = stamp.tz_localize(zone, ambiguous=False, nonexistent="shift_forward")
        except (ValueError, OverflowError):
            return pd.NaT
    return stamp.tz_convert("UTC")


_HAS_OFFSET = r"\d:\d{2}(?::\d{2}(?:[.,]\d+)?)?\s*(?:[Zz]|UTC|GMT|[+-]\d{2}(?::?\d{2})?)$"


def _times(values: pd.Series, zone: ZoneInfo) -> tuple[pd.Series, pd.Series]:
    """UTC times of ``values`` (NaT when blank), and which non-blank values did not parse.

    ISO 8601 is parsed vectorised; anything else, one distinct value at a time.
    """
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us, UTC]")
    blank = values == ""
    aware = ~blank & values.str.contains(_HAS_OFFSET, regex=True)
    naive = ~blank & ~aware
    if aware.any():
        out[aware] = pd.to_datetime(values[aware], format="ISO8601", utc=True, errors="coerce")
    if naive.any():
        try:
            local = pd.to_datetime(values[naive], format="ISO8601", errors="coerce")
        except ValueError:  # offsets the pattern missed, mixed with none: one at a time
            local = pd.Series(pd.NaT, index=values[naive].index, dtype="datetime64[us]")
        if isinstance(local.dtype, pd.DatetimeTZDtype):  # offsets the pattern missed
            out[naive] = local.dt.tz_convert("UTC")
            local = local[[]]
        ok = local.notna()
        if ok.any():
            localised = local[ok].dt.tz_localize(
                zone, ambiguous=np.zeros(int(ok.sum()), dtype=bool), nonexistent="shift_forward"
            )
            out[localised.index] = localised.dt.tz_convert("UTC")
    retry = ~blank & out.isna()
    if retry.any():
        parsed = {value: _parse_one(value, zone) for value in values[retry].unique()}
        out[retry] = pd.to_datetime(values[retry].map(parsed), utc=True)
    return out, ~blank & out.isna()


def _status(value: str, spec: _Spec) -> str | None:
    """Our status for a file's status value, or None when nothing maps it.

    Case and repeated spaces do not matter; a state with a note (``ส่งต่อ(ใหม่)``) reads as
    the state without it, unless the map names the whole value.
    """
    compared = _key(value)
    status = spec.status_map.get(compared)
    if status is None and spec.status_note is not None:
        status = spec.status_map.get(spec.status_note.sub("", compared))
    return status


def _text(frame: pd.DataFrame, name: str) -> pd.Series:
    """The field's stripped text, or empty strings when the file does not have it."""
    if name in frame:
        return frame[name]
    return pd.Series("", index=frame.index, dtype=object)


def _validate(
    chunk: _Chunk,
    *,
    header: list[str],
    spec: _Spec,
    lookup: Mapping[str, int],
    default_id: int | None,
    zone: ZoneInfo,
    source: str,
) -> tuple[pd.DataFrame, _Rejects]:
    """Check one chunk; return the rows to store, indexed by line, and the rest."""
    width = len(header)
    rejects = _Rejects(
        reasons={
            line: f"malformed row: it has {len(row)} fields, the header has {width}"
            for line, row in chunk.malformed
        },
        kinds={line: ["malformed row"] for line, _ in chunk.malformed},
    )
    if not chunk.rows:
        return pd.DataFrame(), rejects
    positions = {column: header.index(column) for column in set(spec.columns.values())}
    index = pd.Index(chunk.lines, name="line")
    frame = pd.DataFrame(
        {
            name: pd.Series(
                [row[positions[column]].strip() for row in chunk.rows], index=index, dtype=object
            )
            for name, column in spec.columns.items()
        },
        index=index,
    )
    problems = _Problems(index)

    external_id = _text(frame, "external_id")
    problems.add("no external id", external_id == "", f"{spec.columns['external_id']} is empty")
    lon, lat = _coordinates(frame, spec, problems)
    category_id = _category_ids(frame, spec, lookup, default_id, problems)

    stamps: dict[str, pd.Series] = {}
    for name in ("created_at", "updated_at", "resolved_at"):
        if name not in frame:
            continue
        parsed, bad = _times(frame[name], zone)
        problems.add(
            "bad date",
            bad,
            _described(spec.columns[name] + " ", frame[name], " is not a date"),
        )
        stamps[name] = parsed
    if "created_at" in spec.columns:
        problems.add(
            "bad date", frame["created_at"] == "", f"{spec.columns['created_at']} is empty"
        )
        created = stamps["created_at"]
    else:
        created = pd.Series(pd.Timestamp.now(tz="UTC"), index=index)

    if "status" in frame:
        raw_status = frame["status"]
        # A file has few distinct statuses: each is read once.
        status = raw_status.map(
            {value: _status(value, spec) for value in raw_status.unique()}
        ).astype(object)
        if spec.blank_status is not None:
            status = status.where(raw_status != "", spec.blank_status)
        column = spec.columns["status"]
        problems.add(
            "unknown status",
            status.isna(),
            lambda m: raw_status[m].map(
                lambda v: f"{column} is empty" if not v else f"{column} {v!r} is not a known status"
            ),
        )
    else:
        status = pd.Series("open", index=index, dtype=object)

    description = _text(frame, "description")
    length = description.str.len()
    problems.add(
        "description too long",
        length > DESCRIPTION_MAX,
        lambda m: length[m].map(
            lambda n: f"{n:,} characters; at most {DESCRIPTION_MAX:,} are stored"
        ),
    )
    texts = [
        "external_id",
        "description",
        "reporter_name",
        "reporter_contact",
        "address",
        "media_url",
    ]
    for name in texts:
        if name in frame:
            problems.add(
                "bad text",
                frame[name].str.contains("\x00", regex=False),
                f"{spec.columns[name]} holds a NUL character",
            )

    # Repeats of an external id within the chunk: keep the first row that passed every
    # other check. Repeats of earlier chunks are found in the database before the chunk
    # is routed (``_check``), so memory does not grow with the file.
    ok = ~problems.rejected()
    seen: dict[str, int] = {}
    repeats: dict[int, int] = {}
    for line, key in zip(index[ok.to_numpy()], external_id[ok], strict=True):
        first = seen.setdefault(key, int(line))
        if first != line:
            repeats[int(line)] = first
    if repeats:
        lines = pd.Index(list(repeats), name="line")
        problems.add(
            "duplicate in file",
            pd.Series(index.isin(lines), index=index),
            lambda m: pd.Series(
                [
                    f"{spec.columns['external_id']} {external_id[line]!r} already appeared "
                    f"on line {first:,}"
                    for line, first in repeats.items()
                ],
                index=lines,
            ),
        )
    problems.collect(rejects)
    keep = ~problems.rejected()

    resolved_states = status.isin(["resolved", "closed"])
    updated = stamps.get("updated_at", pd.Series(pd.NaT, index=index, dtype=created.dtype))
    updated = updated.fillna(created)
    resolved = stamps.get("resolved_at", pd.Series(pd.NaT, index=index, dtype=created.dtype))
    resolved = resolved.fillna(updated).where(resolved_states)
    resolved = resolved.where(resolved.isna() | (resolved >= created), created)
    updated = updated.where(updated >= created, created)
    updated = updated.where(resolved.isna() | (updated >= resolved), resolved)

    def optional(name: str) -> pd.Series:
        values = _text(frame, name)
        return values.where(values != "", None).astype(object)

    rows = pd.DataFrame(
        {
            "lon": lon,
            "lat": lat,
            "category_id": category_id,
            "created_at": created,
            "description": description,
            "status": status,
            "updated_at": updated,
            "resolved_at": resolved,
            "source": source,
            "external_id": external_id,
            "reporter_name": optional("reporter_name"),
            "reporter_contact": optional("reporter_contact"),
            "address": optional("address"),
            "media_url": optional("media_url"),
        },
        index=index,
    )[keep.to_numpy()]
    rows["category_id"] = rows["category_id"].astype(int)
    return rows, rejects


# --- storing -------------------------------------------------------------------------------

# The external ids stored so far by this import, with their lines; gone with the transaction.
_SEEN_TABLE = (
    "CREATE TEMPORARY TABLE import_seen (external_id text PRIMARY KEY, line bigint NOT NULL) "
    "ON COMMIT DROP"
)
# A chunk's ids seen in earlier chunks (with the line that had them first), and those
# stored before the import (first is NULL); the chunk's ids are then added as seen.
_LOOKUPS = """
WITH chunk AS (
    SELECT * FROM unnest(CAST(:ids AS text[]), CAST(:lines AS bigint[])) AS c(external_id, line)
), added AS (
    INSERT INTO import_seen (external_id, line)
    SELECT external_id, line FROM chunk
    ON CONFLICT (external_id) DO NOTHING
)
SELECT c.line, s.line AS first FROM chunk AS c JOIN import_seen AS s USING (external_id)
UNION ALL
SELECT c.line, NULL FROM chunk AS c
JOIN reports AS r ON r.source = :source AND r.external_id = c.external_id
"""


@dataclass(frozen=True, slots=True)
class _Checked:
    """A chunk's rows to store, each routed, and its rows stored already."""

    rows: pd.DataFrame
    present_rows: pd.DataFrame


def _check(
    conn: Connection,
    frame: pd.DataFrame,
    rejects: _Rejects,
    *,
    column: str,
    source: str,
    settings: RoutingSettings,
) -> _Checked:
    """Find the chunk's repeats of earlier chunks and its rows already stored; route the rest.

    Repeats are refused, and so are rows no ward takes. Chunks come in file order, so the
    first row with an id is the one kept, as within a chunk (``_validate``). Only reports
    committed before are seen as stored: rows of this import come back as repeats.
    """
    if not len(frame):
        return _Checked(frame, frame)
    found = conn.execute(
        text(_LOOKUPS),
        {
            "ids": frame["external_id"].tolist(),
            "lines": frame.index.tolist(),
            "source": source,
        },
    ).all()
    repeats = {int(line): int(first) for line, first in found if first is not None}
    present = {int(line) for line, first in found if first is None} - repeats.keys()
    for line, first in repeats.items():
        value = frame.at[line, "external_id"]
        rejects.reasons[line] = (
            f"duplicate in file: {column} {value!r} already appeared on line {first:,}"
        )
        rejects.kinds[line] = ["duplicate in file"]
    present_rows = frame.loc[sorted(present)]
    if repeats or present:
        frame = frame.drop(index=[*repeats, *present])
    routes = route_points(
        conn, frame[["lon", "lat", "category_id", "created_at"]], settings=settings
    )
    inside = routes["ward_id"].notna().to_numpy()
    outside = [int(line) for line in frame.index[~inside]]
    for line, reason in _outside_reasons(conn, frame, outside).items():
        rejects.reasons[line] = reason
        rejects.kinds[line] = ["outside the service area"]
    rows = frame[inside].join(routes.loc[inside, list(ROUTE_COLUMNS)])
    return _Checked(rows, present_rows)


# Reports of the source stored before whose file row is newer: take its status and times,
# with an audit event each (a status change, or an update when only the times moved).
_UPDATE_FROM_SOURCE = """
WITH incoming AS (
    SELECT * FROM unnest(
        CAST(:ids AS text[]), CAST(:statuses AS text[]), CAST(:updated AS timestamptz[]),
        CAST(:resolved AS timestamptz[])
    ) AS u(external_id, status, updated_at, resolved_at)
), old AS (
    SELECT r.id, r.status AS from_status, i.*
    FROM reports AS r JOIN incoming AS i USING (external_id)
    WHERE r.source = :source AND i.updated_at > r.updated_at
    FOR UPDATE OF r
), changed AS (
    UPDATE reports AS r
    SET status = o.status, updated_at = o.updated_at, resolved_at = o.resolved_at
    FROM old AS o WHERE r.id = o.id
    RETURNING r.id
), events AS (
    INSERT INTO report_events (report_id, at, kind, actor, from_status, to_status, note)
    SELECT o.id, o.updated_at, CASE WHEN o.status = o.from_status THEN 'updated' ELSE 'status' END,
           :actor, o.from_status, o.status, 'updated from the source ' || :source
    FROM old AS o JOIN changed USING (id)
)
SELECT count(*) FROM changed
"""


def update_from_source(
    conn: Connection, rows: pd.DataFrame, *, source: str, actor: str = "import"
) -> int:
    """Give stored reports of ``source`` the status and times of their newer file rows.

    ``rows`` are checked import rows (``external_id``, ``status``, ``updated_at``,
    ``resolved_at``). A report changes only when the row's update time is later than the
    stored one, so a second run changes nothing, and a report changed here since (its own
    update time later) keeps its state. Each change gets one audit event: ``status`` when
    the status moves, else ``updated`` (staff see it; the public timeline does not). One
    statement for all rows; the caller commits. Returns how many reports changed.
    """
    if not len(rows):
        return 0

    def times(name: str) -> list[str | None]:
        return [None if pd.isna(v) else v.isoformat() for v in rows[name]]

    return int(
        conn.execute(
            text(_UPDATE_FROM_SOURCE),
            {
                "ids": rows["external_id"].tolist(),
                "statuses": rows["status"].tolist(),
                "updated": times("updated_at"),
                "resolved": times("resolved_at"),
                "source": source,
                "actor": actor,
            },
        ).scalar_one()
    )


def _outside_reasons(conn: Connection, frame: pd.DataFrame, lines: list[int]) -> dict[int, str]:
    """Reasons for the rows no ward took, with the distance to the nearest ward."""
    if not lines:
        return {}
    points = frame.loc[lines, ["lon", "lat"]]
    # The nearest ward and its closest point are found in degrees (planar, by the GiST
    # index), then that point's geodesic distance is measured: hence "about". Measuring
    # the whole polygon on the spheroid gives the same figure twenty times slower.
    distances: dict[int, float] = dict(
        conn.execute(
            text(
                """
                SELECT p.i, ST_Distance(ST_ClosestPoint(w.geom, p.g)::geography, p.g::geography)
                FROM (
                    SELECT i, ST_SetSRID(ST_MakePoint(x, y), 4326) AS g
                    FROM unnest(CAST(:lons AS float8[]), CAST(:lats AS float8[]))
                         WITH ORDINALITY AS u(x, y, i)
                ) AS p
                CROSS JOIN LATERAL (
                    SELECT geom FROM wards WHERE retired_at IS NULL
                    ORDER BY geom <-> p.g LIMIT 1
                ) AS w
                """
            ),
            {"lons": points["lon"].tolist(), "lats": points["lat"].tolist()},
        ).all()
    )
    reasons = {}
    for i, line in enumerate(lines, start=1):
        distance = distances.get(i)
        if distance is None:
            detail = "no wards have been loaded"
        elif distance >= 1000:
            detail = f"about {distance / 1000:,.1f} km from the nearest ward"
        else:
            detail = f"about {round(distance, -1):,.0f} m from the nearest ward"
        lat, lon = points.loc[line, "lat"], points.loc[line, "lon"]
        reasons[line] = f"outside the service area: ({lat:.6f}, {lon:.6f}) is {detail}"
    return reasons


def _report(
    progress: ProgressCallback | None, phase: Phase, done: int, total: int, rows: int
) -> None:
    if progress is not None:
        progress(
            ImportProgress(phase=phase, done_bytes=min(done, total), total_bytes=total, rows=rows)
        )


class _RejectsFile:
    """The rejects CSV, written to a temporary file beside it and moved into place by ``keep``.

    Until ``keep`` is called nothing is visible at the final path, so a refused import
    leaves no half-written rejects file behind.
    """

    def __init__(self, path: Path, header: list[str]) -> None:
        self.path = path
        self.header = header
        self._kept = False

    def __enter__(self) -> _RejectsFile:
        folder = self.path.parent
        try:
            fd, name = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=folder)
        except OSError as error:
            raise InvalidInputError(
                "rejects_path",
                N_("cannot write in {folder}: {reason}"),
                folder=folder,
                reason=error.strerror or str(error),
            ) from error
        self._temp = Path(name)
        os.chmod(fd, 0o644)  # mkstemp makes it private; it is an ordinary output file
        # utf-8-sig so that spreadsheet programs read Thai text correctly.
        self._handle = os.fdopen(fd, "w", encoding="utf-8-sig", newline="")
        self._writer = csv.writer(self._handle)
        # Rejects are opened in spreadsheets to be fixed, and every cell but the line
        # number (header included) is text from the imported file.
        self._writer.writerow(["line", "reason", *map(spreadsheet_safe, self.header)])
        return self

    def write_chunk(self, chunk: _Chunk, rejects: _Rejects) -> None:
        """Add a chunk's rejected rows, in line order, each as it was read."""
        raw = dict(zip(chunk.lines, chunk.rows, strict=True)) | dict(chunk.malformed)
        for line in sorted(rejects.reasons):
            reason = spreadsheet_safe(rejects.reasons[line])
            self._writer.writerow([line, reason, *map(spreadsheet_safe, raw[line])])

    def keep(self) -> None:
        """Move the finished file into place when the block ends."""
        self._kept = True

    def __exit__(self, *exc: object) -> None:
        self._handle.close()
        if self._kept and exc[0] is None:
            os.replace(self._temp, self.path)
        else:
            self._temp.unlink(missing_ok=True)
