"""PromptSpec: one prompt file, parsed and validated, ready to render and to version."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError

from ..errors import PromptError, PromptNotFound, PromptRenderError
from ..types import ResponseFormat
from . import render as _render
from ._templates import CompiledPrompt, Location, PartialReader, compile_prompt, directory_reader, mapping_reader
from ._yaml import Document, check_keys, content_start_line, find_node, position, read_document, validation_error
from .version import content_hash, short_version

PROMPT_SUFFIX = ".prompt.yaml"
PARTIALS_DIR = "partials"
MAX_PROMPT_BYTES = 1024 * 1024
TYPE_NAMES = ("string", "integer", "number", "boolean", "array", "object", "null")
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _expand_type(value: Any) -> Any:
    """`text: string` is short for `text: {type: string}`."""
    if isinstance(value, str):
        if value not in TYPE_NAMES:
            raise ValueError(f"unknown type name {value!r}; use one of {', '.join(TYPE_NAMES)} or a JSON Schema mapping")
        return {"type": value}
    return value


def _check_schema(schema: dict[str, Any]) -> dict[str, Any]:
    from jsonschema import Draft202012Validator  # imported on first use: `import keel` stays light
    from jsonschema.exceptions import SchemaError, best_match

    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"not a valid JSON Schema: {exc.message}") from None
    if "default" in schema:
        error = best_match(Draft202012Validator(schema).iter_errors(schema["default"]))
        if error is not None:
            raise ValueError(f"the default does not match the schema: {error.message}")
    return schema


VariableSchema = Annotated[dict[str, Any], BeforeValidator(_expand_type), AfterValidator(_check_schema)]
OutputSchema = Annotated[dict[str, Any], AfterValidator(_check_schema)]


class PromptMessage(BaseModel):
    """One message template: `content` is Jinja2 text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "developer", "user", "assistant"]
    content: str
    name: str | None = None


