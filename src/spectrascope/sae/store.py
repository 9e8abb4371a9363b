"""An on-disk activation store: one model site's activations over domain corpora, in chunks.

Layout of a store folder::

    meta.json                 what was collected and how far (rewritten atomically)
    chunk_00000.safetensors   activations (n, d) float16 or bfloat16, text (n,) int32,
    chunk_00001.safetensors   position (n,) int32, domain (n,) int16
    ...

Writing (:func:`build_store`) streams: texts are tokenized one at a time, a forward pass runs
only up to the site (a hook stops it there), the selected tokens' vectors are appended to a
buffer that is written as a chunk once it holds ``chunk_tokens`` rows. Memory is one chunk
plus one batch, whatever the corpus size. Domains are visited round-robin, one batch each,
so every chunk mixes all domains. The token budget is split evenly between domains.

Which tokens: every real token but, by default, each text's first position: a causal LM
writes a huge, text-independent vector there (the attention sink; SmolLM2 adds no BOS, so
it is the first word), which would dominate an SAE's reconstruction loss.

Held-out text: text i of a corpus is held out when ``i % 5 == 4`` (:func:`is_held_out`); the
store reads only the others, so feature statistics (:mod:`spectrascope.sae.features`) can
be measured on text the SAE never saw.

Resuming: a chunk is written under a temporary name and renamed, then ``meta.json`` records
it together with each domain's text cursor. An interrupted build leaves ``complete: false``;
running it again with the same settings continues after the last recorded chunk.

Reading (:meth:`ActivationStore.batches`) shuffles: chunks in a random order, a few at a
time (``buffer_chunks``), rows permuted within that buffer.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..errors import SiteError
from .base import SaeError

FORMAT = "spectrascope-activation-store"
VERSION = 1
DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}
HELD_OUT_EVERY = 5
CHUNK_TOKENS = 32_768
BATCH_TOKENS = 2048


def is_held_out(text_index: int) -> bool:
    """Whether text ``text_index`` of a corpus is held out of training (every fifth text)."""
    return text_index % HELD_OUT_EVERY == HELD_OUT_EVERY - 1


class _StopForward(Exception):
    """Raised by the site hook once the activation is recorded: the rest of the forward is skipped."""


@dataclass
class TextBatch:
    """A padded batch of whole texts of one domain.

    Attributes:
        input_ids, attention_mask: (batch, pos).
        keep: (batch, pos) bool, the tokens whose activations are used.
        texts: (batch,) index of each row's text in its corpus.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    keep: torch.Tensor
    texts: torch.Tensor


def text_batches(
    tokenizer: Any,
    texts: list[str],
    indices: list[int],
    max_tokens: int,
    seq_len: int,
    skip_first: bool = True,
    batch_tokens: int = BATCH_TOKENS,
) -> Iterator[tuple[TextBatch, int]]:
    """Padded batches of the texts ``indices`` (in order), until ``max_tokens`` kept tokens.

    Yields ``(batch, next)`` with ``next`` the position in ``indices`` after the batch's last
    text (the resume cursor). A text longer than what is left of the budget is cut.
    """
    if tokenizer is None:
        raise SaeError("this model has no tokenizer: cannot tokenize a corpus")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    rows: list[tuple[int, list[int]]] = []
    remaining = max_tokens
    after_last = 0  # position in ``indices`` after the last text used or skipped

    def flush() -> TextBatch:
        width = max(len(ids) for _, ids in rows)
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, (_, ids) in enumerate(rows):
            input_ids[r, : len(ids)] = torch.tensor(ids)
            mask[r, : len(ids)] = 1
        keep = mask.bool().clone()
        if skip_first:
            keep[:, 0] = False
        return TextBatch(input_ids, mask, keep, torch.tensor([t for t, _ in rows], dtype=torch.int32))

    for cursor, index in enumerate(indices):
        if remaining <= 0:
            break
        ids = tokenizer(texts[index], truncation=True, max_length=seq_len)["input_ids"]
        usable = len(ids) - (1 if skip_first else 0)
        if usable <= 0:
            after_last = cursor + 1
            continue
        if usable > remaining:
            ids = ids[: remaining + (1 if skip_first else 0)]
            usable = remaining
        width = max([len(ids)] + [len(r) for _, r in rows])
        if rows and width * (len(rows) + 1) > batch_tokens:
            yield flush(), cursor
            rows = []
        rows.append((index, ids))
        remaining -= usable
        after_last = cursor + 1
    if rows:
        yield flush(), after_last


