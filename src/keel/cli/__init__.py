"""The `keel` command. Errors become messages and exit codes here and nowhere else."""

from __future__ import annotations

import os
import sys

import click
import typer
from rich.console import Console

from ..errors import KeelError

app = typer.Typer(
    name="keel",
    help="Keel: pinned prompts, traced calls, known costs, an OpenAI-compatible gateway.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
# Typer 0.2x raises the exceptions of its own copy of Click; older ones raise Click's.
_USAGE_ERRORS = tuple({click.exceptions.ClickException, *(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")})


#: command name → (module in keel.cli, attribute, whether it is a group of subcommands)
COMMANDS: dict[str, tuple[str, str, bool]] = {
    "init": ("init", "init", False),
    "run": ("run", "run", False),
    "serve": ("serve", "serve", False),
    "models": ("models", "models", False),
    "traces": ("traces", "app", True),
    "prompts": ("prompts", "app", True),
    "lock": ("lock", "lock", False),
    "check": ("lock", "check", False),
    "prices": ("cost", "prices", False),
    "budgets": ("cost", "budgets", False),
    "cost": ("cost", "app", True),
    "eval": ("evals", "app", True),
}
_registered: set[str] = set()


@app.callback()
def _root() -> None:
    """Keel: pinned prompts, traced calls, known costs, an OpenAI-compatible gateway."""


def _register(argv: list[str]) -> None:
    """Register the command named in `argv`, or every command (for help and unknown names):
    importing every command module costs a few hundred milliseconds on each start."""
    import importlib

    first = next((arg for arg in argv if not arg.startswith("-")), None)
    for name in [first] if first in COMMANDS else list(COMMANDS):
        if name in _registered:
            continue
        module, attribute, group = COMMANDS[name]
        target = getattr(importlib.import_module(f"{__name__}.{module}"), attribute)
        if group:
            app.add_typer(target, name=name)
        else:
            app.command(name)(target)
        _registered.add(name)


def main(argv: list[str] | None = None) -> None:
    _register(sys.argv[1:] if argv is None else argv)
    try:
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except KeelError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except _USAGE_ERRORS as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (click.exceptions.Abort, typer.Abort):
        err.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # a bug in Keel: say so plainly, keep the trace for KEEL_DEBUG=1
        if os.environ.get("KEEL_DEBUG"):
            raise
        err.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {exc}. "
            "This is a bug in Keel; rerun with KEEL_DEBUG=1 to see where it happened.",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(2)
