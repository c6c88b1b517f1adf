"""Typed chains on the fake provider: validated boundaries, repairs inside steps, one linked trace."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

import keel
from keel.chains import Chain, ChainStepError, FunctionStep, PromptStep
from keel.client import AsyncClient
from keel.errors import OutputValidationError
from keel.providers.fake import FakeProvider
from keel.settings import load_settings
from keel.store import open_store
from structured.conftest import structured_client, wire

EXTRACT = """\
description: Extract an invoice
model: fake/echo
input:
  text: string
messages:
  - role: user
    content: "Extract the invoice from: {{ text }}"
"""
INVOICE = (
    '{"customer": "Ada", "lines": [{"item": "pen", "price": 2.5, "qty": 2}, {"item": "cup", "price": 4, "qty": 1}]}'
)
REMINDER = '{"subject": "Invoice for Ada", "body": "Please pay 9.0."}'


class Line(BaseModel):
    item: str
    price: float
    qty: int = Field(ge=1)


class Invoice(BaseModel):
    customer: str
    lines: list[Line]


class Summary(BaseModel):
    customer: str
    total: float = Field(ge=0)


class Reminder(BaseModel):
    subject: str
    body: str


async def summarize(invoice: Invoice) -> Summary:
    return Summary(customer=invoice.customer, total=sum(line.price * line.qty for line in invoice.lines))


def remind(summary: Summary) -> str:
    return f"Write a payment reminder to {summary.customer} for {summary.total}."


def invoice_chain(summary_step: FunctionStep | None = None) -> Chain:
    return Chain(
        PromptStep("extract", output=Invoice),
        summary_step or FunctionStep(summarize),
        PromptStep(remind, input=Summary, output=Reminder, model="fake/echo", name="remind"),
        name="invoices",
    )


@pytest.fixture
def project_with_prompt(project: Path) -> Path:
    (project / "prompts").mkdir()
    (project / "prompts" / "extract.prompt.yaml").write_text(EXTRACT, encoding="utf-8")
    return project


def fake(client: AsyncClient, *replies: str) -> FakeProvider:
    provider = client.provider("fake")
    assert isinstance(provider, FakeProvider)
    provider.queue(*replies)
    return provider


def run_chain(client: AsyncClient, chain: Chain, value: object):
    async def scenario():
        try:
            return await chain.run(client, value)
        finally:
            await client.aclose()

    return asyncio.run(scenario())


def test_prompt_function_prompt_with_types_at_every_boundary(project_with_prompt: Path) -> None:
    client = structured_client(load_settings(env={}))
    provider = fake(client, INVOICE, REMINDER)
    result = run_chain(client, invoice_chain(), {"text": "Ada: 2 pens at 2.50, a cup at 4"})
    assert result.output == Reminder(subject="Invoice for Ada", body="Please pay 9.0.")
    assert [(s.name, s.kind) for s in result.steps] == [("extract", "prompt"), ("summarize", "function"),
                                                       ("remind", "prompt")]
    assert isinstance(result.steps[0].output, Invoice) and result.steps[1].output == Summary(customer="Ada", total=9.0)
    first, second = (request for _, request in provider.history)
    assert first.messages[0].text() == "Extract the invoice from: Ada: 2 pens at 2.50, a cup at 4"
    assert first.json_schema is not None and second.json_schema is not None
    assert second.messages[0].text() == "Write a payment reminder to Ada for 9.0."


def test_a_wrong_llm_answer_is_repaired_inside_its_step(project_with_prompt: Path) -> None:
    client = structured_client(load_settings(env={}))
    provider = fake(client, '{"customer": "Ada"}', INVOICE, REMINDER)
    result = run_chain(client, invoice_chain(), {"text": "x"})
    assert result.output.subject == "Invoice for Ada" and len(provider.history) == 3


def test_a_bad_function_output_stops_the_chain_naming_step_field_and_value(project_with_prompt: Path) -> None:
    client = structured_client(load_settings(env={}))
    provider = fake(client, INVOICE, REMINDER)
    broken = FunctionStep(lambda invoice: {"customer": invoice.customer, "total": "lots"}, input=Invoice,
                          output=Summary, name="summarize")
    with pytest.raises(ChainStepError) as caught:
        run_chain(client, invoice_chain(broken), {"text": "x"})
    error = caught.value
    found = (error.step, error.index, error.boundary, error.field, error.value)
    assert found == ("summarize", 2, "output", "total", "lots")
    assert "Chain step 2 'summarize': its output does not match: total: Input should be a valid number" in str(error)
    assert isinstance(error, OutputValidationError) and len(provider.history) == 1


def test_a_bad_chain_input_stops_before_any_call(project_with_prompt: Path) -> None:
    client = structured_client(load_settings(env={}))
    provider = fake(client)
    chain = Chain(FunctionStep(summarize), PromptStep(remind, output=Reminder, model="fake/echo"))
    with pytest.raises(ChainStepError) as caught:
        run_chain(client, chain, {"customer": "Ada", "lines": [{"item": "pen", "price": 1, "qty": 0}]})
    assert (caught.value.step, caught.value.boundary, caught.value.field, caught.value.value) == (
        "summarize", "input", "lines[0].qty", 0)
    assert provider.history == []


def test_an_llm_step_that_never_fits_is_a_chain_step_error(project_with_prompt: Path) -> None:
    client = structured_client(load_settings(env={}), max_repairs=1)
    fake(client, '{"customer": 1}', "no idea")
    with pytest.raises(ChainStepError) as caught:
        run_chain(client, invoice_chain(), {"text": "x"})
    error = caught.value
    assert (error.step, error.index, error.boundary, error.field) == ("extract", 1, "output", "(root)")
    assert len(error.attempts) == 2 and isinstance(error.__cause__, OutputValidationError)


def test_the_chain_is_one_trace_with_linked_steps(project_with_prompt: Path) -> None:
    settings = load_settings(env={})
    client = structured_client(settings, record=True)
    fake(client, INVOICE, REMINDER)

    async def scenario():
        result = await invoice_chain().run(client, {"text": "x"}, tags={"team": "billing"})
        assert client.flush()
        await client.aclose()
        return result

    result = asyncio.run(scenario())
    with open_store(settings.effective_store_url) as store:
        records = {record["id"]: record for record in store.list_traces()}
    root = records[result.trace_id]
    assert root["kind"] == "chain" and root["parent_id"] is None and root["status"] == "ok"
    assert root["notes"] == {"name": "invoices", "steps": ["extract", "summarize", "remind"]}
    assert root["response"]["output"] == {"subject": "Invoice for Ada", "body": "Please pay 9.0."}
    kinds = [records[step.trace_id]["kind"] for step in result.steps]
    assert kinds == ["chat", "function", "chat"] and len(records) == 4
    for step in result.steps:
        record = records[step.trace_id]
        assert record["parent_id"] == result.trace_id and record["tags"]["team"] == "billing"
    function = records[result.steps[1].trace_id]
    assert function["request"]["input"]["customer"] == "Ada" and function["response"]["output"]["total"] == 9.0
    assert records[result.steps[0].trace_id]["tags"]["step"] == "extract"
    assert records[result.steps[0].trace_id]["prompt_name"] == "extract"


def test_a_failed_chain_records_its_root_as_an_error(project_with_prompt: Path) -> None:
    settings = load_settings(env={})
    client = structured_client(settings, record=True)
    fake(client, INVOICE)
    failing = FunctionStep(lambda invoice: 1 / 0, input=Invoice, output=Summary, name="divide")

    async def scenario():
        with pytest.raises(ZeroDivisionError):
            await invoice_chain(failing).run(client, {"text": "x"})
        assert client.flush()
        await client.aclose()

    asyncio.run(scenario())
    with open_store(settings.effective_store_url) as store:
        by_kind = {record["kind"]: record for record in store.list_traces()}
    assert by_kind["chain"]["status"] == "error" and by_kind["chain"]["error_class"] == "ZeroDivisionError"
    assert by_kind["function"]["status"] == "error" and by_kind["function"]["parent_id"] == by_kind["chain"]["id"]


def test_run_sync_on_the_sync_client(project_with_prompt: Path) -> None:
    with keel.Client(record=False) as client:
        wire(client.aio)
        client.provider("fake").queue(INVOICE, REMINDER)
        result = invoice_chain().run_sync(client, {"text": "x"})
    assert result.output.subject == "Invoice for Ada"


def test_without_the_structured_stage_the_chain_still_validates(project_with_prompt: Path) -> None:
    client = AsyncClient(load_settings(env={}), record=False)
    fake(client, f"```json\n{INVOICE}\n```", REMINDER)
    result = run_chain(client, invoice_chain(), {"text": "x"})
    assert result.steps[0].output.customer == "Ada" and result.output.subject == "Invoice for Ada"


def test_a_chain_needs_steps() -> None:
    with pytest.raises(ValueError, match="at least one step"):
        Chain()