def by_length(batches: Iterable[TextBatch], pad: int, batch_tokens: int = BATCH_TOKENS) -> Iterator[TextBatch]:
    """The rows of ``batches`` (the same texts, ids and kept tokens) re-batched longest first, each
    batch padded to its first row's length and holding at most ``batch_tokens`` positions (one
    row at least): short texts are no longer padded to a long neighbour's length. Held-out
    batches of calendar, arithmetic and geography texts (5 to 20 tokens) were 1.5-1.9 positions
    per kept token in text order."""
    rows: list[tuple[int, torch.Tensor, torch.Tensor]] = []
    for batch in batches:
        for r in range(batch.input_ids.shape[0]):
            n = int(batch.attention_mask[r].sum())
            rows.append((int(batch.texts[r]), batch.input_ids[r, :n], batch.keep[r, :n]))
    rows.sort(key=lambda row: -row[1].numel())  # stable: equal lengths keep the texts' order
    start = 0
    while start < len(rows):
        width = rows[start][1].numel()
        stop = start + max(1, batch_tokens // max(width, 1))
        part = rows[start:stop]
        input_ids = torch.full((len(part), width), pad, dtype=torch.long)
        mask = torch.zeros((len(part), width), dtype=torch.long)
        keep = torch.zeros((len(part), width), dtype=torch.bool)
        for i, (_, ids, kept) in enumerate(part):
            input_ids[i, : ids.numel()] = ids
            mask[i, : ids.numel()] = 1
            keep[i, : ids.numel()] = kept
        yield TextBatch(input_ids, mask, keep, torch.tensor([t for t, _, _ in part], dtype=torch.int32))
        start = stop


def site_activations(hf: torch.nn.Module, batch: TextBatch, site: str, device: torch.device) -> torch.Tensor:
    """(kept tokens, d) float32 activations at ``site``: a forward pass stopped at the site."""
    from ..trace import hooks

    captured: list[torch.Tensor] = []

    def record(activation: torch.Tensor, _name: str) -> None:
        captured.append(activation.detach())
        raise _StopForward

    with hooks(hf, {site: record}), torch.no_grad():
        try:
            hf(input_ids=batch.input_ids.to(device), attention_mask=batch.attention_mask.to(device), use_cache=False)
        except _StopForward:
            pass
    if not captured:
        raise SiteError(f"the forward pass never reached {site}")
    activation = captured[0]
    if activation.dim() == 4:  # attn.hook_z: (batch, pos, head, d_head)
        activation = activation.flatten(start_dim=2)
    return activation[batch.keep.to(activation.device)].float().cpu()


def resolve_site(hf: torch.nn.Module, site: str) -> str:
    """One full site name from a request; SiteError for unknown, several or pattern sites."""
    from ..trace.architectures import bind
    from ..trace.sites import SiteKind, parse_site
    from ..trace.tracer import resolve_sites

    names = resolve_sites(bind(hf), [site])
    if len(names) != 1:
        raise SiteError(f"site {site!r} names {len(names)} sites; an SAE reads one (e.g. blocks.6.hook_resid_post)")
    if parse_site(names[0])[1] is SiteKind.PATTERN:
        raise SiteError("attention patterns are not token vectors: choose another site for an SAE")
    return names[0]


def site_width(hf: torch.nn.Module, site: str) -> int:
    """The width of a site's token vectors (d_model, d_mlp, or heads x d_head for hook_z)."""
    from ..trace.sites import SiteKind, parse_site

    config = hf.config.get_text_config() if hasattr(hf.config, "get_text_config") else hf.config
    kind = parse_site(site)[1]
    if kind is SiteKind.MLP_POST:
        return int(config.intermediate_size)
    if kind is SiteKind.Z:
        heads = int(config.num_attention_heads)
        return heads * int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    return int(config.hidden_size)


class ActivationStore:
    """A store folder opened for reading (see the module docstring)."""

    def __init__(self, folder: Path, meta: dict) -> None:
        self.folder = Path(folder)
        self.meta = meta

    @staticmethod
    def is_store(path: str | Path) -> bool:
        """Whether ``path`` is a folder with a store's meta.json."""
        meta = Path(path) / "meta.json"
        if not meta.is_file():
            return False
        try:
            return json.loads(meta.read_text()).get("format") == FORMAT
        except (ValueError, OSError):
            return False

    @classmethod
    def open(cls, path: str | Path, require_complete: bool = True) -> ActivationStore:
        """Open a store; SaeError if it is not one, is corrupt, or (by default) is incomplete."""
        folder = Path(path)
        if not cls.is_store(folder):
            raise SaeError(f"{folder}: not an activation store (no valid meta.json)")
        meta = json.loads((folder / "meta.json").read_text())
        store = cls(folder, meta)
        missing = [c["file"] for c in meta["chunks"] if not (folder / c["file"]).is_file()]
        if missing:
            raise SaeError(f"{folder}: {len(missing)} chunk file(s) missing, e.g. {missing[0]}")
        if require_complete and not meta.get("complete"):
            raise SaeError(
                f"{folder}: the activation store is incomplete (interrupted); run the same command again to resume it"
            )
        if store.n_tokens == 0:
            raise SaeError(f"{folder}: the activation store holds no tokens")
        return store

    @property
    def d(self) -> int:
        return int(self.meta["d"])

    @property
    def n_tokens(self) -> int:
        return int(sum(c["tokens"] for c in self.meta["chunks"]))

    @property
    def site(self) -> str:
        return str(self.meta["site"])

    @property
    def domains(self) -> list[str]:
        return [d["name"] for d in self.meta["domains"]]

    def chunk(self, i: int) -> dict[str, torch.Tensor]:
        """Chunk ``i``: activations (n, d) in the store's dtype, text, position, domain (n,)."""
        return load_file(str(self.folder / self.meta["chunks"][i]["file"]))

    def batches(self, batch_size: int, generator: torch.Generator, buffer_chunks: int = 4) -> Iterator[torch.Tensor]:
        """One shuffled pass over every token: (batch, d) float32 tensors.

        Chunks are read in a random order, ``buffer_chunks`` at a time, and rows are permuted
        within that buffer; memory is ``buffer_chunks`` chunks.
        """
        order = torch.randperm(len(self.meta["chunks"]), generator=generator).tolist()
        for start in range(0, len(order), buffer_chunks):
            rows = torch.cat([self.chunk(i)["activations"] for i in order[start : start + buffer_chunks]])
            permutation = torch.randperm(rows.shape[0], generator=generator)
            for b in range(0, rows.shape[0], batch_size):
                yield rows[permutation[b : b + batch_size]].float()

    def sae_metadata(self) -> dict[str, Any]:
        """Facts about the training data, under SAELens's metadata names where it has them."""
        return {
            "model_name": self.meta["model"],
            "hook_name": self.meta["site"],
            "context_size": self.meta["seq_len"],
            "prepend_bos": False,
            "dataset_path": self.meta["corpora"],
            "skip_first_position": self.meta["skip_first"],
            "activation_store_tokens": self.n_tokens,
        }


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def _settings(
    model_name: str, site: str, corpora: str, tokens: int, d: int, dtype: str, seq_len: int, skip_first: bool
) -> dict:
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": model_name,
        "site": site,
        "corpora": corpora,
        "tokens_requested": tokens,
        "d": d,
        "dtype": dtype,
        "seq_len": seq_len,
        "skip_first": skip_first,
    }


