"""User-facing errors, one subclass per cause.

Anything raised as a :class:`SpectrascopeError` is a problem with the user's input (a missing
file, an unknown model, a bad option value, an empty corpus ...). The CLI prints its message
as one line and exits non-zero; it never shows a traceback for these. Raise the subclass that
names the cause, so that a caller can tell a missing file from a bad option:

=========================  ==============================================================
:class:`InputError`        an input (file, folder, table, bundled model) is missing or unreadable
:class:`SourceError`       ... a model source: missing, corrupt, unknown format, a pickle
:class:`ModelNotInstalledError` ... a bundled model whose package is not installed
:class:`ArchitectureError` the model or its family cannot do what was asked (unsupported)
:class:`OptionError`       an option's value or a combination of options is invalid
:class:`SiteError`         ... a hook site that does not exist for this model
:class:`ResumeError`       ``resume`` over results computed from other inputs
:class:`OutputError`       the output folder is a file, not writable, or in use by another run
:class:`NumericalError`    a computation failed numerically (non-finite values, no convergence)
:class:`CorpusError`       a corpus is empty, unreadable or unknown
=========================  ==============================================================

Messages that name an option use the placeholder ``{option}`` (in the message or in its
``hint``), so that each front end spells it its own way: the Python API as the parameter
(``allow_pickle=True``), the CLI as the flag of the command that was run (``--allow-pickle``);
a hint about an option the command does not have is left out (:meth:`SpectrascopeError.render`).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum

OPTION = "{option}"


class SpectrascopeError(Exception):
    """A problem with the user's input, reported as one clear line.

    Args:
        message: what is wrong, one line; may contain ``{option}``.
        option: the Python API parameter the message or the hint is about, spelled as a caller
            of the API writes it: ``"workers"``, ``"allow_pickle=True"``, ``"text_field="``.
        hint: what to do about it, with ``{option}`` where the option goes; appended after
            ``"; "`` when the front end has that option, left out otherwise.
    """

    def __init__(self, message: str, *, option: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.option = option
        self.hint = hint

    @property
    def parameter(self) -> str | None:
        """The bare parameter name of :attr:`option` (``"allow_pickle"``), or None."""
        return self.option.split("=", 1)[0] if self.option else None

    def render(self, spell: Callable[[str], str | None] | None = None) -> str:
        """The message with ``{option}`` spelled by ``spell(parameter)`` (None: the front end has
        no such option: the API spelling is used in the message and the hint is left out)."""
        spelled = self.option if spell is None or self.parameter is None else spell(self.parameter)
        text = self.message.replace(OPTION, spelled or self.option or "")
        if self.hint and spelled:
            text += "; " + self.hint.replace(OPTION, spelled)
        return text

    def __str__(self) -> str:
        return self.render()


class InputError(SpectrascopeError):
    """An input file, folder, table or model is missing or cannot be read."""


class SourceError(InputError):
    """A model source cannot be opened or read (missing, corrupt, unknown format, pickle)."""


class ModelNotInstalledError(InputError):
    """A bundled model's package is not installed."""


class ArchitectureError(SpectrascopeError):
    """A model family is unknown, or a family or config attribute is unsupported by what was asked
    (see :mod:`spectrascope.arch`): per-head spectra of a model without attention, a config
    attribute that changes the forward pass in a way no spec handles ..."""


class OptionError(SpectrascopeError):
    """An option's value is out of range or not one of its choices, or options conflict."""


class SiteError(OptionError):
    """A hook site does not exist or the architecture is not supported by the tracer."""


class ResumeError(SpectrascopeError):
    """Resuming over results that were computed from other inputs (model, seed, options)."""


class OutputError(SpectrascopeError):
    """The output folder cannot be used: a file, under a file, not writable, or locked by
    another run that writes into it."""


class NumericalError(SpectrascopeError):
    """A computation failed numerically: non-finite values, a singular matrix, no convergence."""


class CorpusError(SpectrascopeError):
    """A corpus is empty, unreadable, or unknown."""


# ----------------------------------------------------------------------------- checks of option values


def choice(enum: type[Enum], value: object, option: str) -> Enum:
    """``value`` as a member of ``enum``, or one OptionError naming ``option`` and the choices."""
    try:
        return enum(value)
    except ValueError:
        raise OptionError(
            f"{{option}} must be one of {', '.join(m.value for m in enum)} (got {value!r})", option=option
        ) from None


def at_least(value: float, low: float, option: str) -> None:
    """One OptionError naming ``option`` unless ``value >= low``."""
    if not value >= low:
        raise OptionError(f"{{option}} must be at least {low} (got {value})", option=option)
