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


def _register() -> None:
    from . import cost, evals, init, lock, models, prompts, run, serve, traces

    app.command("init")(init.init)
    app.command("run")(run.run)
    app.command("serve")(serve.serve)
    app.command("models")(models.models)
    app.add_typer(traces.app, name="traces")
    app.add_typer(prompts.app, name="prompts")
    app.command("lock")(lock.lock)
    app.command("check")(lock.check)
    app.command("prices")(cost.prices)
    app.command("budgets")(cost.budgets)
    app.add_typer(cost.app, name="cost")
    app.add_typer(evals.app, name="eval")


def main(argv: list[str] | None = None) -> None:
    _register()
    try:
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except KeelError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except click.exceptions.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
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
