"""User-facing errors.

Anything raised as :class:`SpectrascopeError` is a problem with the user's input (a missing
file, an unknown model, an empty corpus ...). The CLI prints its message as one line and
exits non-zero; it never shows a traceback for these.
"""

from __future__ import annotations


class SpectrascopeError(Exception):
    """A problem with the user's input, reported as one clear line."""


class SourceError(SpectrascopeError):
    """A model source cannot be opened or read (missing, corrupt, unknown format, pickle)."""


class ModelNotInstalledError(SpectrascopeError):
    """A bundled model's package is not installed."""


class CorpusError(SpectrascopeError):
    """A corpus is empty, unreadable, or unknown."""


class SiteError(SpectrascopeError):
    """A hook site does not exist or the architecture is not supported by the tracer."""


class ArchitectureError(SpectrascopeError):
    """A model family is unknown, or a family or config attribute is unsupported by what was asked
    (see :mod:`spectrascope.arch`): per-head spectra of a model without attention, a config
    attribute that changes the forward pass in a way no spec handles ..."""


class InputError(SpectrascopeError):
    """An input (file, folder, text, batch) is missing, unreadable or malformed."""


class OptionError(SpectrascopeError):
    """An option or argument has a value that makes no sense (a bad range, an unknown name)."""


class NumericalError(SpectrascopeError):
    """A computation cannot give a meaningful number for this input (a failed fit, a degenerate matrix)."""
