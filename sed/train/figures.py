"""Figures for TensorBoard: what the model hears and predicts, and how its scores separate.

Pure functions: arrays in, a :class:`matplotlib.figure.Figure` out, drawn with the Agg canvas and
never registered with pyplot, so they run on headless nodes and leak nothing if a caller forgets
to close them. Log them with ``SummaryWriter.add_figure(tag, fig, step)`` (which renders the figure
through Agg and closes it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.metrics import average_precision_score

__all__ = ["per_class_ap", "recording_figure", "score_distribution_figure", "select_classes"]

_BINS = 20


def _new_figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas
    return fig


def _check_2d(name: str, array: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {array.shape}")
    if n_classes is not None and array.shape[1] != n_classes:
        raise ValueError(f"{name} has {array.shape[1]} classes, expected {n_classes}")
    return array


def per_class_ap(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Average precision of every class (sklearn's ``average_precision_score``).

    Args:
        scores (ndarray): scores (N, C); any monotonic scale (probabilities or logits).
        truth (ndarray): labels (N, C); a value above 0 is a positive.

    Returns:
        ndarray: AP per class (C,); NaN for a class without positives, where AP is undefined.

    Raises:
        ValueError: the shapes differ or are not 2-D.
    """
    scores = _check_2d("scores", scores)
    truth = _check_2d("truth", truth)
    if scores.shape != truth.shape:
        raise ValueError(f"scores {scores.shape} and truth {truth.shape} differ in shape")
    positive = truth > 0
    out = np.full(scores.shape[1], np.nan)
    for c in np.flatnonzero(positive.any(axis=0)):
        out[c] = average_precision_score(positive[:, c], scores[:, c])
    return out


def select_classes(
    frame_scores: np.ndarray, frame_truth: np.ndarray | None, max_classes: int = 6
) -> list[int]:
    """The classes worth plotting for one recording, at most ``max_classes``.

    Classes present in the truth come first (the ones to get right), then the classes scoring
    highest anywhere in time (the likely false alarms); within each group by peak score.

    Args:
        frame_scores (ndarray): frame scores (T', C).
        frame_truth (ndarray | None): frame labels (T', C), or None.
        max_classes (int): the most classes returned.

    Returns:
        list[int]: class indices.
    """
    if frame_scores.shape[0] == 0 or max_classes <= 0:
        return []
    peak = frame_scores.max(axis=0)
    by_peak = [int(c) for c in np.argsort(-peak, kind="stable")]
    present = set()
    if frame_truth is not None and frame_truth.shape[0]:
        present = {int(c) for c in np.flatnonzero((frame_truth > 0).any(axis=0))}
    ordered = [c for c in by_peak if c in present] + [c for c in by_peak if c not in present]
    return ordered[:max_classes]


def recording_figure(
    logmel: np.ndarray,
    frame_scores: np.ndarray,
    frame_truth: np.ndarray | None,
    classes: Sequence[str],
    seconds_per_frame: float,
    seconds_per_output_frame: float,
    title: str,
    max_classes: int = 6,
) -> Figure:
    """The log-mel spectrogram of a recording above its frame scores and ground truth.

    Both panels share one time axis in seconds, so a missed or false call lines up with the sound
    it belongs to. Each plotted class has one colour: its predicted score is a line, its true
    activity a shaded band of the same colour.

    Args:
        logmel (ndarray): log-mel features (F, T), at ``seconds_per_frame``.
        frame_scores (ndarray): frame probabilities (T', C), at ``seconds_per_output_frame``.
        frame_truth (ndarray | None): frame labels (T', C) at the output rate, or None.
        classes (Sequence[str]): the C class names.
        seconds_per_frame (float): hop of the features in seconds.
        seconds_per_output_frame (float): hop of the model's output frames in seconds.
        title (str): figure title, e.g. the recording id and the step.
        max_classes (int): the most classes drawn (see :func:`select_classes`).

    Returns:
        Figure: two axes, spectrogram (top) and scores (bottom).

    Raises:
        ValueError: shapes that disagree with each other or with ``classes``, or a
            non-positive frame duration.
    """
    logmel = _check_2d("logmel", logmel)
    frame_scores = _check_2d("frame_scores", frame_scores, len(classes))
    if frame_truth is not None:
        frame_truth = _check_2d("frame_truth", frame_truth, len(classes))
        if frame_truth.shape[0] != frame_scores.shape[0]:
            raise ValueError(
                f"frame_truth has {frame_truth.shape[0]} frames, frame_scores "
                f"{frame_scores.shape[0]}: give the truth at the model's output rate"
            )
    if seconds_per_frame <= 0 or seconds_per_output_frame <= 0:
        raise ValueError("seconds_per_frame and seconds_per_output_frame must be positive")

    n_mels, n_frames = logmel.shape
    duration = max(n_frames * seconds_per_frame, frame_scores.shape[0] * seconds_per_output_frame)
    fig = _new_figure(10.0, 6.0)
    ax_mel, ax_score = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    fig.suptitle(title)

    if logmel.size:
        ax_mel.imshow(
            logmel.astype(np.float32),
            origin="lower",
            aspect="auto",
            cmap="magma",
            interpolation="nearest",
            extent=(0.0, n_frames * seconds_per_frame, 0, n_mels),
        )
    ax_mel.set_ylabel("mel bin")

    # Output frame t covers [t, t + 1) * seconds_per_output_frame; draw steps over those spans.
    edges = np.arange(frame_scores.shape[0] + 1) * seconds_per_output_frame
    colours = [f"C{i}" for i in range(10)]
    for i, c in enumerate(select_classes(frame_scores, frame_truth, max_classes)):
        colour = colours[i % len(colours)]
        score = np.append(frame_scores[:, c], frame_scores[-1, c])
        ax_score.step(edges, score, where="post", color=colour, lw=1.5, label=str(classes[c]))
        if frame_truth is not None:
            active = np.append(frame_truth[:, c] > 0, False)
            ax_score.fill_between(edges, 0, 1, where=active, step="post", color=colour, alpha=0.2)
    ax_score.set_ylim(0, 1.02)
    ax_score.set_xlim(0, duration if duration > 0 else 1.0)
    ax_score.set_xlabel("time (s)")
    ax_score.set_ylabel("frame score")
    if ax_score.get_legend_handles_labels()[0]:
        ax_score.legend(loc="upper right", fontsize=8, ncols=min(3, max_classes))
    hint = "lines: predicted; bands: ground truth" if frame_truth is not None else "predicted"
    ax_score.set_title(hint, fontsize=9, loc="left")
    return fig


