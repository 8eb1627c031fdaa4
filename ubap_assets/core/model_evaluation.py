"""Classifier metrics with a bootstrap 95% interval, the F1 threshold, sample-size guards and
the ROC / PR curves.

Dagster-free. The bootstrap resamples users (with replacement, seeded). It is vectorised by
counting: users with the same score and label are exchangeable, so a resample is a multinomial
draw of counts over (score bin, label) cells, and every metric is computed from cell counts
for all resamples at once. Scores with at most ``MAX_BINS`` distinct values are binned exactly
(the interval is the exact bootstrap); more are grouped into ``MAX_BINS`` quantile bins with the
threshold as a bin edge (ties within a bin: the interval is a close approximation, the point
estimate is exact).
"""

from dataclasses import dataclass

import numpy as np
import polars as pl
from sklearn.metrics import (
    average_precision_score,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)

from ubap_assets.lib.blocks import map_blocks

# Fewer positives (or negatives) than this in a window: the task is "insufficient data".
MIN_CLASS_COUNT = 50
RESAMPLES = 1000
# The resamples are drawn in this many blocks of their own seeded streams (on threads).
RESAMPLE_BLOCKS = 4
MAX_BINS = 2000
CONFIDENCE = 0.95
EPS = 1e-6
CURVE_POINTS = 101
CURVES_SCHEMA: dict[str, pl.DataType] = {
    "task": pl.String,
    "model": pl.String,
    "curve": pl.String,
    "point": pl.Int64,
    "x": pl.Float64,
    "y": pl.Float64,
    "threshold": pl.Float64,
}
# The metrics of model_metrics, each with <name>_ci_low / <name>_ci_high.
METRICS: tuple[str, ...] = (
    "roc_auc",
    "pr_auc",
    "brier",
    "log_loss",
    "f1",
    "precision",
    "recall",
    "lift",
)


def class_counts(y: np.ndarray) -> tuple[int, int]:
    """(rows, positives) of a 0/1 label vector."""
    return len(y), int(np.asarray(y).sum())


def shortfall(window: str, y: np.ndarray, minimum: int = MIN_CLASS_COUNT) -> str:
    """Why ``y`` cannot train or score a classifier ('' when it can): the numbers, and the need."""
    n, positives = class_counts(y)
    negatives = n - positives
    if positives >= minimum and negatives >= minimum:
        return ""
    return (
        f"{positives:,} positives and {negatives:,} negatives among {n:,} users in the "
        f"{window}; at least {minimum} of each are needed"
    )


def f1_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The score threshold that maximises F1 (chosen on the validation window)."""
    precision, recall, thresholds = precision_recall_curve(y, p)
    f1 = np.where(
        precision + recall > 0, 2 * precision * recall / (precision + recall + 1e-12), 0.0
    )[:-1]
    return float(thresholds[int(np.argmax(f1))]) if len(thresholds) else 0.5


@dataclass(frozen=True)
class Cells:
    """Users grouped by (score bin, label), bins in ascending score order."""

    positives: np.ndarray  # (bins,) users with label 1 per bin
    negatives: np.ndarray  # (bins,)
    brier_pos: np.ndarray  # mean (1 - p)^2 of the positives of a bin (0 where none)
    brier_neg: np.ndarray  # mean p^2 of the negatives
    loss_pos: np.ndarray  # mean -log p of the positives
    loss_neg: np.ndarray  # mean -log (1 - p) of the negatives
    first_flagged: int  # the first bin at or above the threshold

    @classmethod
    def of(cls, y: np.ndarray, p: np.ndarray, threshold: float, max_bins: int = MAX_BINS):
        y = np.asarray(y).astype(bool)
        p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
        values = np.unique(p)
        if len(values) <= max_bins:
            edges = values
            bins = np.searchsorted(values, p)
            first = int(np.searchsorted(values, threshold, side="left"))
        else:
            quantiles = np.quantile(p, np.linspace(0, 1, max_bins + 1)[1:-1])
            edges = np.unique(np.append(quantiles, threshold))
            bins = np.searchsorted(edges, p, side="right")
            first = int(np.searchsorted(edges, threshold, side="right"))
        size = len(edges) + 1

        def per_bin(weights: np.ndarray, mask: np.ndarray) -> np.ndarray:
            return np.bincount(bins[mask], weights=weights[mask], minlength=size)

        pos = per_bin(np.ones_like(p), y)
        neg = per_bin(np.ones_like(p), ~y)

        def mean(total: np.ndarray, count: np.ndarray) -> np.ndarray:
            return np.divide(total, count, out=np.zeros_like(total), where=count > 0)

        return cls(
            positives=pos,
            negatives=neg,
            brier_pos=mean(per_bin((1 - p) ** 2, y), pos),
            brier_neg=mean(per_bin(p**2, ~y), neg),
            loss_pos=mean(per_bin(-np.log(p), y), pos),
            loss_neg=mean(per_bin(-np.log(1 - p), ~y), neg),
            first_flagged=first,
        )

    def resampled_metrics(self, resamples: int, seed: int) -> dict[str, np.ndarray]:
        """Every metric (see ``metrics``) of ``resamples`` bootstrap resamples of the users.

        A resample is a multinomial draw of counts over the cells. The resamples are drawn and
        scored in RESAMPLE_BLOCKS blocks, each from its own stream of ``seed``, on a few threads
        (``map_blocks``; in turn inside a task that trains on a thread of its own): the same
        values whatever the number of threads."""
        counts = np.concatenate([self.positives, self.negatives])
        n, bins = int(counts.sum()), len(self.positives)
        streams = np.random.SeedSequence(seed).spawn(RESAMPLE_BLOCKS)
        sizes = [len(part) for part in np.array_split(np.arange(resamples), RESAMPLE_BLOCKS)]

        def block(index: int) -> dict[str, np.ndarray]:
            generator = np.random.default_rng(streams[index])
            draws = generator.multinomial(n, counts / n, size=sizes[index]).astype(np.float64)
            return self.metrics(draws[:, :bins], draws[:, bins:])

        blocks = map_blocks(block, range(RESAMPLE_BLOCKS))
        return {name: np.concatenate([b[name] for b in blocks]) for name in blocks[0]}

    def metrics(self, pos: np.ndarray, neg: np.ndarray) -> dict[str, np.ndarray]:
        """Every metric for each row of (rows, bins) counts; NaN where undefined."""
        with np.errstate(divide="ignore", invalid="ignore"):
            n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
            n = n_pos + n_neg
            below = np.cumsum(neg, axis=1) - neg  # negatives scored strictly lower
            roc_auc = (pos * (below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)
            # average precision: from the highest bin down, precision at each bin's cut
            tp = np.cumsum(pos[:, ::-1], axis=1)
            fp = np.cumsum(neg[:, ::-1], axis=1)
            precision_at = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
            pr_auc = (pos[:, ::-1] * precision_at).sum(axis=1) / n_pos
            brier = (pos @ self.brier_pos + neg @ self.brier_neg) / n
            log_loss = (pos @ self.loss_pos + neg @ self.loss_neg) / n
            flagged_tp = pos[:, self.first_flagged :].sum(axis=1)
            flagged = flagged_tp + neg[:, self.first_flagged :].sum(axis=1)
            precision = np.where(flagged > 0, flagged_tp / flagged, 0.0)
            recall = flagged_tp / n_pos
            f1 = 2 * flagged_tp / (flagged + n_pos)
            lift = precision / (n_pos / n)
        valid = (n_pos > 0) & (n_neg > 0)
        out = {
            "roc_auc": roc_auc,
            "pr_auc": pr_auc,
            "brier": brier,
            "log_loss": log_loss,
            "f1": f1,
            "precision": precision,
            "recall": recall,
            "lift": lift,
        }
        return {k: np.where(valid, v, np.nan) for k, v in out.items()}


def bootstrap_intervals(
    y: np.ndarray,
    p: np.ndarray,
    threshold: float,
    *,
    resamples: int = RESAMPLES,
    seed: int = 0,
    max_bins: int = MAX_BINS,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap ``CONFIDENCE`` interval of every metric in ``METRICS``."""
    cells = Cells.of(y, p, threshold, max_bins)
    tail = 100 * (1 - CONFIDENCE) / 2
    out = {}
    for name, values in cells.resampled_metrics(resamples, seed).items():
        values = values[np.isfinite(values)]
        if len(values) == 0:
            out[name] = (float("nan"), float("nan"))
            continue
        low, high = np.percentile(values, [tail, 100 - tail])
        out[name] = (float(low), float(high))
    return out


