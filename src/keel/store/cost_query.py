"""Cost totals per group, summed by the database (`keel cost report`).

    totals(engine, by, since, tags)     per group: calls, tokens, the exact sum of the known costs,
                                        the number of calls whose cost is unknown
    tag_names(engine, since, tags)      the tag names the calls in range carry

Dimensions: model, provider, prompt (name@the version's first 8 hex), status, day, week, month
and tag:NAME. A call without a value for a dimension (no prompt, no such tag, "") gets None.
Periods are UTC, like budget periods: the database groups by UTC day number
(started_at // 86400) and the days become ISO dates, ISO weeks (2026-W48) or months here.

Costs are stored as the decimal strings `str(Decimal)` writes, NULL when unknown. PostgreSQL
sums them exactly as NUMERIC. SQLite has no decimal type and its SUM of text is a float, so
there a cost is summed by its digits, without floats and without a row reaching Python:

- "0.ddd…" (nearly every cost; up to 36 decimals): grouped by its length, which fixes its number
  of decimals, and its decimals summed as integers 9 digits at a time (substr + CAST). A chunk
  is below 10^9, so a group's SUM fits in 64 bits for billions of calls.
- anything else ("0", "1.25", "1.5E-7", …): grouped by the string itself and multiplied out
  here, one Decimal step per distinct string in a group, not per call.

SQLite runs a statement on one core: a large table is summed in rowid ranges at once, one per
CPU, on their own connections, and the parts' groups added up here (`_sqlite_rows`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal, InvalidOperation
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, Integer, Numeric, Row, and_, case, cast, func, literal_column, select, true
from sqlalchemy.pool import QueuePool
from sqlalchemy.sql.expression import UnaryExpression
from sqlalchemy.sql.operators import custom_op

from ..errors import StoreError
from .schema import traces

PERIODS = ("day", "week", "month")

#: Decimal arithmetic that never rounds: a sum of costs keeps every digit.
EXACT = Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN)

#: Rows per part below which a SQLite table is summed in one statement: a thread costs more than it saves.
PART_ROWS = 100_000
_ROWID = literal_column("traces.rowid", Integer)

FIGURES = ("calls", "prompt_tokens", "completion_tokens", "cached_tokens")
_EPOCH = date(1970, 1, 1)
_DIGITS, _CHUNKS = 9, 4  # 36 decimals: more than any "0.ddd…" str(Decimal) writes at its 28-digit default


def totals(
    engine: Engine, by: Sequence[str], since: float | None = None, tags: Mapping[str, str] | None = None,
    part_rows: int = PART_ROWS,
) -> list[dict[str, Any]]:
    """One dict per group of `by`: key (a tuple, one value per dimension, None for none),
    calls, prompt_tokens, completion_tokens, cached_tokens, cost (the exact Decimal sum of the
    known costs; None when no call's cost is known) and unknown_cost_calls."""
    keys = [_key_columns(name, engine.dialect.name) for name in by]
    where = _where(since, tags)
    if engine.dialect.name == "sqlite":
        return _sqlite_totals(engine, by, keys, where, part_rows)
    with engine.connect() as connection:
        rows = _grouped(connection, keys, where, [func.sum(cast(traces.c.cost, Numeric))])
    added = _add_up(by, keys, rows, tail=0)
    return _report([(key, figures, figures[5]) for (key,), figures in added.items()])


def tag_names(engine: Engine, since: float | None = None, tags: Mapping[str, str] | None = None) -> list[str]:
    """Every tag name carried by a call started since `since` that carries `tags`, sorted."""
    if engine.dialect.name == "sqlite":
        pairs = func.json_each(traces.c.tags).table_valued("key").alias("pairs")
        query = select(pairs.c.key).select_from(traces.join(pairs, true())).where(pairs.c.key.is_not(None))
    else:
        query = select(func.jsonb_object_keys(traces.c.tags)).where(func.jsonb_typeof(traces.c.tags) == "object")
    with engine.connect() as connection:
        return sorted(str(row[0]) for row in connection.execute(query.where(*_where(since, tags)).distinct()))


def _key_columns(name: str, dialect: str) -> list[ColumnElement[Any]]:
    """The SQL expressions a dimension groups by (the prompt takes two: its name and version)."""
    c = traces.c
    if name.startswith("tag:"):
        return [c.tags[name[4:]].as_string()]
    if name == "prompt":
        return [_bare(c.prompt_name, dialect), func.substr(c.prompt_version, 1, 8)]
    if name in PERIODS:
        day = c.started_at / literal_column("86400")
        return [cast(day, Integer) if dialect == "sqlite" else cast(func.floor(day), Integer)]
    if name in ("model", "provider", "status"):
        return [_bare(c[name], dialect)]
    raise ValueError(f"cannot group traces by {name!r}")


def _bare(column: ColumnElement[Any], dialect: str) -> ColumnElement[Any]:
    """The column, on SQLite behind a no-op unary plus: it keeps the planner from walking
    ix_traces_model_started_at to group by model, one table lookup per call, where a scan and a
    sort take two thirds of the time."""
    return UnaryExpression(column, operator=custom_op("+"), type_=column.type) if dialect == "sqlite" else column


def _where(since: float | None, tags: Mapping[str, str] | None) -> list[ColumnElement[bool]]:
    where = [traces.c.tags[key].as_string() == value for key, value in (tags or {}).items()]
    return where if since is None else [traces.c.started_at >= since, *where]


def _grouped(
    connection: Connection, keys: list[list[ColumnElement[Any]]], where: list[ColumnElement[bool]],
    sums: list[ColumnElement[Any]],
) -> list[Row[Any]]:
    """Rows of (keys…, calls, prompt/completion/cached tokens, calls of known cost, sums…),
    grouped by the keys' labels so each key is computed once a row."""
    labelled = [column.label(f"k{i}") for i, column in enumerate(c for key in keys for c in key)]
    tokens = [func.sum(traces.c[name]) for name in FIGURES[1:]]
    query = select(*labelled, func.count(), *tokens, func.count(traces.c.cost), *sums).where(*where)
    return list(connection.execute(query.group_by(*(literal_column(c.name) for c in labelled))))


def _sqlite_totals(
    engine: Engine, by: Sequence[str], keys: list[list[ColumnElement[Any]]], where: list[ColumnElement[bool]],
    part_rows: int,
) -> list[dict[str, Any]]:
    cost = traces.c.cost
    # "0.ddd…" (from "0." up to "0/", the character after "."): its length; else the string itself.
    plain = and_(cost >= literal_column("'0.'"), cost < literal_column("'0/'"),
                 func.length(cost) <= literal_column(str(2 + _DIGITS * _CHUNKS)))
    shape = case((plain, func.length(cost)), else_=cost)
    chunks = [func.sum(_chunk(cost, 0))]
    # Chunk i holds digits only in strings longer than 2 + 9i: most costs fill one chunk, and
    # skipping the others' substr and CAST makes the statement ~5% faster.
    longer = [func.length(cost) > literal_column(str(2 + _DIGITS * i)) for i in range(1, _CHUNKS)]
    chunks += [func.sum(case((long, _chunk(cost, i)))) for i, long in enumerate(longer, 1)]
    added = _add_up(by, keys, _sqlite_rows(engine, [*keys, [shape]], where, chunks, part_rows), tail=1)
    return _report([(key, figures, _sqlite_cost(shape, figures[4], figures[5:])) for (key, shape), figures in added.items()])


def _sqlite_rows(
    engine: Engine, keys: list[list[ColumnElement[Any]]], where: list[ColumnElement[bool]],
    sums: list[ColumnElement[Any]], part_rows: int,
) -> list[Row[Any]]:
    """_grouped's rows, the table split into rowid ranges of at least `part_rows` rows, one per
    CPU (up to 4), summed at once on their own connections: SQLite runs a statement on one core
    and lets go of the GIL while it does. The parts' groups are added up by _add_up. Each part
    reads its own snapshot, and rows added after the report began are left out."""
    with engine.connect() as connection:
        low, high = connection.execute(select(func.min(_ROWID), func.max(_ROWID)).select_from(traces)).one()
        count = 1 if low is None else min(os.cpu_count() or 1, 4, (high - low + 1) // max(part_rows, 1))
        if not isinstance(engine.pool, QueuePool):  # an in-memory database: one per thread
            count = 1
        if count <= 1:
            return _grouped(connection, keys, where, sums)
    step = (high - low + 1) // count
    starts = [low + step * i for i in range(count)] + [high + 1]

    def part(i: int) -> list[Row[Any]]:
        with engine.connect() as connection:
            return _grouped(connection, keys, [*where, _ROWID >= starts[i], _ROWID < starts[i + 1]], sums)

    with ThreadPoolExecutor(count, thread_name_prefix="keel-cost") as pool:
        return [row for rows in pool.map(part, range(count)) for row in rows]


def _chunk(cost: ColumnElement[Any], i: int) -> ColumnElement[Any]:
    """The i-th run of 9 decimals of a "0.ddd…" cost, as an integer."""
    return cast(func.substr(cost, literal_column(str(3 + _DIGITS * i)), literal_column(str(_DIGITS))), Integer)


def _sqlite_cost(shape: int | str | None, known_calls: int, chunk_sums: Sequence[int]) -> Decimal | None:
    """The exact sum of known costs of one shape, from the sums of their digit chunks."""
    if shape is None or not known_calls:
        return None
    if isinstance(shape, str):
        try:
            return EXACT.multiply(Decimal(shape), known_calls)
        except InvalidOperation:
            raise StoreError(f"a trace's cost, {shape!r}, is not a decimal number", retryable=False) from None
    decimals, total = shape - 2, Decimal(0)
    for i, chunk_sum in enumerate(chunk_sums):
        digits = min(_DIGITS, decimals - _DIGITS * i)  # a short string's last chunk has fewer digits
        if digits > 0:
            total = EXACT.add(total, EXACT.scaleb(Decimal(chunk_sum), -(_DIGITS * i + digits)))
    return total


def _add_up(
    by: Sequence[str], keys: list[list[ColumnElement[Any]]], rows: list[Row[Any]], tail: int
) -> dict[tuple[Any, ...], list[Any]]:
    """SQL rows → {(report key, the `tail` columns after the keys): the figures after those,
    added up}. Key columns become values (day numbers become days, weeks or months), so the SQL
    groups that land on one report key (the days of a month) are added up here."""
    width = sum(len(key) for key in keys)
    values: dict[tuple[Any, ...], tuple[str | None, ...]] = {}
    added: dict[tuple[Any, ...], list[Any]] = {}
    for row in rows:
        raw = tuple(row[:width])
        key = values.get(raw)
        if key is None:
            key = values[raw] = _report_key(by, keys, raw)
        slot, figures = (key, *row[width: width + tail]), row[width + tail:]
        sums = added.get(slot)
        if sums is None:
            added[slot] = list(figures)
            continue
        for i, figure in enumerate(figures):
            sums[i] = _plus(sums[i], figure)
    return added


def _plus(a: Any, b: Any) -> Any:
    """a + b for figures: None is no figure; Decimals add without rounding."""
    if a is None or b is None:
        return b if a is None else a
    return EXACT.add(a, b) if isinstance(a, Decimal) else a + b


def _report(entries: list[tuple[tuple[str | None, ...], list[Any], Decimal | None]]) -> list[dict[str, Any]]:
    """(report key, figures, known cost) entries → one dict per report key."""
    merged: dict[tuple[str | None, ...], dict[str, Any]] = {}
    for key, (calls, prompt, completion, cached, known, *_), cost in entries:
        total = merged.get(key)
        if total is None:
            total = merged[key] = {"key": key, **dict.fromkeys(FIGURES, 0), "cost": None, "unknown_cost_calls": 0}
        for name, figure in zip(FIGURES, (calls, prompt, completion, cached), strict=True):
            total[name] += figure or 0
        total["unknown_cost_calls"] += calls - known
        total["cost"] = _plus(total["cost"], cost)
    return list(merged.values())


def _report_key(by: Sequence[str], keys: list[list[ColumnElement[Any]]], raw: tuple[Any, ...]) -> tuple[str | None, ...]:
    values, at = [], 0
    for name, key in zip(by, keys, strict=True):
        values.append(_value(name, raw[at: at + len(key)]))
        at += len(key)
    return tuple(values)


def _value(name: str, parts: Sequence[Any]) -> str | None:
    if name == "prompt":
        prompt, version = parts
        return f"{prompt}@{version or ''}" if prompt else None
    if name in PERIODS:
        day = _EPOCH + timedelta(days=int(parts[0]))
        return day.strftime({"day": "%Y-%m-%d", "week": "%G-W%V", "month": "%Y-%m"}[name])
    return None if parts[0] is None or parts[0] == "" else str(parts[0])