class PromptSpec(BaseModel):
    """A prompt definition. Load one with `PromptSpec.load(path)` or `PromptLibrary(root).get(name)`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    model: str = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    input: dict[str, VariableSchema] = Field(default_factory=dict)
    output: OutputSchema | None = None
    messages: list[PromptMessage] = Field(min_length=1)
    tags: list[str] = Field(default_factory=list)
    reference_input: dict[str, Any] | None = None

    _compiled: CompiledPrompt | None = PrivateAttr(default=None)
    _path: Path | None = PrivateAttr(default=None)
    _source_file: str = PrivateAttr(default="")
    _input_lines: dict[str, int] = PrivateAttr(default_factory=dict)
    _version: str = PrivateAttr(default="")

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path | str, partials_dir: Path | str | None = None) -> PromptSpec:
        """Read `NAME.prompt.yaml`; partials come from `partials_dir` (default: `partials/` beside it)."""
        path = Path(path)
        if not path.is_file():
            raise PromptNotFound(f"{path}: no such prompt file.", name=prompt_name(path), file=str(path), suggestions=[])
        doc = read_document(path, max_bytes=MAX_PROMPT_BYTES)
        data = _checked_mapping(doc, prompt_name(path))
        try:
            spec = cls.model_validate(data)
        except ValidationError as exc:
            raise validation_error(exc, doc, "the prompt file") from None
        folder = Path(partials_dir) if partials_dir is not None else path.parent / PARTIALS_DIR
        spec._path = path
        spec._input_lines = {name: position(find_node(doc.root, ("input", name)))[0] or 1 for name in spec.input}
        lines = [content_start_line(find_node(doc.root, ("messages", i, "content"), value=True)) for i in range(len(spec.messages))]
        return spec._finish(doc.file, lines, directory_reader(folder))

    @classmethod
    def from_definition(cls, name: str, definition: dict[str, Any]) -> PromptSpec:
        """Rebuild a spec from `definition()` output (e.g. an old version kept by the store)."""
        data = dict(definition)
        partials = data.pop("partials", None) or {}
        try:
            spec = cls.model_validate({**data, "name": name})
        except ValidationError as exc:
            raise validation_error(exc, Document(data, None, f"<prompt {name}>"), "the definition") from None
        return spec._finish_without_file(partials)

    def _finish_without_file(self, partials: dict[str, str]) -> PromptSpec:
        label = f"<prompt {self.name}>"
        return self._finish(label, [None] * len(self.messages), mapping_reader(dict(partials), f"{label} partials"))

    def _finish(self, file: str, lines: list[int | None], read_partial: PartialReader) -> PromptSpec:
        self._source_file = file
        locations = [Location(file, line) if line else Location(f"{file} messages[{i}]", 1) for i, line in enumerate(lines)]
        contents = [message.content for message in self.messages]
        self._compiled = compile_prompt(contents, locations, read_partial, set(self.input))
        self._version = content_hash(self.definition())
        return self

    def _ready(self) -> CompiledPrompt:
        """The compiled templates (a spec built with `PromptSpec(...)` directly compiles on first use)."""
        # Read from pydantic's private-attribute dict: `self._compiled` goes through
        # BaseModel.__getattr__, a few µs on every render.
        compiled = self.__pydantic_private__["_compiled"]
        if compiled is None:
            self._finish_without_file({})
            compiled = self._compiled
        assert compiled is not None
        return compiled

    # -- identity ------------------------------------------------------------------------------

    @property
    def path(self) -> Path | None:
        """The prompt file, or None for a spec rebuilt from a stored definition."""
        return self._path

    @property
    def source_file(self) -> str:
        """How errors name this prompt's file."""
        self._ready()
        return self._source_file

    @property
    def partials(self) -> dict[str, str]:
        """Every partial the templates include (transitively), name → text."""
        return dict(self._ready().partials)

    @property
    def version(self) -> str:
        """sha256 hex of the normalized definition (see `keel.prompts.version`)."""
        self._ready()
        return self._version

    @property
    def short_version(self) -> str:
        return short_version(self.version)

    def definition(self) -> dict[str, Any]:
        """The normalized definition that is hashed: fields that differ from their defaults, plus partials."""
        data = self.model_dump(mode="json", exclude_defaults=True, exclude={"name"})
        partials = self._ready().partials
        if partials:
            data["partials"] = dict(sorted(partials.items()))
        return data

    def input_line(self, variable: str) -> int | None:
        """The line of the prompt file where `variable` is declared under `input:`."""
        return self._input_lines.get(variable)

    # -- use -----------------------------------------------------------------------------------

    def render(self, variables: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """OpenAI-shaped message dicts; raises PromptRenderError naming the variable, file and line."""
        return _render.render(self, self._ready(), variables or {})

    def render_reference(self) -> list[dict[str, Any]]:
        """The messages rendered with `reference_input` (used for the lockfile's token counts)."""
        if self.reference_input is None:
            raise PromptRenderError(
                f"{self.source_file}: prompt {self.name!r} has no `reference_input`.", prompt=self.name, file=self.source_file
            )
        return self.render(self.reference_input)

    def response_format(self) -> ResponseFormat | None:
        """The `output` schema as a json_schema response format, or None."""
        return ResponseFormat.from_schema(self.output, name=self.name) if self.output is not None else None


def prompt_name(path: Path) -> str:
    """`summarize.prompt.yaml` → `summarize` (any other file: its stem)."""
    return path.name.removesuffix(PROMPT_SUFFIX) if path.name.endswith(PROMPT_SUFFIX) else path.stem


def _checked_mapping(doc: Document, name: str) -> dict[str, Any]:
    """Top-level shape checks with exact positions, before pydantic validation."""
    data = doc.data
    if not isinstance(data, dict):
        found = "empty" if data is None else f"a {type(data).__name__}, not a mapping"
        raise PromptError(f"{doc.file}: the prompt file is {found}; expected keys such as model and messages.", file=doc.file)
    check_keys(doc, (), data, list(PromptSpec.model_fields), "the prompt file")
    if "name" in data and data["name"] != name:
        raise _error_at(doc, ("name",), f"name {data['name']!r} does not match the file name {name!r}; rename the file or remove the `name:` key.")
    messages = data.get("messages")
    for index, message in enumerate(messages if isinstance(messages, list) else []):
        check_keys(doc, ("messages", index), message, list(PromptMessage.model_fields), f"messages[{index}]")
    variables = data.get("input")
    for variable in variables if isinstance(variables, dict) else {}:
        if not _IDENTIFIER.match(variable):
            raise _error_at(doc, ("input", variable), f"variable name {variable!r} is not an identifier (letters, digits, _).")
    return {**data, "name": name}


def _error_at(doc: Document, loc: tuple[Any, ...], message: str) -> PromptError:
    line, column = position(find_node(doc.root, loc, value=True))
    return PromptError(f"{doc.file}:{line}:{column}: {message}", file=doc.file, line=line, column=column)
