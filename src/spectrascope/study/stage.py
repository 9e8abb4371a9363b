"""A study stage: a name, the tables it reads, the tables it writes, and how to compute them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from .budget import StudyBudget
from .context import StudyContext


@dataclass(frozen=True)
class Stage:
    """One step of ``spectrascope study``.

    Attributes:
        name: the stage's name (its folder under the output directory).
        requires: ``stage/table`` names it reads (checked before any work starts).
        produces: the tables it returns (written as ``<name>/<table>.parquet`` and ``.csv``).
        run: computes the tables from the context (a stage may also leave artifacts, such as a
            trained SAE, in ``ctx.out / name``).
        enabled: whether a budget asks for the stage (the SAE stage is off in the small budget).
        default: part of a study run without ``stages`` (the circuit stage is asked for by name,
            ``--stages all`` or ``--stages circuits``: its spectral tests cost minutes).
    """

    name: str
    requires: tuple[str, ...]
    produces: tuple[str, ...]
    run: Callable[[StudyContext], dict[str, pd.DataFrame]]
    enabled: Callable[[StudyBudget], bool] = lambda budget: True
    default: bool = True
