"""Expert routing of a mixture-of-experts model, per domain: which experts a domain's tokens use.

Every MoE layer has a router (``ArchSpec.moe.router``, e.g. ``mlp.gate``) whose output holds
the router logits ``(tokens, n_experts)``. A forward hook reads them, and each statistic token
(real tokens, the first position of each sequence left out: the attention sink; see
:func:`~spectrascope.activations.batching.token_batches`) contributes its top-k experts
(``k`` = the config's experts per token; the experts the model's own top-k selects, since
softmax keeps the order of the logits) and its router probabilities.

Table (:data:`ROUTING_COLUMNS`), one row per (layer, domain, expert):

==============  =======================================================================
``layer``       block index of an MoE layer (dense layers of mixed models are absent)
``domain``      corpus name
``expert``      expert index
``n_tokens``    statistic tokens of the domain
``assignments`` top-k slots routed to the expert (``n_tokens * top_k`` slots in all)
``frequency``   ``assignments / (n_tokens * top_k)``: the expert's share of the domain's
                routing; sums to 1 over the experts of a layer
``enrichment``  ``frequency * n_experts``: 1 = uniform routing, > 1 = the domain prefers it
``mean_prob``   mean router softmax probability of the expert over the domain's tokens
==============  =======================================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..arch import config_get
from ..corpora import DEFAULT_CORPORA
from ..errors import ArchitectureError
from ..models.handle import ModelLike, as_model
from ..progress import progress_bar
from ..report.figures import heatmap
from ..report.html import Section
from ..tables import write_table
from ..trace.architectures import bind
from .batching import token_batches

ROUTING_COLUMNS = ["layer", "domain", "expert", "n_tokens", "assignments", "frequency", "enrichment", "mean_prob"]
DEFAULT_ROUTING_CORPORA = DEFAULT_CORPORA


@dataclass
class RoutingCounts:
    """Routing statistics of one MoE layer: tokens seen, top-k assignments and summed
    router probabilities per expert (float64)."""

    n_experts: int
    n_tokens: int = 0
    assignments: np.ndarray = field(init=False)
    prob_sum: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.assignments = np.zeros(self.n_experts, dtype=np.int64)
        self.prob_sum = np.zeros(self.n_experts, dtype=np.float64)

    def update(self, logits: torch.Tensor, mask: torch.Tensor | None, top_k: int) -> None:
        """Add tokens: ``logits`` (tokens, n_experts), ``mask`` (tokens,) 1 = counted (None: all)."""
        logits = logits.detach().reshape(-1, self.n_experts).double()
        if mask is not None:
            logits = logits[mask.reshape(-1).to(logits.device).bool()]
        probs = torch.softmax(logits, dim=-1)
        chosen = probs.topk(top_k, dim=-1).indices.flatten()
        self.n_tokens += int(logits.shape[0])
        self.assignments += np.bincount(chosen.cpu().numpy(), minlength=self.n_experts)
        self.prob_sum += probs.sum(dim=0).cpu().numpy()


def moe_shape(model: ModelLike) -> tuple[int, int]:
    """(n_experts, experts per token) of a mixture-of-experts model; :class:`ArchitectureError` otherwise."""
    handle = as_model(model)
    moe = handle.spec.moe
    if moe is None:
        raise ArchitectureError(
            f"{handle.name} ({handle.spec.name}) is not a mixture-of-experts model: no expert routing"
        )
    n_experts, top_k = config_get(handle.config, moe.n_experts), config_get(handle.config, moe.top_k)
    if not n_experts or not top_k:
        raise ArchitectureError(f"{handle.name}: the config gives no expert counts ({'/'.join(moe.n_experts)})")
    return int(n_experts), int(top_k)


def routing_counts(model: ModelLike, batches: Iterable[Mapping[str, torch.Tensor]]) -> dict[int, RoutingCounts]:
    """Routing statistics of every MoE layer over ``batches`` (one forward pass each).

    Args:
        batches: dicts with ``input_ids``, ``attention_mask`` and optionally ``stats_mask``
            (the counted tokens; default ``attention_mask``), as :func:`token_batches` yields.

    Returns:
        layer -> :class:`RoutingCounts`, for the layers that have a router.
    """
    handle = as_model(model)
    n_experts, top_k = moe_shape(handle)
    moe = handle.spec.moe
    assert moe is not None  # moe_shape refused otherwise
    router_path = moe.router
    routers = {}
    for layer, block in enumerate(bind(handle).blocks):
        try:
            routers[layer] = block.get_submodule(router_path)
        except AttributeError:
            continue  # a dense layer of a mixed model
    counts = {layer: RoutingCounts(n_experts) for layer in routers}
    mask: list[torch.Tensor | None] = [None]

    def hook_for(layer: int):
        def hook(_module: torch.nn.Module, _args: tuple, output) -> None:
            logits = output[0] if isinstance(output, tuple) else output
            if logits.shape[-1] != n_experts:
                raise ArchitectureError(f"layer {layer}: the router gave {logits.shape[-1]} logits, not {n_experts}")
            counts[layer].update(logits, mask[0], top_k)

        return hook

    handles = [module.register_forward_hook(hook_for(layer)) for layer, module in routers.items()]
    device = handle.device
    try:
        with torch.no_grad():
            for batch in batches:
                batch = dict(batch)
                stats = batch.pop("stats_mask", None)
                mask[0] = stats if stats is not None else batch.get("attention_mask")
                handle.hf(**{k: v.to(device) for k, v in batch.items()}, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    return counts


def routing_rows(counts: Mapping[int, RoutingCounts], domain: str, top_k: int) -> list[dict]:
    """Rows of :data:`ROUTING_COLUMNS` for one domain's counts."""
    rows = []
    for layer, c in sorted(counts.items()):
        slots = max(1, c.n_tokens * top_k)
        for expert in range(c.n_experts):
            frequency = c.assignments[expert] / slots
            rows.append(
                {
                    "layer": layer,
                    "domain": domain,
                    "expert": expert,
                    "n_tokens": c.n_tokens,
                    "assignments": int(c.assignments[expert]),
                    "frequency": float(frequency),
                    "enrichment": float(frequency * c.n_experts),
                    "mean_prob": float(c.prob_sum[expert] / max(1, c.n_tokens)),
                }
            )
    return rows