def build_store(
    model: Any,
    site: str,
    corpora: str,
    tokens: int,
    folder: str | Path,
    dtype: str = "float16",
    seq_len: int = 128,
    skip_first: bool = True,
    device: str = "cpu",
    chunk_tokens: int = CHUNK_TOKENS,
    show_progress: bool = False,
) -> ActivationStore:
    """Collect ``tokens`` activations of ``site`` over ``corpora`` into ``folder`` (or resume).

    Args:
        model: a bundled model name, a path, or a loaded model (``.hf``, ``.tokenizer``).
        site: one site (full name, e.g. ``blocks.6.hook_resid_post``).
        corpora: comma-separated built-in names and/or paths (each a domain).
        tokens: activations to collect in all (split evenly between domains).
        dtype: ``float16`` or ``bfloat16`` on disk.
        seq_len: the longest text fed to the model (tokens).
        skip_first: leave out each text's first position (the attention sink).
        chunk_tokens: rows per chunk file.
    Returns:
        the complete store. A domain whose (training) texts run out before its share gives
        fewer tokens; ``meta.json`` records what each domain gave.
    Raises:
        SaeError, SiteError, CorpusError: bad settings, an unknown site, an empty corpus, or a
        different store already in ``folder``. A build that produced no token leaves nothing.
    """
    from ..corpora import corpus_texts
    from ..progress import progress_bar

    if dtype not in DTYPES:
        raise SaeError(f"store dtype must be one of {', '.join(DTYPES)} (got {dtype!r})")
    for name, value in (("tokens", tokens), ("seq_len", seq_len), ("chunk_tokens", chunk_tokens)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (2 if name == "seq_len" else 1):
            raise SaeError(f"{name} must be a positive integer (got {value!r})")
    loaded = _as_loaded(model, device)
    site = resolve_site(loaded.hf, site)
    domains = corpus_texts(corpora)
    folder = Path(folder)
    d = site_width(loaded.hf, site)
    settings = _settings(str(getattr(loaded, "name", model)), site, corpora, tokens, d, dtype, seq_len, skip_first)
    meta = _start(folder, settings, domains, tokens)
    if meta.get("complete"):
        return ActivationStore.open(folder)
    created = not any(c for c in meta["chunks"])
    device_t = next(loaded.hf.parameters()).device
    torch_dtype = DTYPES[dtype]
    buffers: list[dict[str, torch.Tensor]] = []
    buffered = 0
    cursors = {i: dict(state) for i, state in enumerate(meta["domains"])}
    streams = {
        i: _domain_stream(loaded.tokenizer, corpus, meta["domains"][i], seq_len, skip_first)
        for i, corpus in enumerate(domains)
    }
    done_tokens = sum(state["tokens"] for state in meta["domains"])
    try:
        with progress_bar(f"activation store {site}", total=tokens, enabled=show_progress) as advance:
            advance(done_tokens)
            while streams:
                for i in list(streams):
                    item = next(streams[i], None)
                    if item is None:
                        del streams[i]
                        continue
                    batch, cursor = item
                    rows = site_activations(loaded.hf, batch, site, device_t)
                    stored = rows.to(torch_dtype)
                    if not bool(torch.isfinite(stored).all()):
                        raise SaeError(f"activations at {site} overflow {dtype}; use dtype='bfloat16'")
                    positions = torch.nonzero(batch.keep)
                    buffers.append(
                        {
                            "activations": stored,
                            "text": batch.texts[positions[:, 0]],
                            "position": positions[:, 1].to(torch.int32),
                            "domain": torch.full((rows.shape[0],), i, dtype=torch.int16),
                        }
                    )
                    buffered += rows.shape[0]
                    cursors[i]["next_text"] = cursor
                    cursors[i]["tokens"] += rows.shape[0]
                    advance(rows.shape[0])
                    if buffered >= chunk_tokens:
                        _flush(folder, meta, buffers, cursors)
                        buffers, buffered = [], 0
            if buffers:
                _flush(folder, meta, buffers, cursors)
    except BaseException:
        if created and not meta["chunks"]:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    if not meta["chunks"]:
        shutil.rmtree(folder, ignore_errors=True)
        from ..errors import CorpusError

        raise CorpusError(f"the corpora {corpora!r} produced no tokens at {site}")
    meta["complete"] = True
    meta["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    _write_json(folder / "meta.json", meta)
    return ActivationStore.open(folder)


def _as_loaded(model: Any, device: str) -> Any:
    if hasattr(model, "hf") and hasattr(model, "tokenizer"):
        return model
    from ..models.loaded import load_model

    return load_model(
        model,
        device="cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device),
    )


def _start(folder: Path, settings: dict, domains: list, tokens: int) -> dict:
    """The store's meta: a fresh one, or the existing one when its settings match."""
    if ActivationStore.is_store(folder):
        meta = json.loads((folder / "meta.json").read_text())
        differ = [k for k, v in settings.items() if meta.get(k) != v]
        if differ:
            raise SaeError(
                f"{folder} holds an activation store with other settings ({', '.join(differ)}); "
                "choose another folder or delete it"
            )
        return meta
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise SaeError(f"{folder} exists and is not an activation store; choose an empty or new folder")
    folder.mkdir(parents=True, exist_ok=True)
    shares = [tokens // len(domains) + (1 if i < tokens % len(domains) else 0) for i in range(len(domains))]
    meta = {
        **settings,
        "complete": False,
        "chunks": [],
        "domains": [{"name": c.name, "budget": s, "next_text": 0, "tokens": 0} for c, s in zip(domains, shares)],
    }
    _write_json(folder / "meta.json", meta)
    return meta


def _domain_stream(tokenizer: Any, corpus: Any, state: dict, seq_len: int, skip_first: bool):
    """Batches of one domain's training texts from its cursor, up to its remaining budget."""
    train = [i for i in range(len(corpus.texts)) if not is_held_out(i)]
    remaining = state["budget"] - state["tokens"]
    if remaining <= 0:
        return iter(())
    start = state["next_text"]
    return (
        (batch, start + cursor)
        for batch, cursor in text_batches(tokenizer, corpus.texts, train[start:], remaining, seq_len, skip_first)
    )


def _flush(folder: Path, meta: dict, buffers: list[dict[str, torch.Tensor]], cursors: dict[int, dict]) -> None:
    """Write the buffer as the next chunk (temporary name, then rename), then record it."""
    name = f"chunk_{len(meta['chunks']):05d}.safetensors"
    tensors = {key: torch.cat([b[key] for b in buffers]).contiguous() for key in buffers[0]}
    tmp = folder / (name + ".tmp")
    save_file(tensors, str(tmp))
    os.replace(tmp, folder / name)
    counts = np.bincount(tensors["domain"].numpy(), minlength=len(meta["domains"]))
    meta["chunks"].append(
        {"file": name, "tokens": int(tensors["activations"].shape[0]), "by_domain": [int(c) for c in counts]}
    )
    for i, state in cursors.items():
        meta["domains"][i].update(next_text=state["next_text"], tokens=state["tokens"])
    _write_json(folder / "meta.json", meta)
