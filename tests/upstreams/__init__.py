"""Real HTTP upstreams on 127.0.0.1 that speak the OpenAI and Anthropic wire formats, for tests.

    from upstreams import AnthropicUpstream, Fault, OpenAIUpstream

    with OpenAIUpstream() as up:          # an ephemeral port, served from a background thread
        settings = ProviderSettings(type="openai", base_url=up.base_url)
        up.script(Fault.RATE_LIMIT, times=2, retry_after=3)   # the next 2 requests get a 429
        ...
        up.count, up.requests[-1].body, up.requests[-1].headers["authorization"]

`OpenAIUpstream.base_url` ends in /v1 (as OpenAI clients expect); `AnthropicUpstream.base_url` is
the bare host (the provider adds /v1/messages).

Answers: `up.reply`, else "Echo: <last user text>", cut at a stop sequence or at the token limit
(one word = one token), streamed one word per event. A request with tools (OpenAI) or a forced
tool (Anthropic) gets a call of that tool with `up.tool_input`, else the smallest instance of its
schema; an OpenAI json_schema request gets the smallest instance as its content. Usage counts
words; `up.cached_tokens` is reported as cached prompt tokens.

Every request is recorded in `up.requests` (method, path, headers with lower-cased names, parsed
JSON body, the client's address) before any fault applies; `up.count` counts them; `up.reset()`
clears the record and the script. Faults (`Fault.*`; its docstring lists their parameters) hit the next
`times` requests in the order scripted, then the upstream behaves again.

To drive a provider from a sync test (pytest-asyncio is not used):

    answer = run_closing(provider, lambda p: p.complete(request, "model-id"))
    chunks = run_closing(provider, lambda p: collect(p.stream(request, "model-id")))
"""

from ._anthropic import AnthropicUpstream as AnthropicUpstream
from ._openai import OpenAIUpstream as OpenAIUpstream
from ._run import collect as collect
from ._run import run_closing as run_closing
from ._server import CUT_AFTER as CUT_AFTER
from ._server import Answer as Answer
from ._server import Fault as Fault
from ._server import Recorded as Recorded
from ._server import Upstream as Upstream
