"""The `dlc` command line: one module per command, each a thin view of the library.

Errors: every `DlcError` (and every usage error) becomes one line on stderr and exit
code 1; Ctrl-C exits 130. Anything else is a bug in dlc and keeps its traceback.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

# typer 0.29 vendors click; pyproject pins typer to that minor version for these imports.
from typer._click import ClickException
from typer._click.exceptions import NoArgsIsHelpError
from typer.core import TyperGroup

from dlc.errors import DlcError
from dlc.version import __version__


class DlcGroup(TyperGroup):
    """Turns errors a user can fix into one line and exit code 1."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except DlcError as e:
            _fail(str(e))
        except typer.Abort:
            _fail("interrupted", 130)
        except NoArgsIsHelpError:  # `dlc` or `dlc device` alone: the help was printed, nothing failed
            code = 0
        except ClickException as e:  # usage errors: unknown option, bad value
            _fail(f"{e.format_message()} (see `{_help_command(args)}`)")
        if code == 130:  # typer turns a Ctrl-C inside a command into a silent exit code 130
            _fail("interrupted", 130)
        sys.exit(code if isinstance(code, int) else 0)


def _help_command(args) -> str:
    argv = list(args) if args is not None else sys.argv[1:]
    sub = argv[0] if argv and not argv[0].startswith("-") else ""
    return " ".join(filter(None, ["dlc", sub, "--help"]))


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    sys.exit(code)


app = typer.Typer(
    cls=DlcGroup,
    name="dlc",
    help="Train in PyTorch, export to ONNX, compile with Apache TVM, and measure the result.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",  # help texts say "[default: ...]", which rich markup would swallow
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback(invoke_without_command=True)
def _main(version: Annotated[bool, typer.Option("--version", help="Print dlc's version and exit.")] = False):
    if version:
        typer.echo(f"dlc {__version__}")
        raise typer.Exit()


def _register() -> None:
    from dlc.cli import (
        bench,
        compile,
        deploy,
        device,
        doctor,
        explain,
        export,
        inspect,
        optimize,
        profile,
        prune,
        quantize,
        quickstart,
        report,
        serve,
        signing,
        targets,
        train,
        tune,
    )

    app.command("quickstart")(quickstart.quickstart)
    app.command("train")(train.train)
    app.command("explain")(explain.explain)
    app.command("export")(export.export)
    app.command("optimize")(optimize.optimize)
    app.command("quantize")(quantize.quantize)
    app.command("prune")(prune.prune)
    app.command("inspect")(inspect.inspect)
    app.command("compile")(compile.compile_)
    app.command("tune")(tune.tune)
    app.command("bench")(bench.bench)
    app.command("profile")(profile.profile)
    app.command("report")(report.report)
    app.command("doctor")(doctor.doctor)
    app.command("targets")(targets.targets)
    app.command("deploy")(deploy.deploy)
    app.command("serve")(serve.serve)
    app.command("keygen")(signing.keygen)
    app.command("sign")(signing.sign)
    app.command("verify")(signing.verify)
    app.add_typer(device.app, name="device")


_register()


def main() -> None:
    app()
