"""The budget stage: reserve a call's worst-case cost before sending it, settle its real cost after.

    reserve   for every budget whose scope matches the call, a hold of the call's worst-case cost
              (`worst_case`) on its bucket, all or nothing; a hard budget refuses with
              BudgetExceeded when spent + in flight + this call could pass its limit, or when the
              cost cannot be bounded (no price known). Soft budgets never refuse.
              The worst case is first priced from the prompt's byte bound; only when that does
              not fit is the prompt counted with the model's tokenizer (where Keel has it) and the
              reserve asked again, so the refusal is decided on the exact count.
    call      the inner stages (routing, provider)
    settle    the hold is dropped and the real cost added, priced here from the usage (the
              recording stage, which sets `response.cost`, is outside this one):
              - an answer: its usage, priced for the model that answered (no usage reported,
                or no price known: the worst case);
              - a stream: its last usage chunk; lacking one (closed early, cut), the worst case;
              - an error the upstream answered with (HTTP ≥ 400) or raised before sending: 0;
              - any other error (timeout, dropped connection, cancelled): the worst case, since
                the upstream may have done, and billed, the work.

Because every in-flight call holds its worst case, concurrent calls, in one process or across
gateway workers sharing a RedisLedger, never spend past a hard limit.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from functools import lru_cache

from ..cost.pricing import PriceBook
from ..errors import (
    AllProvidersFailed,
    BudgetExceeded,
    CircuitOpen,
    ConfigError,
    PolicyViolation,
    PromptError,
    ProviderError,
    RequestError,
    StoreError,
)
from ..pipeline import Call, Stage, Target
from ..settings import BudgetSettings
from ..types import ChatResponse, Chunk, Usage
from .alerts import Alerts
from .ledger import MAX_UNITS, Bucket, Crossing, Hold, Ledger, Refusal, from_units, plain, to_units
from .plan import Plan, make_plan
from .scope import Periods, Scope
from .worst_case import Models, Picos, Priced, Rates, output_tokens, prompt_bound, prompt_tokens, units_of, worst_cost

log = logging.getLogger("keel.budgets")

#: Per budget (in keel.toml's order), the scope value a call counts under, or None.
Labels = tuple[str | None, ...]

#: Errors raised before anything reached an upstream: nothing was spent.
UNSENT = (BudgetExceeded, ConfigError, PromptError, PolicyViolation, RequestError, CircuitOpen)


class BudgetStage(Stage):
    def __init__(
        self,
        inner: Stage,
        budgets: Sequence[BudgetSettings],
        ledger: Ledger,
        prices: PriceBook,
        *,
        models: Models | None = None,
        alerts: Alerts | None = None,
    ) -> None:
        super().__init__(inner)
        names = [budget.name for budget in budgets]
        if len(set(names)) != len(names):
            twice = sorted({name for name in names if names.count(name) > 1})
            raise ConfigError(f"Budgets {', '.join(map(repr, twice))} are defined more than once in keel.toml: "
                              "give each [[budgets]] entry its own name.", budgets=twice)
        for budget in budgets:
            if to_units(budget.limit) > MAX_UNITS:
                raise ConfigError(f"Budget {budget.name!r} has limit {budget.limit}; budgets are tracked exactly up to "
                                  f"{MAX_UNITS // 10**9:,}. Lower the limit.", budget=budget.name)
        self.budgets = [(budget, Scope.parse(budget.scope, budget.name)) for budget in budgets]
        self.ledger = ledger
        self.prices = prices
        self.rates = Rates(prices)
        self.models: Models = models or (lambda target: [Priced.of(target)])
        self.alerts = alerts or Alerts()
        self._periods = Periods()
        #: (budget, scope value, period) → its Bucket, made once per period rather than per call.
        self._buckets: dict[tuple[str, str, str], Bucket] = {}
        # Hold ids, unique across processes (the random part) and calls (the counter).
        self._hold_prefix = os.urandom(6).hex()
        self._hold_count = itertools.count()
        #: Labels of a call no budget counts.
        self._none: Labels = (None,) * len(self.budgets)
        #: When every budget is global, the labels of every call.
        self._global: Labels | None = None
        if self.budgets and all(scope.kind == "global" for _, scope in self.budgets):
            self._global = ("global",) * len(self.budgets)
        #: (target id, output limit, n, labels) → the target and the reservation of such calls (plan.py).
        self._plans: dict[tuple[object, ...], tuple[Target, Plan]] = {}
        self._unpriced: set[tuple[str, str]] = set()
        self._renewals: set[asyncio.Task[None]] = set()

    async def complete(self, call: Call) -> ChatResponse:
        labels = self._labels(call)
        if labels is None:
            return await self.inner.complete(call)
        claim = self._claim_now(call, labels) or await self._reserve(call, labels)
        try:
            response = await self.inner.complete(call)
        except BaseException as exc:
            claim.settle(None if _maybe_billed(exc) else 0)
            raise
        claim.settle(self._cost(call, response.usage, claim))
        return response

    def stream(self, call: Call) -> AsyncIterator[Chunk]:
        labels = self._labels(call)
        if labels is None:
            return self.inner.stream(call)
        return self._stream(call, labels)

    async def aclose(self) -> None:
        await self.ledger.drain()  # the last settles, and the alerts they raise
        await self.alerts.drain()
        await self.ledger.aclose()

    # -- the steps -----------------------------------------------------------------------------

    async def _stream(self, call: Call, labels: Labels) -> AsyncIterator[Chunk]:
        claim = self._claim_now(call, labels) or await self._reserve(call, labels)
        stream = self.inner.stream(call)
        usage: Usage | None = None
        delivered = False
        error: BaseException | None = None
        try:
            async for chunk in stream:
                delivered = True
                usage = chunk.usage or usage
                yield chunk
        except BaseException as exc:
            error = exc
            raise
        finally:
            try:
                await _close(stream)
            finally:
                if usage is not None:
                    actual: int | None = self._cost(call, usage, claim)
                elif not delivered and error is not None and not _maybe_billed(error):
                    actual = 0
                else:
                    actual = None
                claim.settle(actual)

    def _labels(self, call: Call) -> Labels | None:
        """Each budget's scope value for this call (None where it does not count); None if no budget counts it."""
        if self._global is not None:
            return self._global
        labels = tuple([scope.bucket(call) for _, scope in self.budgets])
        return None if labels == self._none else labels

    def _matched(self, labels: Labels) -> list[tuple[BudgetSettings, str]]:
        return [(budget, label) for (budget, _), label in zip(self.budgets, labels, strict=True) if label is not None]

    def _plan(self, call: Call, labels: Labels, at: float) -> Plan:
        """The reservation of calls like this one (same target, scope values and output limit)."""
        request, target = call.request, call.target
        extra = request.__pydantic_extra__
        # By the target's identity (the client keeps one per model name): a plan keeps its target
        # alive, so an id in the key is never another target's while the plan is there.
        key = (id(target), request.max_completion_tokens, request.max_tokens, extra.get("n") if extra else None, labels)
        found = self._plans.get(key)
        if found is None or found[0] is not target or at >= found[1].until:
            if len(self._plans) >= 4096:  # scopes with many values (keys, tenants)
                self._plans.clear()
            found = self._plans[key] = (target, make_plan(request, self._matched(labels), self.models(target), self.rates,
                                                          self._bucket_and_end, at))
        return found[1]

    def _claim_now(self, call: Call, labels: Labels) -> "_Claim | None":
        """The short way, most calls': the plan is known and the ledger places its holds without
        I/O or waiting. None: take the long way (`_reserve`)."""
        at = time.time()
        plan = self._plan(call, labels, at)
        if plan.entries is None:
            return None
        holds = plan.holds(prompt_bound(call.request))
        hold_id = f"{self._hold_prefix}{next(self._hold_count):x}"
        if not self.ledger.take_now(hold_id, holds):
            return None
        _note(call, holds)
        return _Claim(self, hold_id, holds, at, False, call.target, plan.picos)

    async def _reserve(self, call: Call, labels: Labels) -> "_Claim":
        """The long way: an unplanned call (tiered or unknown prices), a ledger that has to ask
        (Redis without a lease), or a refusal to explain or recount."""
        at = time.time()
        plan = self._plan(call, labels, at)
        bound = prompt_bound(call.request)
        if plan.entries is not None:
            holds = plan.holds(bound)
        else:
            holds = self._holds(call, self._matched(labels), self.models(call.target), bound, at)
        hold_id = f"{self._hold_prefix}{next(self._hold_count):x}"
        try:
            refusal = await self.ledger.reserve(hold_id, holds)
            if refusal is not None:
                holds, refusal = await self._recount(call, labels, hold_id, holds, refusal, bound, at)
        except StoreError as exc:
            if any(hold.bucket.hard for hold in holds):
                raise
            log.warning("Soft budgets not counted for call %s: %s", call.trace_id, exc)
            return _Claim(self, "", [], at, False, call.target, None)
        if refusal is not None:
            raise _exceeded(refusal)
        _note(call, holds)
        # Holds placed by `reserve` in a shared ledger lapse unless renewed.
        return _Claim(self, hold_id, holds, at, True, call.target, plan.picos)

    async def _recount(self, call: Call, labels: Labels, hold_id: str, holds: list[Hold], refusal: Refusal,
                       bound: int, at: float) -> tuple[list[Hold], Refusal | None]:
        """The byte bound did not fit: where a candidate's tokenizer is known, count the prompt with
        it and ask again for that worst case (the refused reserve placed nothing; this one is as
        atomic). Returns the holds asked for last and their refusal, if any."""
        models = self.models(call.target)
        if not any(model.exact_tokenizer for model in models):
            return holds, refusal
        exact = {model: prompt_tokens(call.request, model) for model in models}
        if not any(exact[model] < bound for model in models):
            return holds, refusal
        holds = self._holds(call, self._matched(labels), models, exact, at)
        return holds, await self.ledger.reserve(hold_id, holds)

    def _holds(self, call: Call, matched: list[tuple[BudgetSettings, str]], models: list[Priced],
               prompt: int | dict[Priced, int], at: float) -> list[Hold]:
        """A hold of the worst case on each matched budget's bucket, for these prompt token counts."""
        worst_by_output: dict[int, tuple[Decimal | None, Priced]] = {}
        holds = []
        for budget, label in matched:
            output = output_tokens(call.request, budget.reserve_max_tokens)
            if output not in worst_by_output:
                worst_by_output[output] = worst_cost(self.rates, models, prompt, output, at)
            worst, model = worst_by_output[output]
            if worst is None:
                if budget.hard:
                    raise _unbounded(budget, model)
                self._warn_unpriced(budget, model)
                worst = Decimal(0)
            holds.append(Hold.of(self._bucket(budget, label, at), worst))
        return holds

    def _bucket(self, budget: BudgetSettings, label: str, at: float) -> Bucket:
        return self._bucket_and_end(budget, label, at)[0]

    def _bucket_and_end(self, budget: BudgetSettings, label: str, at: float) -> tuple[Bucket, float]:
        """The bucket of `budget` for scope value `label` at `at`, and when its period ends."""
        (period, expires_at), _, ends = self._periods.span(budget.period, at)
        key = (budget.name, label, period)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= 4096:  # past periods, and scopes with many values (keys, tenants)
                self._buckets.clear()
            bucket = self._buckets[key] = Bucket(budget.name, label, period, budget.limit, budget.hard, expires_at)
        return bucket, ends

    def _cost(self, call: Call, usage: Usage, claim: "_Claim") -> int | None:
        """What the call cost in ledger units, priced for whoever answered (None: unknown, keep the worst case)."""
        if usage.prompt_tokens == 0 and usage.completion_tokens == 0:
            return None  # the upstream reported no usage
        target = call.target
        if target is claim.target and claim.picos is not None:  # no fallback answered: the plan's rate
            return units_of(usage, claim.picos)
        return self.rates.cost_units(target.provider.name, target.pricing_id, target.model, usage, claim.at)

    def _warn_unpriced(self, budget: BudgetSettings, model: Priced) -> None:
        key = (budget.name, model.alias)
        if key not in self._unpriced:
            self._unpriced.add(key)
            log.warning("Soft budget %r cannot count calls to model %s: no price is known for it. %s",
                        budget.name, model.describe(), _how_to_price(model))

    def _alert(self, crossings: list[Crossing]) -> None:
        for crossing in crossings:
            budget = next(budget for budget, _ in self.budgets if budget.name == crossing.bucket.budget)
            self.alerts.crossed(budget, crossing)


