"""The `keel` command. Errors become messages and exit codes here and nowhere else."""

from __future__ import annotations

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
    from . import init, models, run, serve, traces

    app.command("init")(init.init)
    app.command("run")(run.run)
    app.command("serve")(serve.serve)
    app.command("models")(models.models)
    app.add_typer(traces.app, name="traces")


def main(argv: list[str] | None = None) -> None:
    _register()
    try:
        app(args=argv, standalone_mode=False)
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
