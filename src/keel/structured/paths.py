"""Enforcement paths: how a target is made to answer in the schema, and the request for each.

    native   the provider's json_schema response format (OpenAI-compatible APIs); a non-object
             schema travels as {"value": …}, since OpenAI wants an object at the root
    tool     Anthropic: the provider turns the response format into a forced tool
    grammar  local: llama.cpp constrains decoding with the schema
    fake     the fake provider fills the schema
    prompt   no response_format is sent: a system instruction carries the schema and asks for
             JSON only (the model is configured `structured_output = "prompt"`, or its provider
             does not declare `Capabilities.json_schema`)

Every path is validated afterwards: a provider that ignores the response format is caught there.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from ..pipeline import Target
from ..providers.base import Provider
from ..settings import Settings
from ..types import ChatRequest, Message
from .spec import OutputSpec, Problem

NATIVE, TOOL, GRAMMAR, FAKE, PROMPT = "native", "tool", "grammar", "fake", "prompt"
#: The path of each provider kind that enforces a schema itself; other kinds that declare
#: `Capabilities.json_schema` get NATIVE.
PATH_BY_KIND = {"openai": NATIVE, "anthropic": TOOL, "local": GRAMMAR, "fake": FAKE}

INSTRUCTION = (
    "Answer with one JSON value that matches the JSON Schema below, and nothing else: "
    "no prose, no Markdown code fences.\n\nJSON Schema ({name}):\n{schema}"
)
REPAIR = (
    "Your answer does not match the required JSON schema:\n{problems}\n\n"
    "Answer again with only the corrected JSON."
)
CUT_OFF = "Your answer was cut off at the token limit: give a shorter one."


def path_for(provider: Provider, configured: str | None = None) -> str:
    """The path for `provider`, given the model's `structured_output` setting."""
    if configured == PROMPT:
        return PROMPT
    if configured == "native" or provider.capabilities.json_schema:
        return PATH_BY_KIND.get(provider.kind, NATIVE)
    return PROMPT


def mode_for(settings: Settings) -> Callable[[Target], str]:
    """Target → path, from `[models.<alias>] structured_output` and the provider's kind and capabilities."""

    def path(target: Target) -> str:
        model = settings.models.get(target.alias)
        return path_for(target.provider, model.structured_output if model is not None else None)

    return path


def default_mode(target: Target) -> str:
    return path_for(target.provider)


def enforced(request: ChatRequest, spec: OutputSpec, path: str) -> ChatRequest:
    """`request` as sent on `path`: with the schema's response format, or with the instruction instead."""
    if path == PROMPT:
        return request.model_copy(update={"messages": _instructed(request.messages, spec), "response_format": None})
    return request.model_copy(update={"response_format": spec.response_format(wrap=path == NATIVE)})


def with_repair(request: ChatRequest, answer: str, problems: list[Problem], finish_reason: str | None) -> ChatRequest:
    """`request` followed by the rejected answer and what is wrong with it."""
    listing = "\n".join(f"- {problem}" for problem in problems)
    feedback = REPAIR.format(problems=listing)
    if finish_reason == "length":
        feedback = f"{CUT_OFF}\n{feedback}"
    turns = [Message(role="assistant", content=answer)] if answer.strip() else []
    turns.append(Message(role="user", content=feedback))
    return request.model_copy(update={"messages": [*request.messages, *turns]})


def _instructed(messages: list[Message], spec: OutputSpec) -> list[Message]:
    instruction = INSTRUCTION.format(name=spec.name, schema=orjson.dumps(spec.schema).decode())
    first = messages[0] if messages else None
    if first is not None and first.role == "system" and isinstance(first.content, str):
        merged = first.model_copy(update={"content": f"{first.content}\n\n{instruction}"})
        return [merged, *messages[1:]]
    return [Message(role="system", content=instruction), *messages]
