"""Hooks at named sites: observe or edit activations of a Hugging Face model.

Three entry points:

- :func:`list_sites`: the site names a model provides;
- :func:`hooks`: a context manager that calls ``fn(tensor, site_name)`` at each
  requested site during every forward pass inside it; a returned tensor replaces the
  site's value (ablation, patching, steering), ``None`` only observes;
- :func:`run_with_cache`: one forward pass, returning the logits and a dict of the
  activations at the requested sites.

The model's own forward pass runs; the hooks only read (and on request replace)
tensors, so observing leaves the logits bit-identical. No hook outlives the call or
the ``with`` block, whatever exception is raised.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from spectrascope.arch import Capability
from spectrascope.errors import SiteError
from spectrascope.trace.architectures import BoundModel, Io, bind
from spectrascope.trace.attention import PATTERN_NEEDS_EAGER, attention_implementation
from spectrascope.trace.sites import SiteKind, expand_sites, parse_site

if TYPE_CHECKING:
    from spectrascope.models.handle import ModelLike

SiteFn = Callable[[torch.Tensor, str], "torch.Tensor | None"]
"""``fn(activation, site_name) -> replacement or None``; see :func:`hooks`."""

SiteRequest = str | Iterable[str] | None
"""Full names, ``blocks.*.`` wildcards or short forms (see :mod:`spectrascope.trace.sites`)."""

_INPUT_KEYWORDS = ("hidden_states", "input", "x")


def list_sites(model: ModelLike) -> list[str]:
    """Every site the model provides as it runs now, layer by layer in forward order.

    ``model``: anything :func:`spectrascope.models.handle.as_model` accepts (a loaded model,
    a Hugging Face module, a bundled name). ``blocks.{L}.attn.hook_pattern`` is included
    only when the model runs eager attention (see :mod:`spectrascope.trace.attention`);
    which kinds a family has is in its spec (:mod:`spectrascope.arch`).
    """
    bound = bind(model)
    return expand_sites(None, bound.n_layers, bound.observable_kinds)


def resolve_sites(bound: BoundModel, sites: SiteRequest) -> list[str]:
    """Full site names for a request on a bound model; ``None`` = :func:`list_sites`.

    Raises :class:`SiteError` for unknown names, layers out of range, and pattern sites
    on a model that does not run eager attention.
    """
    if sites is None:
        return expand_sites(None, bound.n_layers, bound.observable_kinds)
    if not bound.spec.supports(Capability.ATTENTION):
        for name in expand_sites(sites, bound.n_layers, list(SiteKind)):
            if parse_site(name)[1] in (SiteKind.Z, SiteKind.PATTERN):
                raise SiteError(f"{name}: {bound.spec.refused[Capability.ATTENTION]}")
    names = expand_sites(sites, bound.n_layers, bound.kinds)
    if not bound.eager and any(parse_site(name)[1] is SiteKind.PATTERN for name in names):
        raise SiteError(PATTERN_NEEDS_EAGER.format(implementation=attention_implementation(bound.model)))
    return names


@contextmanager
def hooks(model: ModelLike, fns: Mapping[str, SiteFn | Sequence[SiteFn]]) -> Iterator[list[str]]:
    """Call functions at sites during every forward pass inside the ``with`` block.

    Args:
        model: a model of a supported family (anything ``as_model`` accepts).
        fns: site request (full name, ``blocks.*.`` wildcard or short form such as
            ``"resid_post"``) -> ``fn`` or a sequence of them. ``fn(tensor, site_name)``
            receives the site's activation (shapes in :class:`SiteKind`; ``attn.hook_z``
            as ``(batch, pos, head, d_head)``) and returns ``None`` to observe or a
            tensor of the same shape to replace it: the rest of the forward pass then
            uses the replacement. Several functions at one site run in order, each
            seeing the previous one's result. ``attn.hook_pattern`` is observe-only
            (the probabilities are returned after they were used).

    Yields:
        the full site names hooked.

    The model is unchanged after the block: every hook it registered is removed, even
    when the block raises. A function must not modify its argument in place; the
    argument is the live activation, so keep ``tensor.detach().clone()`` if it must
    survive an edit of the same site (edits of ``hook_resid_mid`` on pre-norm models are
    written in place, see :mod:`spectrascope.trace.architectures`). A returned tensor is
    copied before the model uses it when it is the caller's own object (some modules add
    into their outputs in place: Falcon's MLP output).
    """
    bound = bind(model)
    plan: dict[str, list[SiteFn]] = {}
    for request, fn_or_fns in fns.items():
        functions = [fn_or_fns] if callable(fn_or_fns) else list(fn_or_fns)
        for name in resolve_sites(bound, request):
            plan.setdefault(name, []).extend(functions)
    handles: list[RemovableHandle] = []
    try:
        for name, functions in plan.items():
            handles.append(_register(bound, name, functions))
        yield list(plan)
    finally:
        for handle in handles:
            handle.remove()


def run_with_cache(
    model: ModelLike,
    input_ids: torch.Tensor,
    sites: SiteRequest = None,
    attention_mask: torch.Tensor | None = None,
    **forward_kwargs: Any,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """One forward pass under ``torch.no_grad()``, recording the activations at ``sites``.

    Args:
        model: a model of a supported family: what ``load_model`` returns, a Hugging Face
            module (call ``.eval()`` first), a bundled name (see ``as_model``).
        input_ids: (batch, pos) token ids.
        sites: site request; ``None`` = every site of :func:`list_sites`.
        attention_mask: (batch, pos), 1 for real tokens, 0 for padding.
        forward_kwargs: passed on to the model's forward (e.g. ``token_type_ids``).

    Returns:
        ``(logits, cache)``: ``logits`` is the model output's ``logits``
        (batch, pos, vocab), bit-identical to a plain forward; for a model without a
        head (``BertModel``, ``LlamaModel``) it is ``last_hidden_state``
        (batch, pos, d_model). ``cache`` maps full site name -> detached activation, in
        the order of the request (``list_sites`` order for ``None``). Each cached tensor is
        a copy: never the live tensor, which a later module may edit in place (Falcon adds
        attention into the MLP output; an edit of ``hook_resid_mid`` writes into the residual).
    """
    bound = bind(model)
    hf_model = bound.model
    names = resolve_sites(bound, sites)
    cache: dict[str, torch.Tensor] = {}

    def record(activation: torch.Tensor, name: str) -> None:
        cache[name] = activation.detach().clone()

    with hooks(bound.handle, {name: record for name in names}), torch.no_grad():
        output = hf_model(input_ids=input_ids, attention_mask=attention_mask, **forward_kwargs)
    return model_output_tensor(output), {name: cache[name] for name in names if name in cache}


def model_output_tensor(output: Any) -> torch.Tensor:
    """The logits of a model output, or its ``last_hidden_state`` for a headless model."""
    for field in ("logits", "last_hidden_state"):
        value = getattr(output, field, None)
        if isinstance(value, torch.Tensor):
            return value
    if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise SiteError(f"cannot find logits or last_hidden_state in the model output ({type(output).__name__})")


def _register(bound: BoundModel, name: str, functions: list[SiteFn]) -> RemovableHandle:
    """Register one torch hook that runs ``functions`` at site ``name``."""
    layer, kind = parse_site(name)
    point = bound.point(kind)
    module = bound.module(layer, kind)
    n_heads = bound.n_heads or 1

    def to_site(raw: torch.Tensor) -> torch.Tensor:
        return raw.unflatten(-1, (n_heads, -1)) if kind is SiteKind.Z else raw

    def to_raw(site: torch.Tensor) -> torch.Tensor:
        return site.flatten(-2) if kind is SiteKind.Z else site

    def apply(raw: torch.Tensor) -> torch.Tensor | None:
        """Run the functions; the replacement in the module's layout, or None."""
        value = to_site(raw)
        replaced = False
        for fn in functions:
            result = fn(value, name)
            if result is None:
                continue
            if kind is SiteKind.PATTERN:
                raise SiteError(f"{name} is observe-only: attention probabilities cannot be replaced by a hook")
            value = _checked_replacement(result, value, name)
            replaced = True
        if not replaced:
            return None
        new_raw = to_raw(value)
        if point.in_place:
            raw.copy_(new_raw)
            return None
        return new_raw

    if point.io is Io.INPUT:

        def pre_hook(_module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict] | None:
            raw, where = _first_input(args, kwargs, name)
            new_raw = apply(raw)
            if new_raw is None:
                return None
            if isinstance(where, int):
                return (new_raw, *args[1:]), kwargs
            return args, {**kwargs, where: new_raw}

        return module.register_forward_pre_hook(pre_hook, with_kwargs=True)

    def forward_hook(_module: nn.Module, _args: tuple, output: Any) -> Any:
        is_tuple = isinstance(output, tuple)
        raw = output[point.index] if is_tuple else output
        if raw is None:
            raise SiteError(f"{name}: the module returned no tensor here ({type(_module).__name__})")
        new_raw = apply(raw)
        if new_raw is None:
            return None
        if is_tuple:
            return (*output[: point.index], new_raw, *output[point.index + 1 :])
        return new_raw

    return module.register_forward_hook(forward_hook)


def _first_input(args: tuple, kwargs: dict, name: str) -> tuple[torch.Tensor, int | str]:
    """The module's first input and where it is: position 0 or a keyword."""
    if args and isinstance(args[0], torch.Tensor):
        return args[0], 0
    for keyword in _INPUT_KEYWORDS:
        if isinstance(kwargs.get(keyword), torch.Tensor):
            return kwargs[keyword], keyword
    raise SiteError(f"{name}: cannot find the module's input tensor (args: {len(args)}, kwargs: {sorted(kwargs)})")


def _checked_replacement(result: Any, current: torch.Tensor, name: str) -> torch.Tensor:
    """``result`` as a replacement of ``current``: same shape, cast to its dtype and device."""
    if not isinstance(result, torch.Tensor):
        raise SiteError(f"hook at {name} returned {type(result).__name__}; return a tensor or None")
    if result.shape != current.shape:
        raise SiteError(
            f"hook at {name} returned shape {tuple(result.shape)}; the site has shape {tuple(current.shape)}"
        )
    replacement = result.to(dtype=current.dtype, device=current.device)
    return replacement.clone() if replacement is result else replacement
