"""Circle fits of cyclic classes: synthetic circles with known order, the calendar texts,
and the calendar experiment end to end on a tiny random Llama."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from spectrascope.corpora.calendar_probe import calendar_texts
from spectrascope.errors import SpectrascopeError
from spectrascope.mech.circular import (
    CALENDAR_COLUMNS,
    CIRCLE_COLUMNS,
    calendar_experiment,
    circle_scores,
    ledoit_wolf_shrinkage,
    order_score,
)


def circle_data(
    n_classes: int = 12,
    per_class: int = 30,
    d: int = 60,
    order: np.ndarray | None = None,
    noise: float = 0.2,
    nuisance: float = 0.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Class k at angle 2 pi order[k] / K on a radius-3 circle in a random plane of R^d, plus noise.

    ``nuisance``: std of extra class-independent variation along one more random direction.
    """
    rng = np.random.default_rng(seed)
    order = np.arange(n_classes) if order is None else np.asarray(order)
    classes = np.repeat(np.arange(n_classes), per_class)
    basis = np.linalg.qr(rng.normal(size=(d, 3)))[0]
    theta = 2 * np.pi * order[classes] / n_classes
    x = 3.0 * (np.cos(theta)[:, None] * basis[:, 0] + np.sin(theta)[:, None] * basis[:, 1])
    x = x + nuisance * rng.normal(size=(len(classes), 1)) * basis[:, 2] + noise * rng.normal(size=x.shape) + 5.0
    return x, classes


@pytest.mark.parametrize("plane", ["lda", "pca"])
@pytest.mark.parametrize("n_classes", [12, 7])
def test_calendar_circle_scores_high(plane: str, n_classes: int) -> None:
    x, classes = circle_data(n_classes)
    scores = circle_scores(x, classes, n_classes, plane=plane)
    assert set(scores) == set(CIRCLE_COLUMNS)
    assert scores["circle_r2"] > 0.95
    assert scores["order_score"] == 1.0
    assert scores["circle_r2_control"] < 0.6
    assert scores["radius_cv"] < 0.05
    assert scores["order_chance"] == pytest.approx(2 / (n_classes - 1))


@pytest.mark.parametrize("plane", ["lda", "pca"])
def test_shuffled_order_scores_lower(plane: str) -> None:
    shuffled = np.random.default_rng(5).permutation(12)
    x, classes = circle_data(order=shuffled)
    scores = circle_scores(x, classes, 12, plane=plane)
    ordered = circle_scores(*circle_data(), 12, plane=plane)
    assert scores["order_score"] < 0.5
    assert scores["circle_r2"] < ordered["circle_r2"] - 0.5
    # the same points with their own (shuffled) order as the calendar: a perfect circle again
    relabeled = shuffled[classes]
    assert circle_scores(x, relabeled, 12, plane=plane)["order_score"] == 1.0


def test_lda_plane_ignores_large_within_class_variation() -> None:
    """A direction with huge class-independent variance dominates the PCA of noisy class means, not LDA."""
    x, classes = circle_data(per_class=8, nuisance=40.0, noise=0.5, seed=2)
    lda = circle_scores(x, classes, 12, plane="lda")
    pca = circle_scores(x, classes, 12, plane="pca")
    assert lda["circle_r2"] > 0.9 and lda["order_score"] == 1.0
    assert pca["circle_r2"] < lda["circle_r2"] - 0.2


def test_order_score_by_hand() -> None:
    k = np.arange(12)
    assert order_score(2 * np.pi * k / 12) == 1.0
    assert order_score(-2 * np.pi * k / 12) == 1.0  # reversed direction
    assert order_score(np.roll(2 * np.pi * k / 12 - np.pi, 5)) == 1.0  # rotated
    # swap the positions of classes 0 and 1: pairs (0,1) stay adjacent, (11,0) and (1,2) break
    swapped = 2 * np.pi * np.array([1, 0, *range(2, 12)]) / 12
    assert order_score(swapped) == pytest.approx(10 / 12)
    # 4 classes, positions in order 0, 2, 1, 3 around the circle: adjacent pairs (0,1)? no ... by hand:
    # ring 0-2-1-3-0: neighbors 0:{2,3}, 1:{2,3}; calendar pairs (0,1) no, (1,2) yes, (2,3) no, (3,0) yes
    assert order_score(np.array([0.0, 2.0, 1.0, 3.0])) == pytest.approx(0.5)
    with pytest.raises(SpectrascopeError):
        order_score(np.array([0.0, 1.0]))


