"""Every error Keel raises, in one tree. Catch `KeelError` to catch them all.

    KeelError
    ├── ConfigError                 a setting or file is wrong: names file, key and the fix
    │   ├── MissingCredentials      an API-key environment variable is not set (names it)
    │   ├── UnknownModel            a model name matches no alias or provider (lists known ones)
    │   └── SuiteError              an eval suite or dataset is wrong (file, line, key); in keel.evals
    ├── PromptError
    │   ├── PromptNotFound
    │   └── PromptRenderError
    ├── ProviderError               the upstream failed; carries provider, status, body
    │   ├── RateLimited             429, with `retry_after` seconds when the upstream said
    │   ├── ProviderTimeout         no answer (or no next chunk) in time
    │   ├── ProviderConnectionError could not connect, or the connection dropped
    │   ├── InvalidRequest          400/404/422: retrying will not help
    │   ├── AuthenticationFailed    401/403
    │   ├── ServerError             5xx
    │   ├── UnexpectedResponse      malformed JSON, wrong shape, stream cut mid-way
    │   └── CircuitOpen             the circuit is open: not called until its next probe
    ├── AllProvidersFailed          every fallback failed (also an ExceptionGroup of the causes)
    ├── PolicyViolation
    ├── BudgetExceeded
    ├── OutputValidationError       the answer does not match the requested schema
    │   └── ChainStepError          a value at a chain step's boundary has the wrong type
    ├── RequestError                the caller's request is malformed: bad JSON, missing field
    │   └── RequestTooLarge         larger than the gateway's limit (HTTP 413)
    ├── GatewayAuthError            no or a wrong gateway key (HTTP 401)
    ├── ReplayMissing               replay mode met a request that was never recorded
    └── StoreError                  the store cannot be reached or migrated, or refused the data
                                    (`url`, and `retryable`: False when the data itself was refused)

Errors carry their data as attributes. They are converted at the edges only:
HTTP client -> ProviderError, CLI -> message and exit code, gateway -> OpenAI-shaped JSON.
"""

from __future__ import annotations

from typing import Any


class KeelError(Exception):
    """Root of every error Keel raises."""

    #: HTTP status the gateway answers with, and the OpenAI error `type`.
    status_code: int = 500
    error_type: str = "keel_error"

    def __init__(self, message: str, **data: Any) -> None:
        super().__init__(message)
        self.message = message
        for key, value in data.items():
            setattr(self, key, value)

    def __str__(self) -> str:
        return self.message


class ConfigError(KeelError):
    status_code = 500
    error_type = "configuration_error"


class MissingCredentials(ConfigError):
    def __init__(self, env_var: str, provider: str) -> None:
        super().__init__(
            f"Provider {provider!r} needs an API key: set the environment variable {env_var}.",
            env_var=env_var,
            provider=provider,
        )


class UnknownModel(ConfigError):
    status_code = 404
    error_type = "invalid_request_error"

    def __init__(self, model: str, known: list[str]) -> None:
        listing = ", ".join(known) if known else "(none configured)"
        super().__init__(
            f"Unknown model {model!r}. Known models: {listing}. "
            "Add it under [models] in keel.toml or use provider/model-id.",
            model=model,
            known=known,
        )


class PromptError(KeelError):
    status_code = 400
    error_type = "invalid_request_error"


class PromptNotFound(PromptError):
    status_code = 404


class PromptRenderError(PromptError):
    pass


class ProviderError(KeelError):
    """The upstream provider failed. `status` is the upstream HTTP status when there was one."""

    status_code = 502
    error_type = "upstream_error"
    retryable = False

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int | None = None,
        body: str | None = None,
        **data: Any,
    ) -> None:
        super().__init__(message, provider=provider, status=status, body=body, **data)


class RateLimited(ProviderError):
    status_code = 429
    error_type = "rate_limit_error"
    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **data: Any) -> None:
        super().__init__(message, retry_after=retry_after, **data)


class ProviderTimeout(ProviderError):
    status_code = 504
    error_type = "timeout_error"
    retryable = True


class ProviderConnectionError(ProviderError):
    status_code = 502
    retryable = True


class InvalidRequest(ProviderError):
    status_code = 400
    error_type = "invalid_request_error"


class AuthenticationFailed(ProviderError):
    status_code = 502
    error_type = "upstream_authentication_error"


class UnexpectedResponse(ProviderError):
    status_code = 502
    retryable = True


class ServerError(ProviderError):
    """5xx from the upstream."""

    status_code = 502
    retryable = True


class CircuitOpen(ProviderError):
    """The circuit of this provider/model is open: not called until its next probe."""

    status_code = 503
    error_type = "upstream_unavailable"
    retryable = False


class AllProvidersFailed(KeelError, ExceptionGroup):  # type: ignore[misc]
    status_code = 502
    error_type = "upstream_error"

    def __new__(cls, message: str, errors: list[Exception]) -> "AllProvidersFailed":
        return ExceptionGroup.__new__(cls, message, errors)

    def __init__(self, message: str, errors: list[Exception]) -> None:
        ExceptionGroup.__init__(self, message, errors)  # sets the read-only `message`

    def __str__(self) -> str:
        causes = "; ".join(f"{type(e).__name__}: {e}" for e in self.exceptions)
        return f"{self.message}: {causes}"


class PolicyViolation(KeelError):
    status_code = 400
    error_type = "policy_violation"


class BudgetExceeded(KeelError):
    status_code = 429
    error_type = "budget_exceeded"


class OutputValidationError(KeelError):
    status_code = 502
    error_type = "output_validation_error"


class ChainStepError(OutputValidationError):
    """A value at a chain step's boundary does not match its declared type."""

    def __init__(self, step: str, index: int, boundary: str, problems: list[Any], **data: Any) -> None:
        first = problems[0]
        listing = "; ".join(str(problem) for problem in problems)
        super().__init__(
            f"Chain step {index} {step!r}: its {boundary} does not match: {listing}",
            step=step,
            index=index,
            boundary=boundary,
            field=first.path,
            value=first.value,
            problems=problems,
            **data,
        )


class StoreError(KeelError):
    status_code = 500
    error_type = "store_error"


class ReplayMissing(KeelError):
    """Replay mode, and this request was never recorded: names the request and the file expected."""

    status_code = 500
    error_type = "replay_missing"


class RequestError(KeelError):
    """The caller's request itself is malformed (bad JSON, missing field, too large)."""

    status_code = 400
    error_type = "invalid_request_error"


class RequestTooLarge(RequestError):
    status_code = 413


class GatewayAuthError(KeelError):
    status_code = 401
    error_type = "invalid_api_key"