def point_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """Every metric of ``METRICS`` on the whole sample, the decision at ``threshold``."""
    y = np.asarray(y).astype(int)
    p = np.clip(np.asarray(p, dtype=np.float64), EPS, 1 - EPS)
    flagged = p >= threshold
    tp = int((flagged & (y == 1)).sum())
    positives, n = int(y.sum()), len(y)
    precision = tp / flagged.sum() if flagged.any() else 0.0
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "brier": float(np.mean((p - y) ** 2)),
        "log_loss": float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))),
        "f1": float(2 * tp / (flagged.sum() + positives)),
        "precision": float(precision),
        "recall": tp / positives,
        "lift": float(precision / (positives / n)),
    }


def evaluate(
    y: np.ndarray, p: np.ndarray, threshold: float, *, seed: int = 0, resamples: int = RESAMPLES
) -> dict[str, float]:
    """``n``, ``positives``, ``positive_rate``, the threshold, and every metric with its interval
    (``<metric>``, ``<metric>_ci_low``, ``<metric>_ci_high``). Needs both classes in ``y``."""
    n, positives = class_counts(y)
    if positives in (0, n):
        raise ValueError(
            f"both classes are needed to score a model ({n} users, {positives} positive)"
        )
    point = point_metrics(y, p, threshold)
    intervals = bootstrap_intervals(y, p, threshold, resamples=resamples, seed=seed)
    row: dict[str, float] = {
        "n": n,
        "positives": positives,
        "positive_rate": positives / n,
        "threshold": float(threshold),
    }
    for name in METRICS:
        row[name] = point[name]
        row[f"{name}_ci_low"], row[f"{name}_ci_high"] = intervals[name]
    return row


def curve_points(task: str, model: str, y: np.ndarray, p: np.ndarray) -> pl.DataFrame:
    """ROC and PR curves, each thinned to at most CURVE_POINTS points."""
    fpr, tpr, roc_t = roc_curve(y, p)
    precision, recall, pr_t = precision_recall_curve(y, p)
    pr_t = np.append(pr_t, 1.0)  # the last PR point has no threshold
    frames = []
    for curve, x, yy, t in (("roc", fpr, tpr, roc_t), ("pr", recall, precision, pr_t)):
        idx = np.unique(np.linspace(0, len(x) - 1, min(CURVE_POINTS, len(x))).astype(int))
        frames.append(
            pl.DataFrame(
                {
                    "task": task,
                    "model": model,
                    "curve": curve,
                    "point": np.arange(len(idx), dtype=np.int64),
                    "x": x[idx].astype(float),
                    "y": yy[idx].astype(float),
                    "threshold": np.clip(np.nan_to_num(t[idx].astype(float), posinf=1.0), 0.0, 1.0),
                },
                schema=CURVES_SCHEMA,
            )
        )
    return pl.concat(frames)
