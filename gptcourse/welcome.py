"""Lesson 00, welcome: softmax, the last step of every GPT, and the lesson's pictures.

A GPT ends by giving one score (a logit) to every token of its vocabulary; softmax turns those
scores into a probability distribution over the next token, and a temperature makes that
distribution sharper or flatter.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def softmax(x: np.ndarray, temperature: float = 1.0, axis: int = -1) -> np.ndarray:
    """Probabilities from scores, along one axis.

    x: array of any shape (..., V, ...), real scores; V is the length of `axis`.
    temperature: > 0; below 1 sharpens the distribution, above 1 flattens it.
    Returns an array of x's shape: entries in [0, 1] that sum to 1 along `axis`. Floating
    inputs keep their dtype; integer inputs give float64. `x` is not changed.
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be a number above 0, got {temperature!r} "
                         f"(for always picking the top score, take the argmax instead)")
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    z = x / temperature
    # softmax(z) == softmax(z - c) for any c; with c = max, exp never overflows.
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


# The journey of a GPT, from text to the next token: (stage, example, lesson that builds it).
DATA_FLOW: tuple[tuple[str, str, str], ...] = (
    ("text", "“The weather today is”", "you type it"),
    ("tokens", "The | ␣weather | ␣today | ␣is", "01 tokenization"),
    ("token ids", "[791, 9282, 3432, 374]   (GPT-4's own ids)", "01 tokenization"),
    ("vectors", "one vector of C numbers per token, plus its position", "02 embeddings"),
    ("decoder blocks × N", "attention: each token looks at the ones before it\n"
                           "feed-forward: each vector is transformed on its own",
     "lessons 03, 04 and 05"),
    ("scores (logits)", "one score for every token of the vocabulary,\n"
                        "read off the last position", "05 gpt_model"),
    ("probabilities", "softmax:  ␣fine 0.46 · ␣cloudy 0.21 · ␣sunny 0.12 · …", "00 welcome (today)"),
    ("next token", "pick or sample one, append it, and go round again", "06 generation"),
)


def draw_data_flow(ax=None):
    """Draw DATA_FLOW top to bottom as boxes and arrows; returns the matplotlib Axes."""
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    if ax is None:
        _, ax = plt.subplots(figsize=(11, 7.5))
    n = len(DATA_FLOW)
    ax.set_xlim(-0.8, 11)
    ax.set_ylim(-0.5, n - 0.4)
    ax.axis("off")
    for i, (stage, example, lesson) in enumerate(DATA_FLOW):
        y = n - 1 - i
        ax.add_patch(FancyBboxPatch((0.8, y - 0.33), 3.0, 0.66, boxstyle="round,pad=0.04",
                                    facecolor="#ffd8a8" if stage.startswith("decoder")
                                    else "#d0ebff", edgecolor="#495057"))
        ax.text(2.3, y + 0.1, stage, ha="center", va="center", fontsize=11, fontweight="bold")
        ax.text(2.3, y - 0.17, lesson, ha="center", va="center", fontsize=7.5,
                color="#495057", style="italic")
        ax.text(4.1, y, example, ha="left", va="center", fontsize=9.5, family="monospace")
        if i < n - 1:
            ax.annotate("", xy=(2.3, y - 0.63), xytext=(2.3, y - 0.37),
                        arrowprops=dict(arrowstyle="-|>", color="#495057"))
    ax.annotate("", xy=(0.75, n - 2), xytext=(0.75, 0),
                arrowprops=dict(arrowstyle="-|>", color="#868e96", linestyle="--",
                                connectionstyle="arc3,rad=-0.3"))
    ax.text(-0.45, (n - 2) / 2, "append it and repeat", ha="center", va="center",
            fontsize=8, color="#868e96", rotation=90)
    ax.set_title("How a GPT turns text into the next token (the probabilities are illustrative)",
                 fontsize=11)
    return ax


def plot_temperature(scores: Sequence[float], labels: Sequence[str],
                     temperatures: Sequence[float] = (0.5, 1.0, 2.0), ax=None):
    """Bar chart of softmax(scores, T) for each temperature T; returns the matplotlib Axes.

    scores: (V,) one score per label; labels: V token strings.
    """
    import matplotlib.pyplot as plt

    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or len(labels) != len(scores):
        raise ValueError(f"expected one label per score, got {len(labels)} labels for "
                         f"scores of shape {scores.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 3.6))
    width = 0.8 / len(temperatures)
    positions = np.arange(len(scores))
    for j, t in enumerate(temperatures):
        ax.bar(positions + (j - (len(temperatures) - 1) / 2) * width, softmax(scores, t),
               width, label=f"T = {t:g}")
    ax.set_xticks(positions, labels)
    ax.set_ylabel("probability")
    ax.set_ylim(0, 1)
    ax.legend(title="temperature")
    ax.set_title("Same scores, different temperatures")
    return ax
