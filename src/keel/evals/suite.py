"""An eval suite: `evals/NAME.eval.yaml`, loaded strictly.

    name: extract-people            # default: the file name without .eval.yaml
    prompts: [extract, {name: inline, messages: [{role: user, content: "{{ text }}"}]}]
    models: [local, fake/echo]      # the matrix: every prompt × every model
    params: {temperature: 0}        # call options for every call
    dataset: {file: cases.jsonl}    # or {cases: [{id, vars, expected, tags}, …]}
    assertions: [{type: json-valid}, {type: json-path, path: $.name, value: {expected: name}, weight: 2}]
    repeat: 3
    thresholds: {pass_rate: 0.9, min_pass_rate: 0.66, case_score: 1.0}
    judge_model: local

Unknown keys, wrong types, a missing dataset file, a bad JSONL line or a CSV without header are
refused with a SuiteError naming the file, line and key.
"""

from __future__ import annotations

import hashlib
import orjson
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ..errors import PromptError
from ..prompts._yaml import Document, find_node, position, read_document
from ..prompts.spec import NAME_PATTERN, PromptMessage, PromptSpec
from ._base import Assertion
from .assertions import TYPE_NAMES, parse_assertions
from .dataset import Case, SuiteError, build_cases, read_cases
from .functions import PythonCheck

SUITE_SUFFIX = ".eval.yaml"
MAX_SUITE_BYTES = 4 * 1024 * 1024
#: Serialises the cases for the content hash (much faster than one model at a time).
_CASES = TypeAdapter(list[Case])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InlinePrompt(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    messages: list[PromptMessage] = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    input: dict[str, Any] | None = None
    #: A JSON schema the answer must follow (sent as a json_schema response format).
    output: dict[str, Any] | None = None


class DatasetConfig(_Strict):
    file: str | None = None
    cases: list[dict[str, Any]] | None = None


class Thresholds(_Strict):
    #: Each prompt × model cell must pass at least this share of its answers.
    pass_rate: float = Field(default=1.0, ge=0, le=1)
    #: Each case must pass at least this share of its repeats (unchecked when absent).
    min_pass_rate: float | None = Field(default=None, ge=0, le=1)
    #: The weighted assertion score an answer needs to pass, unless its case says otherwise.
    case_score: float = Field(default=1.0, ge=0, le=1)


class SuiteConfig(_Strict):
    name: str | None = Field(default=None, pattern=NAME_PATTERN)
    description: str = ""
    prompts: list[str | InlinePrompt] = Field(min_length=1)
    models: list[str] = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)
    dataset: DatasetConfig
    assertions: list[dict[str, Any]] = Field(default_factory=list)
    repeat: int = Field(default=1, ge=1, le=1000)
    concurrency: int | None = Field(default=None, ge=1)
    thresholds: Thresholds = Field(default_factory=Thresholds)
    judge_model: str | None = None


@dataclass
class Suite:
    """A loaded suite: its settings, cases and parsed assertions."""

    config: SuiteConfig
    name: str
    path: Path | None
    cases: list[Case]
    assertions: list[Assertion]
    case_assertions: dict[str, list[Assertion]] = field(default_factory=dict)
    inline: dict[str, PromptSpec] = field(default_factory=dict)

    @property
    def prompt_names(self) -> list[str]:
        return [p if isinstance(p, str) else p.name for p in self.config.prompts]

    def assertions_for(self, case: Case) -> list[Assertion]:
        return self.assertions + self.case_assertions.get(case.id, [])

    def threshold_for(self, case: Case) -> float:
        return case.threshold if case.threshold is not None else self.config.thresholds.case_score

    def content_hash(self, prompt_versions: dict[str, str]) -> str:
        """sha256 of the settings, the cases and the versions of the named prompts: a run resumes
        only a run of the same content."""
        document = {"config": self.config.model_dump(mode="json"), "cases": _CASES.dump_python(self.cases),
                    "prompts": prompt_versions}
        options = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS
        return hashlib.sha256(orjson.dumps(document, option=options, default=str)).hexdigest()

    def check_ready(self) -> None:
        """Refuse, before any call, assertions that cannot run here (e.g. `similar` without its extra)."""
        for assertion in self.all_assertions():
            assertion.check_ready()

    def all_assertions(self) -> list[Assertion]:
        """The suite's assertions and every case's own."""
        return [*self.assertions, *(a for group in self.case_assertions.values() for a in group)]


