"""Components: the parts of a model an ablation removes, one protocol and a registry of kinds.

Every component has a ``name`` (the form tables and the CLI use), a ``kind``, the ``layer`` it
sits in (None when it has none) and ``head`` (None but for heads). There are two families:

- :class:`ActivationComponent`: replaced at a site of the forward pass. It knows its site
  (``blocks.{L}.<site kind>``) and which part of the site's activation it owns (:meth:`part`):
  :class:`Head` (``head:L.H``: its slice of ``attn.hook_z``), :class:`AttnBlock` (``attn:L``:
  ``hook_attn_out``), :class:`MlpBlock` (``mlp:L``: ``hook_mlp_out``);
- :class:`WeightComponent`: a weight edit. It knows its weight and returns the edited matrix
  (:meth:`edited`): :class:`SpectralComponent` (``spectral:WEIGHT:tail``, ``:bulk``,
  ``:drop_top:K``: the matrix rebuilt from part of its SVD).

Names are parsed by the registry (:func:`parse_component`): each kind registers its prefix
with :func:`register` and parses the rest of the name itself. Adding a kind is one class with
``@register("prefix")``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, ClassVar

import torch

from spectrascope.arch import block_index
from spectrascope.errors import OptionError
from spectrascope.trace.sites import SiteKind, site_name

COMPONENT_KINDS: dict[str, type[Component]] = {}
"""Name prefix (``head``, ``attn``, ``mlp``, ``spectral``) -> the component class."""


def register(prefix: str) -> Callable[[type[Component]], type[Component]]:
    """Class decorator: names ``prefix:...`` parse to this component kind."""

    def add(cls: type[Component]) -> type[Component]:
        cls.kind = prefix
        COMPONENT_KINDS[prefix] = cls
        return cls

    return add


class Component(ABC):
    """The protocol every component kind follows (see the module docstring)."""

    kind: ClassVar[str]
    head: int | None = None

    if TYPE_CHECKING:  # read-only here: a field of the activation kinds, a property of the weight kinds

        @property
        def layer(self) -> int | None:
            """The block the component sits in (None when it has none)."""

    @property
    @abstractmethod
    def name(self) -> str:
        """The component's name, ``<kind>:<rest>``."""

    @classmethod
    @abstractmethod
    def parse(cls, rest: str) -> Component:
        """The component from the part of its name after ``<kind>:`` (ValueError if malformed)."""


class ActivationComponent(Component):
    """A component replaced at a site: it owns :meth:`part` of the activation at :attr:`site`."""

    site_kind: ClassVar[SiteKind]
    layer: int

    @property
    def site(self) -> str:
        return site_name(self.layer, self.site_kind)

    def part(self, activation: torch.Tensor) -> torch.Tensor:
        """The view of a (batch, pos, ...) site activation this component owns (all of it by default)."""
        return activation


@register("head")
@dataclass(frozen=True)
class Head(ActivationComponent):
    """Attention head ``head`` (query head index) of layer ``layer``: its slice of ``attn.hook_z``."""

    layer: int
    head: int
    site_kind: ClassVar[SiteKind] = SiteKind.Z

    @property
    def name(self) -> str:
        return f"head:{self.layer}.{self.head}"

    def part(self, activation: torch.Tensor) -> torch.Tensor:
        return activation[:, :, self.head]

    @classmethod
    def parse(cls, rest: str) -> Head:
        layer, head = rest.split(".")
        return cls(int(layer), int(head))


@register("attn")
@dataclass(frozen=True)
class AttnBlock(ActivationComponent):
    """The attention sub-block of layer ``layer`` (its output ``hook_attn_out``)."""

    layer: int
    site_kind: ClassVar[SiteKind] = SiteKind.ATTN_OUT

    @property
    def name(self) -> str:
        return f"attn:{self.layer}"

    @classmethod
    def parse(cls, rest: str) -> AttnBlock:
        return cls(int(rest))


@register("mlp")
@dataclass(frozen=True)
class MlpBlock(ActivationComponent):
    """The MLP sub-block of layer ``layer`` (its output ``hook_mlp_out``)."""

    layer: int
    site_kind: ClassVar[SiteKind] = SiteKind.MLP_OUT

    @property
    def name(self) -> str:
        return f"mlp:{self.layer}"

    @classmethod
    def parse(cls, rest: str) -> MlpBlock:
        return cls(int(rest))


