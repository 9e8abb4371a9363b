"""The ``spectrascope`` command line: one subcommand per verb of the Python API.

User errors (SpectrascopeError) end in one line on stderr and exit code 2, never a traceback.
Set SPECTRASCOPE_DEBUG=1 to see tracebacks of unexpected errors. Each verb family lives in
its own module that registers its commands on :data:`app`.
"""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console

from ..errors import SpectrascopeError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="spectrascope: weight spectra, activation spectra and mechanisms of LLMs, in one report.")
console = Console()
err_console = Console(stderr=True)

DEFAULT_WORKERS = min(os.cpu_count() or 1, 8)


def _register_commands() -> None:
    """Import the modules that define the subcommands (each decorates ``app``)."""
    from . import (  # noqa: F401, I001 (order = help order)
        weights_cmd, corpora_cmd, activations_cmd, energy_cmd, lens_cmd, patch_cmd, heads_cmd, ablate_cmd, probe_cmd,
        steer_cmd, sae_cmd, circuit_cmd, study_cmd, track_cmd,
    )


def main() -> None:
    """Console-script entry point with one-line user errors."""
    _register_commands()
    try:
        app(standalone_mode=False)
    except SpectrascopeError as err:
        err_console.print(f"error: {err}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("interrupted", markup=False)
        sys.exit(130)
    except Exception as err:  # noqa: BLE001 - last resort: never a bare traceback
        if _is_usage_error(err):  # click's, or the copy of click that newer typer releases vendor
            err_console.print(f"error: {_usage_line(err)}", markup=False, highlight=False, soft_wrap=True)
            sys.exit(err.exit_code)
        if os.environ.get("SPECTRASCOPE_DEBUG"):
            raise
        err_console.print(f"internal error: {type(err).__name__}: {err} (set SPECTRASCOPE_DEBUG=1 for the traceback)",
                          markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)


def _is_usage_error(err: Exception) -> bool:
    """A click-style exception (bad option, missing argument ...) that knows how to show itself."""
    return any(cls.__name__ == "ClickException" for cls in type(err).__mro__) and hasattr(err, "show")


def _usage_line(err: Exception) -> str:
    """One line for a usage error: click's message and where to read the command's help."""
    message = err.format_message() if hasattr(err, "format_message") else str(err)
    message = " ".join(message.split()).replace("Value error, ", "")
    ctx = getattr(err, "ctx", None)
    return f"{message} (see '{ctx.command_path} --help')" if ctx is not None else message