def score_distribution_figure(
    scores: np.ndarray,
    truth: np.ndarray,
    classes: Sequence[str],
    max_classes: int = 30,
) -> Figure:
    """Per-class histograms of the scores of positive against negative examples.

    Small multiples, one per class: a class whose two histograms overlap is one the model cannot
    separate, whatever the threshold. Densities are drawn, so a handful of positives is visible
    beside thousands of negatives. A class without positives shows its negatives and says so.

    Args:
        scores (ndarray): scores (N, C), e.g. clip probabilities of the validation recordings.
        truth (ndarray): labels (N, C); a value above 0 is a positive.
        classes (Sequence[str]): the C class names.
        max_classes (int): the most panels; with more classes, those with the most positives are
            shown (the figure title says so).

    Returns:
        Figure: one axes per shown class (min(C, max_classes)), titled with the class, its
        number of positives and its AP.

    Raises:
        ValueError: shapes that disagree with each other or with ``classes``.
    """
    scores = _check_2d("scores", scores, len(classes))
    truth = _check_2d("truth", truth, len(classes))
    if scores.shape != truth.shape:
        raise ValueError(f"scores {scores.shape} and truth {truth.shape} differ in shape")
    positive = truth > 0
    n_pos = positive.sum(axis=0)
    n_classes = len(classes)
    if n_classes > max_classes:
        # Most positives first; equal counts keep the class order.
        shown = sorted(np.argsort(-n_pos, kind="stable")[:max_classes].tolist())
    else:
        shown = list(range(n_classes))
    ap = per_class_ap(scores, truth)

    finite = scores[np.isfinite(scores)]
    lo, hi = (0.0, 1.0) if finite.size == 0 else (float(finite.min()), float(finite.max()))
    if lo >= 0.0 and hi <= 1.0:
        lo, hi = 0.0, 1.0  # probabilities: the same bins in every panel and every step
    if hi <= lo:
        hi = lo + 1.0
    bins = np.linspace(lo, hi, _BINS + 1)

    ncols = min(6, max(1, len(shown)))
    nrows = max(1, math.ceil(len(shown) / ncols))
    # a fixed grid: the constrained layout engine took over half the rendering time of the
    # trainer's figures (about 1.8 s of 3.2 s at 24 classes), at every evaluation
    height = 1.8 * nrows + 0.8
    fig = _new_figure(2.2 * ncols + 0.5, height, layout=None)
    fig.subplots_adjust(
        left=0.06, right=0.98, bottom=0.5 / height, top=1 - 0.6 / height, wspace=0.3, hspace=0.7
    )
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=True).ravel()
    for ax in axes[len(shown) :]:
        fig.delaxes(ax)  # so len(fig.axes) is the number of classes shown
    for ax in axes[max(0, len(shown) - ncols) : len(shown)]:
        # sharex hides tick labels above the bottom row; the last panel of each column keeps them
        ax.xaxis.set_tick_params(labelbottom=True)
    for ax, c in zip(axes, shown, strict=False):
        col = scores[:, c]
        neg, pos = col[~positive[:, c]], col[positive[:, c]]
        if neg.size:
            ax.hist(neg, bins=bins, density=True, color="tab:gray", alpha=0.6, label="negative")
        if pos.size:
            ax.hist(
                pos,
                bins=bins,
                density=True,
                histtype="step",
                lw=1.5,
                color="tab:red",
                label="positive",
            )
            label = f"{classes[c]}  n+={int(n_pos[c])}  AP={ap[c]:.2f}"
        else:
            ax.text(
                0.5,
                0.9,
                "no positives",
                ha="center",
                va="top",
                transform=ax.transAxes,
                fontsize=8,
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8},
            )
            label = f"{classes[c]}  n+=0"
        ax.set_title(label, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_yticks([])  # densities differ wildly between classes; the shapes are the point
    if len(shown) < n_classes:
        title = f"score distributions ({len(shown)} of {n_classes} classes, most positives)"
    else:
        title = "score distributions"
    fig.suptitle(f"{title}: grey negative, red positive")
    return fig
