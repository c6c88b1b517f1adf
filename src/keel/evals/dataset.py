"""Eval cases: written inline in the suite, or read from a JSONL or CSV file beside it.

Each case has an `id`, the prompt's `vars`, the `expected` values assertions compare with, `tags`,
and optionally its own `assertions` and score `threshold`. CSV columns map onto cases as:
`id`, `tags` (comma-separated), `expected` (a whole value) or `expected.KEY`, and every other
column is a variable (or write `vars.NAME`).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..errors import ConfigError

CASE_KEYS = ("id", "vars", "expected", "tags", "assertions", "threshold")


class SuiteError(ConfigError):
    """An eval suite or its dataset is wrong; `file`, `line` and `key` say where when known."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None, key: str | None = None) -> None:
        where = f"{file}:{line}: " if file and line else (f"{file}: " if file else "")
        super().__init__(where + message, file=file, line=line, key=key)


class Case(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1)
    vars: dict[str, Any] = Field(default_factory=dict)
    expected: Any = None
    tags: list[str] = Field(default_factory=list)
    #: Extra assertions for this case only (validated by the suite, which knows their types).
    assertions: list[dict[str, Any]] = Field(default_factory=list)
    #: The weighted score this case needs to pass (default: the suite's, normally 1.0).
    threshold: float | None = Field(default=None, ge=0, le=1)


def read_cases(path: Path) -> list[dict[str, Any]]:
    """Raw case mappings from a .jsonl or .csv file; errors name the file and line."""
    if not path.is_file():
        raise SuiteError(f"dataset file {path} does not exist; fix `dataset.file` (it is relative to the suite file).",
                         file=str(path), key="dataset.file")
    if path.suffix == ".jsonl":
        return _read_jsonl(path)
    if path.suffix == ".csv":
        return _read_csv(path)
    raise SuiteError(f"dataset file {path.name}: unknown format; use a .jsonl or .csv file.", file=str(path), key="dataset.file")


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    cases = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise SuiteError(f"not valid JSON ({exc.msg} at column {exc.colno}); each line must be one JSON object.",
                             file=str(path), line=number) from None
        if not isinstance(data, dict):
            raise SuiteError(f"a case must be a JSON object, not {type(data).__name__}.", file=str(path), line=number)
        cases.append(data | {"_line": number})
    return cases


def _read_csv(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    if not rows or not any(cell.strip() for cell in rows[0]):
        raise SuiteError("the CSV file has no header row; its first line must name the columns (e.g. id,text,expected).",
                         file=str(path), line=1)
    header = [cell.strip() for cell in rows[0]]
    if len(set(header)) != len(header) or not all(header):
        raise SuiteError(f"the header names each column once and none is empty (got {rows[0]}).", file=str(path), line=1)
    cases = []
    for number, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise SuiteError(f"{len(row)} cells but the header has {len(header)} columns.", file=str(path), line=number)
        cases.append(_csv_case(dict(zip(header, row))) | {"_line": number})
    return cases


def _csv_case(row: dict[str, str]) -> dict[str, Any]:
    case: dict[str, Any] = {"vars": {}}
    for column, value in row.items():
        if column == "id":
            case["id"] = value
        elif column == "tags":
            case["tags"] = [t.strip() for t in value.split(",") if t.strip()]
        elif column == "expected":
            case["expected"] = value
        elif column.startswith("expected."):
            case.setdefault("expected", {})[column.removeprefix("expected.")] = value
        else:
            case["vars"][column.removeprefix("vars.")] = value
    return case


def build_cases(raw: list[dict[str, Any]], file: str) -> list[Case]:
    """Validate raw case mappings, giving each a default id (case-N) and refusing duplicate ids."""
    cases, seen = [], set()
    for index, data in enumerate(raw):
        data = dict(data)
        line = data.pop("_line", None)
        unknown = [k for k in data if k not in CASE_KEYS]
        if unknown:
            raise SuiteError(f"unknown key {unknown[0]!r} in case {index + 1}; allowed keys: {', '.join(CASE_KEYS)}.",
                             file=file, line=line, key=unknown[0])
        data.setdefault("id", f"case-{index + 1}")
        data["id"] = str(data["id"])
        try:
            case = Case.model_validate(data)
        except ValueError as exc:
            raise SuiteError(f"case {data['id']!r}: {_first_problem(exc)}", file=file, line=line) from None
        if case.id in seen:
            raise SuiteError(f"two cases have the id {case.id!r}; ids must be unique.", file=file, line=line, key="id")
        seen.add(case.id)
        cases.append(case)
    return cases


def _first_problem(exc: Any) -> str:
    error = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in error["loc"])
    return f"{where}: {error['msg']} (got {error.get('input')!r})"
