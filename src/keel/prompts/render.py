"""Strict rendering: typed variables in, OpenAI-shaped message dicts out, precise errors otherwise.

Variables are checked before any template runs: unknown names are refused, defaults from the
input schema are applied, each value is validated against its JSON Schema, and a missing variable
is reported with the file and line where a template reads it. Anything that still goes wrong
inside a template (a missing attribute, an unsafe operation the sandbox blocks, a failing filter)
is reported at the template's line in the prompt file or partial.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from jinja2 import TemplateError, UndefinedError
from jinja2.sandbox import SecurityError

from ..errors import PromptRenderError
from ._templates import CompiledPrompt

if TYPE_CHECKING:
    from .spec import PromptSpec


def render(spec: PromptSpec, compiled: CompiledPrompt, variables: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The spec's messages rendered with `variables` (after defaults and validation)."""
    values = resolve_variables(spec, compiled, variables)
    rendered = []
    for message, template in zip(spec.messages, compiled.messages):
        try:
            content = template.render(values)
        except Exception as exc:  # a template is user code: any failure is a render error
            raise _template_error(spec, compiled, exc) from exc
        item: dict[str, Any] = {"role": message.role, "content": content}
        if message.name is not None:
            item["name"] = message.name
        rendered.append(item)
    return rendered


def resolve_variables(spec: PromptSpec, compiled: CompiledPrompt, variables: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults applied, unknown names refused, every value validated against its schema."""
    unknown = sorted(name for name in variables if name not in spec.input)
    if unknown:
        names = ", ".join(repr(name) for name in unknown)
        raise PromptRenderError(
            f"{spec.source_file}: prompt {spec.name!r} got unknown variable(s) {names}; declared variables: {_declared(spec)}.",
            prompt=spec.name, file=spec.source_file, variables=unknown, declared=sorted(spec.input),
        )
    values = dict(variables)
    for name, schema in spec.input.items():
        if name in values:
            _validate(spec, name, schema, values[name])
        elif "default" in schema:
            values[name] = copy.deepcopy(schema["default"])
        else:
            raise _missing(spec, compiled, name)
    return values


def _declared(spec: PromptSpec) -> str:
    return ", ".join(sorted(spec.input)) or "(none)"


def _missing(spec: PromptSpec, compiled: CompiledPrompt, name: str) -> PromptRenderError:
    file, line = compiled.usages.get(name) or (spec.source_file, spec.input_line(name))
    used = "used" if name in compiled.usages else "declared"
    where = f"{file}:{line}" if line else file
    return PromptRenderError(
        f"{where}: missing variable {name!r} for prompt {spec.name!r} ({used} here); declared variables: {_declared(spec)}.",
        prompt=spec.name, variable=name, file=file, line=line,
    )


def _validate(spec: PromptSpec, name: str, schema: dict[str, Any], value: Any) -> None:
    validator = _validator(schema)
    if validator.is_valid(value):
        return
    from jsonschema.exceptions import best_match

    error = best_match(validator.iter_errors(value))
    if error is None:
        return
    path = "".join(f"[{step!r}]" for step in error.absolute_path)
    if error.validator == "type":
        detail = f"expected {_expected(error.validator_value)}, got {error.instance!r} ({type(error.instance).__name__})"
    else:
        detail = error.message
    file, line = spec.source_file, spec.input_line(name)
    where = f"{file}:{line}" if line else file
    raise PromptRenderError(
        f"{where}: variable {name!r}{path} of prompt {spec.name!r}: {detail}.",
        prompt=spec.name, variable=name, expected=schema.get("type"), value=value, file=file, line=line,
    )


_VALIDATORS: dict[bytes, Any] = {}
_MAX_VALIDATORS = 1024
_KEY_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def _validator(schema: dict[str, Any]) -> Any:
    """The validator of a variable's schema, built once per schema content: building one costs
    more than validating a value with it, and a prompt's schemas are the same on every call."""
    from jsonschema import Draft202012Validator  # imported on first use: `import keel` stays light

    try:
        key = orjson.dumps(schema, option=_KEY_OPTIONS, default=_typed)
    except TypeError:  # not JSON-like (e.g. non-string keys): not worth caching
        return Draft202012Validator(schema)
    validator = _VALIDATORS.get(key)
    if validator is None:
        if len(_VALIDATORS) >= _MAX_VALIDATORS:
            _VALIDATORS.clear()
        validator = _VALIDATORS[key] = Draft202012Validator(copy.deepcopy(schema))
    return validator


def _typed(value: Any) -> str:
    """Keeps a date apart from the string it would serialise as."""
    return f"{type(value).__qualname__}:{value!r}"


def _expected(types: Any) -> str:
    return " or ".join(types) if isinstance(types, list) else str(types)


def _template_error(spec: PromptSpec, compiled: CompiledPrompt, exc: BaseException) -> PromptRenderError:
    file, line = _location(compiled, exc)
    where = f"{file}:{line}" if line else spec.source_file
    if isinstance(exc, SecurityError):
        detail = f"unsafe template operation blocked by the sandbox: {exc}"
    elif isinstance(exc, UndefinedError):
        detail = f"undefined value: {exc.message}"
    elif isinstance(exc, TemplateError):
        detail = exc.message or type(exc).__name__
    else:
        detail = f"{type(exc).__name__}: {exc}"
    return PromptRenderError(f"{where}: {detail.rstrip('.')} (prompt {spec.name!r}).", prompt=spec.name, file=file or spec.source_file, line=line)


def _location(compiled: CompiledPrompt, exc: BaseException) -> tuple[str | None, int | None]:
    """The innermost template frame in the traceback, mapped to the user's file and line."""
    found: tuple[str | None, int | None] = (None, None)
    tb = exc.__traceback__
    while tb is not None:
        location = compiled.locations.get(tb.tb_frame.f_code.co_filename)
        if location is not None:
            found = (location.file, location.line(tb.tb_lineno))
        tb = tb.tb_next
    return found
