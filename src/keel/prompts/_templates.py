"""Compiling a prompt's message templates and partials in a Jinja2 sandbox, with exact error positions.

Everything a template can reach is resolved when the prompt is loaded: partials are read once
(so the version hash and the rendered text always agree), include names must be string literals,
and every variable a template reads must be declared under `input:`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import BaseLoader, StrictUndefined, Template, TemplateNotFound, TemplateSyntaxError, meta, nodes
from jinja2.loaders import split_template_path
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from ..errors import PromptRenderError

MAX_PARTIAL_BYTES = 1024 * 1024
MAX_REPEAT = 1_000_000
MAX_EXPONENT = 1_000

#: Reads a partial: (name, including file, line) → (text, display file).
PartialReader = Callable[[str, str, int], tuple[str, str]]


class PromptEnvironment(ImmutableSandboxedEnvironment):
    """Jinja2's sandbox (no unsafe attributes, no mutating the caller's lists and dicts), plus a guard
    on `*` and `**` against `{{ 'x' * 10**12 }}`-style memory bombs."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, partials: dict[str, tuple[str, str]]) -> None:
        super().__init__(
            loader=_PartialLoader(partials),
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
        )

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "**":
            if isinstance(right, int) and abs(right) > MAX_EXPONENT:
                raise SecurityError(f"exponent {right} is too large (limit {MAX_EXPONENT}).")
            return operator.pow(left, right)
        for seq, count in ((left, right), (right, left)):
            if isinstance(seq, (str, list, tuple)) and isinstance(count, int) and len(seq) * count > MAX_REPEAT:
                raise SecurityError(f"repetition would make {len(seq) * count} items (limit {MAX_REPEAT}).")
        return operator.mul(left, right)


class _PartialLoader(BaseLoader):
    def __init__(self, partials: dict[str, tuple[str, str]]) -> None:
        self.partials = partials

    def get_source(self, environment: Any, template: str) -> tuple[str, str, Callable[[], bool]]:
        if template not in self.partials:
            raise TemplateNotFound(template)
        text, filename = self.partials[template]
        return text, filename, lambda: True


@dataclass(frozen=True)
class Location:
    """Maps a template's line numbers to a file: file line = `first_line` + template line - 1."""

    file: str
    first_line: int

    def line(self, template_line: int) -> int:
        return self.first_line + template_line - 1


@dataclass
class CompiledPrompt:
    env: PromptEnvironment
    messages: list[Template]
    #: Partial name → text, for the version hash.
    partials: dict[str, str]
    #: Jinja filename → where its lines are in the user's files.
    locations: dict[str, Location]
    #: Variable → (file, line) where a template first reads it.
    usages: dict[str, tuple[str, int]]


def compile_prompt(contents: list[str], locations: list[Location], read_partial: PartialReader, declared: set[str]) -> CompiledPrompt:
    """Parse every message and (recursively) every partial; check includes and variables; compile."""
    loaded: dict[str, tuple[str, str]] = {}
    env = PromptEnvironment(loaded)
    names = [f"{loc.file}#messages[{i}]" for i, loc in enumerate(locations)]
    where = dict(zip(names, locations))
    queue = [(name, _parse(env, text, where[name])) for text, name in zip(contents, names)]
    for name, tree in queue:
        for partial, line in _includes(tree, where[name]):
            if partial not in loaded:
                text, filename = read_partial(partial, where[name].file, line)
                loaded[partial] = (text, filename)
                where[filename] = Location(filename, 1)
                queue.append((filename, _parse(env, text, where[filename], filename)))
    _check_declared(env, queue, len(names), where, declared)
    messages = [_compile(env, tree, name) for name, tree in queue[: len(names)]]
    partials = {name: text for name, (text, _) in loaded.items()}
    return CompiledPrompt(env, messages, partials, where, _usages(queue, where))


def _parse(env: PromptEnvironment, text: str, location: Location, name: str | None = None) -> nodes.Template:
    try:
        return env.parse(text, name, name)
    except TemplateSyntaxError as exc:
        line = location.line(exc.lineno)
        raise PromptRenderError(
            f"{location.file}:{line}: template syntax error: {exc.message}",
            file=location.file, line=line, jinja_message=exc.message,
        ) from None


