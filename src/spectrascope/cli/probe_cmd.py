"""``spectrascope probe [MODEL]``: linear probes per layer (the calendar experiment, or a labeled corpus)."""

from __future__ import annotations

import re
from enum import Enum
from typing import Annotated

import typer
from rich.table import Table

from ..errors import OptionError
from . import app, console, writes_out
from .options import (
    DEFAULT_MODEL,
    DEFAULT_OUT,
    DeviceOpt,
    ModelArg,
    OutOpt,
    SeedOpt,
    require_device,
)


class ProbeExperiment(str, Enum):
    """What ``probe`` probes."""

    CALENDAR = "calendar"
    """Month and weekday identity and their calendar circles."""
    CORPUS = "corpus"
    """A label column of a corpus (``--corpus`` and ``--label``)."""


class ProbeKind(str, Enum):
    """The probe of ``--experiment corpus``."""

    LOGISTIC = "logistic"
    RIDGE = "ridge"


def parse_layers(spec: str | None) -> list[int] | None:
    """``None``/``"all"`` -> None; ``"0,5,10"``, ``"4-12"`` or a mix -> sorted layer indices."""
    if spec is None or spec.strip().lower() in ("", "all"):
        return None
    layers: set[int] = set()
    for part in (p.strip() for p in spec.split(",")):
        span = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        if span:
            layers.update(range(int(span.group(1)), int(span.group(2)) + 1))
        elif re.fullmatch(r"-?\d+", part):
            layers.add(int(part))
        elif part:
            raise OptionError(f"cannot read layers {spec!r}: use e.g. 0,5,10 or 4-12 or all")
    if not layers:
        raise OptionError(f"no layers in {spec!r}")
    return sorted(layers)


def _position(value: str) -> str | int:
    try:
        return int(value)
    except ValueError:
        return value


_SHORT = {
    "accuracy": "acc",
    "control_accuracy": "control",
    "selectivity": "select",
    "circle_r2": "circle R2",
    "circle_r2_control": "ctrl R2",
    "order_score": "order",
    "n_train": "train",
    "n_test": "test",
}


def _print_frame(df, title: str, columns: list[str]) -> None:
    table = Table(title=title)
    for col in columns:
        table.add_column(_SHORT.get(col, col), justify="left" if col in ("target", "metric") else "right")
    for row in df[columns].itertuples(index=False):
        table.add_row(*[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row])
    console.print(table)


@app.command()
@writes_out
def probe(
    model: ModelArg = DEFAULT_MODEL,
    experiment: Annotated[
        ProbeExperiment,
        typer.Option("--experiment", help="calendar (month/weekday identity and circles) or corpus (--corpus/--label)"),
    ] = ProbeExperiment.CALENDAR,
    out: OutOpt = DEFAULT_OUT,
    max_texts: Annotated[
        int, typer.Option("--max-texts", min=4, help="texts per target (calendar) or from the corpus")
    ] = 240,
    position: str = typer.Option(
        "", "--position", help="calendar: word (default) or last; corpus: last (default), mean, a token index or a word"
    ),
    layers: str | None = typer.Option(None, "--layers", help="e.g. 0,5,10 or 4-12 (default all)"),
    site: str = typer.Option(
        "resid_post", "--site", help="resid_post, resid_pre, resid_mid, attn_out, mlp_out, mlp_post, z"
    ),
    plane: str = typer.Option("lda", "--plane", help="calendar circle plane: lda (Fisher discriminant) or pca"),
    corpus: str | None = typer.Option(None, "--corpus", help="corpus experiment: built-in name or path"),
    label: str | None = typer.Option(None, "--label", help="corpus experiment: the label column to probe"),
    kind: Annotated[ProbeKind, typer.Option("--kind", help="corpus experiment: the probe")] = ProbeKind.LOGISTIC,
    seed: SeedOpt = 0,
    device: DeviceOpt = "cpu",
) -> None:
    """Linear probes per layer with a control task (Hewitt & Liang type control where the probed token varies): writes OUT/probes.parquet and .csv."""
    from ..models.loaded import load_model
    from ..tables import write_table

    layer_list = parse_layers(layers)
    if experiment is ProbeExperiment.CORPUS and (corpus is None or label is None):
        raise OptionError("--experiment corpus needs --corpus NAME_OR_PATH and --label COLUMN")
    loaded = load_model(model, device=require_device(device))
    if experiment is ProbeExperiment.CALENDAR:
        from ..mech.circular import calendar_experiment

        df = calendar_experiment(
            loaded,
            max_texts=max_texts,
            seed=seed,
            layers=layer_list,
            position=position or "word",
            site=site,
            plane=plane,
        )
        columns = [
            "target",
            "layer",
            "accuracy",
            "control_accuracy",
            "selectivity",
            "control",
            "circle_r2",
            "circle_r2_control",
            "order_score",
        ]
        title = (
            f"calendar probes: {model} ({position or 'word'} position; chance 0.083 month, 0.143 weekday; "
            "random order 0.18 / 0.33)"
        )
    else:
        df = _corpus_probe(
            loaded, corpus, label, kind.value, max_texts, _position(position or "last"), layer_list, site, seed
        )
        columns = [
            "layer",
            "metric",
            "accuracy",
            "control_accuracy",
            "selectivity",
            "control",
            "chance",
            "n_train",
            "n_test",
        ]
        title = f"{kind.value} probes for {label!r} in {corpus}: {model}"
    _print_frame(df, title, columns)
    pq, csv = write_table(df, out, "probes")
    console.print(f"wrote {pq}, {csv}")


def _corpus_probe(loaded, corpus: str, label: str, kind: str, max_texts: int, position, layers, site: str, seed: int):
    from ..corpora import load_corpus
    from ..mech.activation_cache import collect_activations, probed_tokens
    from ..mech.probes import probe_layers

    data = load_corpus(corpus, seed=seed)
    if data.labels is None or label not in data.labels.columns:
        have = ", ".join(map(str, data.labels.columns)) if data.labels is not None else "none"
        raise OptionError(f"corpus {data.name!r} has no label column {label!r} (label columns: {have})")
    keep = data.labels[label].notna().to_numpy().nonzero()[0][:max_texts]
    if len(keep) < 4:
        raise OptionError(f"corpus {data.name!r} has only {len(keep)} texts with a {label!r} label")
    texts = [data.texts[i] for i in keep]
    values = data.labels[label].iloc[keep].to_numpy()
    acts = collect_activations(loaded, texts, site=site, position=position, layers=layers)
    types = probed_tokens(loaded, texts, position)
    if any(t is None for t in types) or len(set(types)) < 2:  # a mean over tokens, or one token for all: no type
        return probe_layers(acts, values, kind=kind, seed=seed, control="shuffle")
    return probe_layers(acts, values, kind=kind, seed=seed, control="types", control_types=types)