def load_suite(path: Path | str) -> Suite:
    path = Path(path)
    if not path.is_file():
        raise SuiteError(f"no such suite file; suites live in evals/NAME{SUITE_SUFFIX}.", file=str(path))
    try:
        doc = read_document(path, max_bytes=MAX_SUITE_BYTES)
    except PromptError as exc:
        raise SuiteError(str(exc), line=getattr(exc, "line", None)) from None
    if not isinstance(doc.data, dict):
        raise SuiteError("a suite is a YAML mapping with prompts, models, dataset and assertions.", file=doc.file, line=1)
    try:
        config = SuiteConfig.model_validate(doc.data)
    except ValidationError as exc:
        raise _suite_error(exc, doc, ()) from None
    name = config.name or path.name.removesuffix(SUITE_SUFFIX).removesuffix(".yaml")
    return _build(config, name, path, doc)


def _build(config: SuiteConfig, name: str, path: Path, doc: Document) -> Suite:
    cases = _cases(config.dataset, path, doc)
    assertions = _assertions(config.assertions, doc, ("assertions",), path.parent)
    per_case = {}
    for index, case in enumerate(cases):
        if case.assertions:
            per_case[case.id] = _assertions(case.assertions, doc, ("dataset", "cases", index, "assertions"), path.parent)
    if not assertions and not per_case:
        raise SuiteError("the suite has no assertions; add `assertions:` (e.g. [{type: json-valid}]).", file=doc.file, key="assertions")
    names = [p if isinstance(p, str) else p.name for p in config.prompts]
    if len(set(names)) != len(names):
        raise SuiteError("two prompts have the same name; give inline prompts distinct names.", file=doc.file, key="prompts")
    variables = sorted({key for case in cases for key in case.vars})
    inline = {p.name: _inline_spec(p, variables, doc) for p in config.prompts if isinstance(p, InlinePrompt)}
    return Suite(config, name, path, cases, assertions, per_case, inline)


def _cases(dataset: DatasetConfig, path: Path, doc: Document) -> list[Case]:
    if (dataset.file is None) == (dataset.cases is None):
        line, _ = position(find_node(doc.root, ("dataset",)))
        raise SuiteError("`dataset` needs exactly one of `file` (a .jsonl or .csv path) or `cases` (a list).",
                         file=doc.file, line=line, key="dataset")
    if dataset.file is not None:
        file = path.parent / dataset.file
        cases = build_cases(read_cases(file), str(file))
    else:
        raw = [dict(c) | {"_line": position(find_node(doc.root, ("dataset", "cases", i)))[0]} for i, c in enumerate(dataset.cases or [])]
        cases = build_cases(raw, doc.file)
    if not cases:
        raise SuiteError("the dataset has no cases.", file=doc.file, key="dataset")
    return cases


def _assertions(data: list[dict[str, Any]], doc: Document, loc: tuple[Any, ...], base_dir: Path) -> list[Assertion]:
    try:
        parsed = parse_assertions(data)
    except ValidationError as exc:
        raise _suite_error(exc, doc, loc) from None
    for assertion in parsed:
        if isinstance(assertion, PythonCheck):
            assertion._base_dir = base_dir
    return parsed


def _inline_spec(prompt: InlinePrompt, variables: list[str], doc: Document) -> PromptSpec:
    definition = {"model": "eval", "messages": [m.model_dump(exclude_none=True) for m in prompt.messages],
                  "input": prompt.input if prompt.input is not None else {v: {} for v in variables}, "output": prompt.output}
    try:
        return PromptSpec.from_definition(prompt.name, {k: v for k, v in definition.items() if v is not None})
    except PromptError as exc:
        raise SuiteError(f"inline prompt {prompt.name!r}: {exc}", file=doc.file, key="prompts") from None


def _suite_error(exc: ValidationError, doc: Document, prefix: tuple[Any, ...]) -> SuiteError:
    problems, first_line, first_key = [], None, None
    for error in exc.errors(include_url=False):
        loc = (*prefix, *(step for step in error["loc"] if step not in TYPE_NAMES and not _is_union_tag(step)))
        line, _ = position(find_node(doc.root, loc))
        first_line, first_key = first_line or line, first_key or ".".join(str(s) for s in loc)
        dotted = "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in loc).lstrip(".")
        problems.append(f"{doc.file}:{line}: {dotted or 'suite'}: {_explain(error)}")
    error = SuiteError("\n".join(problems), key=first_key)
    error.file, error.line = doc.file, first_line  # the message names each problem's own line
    return error


def _is_union_tag(step: Any) -> bool:
    return isinstance(step, str) and (step in ("str", "InlinePrompt") or step.startswith("function-"))


def _explain(error: dict[str, Any]) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key; remove it or check its spelling"
    if kind == "missing":
        return "missing required key"
    if kind == "union_tag_invalid":
        return f"unknown assertion type {error['ctx']['tag']!r}; known types: {', '.join(TYPE_NAMES)}"
    if kind == "union_tag_not_found":
        return f"an assertion needs a `type` (one of {', '.join(TYPE_NAMES)})"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    return f"{error['msg']} (got {error['input']!r})"
