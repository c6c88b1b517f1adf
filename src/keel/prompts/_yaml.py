"""Safe YAML reading that keeps node positions, so every error can name a file, line and column.

Only plain JSON data is accepted: mappings with string keys, sequences, strings, integers, finite
floats, booleans and null. Python tags, timestamps, binary, sets, aliases and duplicate keys are
refused (no aliases rules out "billion laughs" documents).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from ..errors import PromptError

_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_TAG + name for name in ("str", "int", "float", "bool", "null")}
_NON_FINITE = {".nan", ".inf", "+.inf", "-.inf"}


@dataclass(frozen=True)
class Document:
    """Parsed YAML data plus its node tree (None for an empty document)."""

    data: Any
    root: Node | None
    file: str


def read_document(path: Path, *, max_bytes: int, fast: bool = False) -> Document:
    """Read and parse `path`, refusing files over `max_bytes`."""
    file = str(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise PromptError(f"{file}: file is {size} bytes; the limit is {max_bytes} bytes.", file=file, size=size)
    raw = path.read_bytes()[: max_bytes + 1]
    if len(raw) > max_bytes:
        raise PromptError(f"{file}: file is over the limit of {max_bytes} bytes.", file=file, size=len(raw))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PromptError(f"{file}: not UTF-8 text (byte {exc.start}).", file=file) from None
    return parse_document(text, file, fast=fast)


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses aliases where they are used (anchors would let 1 KB expand to GBs)."""

    file = ""

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark
            line, column = mark.line + 1, mark.column + 1
            raise PromptError(
                f"{self.file}:{line}:{column}: YAML aliases are not supported; write the value out.",
                file=self.file, line=line, column=column,
            )
        return super().compose_node(parent, index)  # type: ignore[no-any-return]


_FastLoader: Any = getattr(yaml, "CSafeLoader", None)


def parse_document(text: str, file: str, *, fast: bool = False) -> Document:
    """Parse YAML `text`; errors name `file`, line and column (1-based).

    `fast` uses libyaml when installed (for big machine-written files); an alias is then reported
    at its anchor rather than where it is used.
    """
    loader: Any = _FastLoader(text) if fast and _FastLoader is not None else _Loader(text)
    loader.file = file
    try:
        root = loader.get_single_node()
        if root is None:
            return Document(None, None, file)
        _check_node(root, file, set())
        return Document(loader.construct_document(root), root, file)
    except yaml.MarkedYAMLError as exc:
        raise _yaml_error(exc, file) from None
    except yaml.YAMLError as exc:
        raise PromptError(f"{file}: invalid YAML: {exc}", file=file, line=None, column=None) from None
    except RecursionError:
        raise PromptError(f"{file}: YAML is nested too deeply.", file=file, line=None, column=None) from None
    finally:
        loader.dispose()


def _yaml_error(exc: yaml.MarkedYAMLError, file: str) -> PromptError:
    mark = exc.problem_mark or exc.context_mark
    line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
    problem = exc.problem or exc.context or "invalid YAML"
    if exc.context and exc.problem and exc.context_mark is not None:
        problem += f" ({exc.context} at line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1})"
    where = f"{file}:{line}:{column}" if mark else file
    return PromptError(f"{where}: invalid YAML: {problem}", file=file, line=line, column=column, problem=problem)


def node_error(node: Node, file: str, message: str) -> PromptError:
    line, column = node.start_mark.line + 1, node.start_mark.column + 1
    return PromptError(f"{file}:{line}:{column}: {message}", file=file, line=line, column=column)


def _check_node(node: Node, file: str, seen: set[int]) -> None:
    if id(node) in seen:  # only the libyaml loader lets aliases through
        raise node_error(node, file, "YAML anchors and aliases are not supported; write the value out.")
    seen.add(id(node))
    if isinstance(node, ScalarNode):
        _check_scalar(node, file)
    elif isinstance(node, SequenceNode):
        _expect_tag(node, _TAG + "seq", file)
        for item in node.value:
            _check_node(item, file, seen)
    elif isinstance(node, MappingNode):
        _expect_tag(node, _TAG + "map", file)
        _check_mapping(node, file, seen)


