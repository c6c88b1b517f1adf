"""Import a promptfoo config (`promptfooconfig.yaml`) as a Keel eval suite.

Prompts become inline prompts, providers map to configured Keel models, tests become cases with
their assertions. Whatever has no Keel equivalent is listed, never silently dropped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError

SIMPLE = {"equals": "equals", "contains": "contains", "not-contains": "not-contains", "starts-with": "starts-with"}
CASELESS = {"icontains": "contains", "not-icontains": "not-contains"}
WHOLE_VAR = re.compile(r"^\{\{\s*(\w+)\s*\}\}$")


def read_config(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found. Give the path of a promptfooconfig.yaml.") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a promptfoo config is a YAML mapping with prompts, providers and tests.")
    return data


def convert(config: dict[str, Any], base: Path, model_for: Callable[[str], str | None]) -> tuple[dict[str, Any], list[str]]:
    """(the Keel suite as a dict, what could not be carried over)."""
    skipped: list[str] = []
    prompts = [_prompt(p, i, base, skipped) for i, p in enumerate(config.get("prompts") or [])]
    models = [m for m in (_model(p, model_for, skipped) for p in config.get("providers") or []) if m]
    default = (config.get("defaultTest") or {}).get("assert") or []
    cases, assertions = [], [a for a in (_assertion(x, skipped, "defaultTest") for x in default) if a]
    for index, test in enumerate(config.get("tests") or []):
        cases.append(_case(test, index, skipped))
    for key in sorted(set(config) - {"description", "prompts", "providers", "tests", "defaultTest"}):
        skipped.append(f"top-level key {key!r}")
    if not prompts or not models or not cases:
        raise ConfigError("The promptfoo config has no usable " + ", ".join(
            n for n, v in (("prompts", prompts), ("providers", models), ("tests", cases)) if not v) + f". Skipped: {skipped}")
    suite = {"description": config.get("description") or "imported from promptfoo", "prompts": [p for p in prompts if p],
             "models": models, "dataset": {"cases": cases}, "assertions": assertions}
    return suite, skipped


def _prompt(item: Any, index: int, base: Path, skipped: list[str]) -> dict[str, Any] | None:
    label = f"prompt{index + 1}"
    if isinstance(item, dict):
        label = str(item.get("label") or item.get("id") or label)
        item = item.get("raw") or item.get("id")
    text = str(item)
    if text.startswith("file://"):
        text = (base / text.removeprefix("file://")).read_text(encoding="utf-8")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", label).strip("-") or f"prompt{index + 1}"
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            return {"name": name, "messages": json.loads(stripped)}
        except json.JSONDecodeError:
            skipped.append(f"prompt {name}: looks like a JSON chat but does not parse")
            return None
    return {"name": name, "messages": [{"role": "user", "content": text}]}


def _model(item: Any, model_for: Callable[[str], str | None], skipped: list[str]) -> str | None:
    ident = str(item.get("id") if isinstance(item, dict) else item)
    model = model_for(ident.split(":")[-1])
    if model is None:
        skipped.append(f"provider {ident!r}: no Keel model serves {ident.split(':')[-1]!r}; add an alias in keel.toml")
    return model


def _case(test: dict[str, Any], index: int, skipped: list[str]) -> dict[str, Any]:
    where = test.get("description") or f"test {index + 1}"
    variables = dict(test.get("vars") or {})
    asserts = [a for a in (_assertion(x, skipped, where) for x in test.get("assert") or []) if a]
    case: dict[str, Any] = {"id": f"t{index + 1}", "vars": variables, "expected": dict(variables)}
    if asserts:
        case["assertions"] = asserts
    return case


def _assertion(item: dict[str, Any], skipped: list[str], where: str) -> dict[str, Any] | None:
    kind, value = item.get("type", ""), item.get("value")
    out: dict[str, Any] | None = None
    if kind in SIMPLE:
        out = {"type": SIMPLE[kind], "value": _value(value)}
    elif kind in CASELESS:
        out = {"type": CASELESS[kind], "value": _value(value), "case_sensitive": False}
    elif kind == "regex":
        out = {"type": "regex", "pattern": str(value)}
    elif kind == "is-json":
        out = {"type": "json-valid"} if value is None else {"type": "json-schema", "schema": value}
    elif kind == "llm-rubric":
        out = {"type": "llm-judge", "rubric": str(value)}
    elif kind == "similar":
        out = {"type": "similar", "value": _value(value), "threshold": float(item.get("threshold", 0.75))}
    elif kind == "latency":
        out = {"type": "latency", "max_ms": float(item.get("threshold", 0))}
    elif kind == "cost":
        out = {"type": "cost", "max": item.get("threshold", 0)}
    if out is None:
        skipped.append(f"{where}: assertion type {kind!r} has no Keel equivalent")
        return None
    if "weight" in item:
        out["weight"] = item["weight"]
    return out


def _value(value: Any) -> Any:
    """A whole-variable template (`{{answer}}`) becomes a reference to the case's expected value."""
    match = WHOLE_VAR.match(value) if isinstance(value, str) else None
    return {"expected": match.group(1)} if match else value


def to_yaml(suite: dict[str, Any]) -> str:
    return yaml.safe_dump(suite, sort_keys=False, allow_unicode=True, width=100)