def _compile(env: PromptEnvironment, tree: nodes.Template, name: str) -> Template:
    code = env.compile(tree, name, name)
    # A flat copy of the globals, not Jinja's ChainMap over the environment's: every render
    # copies them into its context, and iterating a ChainMap made that most of a render's time.
    return env.template_class.from_code(env, code, dict(env.make_globals(None)), None)


def _includes(tree: nodes.Template, location: Location) -> Iterator[tuple[str, int]]:
    """(partial name, file line) of each include/import/extends in `tree`."""
    for node in tree.find_all((nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
        line = location.line(node.lineno)
        target = node.template
        if not (isinstance(target, nodes.Const) and isinstance(target.value, str)):
            raise PromptRenderError(
                f"{location.file}:{line}: partial names must be string literals, so the prompt's version covers them.",
                file=location.file, line=line,
            )
        yield target.value, line


def _check_declared(
    env: PromptEnvironment, trees: list[tuple[str, nodes.Template]], message_count: int, where: dict[str, Location], declared: set[str]
) -> None:
    allowed = declared | set(env.globals)
    assigned = {n.name for _, tree in trees[:message_count] for n in tree.find_all(nodes.Name) if n.ctx == "store"}
    for index, (name, tree) in enumerate(trees):
        extra = allowed if index < message_count else allowed | assigned
        for variable in sorted(meta.find_undeclared_variables(tree) - extra):
            line = where[name].line(_first_read(tree, variable))
            listing = ", ".join(sorted(declared)) or "(none)"
            raise PromptRenderError(
                f"{where[name].file}:{line}: the template uses variable {variable!r}, which is not declared under "
                f"`input:` (declared: {listing}).",
                file=where[name].file, line=line, variable=variable,
            )


def _first_read(tree: nodes.Template, variable: str) -> int:
    return min((n.lineno for n in tree.find_all(nodes.Name) if n.name == variable and n.ctx == "load"), default=1)


def _usages(trees: list[tuple[str, nodes.Template]], where: dict[str, Location]) -> dict[str, tuple[str, int]]:
    usages: dict[str, tuple[str, int]] = {}
    for name, tree in trees:
        for node in tree.find_all(nodes.Name):
            if node.ctx == "load" and node.name not in usages:
                usages[node.name] = (where[name].file, where[name].line(node.lineno))
    return usages


def directory_reader(folder: Path) -> PartialReader:
    """Read partials from `folder` (no `..`, no symlinks leading out of it, at most 1 MB each)."""

    def read(name: str, file: str, line: int) -> tuple[str, str]:
        path = _partial_path(folder, name)
        if path is None:
            raise _not_found(name, str(folder), file, line)
        if path.stat().st_size > MAX_PARTIAL_BYTES:
            raise PromptRenderError(f"{path}: partial is over {MAX_PARTIAL_BYTES} bytes.", file=str(path), partial=name)
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except UnicodeDecodeError:
            raise PromptRenderError(f"{path}: partial is not UTF-8 text.", file=str(path), partial=name) from None

    return read


def _partial_path(folder: Path, name: str) -> Path | None:
    try:
        path = folder.joinpath(*split_template_path(name))
    except TemplateNotFound:
        return None
    inside = path.resolve().is_relative_to(folder.resolve())
    return path if inside and path.is_file() else None


def mapping_reader(partials: dict[str, str], label: str) -> PartialReader:
    """Read partials from a stored definition's `partials` mapping."""

    def read(name: str, file: str, line: int) -> tuple[str, str]:
        if name not in partials:
            raise _not_found(name, label, file, line)
        return partials[name], f"{label}/{name}"

    return read


def _not_found(name: str, folder: str, file: str, line: int) -> PromptRenderError:
    return PromptRenderError(
        f"{file}:{line}: partial {name!r} not found in {folder.rstrip('/')}/.",
        partial=name, folder=folder, file=file, line=line,
    )