class WeightComponent(Component):
    """A component removed by editing one weight matrix (``weight``, a parameter name)."""

    weight: str

    @property
    def layer(self) -> int | None:
        """The block of the weight (None for embeddings and other global matrices)."""
        block = block_index(self.weight)
        return None if block < 0 else block

    @property
    @abstractmethod
    def edit(self) -> str:
        """What the edit does, in tables' ``mode`` column (e.g. ``tail``, ``bulk``, ``drop_top``)."""

    @abstractmethod
    def edited(self, weight: torch.Tensor) -> tuple[torch.Tensor, int]:
        """(the edited matrix in ``weight``'s dtype, the number of singular directions kept)."""


class SpectralKeep(str, Enum):
    """Which part of ``W = sum_i sigma_i u_i v_i^T`` a spectral ablation keeps."""

    DROP_TOP = "drop_top"
    """Everything but the top ``k`` singular directions: ``W - U_k S_k V_k^T``."""
    TAIL = "tail"
    """Only the power-law tail: directions with ``sigma_i^2 >= xmin`` of the power-law fit of
    the ESD ``sigma^2`` (:func:`spectrascope.spectra.powerlaw.fit_power_law`)."""
    BULK = "bulk"
    """Only the bulk: directions with ``sigma_i^2 < xmin`` (``W`` minus its tail)."""


@register("spectral")
@dataclass(frozen=True)
class SpectralComponent(WeightComponent):
    """Part of the spectrum of one weight matrix (a 2-D parameter named ``weight``).

    ``keep``: see :class:`SpectralKeep`; ``k``: the number of top directions removed by
    ``drop_top`` (ignored otherwise).
    """

    weight: str
    keep: SpectralKeep = SpectralKeep.DROP_TOP
    k: int = 1

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "keep", SpectralKeep(self.keep))
        except ValueError:
            raise OptionError(
                f"unknown spectral ablation {self.keep!r}; use {', '.join(k.value for k in SpectralKeep)}"
            ) from None

    @property
    def edit(self) -> str:
        return self.keep.value

    @property
    def name(self) -> str:
        suffix = f":{self.k}" if self.keep is SpectralKeep.DROP_TOP else ""
        return f"spectral:{self.weight}:{self.keep.value}{suffix}"

    @classmethod
    def parse(cls, rest: str) -> SpectralComponent:
        weight, _, spec = rest.rpartition(":")
        if not weight:
            raise ValueError(rest)
        if spec.isdigit():  # spectral:WEIGHT:drop_top:K
            weight, _, keep = weight.rpartition(":")
            return cls(weight, SpectralKeep(keep), int(spec))
        return cls(weight, SpectralKeep(spec))

    def edited(self, weight: torch.Tensor) -> tuple[torch.Tensor, int]:
        """The SVD is computed in float64. ``drop_top``: ``W - U_k S_k V_k^T``; ``tail``:
        ``U_t S_t V_t^T`` over the power-law tail ``sigma^2 >= xmin``; ``bulk``: ``W`` minus the tail.

        Raises:
            OptionError: ``k`` out of range; NumericalError: the power-law fit of the ESD failed.
        """
        from spectrascope.mech.spectral_edit import spectral_edit

        return spectral_edit(weight, self.keep, self.k)


NAME_FORMS = (
    "L.H (a head)",
    "head:L.H",
    "attn:L",
    "mlp:L",
    "spectral:WEIGHT:drop_top:K",
    "spectral:WEIGHT:tail",
    "spectral:WEIGHT:bulk",
)


def parse_component(text: str) -> Component:
    """A component from its name (see :data:`NAME_FORMS`; a bare ``L.H`` is a head)."""
    text = text.strip()
    prefix, _, rest = text.partition(":") if ":" in text else ("head", "", text)
    cls = COMPONENT_KINDS.get(prefix)
    if cls is not None:
        try:
            return cls.parse(rest)
        except ValueError:
            pass
    raise OptionError(f"cannot parse component {text!r}; write {', '.join(NAME_FORMS)}")