def test_circle_errors() -> None:
    x, classes = circle_data()
    with pytest.raises(SpectrascopeError, match="class labels"):
        circle_scores(x, classes[:-1], 12)
    with pytest.raises(SpectrascopeError, match="integers in 0..6"):
        circle_scores(x, classes, 7)
    with pytest.raises(SpectrascopeError, match="unknown circle plane"):
        circle_scores(x, classes, 12, plane="tsne")


# ----------------------------------------------------------------------------- calendar texts


@pytest.mark.parametrize("target", ["month", "weekday"])
@pytest.mark.parametrize("position", ["word", "last"])
def test_calendar_texts(target: str, position: str) -> None:
    texts, classes, words = calendar_texts(target, max_texts=84, seed=1, position=position)
    k = 12 if target == "month" else 7
    assert Counter(classes.tolist()) == {c: 84 // k for c in range(k)}
    assert len(set(texts)) == len(texts)
    for text, word in zip(texts, words, strict=True):
        assert word in text and not text.startswith(word)
        if position == "last":
            assert text.endswith(word + ".")
    again = calendar_texts(target, max_texts=84, seed=1, position=position)
    assert again[0] == texts
    from spectrascope.corpora import load_corpus

    corpus = set(load_corpus("calendar", seed=1).texts)
    assert any(t in corpus for t in texts)  # the built-in corpus is reused


def test_calendar_texts_errors() -> None:
    with pytest.raises(SpectrascopeError, match="unknown calendar target"):
        calendar_texts("year")
    with pytest.raises(SpectrascopeError, match="at least 24"):
        calendar_texts("month", max_texts=20)
    with pytest.raises(SpectrascopeError, match="'word' or 'last'"):
        calendar_texts("month", position="mean")


def test_calendar_experiment_runs_on_a_tiny_llama(tiny) -> None:
    df = calendar_experiment(tiny, max_texts=84, seed=0)
    assert list(df.columns) == list(CALENDAR_COLUMNS)
    assert len(df) == 6 and set(df["target"]) == {"month", "weekday"} and set(df["layer"]) == {0, 1, 2}
    # month and weekday words are distinct tokens: even a random model's layer 0 tells them apart
    assert (df["accuracy"] > df["chance"] + 0.3).all()
    assert df[["accuracy", "control_accuracy", "circle_r2", "order_score"]].notna().all().all()


def test_ledoit_wolf_matches_scikit_learn() -> None:
    from sklearn import covariance  # a test extra

    rng = np.random.default_rng(0)
    for n, d in [(50, 10), (30, 200), (200, 5)]:
        x = rng.normal(size=(n, d)) * rng.uniform(0.1, 5, size=d)
        x -= x.mean(0)
        expected = covariance.ledoit_wolf_shrinkage(x, assume_centered=True)
        assert ledoit_wolf_shrinkage(x) == pytest.approx(expected, rel=1e-9)


def test_probe_cli(tiny_dir: Path, tmp_path: Path) -> None:
    from spectrascope.cli import _register_commands, app

    folder = tiny_dir
    _register_commands()
    runner = CliRunner()
    out = tmp_path / "out"
    result = runner.invoke(
        app, ["probe", str(folder), "--experiment", "calendar", "--max-texts", "84", "--layers", "1", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out / "probes.parquet")
    assert list(table.columns) == list(CALENDAR_COLUMNS) and len(table) == 2
    assert (out / "probes.csv").exists() and "calendar probes" in result.output
    result = runner.invoke(
        app,
        [
            "probe",
            str(folder),
            "--experiment",
            "corpus",
            "--corpus",
            "geography",
            "--label",
            "continent",
            "--max-texts",
            "60",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert len(pd.read_parquet(out / "probes.parquet")) == 3  # one row per layer
    bad = runner.invoke(app, ["probe", str(folder), "--experiment", "dates", "--out", str(out)])
    assert bad.exit_code == 2 and "'dates' is not one of" in bad.output  # the choice is checked by the CLI
    for args, message in [
        (["--experiment", "corpus"], "needs --corpus"),
        (["--experiment", "corpus", "--corpus", "geography", "--label", "planet"], "no label column 'planet'"),
        (["--layers", "x"], "cannot read layers"),
    ]:
        bad = runner.invoke(app, ["probe", str(folder), *args, "--out", str(out)])
        assert bad.exit_code != 0 and message in str(bad.exception)