def expert_routing(
    model: ModelLike,
    corpora: str = DEFAULT_ROUTING_CORPORA,
    max_tokens: int = 2048,
    seq_len: int = 128,
    out_dir: str | Path | None = None,
    show_progress: bool = False,
) -> pd.DataFrame:
    """Expert routing frequencies per MoE layer and domain (see the module docstring).

    Args:
        model: a mixture-of-experts model with a tokenizer (anything ``as_model`` accepts).
        corpora: comma-separated built-in names and/or paths.
        max_tokens: statistic tokens per domain.
        out_dir: if given, the table is written there as ``expert_routing.parquet/.csv``.

    Raises:
        ArchitectureError: not a mixture-of-experts model.
    """
    from ..corpora import corpus_texts

    handle = as_model(model)
    _, top_k = moe_shape(handle)
    domains = corpus_texts(corpora)
    rows: list[dict] = []
    with progress_bar("expert routing", total=len(domains), enabled=show_progress) as advance:
        for corpus in domains:
            batches = token_batches(handle.tokenizer, corpus.texts, max_tokens, seq_len)
            rows += routing_rows(routing_counts(handle, batches), corpus.name, top_k)
            advance(1)
    table = pd.DataFrame(rows, columns=ROUTING_COLUMNS)
    if out_dir:
        write_table(table, out_dir, "expert_routing")
    return table


def routing_section(table: pd.DataFrame) -> Section:
    """A report section: per MoE layer, a domain x expert heat map of the routing enrichment
    (``frequency * n_experts``; 1 = uniform), and the most domain-specific experts."""
    section = Section("expert-routing", "Expert routing by domain")
    if table.empty:
        section.paragraphs.append("No mixture-of-experts layers were routed.")
        return section
    n_experts = int(table["expert"].max()) + 1
    section.paragraphs.append(
        f"Share of each domain's routing slots (top-k experts per token, first position of each text left out) "
        f"that goes to each of the {n_experts} experts, relative to uniform routing (1 = 1/{n_experts} of the slots). "
        f"{table['layer'].nunique()} MoE layers; {int(table.groupby('domain')['n_tokens'].first().min())} or more "
        "tokens per domain."
    )
    for layer, rows in table.groupby("layer", sort=True):
        grid = rows.pivot_table(index="domain", columns="expert", values="enrichment")
        section.figures.append(
            heatmap(
                grid,
                f"Layer {layer}: routing enrichment by domain and expert",
                "enrichment",
                "expert",
                "domain",
                colorscale="RdBu_r",
                zmid=1.0,
            )
        )
    top = table.sort_values("enrichment", ascending=False).groupby("domain", sort=True).head(3)
    section.tables.append(
        top[["domain", "layer", "expert", "frequency", "enrichment", "n_tokens"]]
        .sort_values(["domain", "enrichment"], ascending=[True, False])
        .reset_index(drop=True)
    )
    return section
