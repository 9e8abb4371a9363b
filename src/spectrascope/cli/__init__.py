"""The ``spectrascope`` command line: one subcommand per verb of the Python API.

User errors (SpectrascopeError) end in one line on stderr and exit code 2, never a traceback;
an option named in the message is spelled as the flag of the command that was run (see
:func:`option_aliases`). Ctrl-C and SIGTERM end the command: one line ``interrupted``, exit
code 130, worker processes ended. Set SPECTRASCOPE_DEBUG=1 to see tracebacks of unexpected
errors. Each verb family lives in its own module that registers its commands on :data:`app`.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Sequence

import typer
from rich.console import Console

from ..errors import SpectrascopeError
from ..interrupts import EXIT_CODE as INTERRUPTED_EXIT_CODE
from ..interrupts import Interrupted, raise_on_signals

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="spectrascope: weight spectra, activation spectra and mechanisms of LLMs, in one report.",
)
console = Console()
err_console = Console(stderr=True)

DEFAULT_WORKERS = min(os.cpu_count() or 1, 8)

_ALIASES: dict[str, dict[str, str]] = {}


def option_aliases(command: str, **api_to_cli: str) -> None:
    """Declare which option of ``command`` stands for a Python API parameter of another name
    (``out_dir="out"``: an error about ``out_dir`` names ``--out``)."""
    _ALIASES.setdefault(command, {}).update(api_to_cli)


def option_spelling(argv: Sequence[str]) -> Callable[[str], str | None]:
    """``parameter -> flag`` of the command in ``argv`` (None where it has no such option)."""
    command, name = typer.main.get_command(app), None
    for word in argv:
        commands = getattr(command, "commands", None)
        if commands is None:
            break
        if not word.startswith("-"):
            command, name = commands.get(word), word
            if command is None:
                return lambda parameter: None
    if name is None:
        return lambda parameter: None
    flags = {
        p.name: max((o for o in p.opts if o.startswith("--")), key=len, default=p.opts[0])
        for p in command.params
        if getattr(p, "param_type_name", "") == "option"
    }
    aliases = _ALIASES.get(name, {})
    return lambda parameter: flags.get(aliases.get(parameter, parameter))


def writes_out(function: Callable) -> Callable:
    """Decorate a command with an ``out`` option: ``--out`` is checked and held for this run
    (:class:`~spectrascope.outdir.OutputFolder`) before the command does any work."""

    @functools.wraps(function)
    def command(*args, **kwargs):
        out = kwargs.get("out")
        if out is None:
            return function(*args, **kwargs)
        from ..outdir import OutputFolder

        with OutputFolder(out, option="out"):
            return function(*args, **kwargs)

    return command


def _register_commands() -> None:
    """Import the modules that define the subcommands (each decorates ``app``)."""
    from . import (  # noqa: F401, I001 (order = help order)
        weights_cmd,
        corpora_cmd,
        activations_cmd,
        energy_cmd,
        lens_cmd,
        patch_cmd,
        heads_cmd,
        ablate_cmd,
        probe_cmd,
        steer_cmd,
        sae_cmd,
        circuit_cmd,
        study_cmd,
        track_cmd,
    )


def _interrupted() -> None:
    err_console.print("interrupted", markup=False)
    sys.exit(INTERRUPTED_EXIT_CODE)


def main() -> None:
    """Console-script entry point with one-line user errors and interrupts."""
    from ..heap import return_large_frees, trim_periodically

    return_large_frees()  # freed memory is reused, and leaves the resident size (see spectrascope.heap)
    trim_periodically()
    _register_commands()
    try:
        with raise_on_signals():
            code = app(standalone_mode=False, prog_name="spectrascope")
    except SpectrascopeError as err:
        message = err.render(option_spelling(sys.argv[1:]))
        err_console.print(f"error: {message}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt, Interrupted):
        _interrupted()
    except Exception as err:  # last resort: never a bare traceback
        if _is_usage_error(err):  # click's, or the copy of click that newer typer releases vendor
            err_console.print(f"error: {_usage_line(err)}", markup=False, highlight=False, soft_wrap=True)
            sys.exit(err.exit_code)
        if os.environ.get("SPECTRASCOPE_DEBUG"):
            raise
        err_console.print(
            f"internal error: {type(err).__name__}: {err} (set SPECTRASCOPE_DEBUG=1 for the traceback)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)
    if code == INTERRUPTED_EXIT_CODE:  # typer turns a KeyboardInterrupt into this exit code
        _interrupted()
    if isinstance(code, int) and code:
        sys.exit(code)


def _is_usage_error(err: Exception) -> bool:
    """A click-style exception (bad option, missing argument ...) that knows how to show itself."""
    return any(cls.__name__ == "ClickException" for cls in type(err).__mro__) and hasattr(err, "show")


def _usage_line(err: Exception) -> str:
    """One line for a usage error: click's message and where to read the command's help."""
    message = err.format_message() if hasattr(err, "format_message") else str(err)
    message = " ".join(message.split()).replace("Value error, ", "")
    ctx = getattr(err, "ctx", None)
    return f"{message} (see '{ctx.command_path} --help')" if ctx is not None else message