class _Claim:
    """The holds one call placed, until it settles them (once)."""

    __slots__ = ("stage", "hold_id", "holds", "at", "target", "picos", "_timer")

    def __init__(self, stage: BudgetStage, hold_id: str, holds: list[Hold], at: float, renew: bool,
                 target: Target, picos: Picos | None) -> None:
        self.stage, self.hold_id, self.holds, self.at = stage, hold_id, holds, at
        #: The target reserved for, and its flat rate (None: price the answer in full).
        self.target, self.picos = target, picos
        self._timer: asyncio.TimerHandle | None = None
        if holds and renew:
            self._schedule_renewal()

    def settle(self, actual: int | None) -> None:
        """Drop the holds and add `actual` ledger units (None: each hold's worst case) to every bucket."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.holds:
            return
        holds, self.holds = self.holds, []
        amounts = [hold.units for hold in holds] if actual is None else [actual] * len(holds)
        # Not waited for: the call's answer is ready, and a settle still on its way only keeps
        # the worst case held a moment longer. Nothing here awaits, so a cancelled caller
        # cannot leave the holds behind.
        self.stage.ledger.settle_later(self.hold_id, holds, amounts, self.stage._alert)

    def _schedule_renewal(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.stage.ledger.hold_ttl / 3, self._renew)

    def _renew(self) -> None:
        task = asyncio.get_running_loop().create_task(self._renew_holds(list(self.holds)))
        self.stage._renewals.add(task)
        task.add_done_callback(self.stage._renewals.discard)
        self._schedule_renewal()

    async def _renew_holds(self, holds: list[Hold]) -> None:
        try:
            await self.stage.ledger.renew(self.hold_id, holds)
        except Exception as exc:
            log.warning("Could not renew budget holds %s: %s", self.hold_id, exc)


def _note(call: Call, holds: list[Hold]) -> None:
    """Note in the call's trace the budgets that counted it and what it reserved on each: {name:
    amount}. (Its scope value follows from the budget's scope and the trace's tags or prompt; a
    shorter note costs the trace writer less, on every call a budget counts.)"""
    call.notes["budgets"] = {hold.bucket.budget: _shown(hold.units) for hold in holds}


@lru_cache(maxsize=4096)  # worst cases repeat from call to call
def _shown(units: int) -> str:
    return plain(from_units(units))


def _maybe_billed(error: BaseException) -> bool:
    """Whether a failed call may still have been billed by the upstream."""
    if isinstance(error, AllProvidersFailed):
        return any(_maybe_billed(e) for e in error.exceptions)
    if isinstance(error, UNSENT):
        return False
    if isinstance(error, ProviderError):
        status = getattr(error, "status", None)
        return not (isinstance(status, int) and status >= 400)
    return True


def _exceeded(refusal: Refusal) -> BudgetExceeded:
    bucket = refusal.hold.bucket
    period = "all time" if bucket.period == "total" else bucket.period
    in_flight = f", {plain(refusal.reserved)} held by calls in flight" if refusal.reserved else ""
    retry = "Retry when the calls in flight finish, lower" if refusal.reserved else "Lower"
    return BudgetExceeded(
        f"Budget {bucket.budget!r} ({bucket.scope}, {period}) cannot take this call: limit {plain(bucket.limit)}, "
        f"spent {plain(refusal.spent)}{in_flight}, and this call may cost up to {plain(refusal.hold.amount)}. "
        f"{retry} max_tokens to lower the worst case, or raise the budget's limit in keel.toml.",
        budget=bucket.budget,
        scope=bucket.scope,
        period=bucket.period,
        limit=bucket.limit,
        spent=refusal.spent,
        reserved=refusal.reserved,
        cost=refusal.hold.amount,
    )


def _unbounded(budget: BudgetSettings, model: Priced) -> BudgetExceeded:
    return BudgetExceeded(
        f"Budget {budget.name!r} is hard, and the cost of a call to model {model.describe()} cannot be bounded: "
        f"no price is known for it (price catalog provider {model.pricing_id!r}). {_how_to_price(model)} "
        "Or make the budget soft (hard = false).",
        budget=budget.name,
        model=model.alias,
    )


def _how_to_price(model: Priced) -> str:
    if "/" in model.alias:
        return (f'Set a price in keel.toml with an alias: [models.NAME] provider = "{model.provider}", '
                f'model = "{model.model}", and [models.NAME.price] input_per_mtok = …, output_per_mtok = ….')
    return f"Set a price in keel.toml: [models.{model.alias}.price] input_per_mtok = …, output_per_mtok = …."


async def _close(stream: AsyncIterator[Chunk]) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