def _check_mapping(node: MappingNode, file: str, seen: set[int]) -> None:
    keys: set[str] = set()
    for key, value in node.value:
        if not isinstance(key, ScalarNode) or key.tag != _TAG + "str":
            raise node_error(key, file, "mapping keys must be strings (quote the key).")
        if key.value in keys:
            raise node_error(key, file, f"duplicate key {key.value!r}.")
        keys.add(key.value)
        _check_node(value, file, seen)


def _check_scalar(node: ScalarNode, file: str) -> None:
    _expect_tag(node, None, file)
    if node.tag == _TAG + "float" and node.value.lower() in _NON_FINITE:
        raise node_error(node, file, f"{node.value!r} is not a finite number.")


def _expect_tag(node: Node, tag: str | None, file: str) -> None:
    allowed = {tag} if tag else _SCALAR_TAGS
    if node.tag not in allowed:
        kind = node.tag.removeprefix(_TAG)
        raise node_error(node, file, f"values of type {kind!r} are not allowed; use plain strings, numbers, lists and mappings (quote dates).")


def find_node(root: Node | None, loc: tuple[Any, ...], *, value: bool = False) -> Node | None:
    """The deepest node along `loc` (mapping keys / sequence indices).

    A mapping step ends on the key node (where the user wrote `key:`), or on the value with `value=True`.
    """
    node, found = root, root
    for step in loc:
        child = _child(node, step)
        if child is None:
            break
        node = child[1] if isinstance(child, tuple) else child
        found = child[0] if isinstance(child, tuple) and not value else node
    return found


def _child(node: Node | None, step: Any) -> Node | tuple[Node, Node] | None:
    if isinstance(node, MappingNode):
        return next(((k, v) for k, v in node.value if k.value == str(step)), None)
    if isinstance(node, SequenceNode) and isinstance(step, int) and 0 <= step < len(node.value):
        return node.value[step]
    return None


def position(node: Node | None) -> tuple[int | None, int | None]:
    """1-based (line, column) of `node`, or (None, None)."""
    if node is None:
        return None, None
    return node.start_mark.line + 1, node.start_mark.column + 1


def content_start_line(node: Node) -> int:
    """1-based YAML line of the first character of a scalar's text (block scalars start below `|`)."""
    line = node.start_mark.line + 1
    if isinstance(node, ScalarNode) and node.style in ("|", ">"):
        return line + 1
    return line


def check_keys(doc: Document, loc: tuple[Any, ...], data: Any, allowed: list[str], what: str) -> None:
    """Refuse keys of the mapping at `loc` that are not in `allowed`, naming the key and the allowed ones."""
    if not isinstance(data, dict):
        return
    for key in data:
        if key not in allowed:
            line, column = position(find_node(doc.root, (*loc, key)))
            where = f"{doc.file}:{line}:{column}" if line else doc.file
            raise PromptError(
                f"{where}: unknown key {key!r} in {what}; allowed keys: {', '.join(allowed)}.",
                file=doc.file, line=line, column=column, key=key, allowed=list(allowed),
            )


def validation_error(exc: Any, doc: Document, what: str) -> PromptError:
    """A pydantic ValidationError as one PromptError listing each problem at its file:line:column."""
    problems, first = [], (None, None)
    for error in exc.errors(include_url=False):
        loc = tuple(error["loc"])
        line, column = position(find_node(doc.root, loc))
        first = first if first[0] else (line, column)
        where = f"{doc.file}:{line}:{column}" if line else doc.file
        problems.append(f"{where}: {_describe(error, loc, what)}")
    return PromptError("\n".join(problems), file=doc.file, line=first[0], column=first[1], problems=problems)


def _describe(error: dict[str, Any], loc: tuple[Any, ...], what: str) -> str:
    dotted = "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in loc).lstrip(".")
    if error["type"] == "missing":
        return f"missing required key {loc[-1]!r}" + (f" in {dotted.rsplit('.', 1)[0]}" if len(loc) > 1 else f" in {what}")
    if error["type"] == "value_error":
        return f"{dotted or what}: {error['ctx']['error']}"
    return f"{dotted or what}: {error['msg']} (got {error['input']!r})"
