"""Accuracy, binary F1 and Matthews correlation for label predictions (GLUE, hcm_related).

Predictions are label strings ("0", "1", ...); the gold label is `references[0]` (the label index
as a string), or the example's `label` when it has no references. Both are compared after
stripping whitespace; a prediction that is no known label is simply a wrong label (its own class).

- `accuracy` is a mean of per-example correctness (is_mean True).
- `f1` is binary F1 with "1" the positive class, computed from corpus TP/FP/FN (0.0 when there is
  no positive in gold or prediction, as scikit-learn does).
- `mcc` is the multi-class Matthews correlation from the confusion matrix (Gorodkin's R_K, which
  equals the binary MCC on two classes and is what scikit-learn's `matthews_corrcoef` computes);
  0.0 when it is undefined (a constant prediction or a one-class gold).

F1 and MCC of a single example are undefined (MCC needs both classes), so their per-example value
is the example's correctness (1.0 right, 0.0 wrong): that is what the per-example drill-down and
McNemar's test use. The corpus values are always the real F1 and MCC, recomputed from summed
per-example statistics (`sufficient_stats`/`score_from_stats`) so the bootstrap can recompute them on resamples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from harness.errors import HarnessError
from harness.metrics.base import ScoringInput

if TYPE_CHECKING:
    import numpy as np

POSITIVE = "1"


def gold_label(references: Sequence[str], label: int | None) -> str:
    if references:
        return str(references[0]).strip()
    if label is not None:
        return str(label)
    raise HarnessError("A classification example has neither a reference nor a label; map the task's label field in task.yaml.")


def gold_labels(data: ScoringInput) -> list[str]:
    labels = list(data.labels) if len(data.labels) == len(data.predictions) else [None] * len(data.predictions)
    return [gold_label(refs, label) for refs, label in zip(data.references, labels)]


def predicted_labels(data: ScoringInput) -> list[str]:
    return [(prediction or "").strip() for prediction in data.predictions]


def correctness(prediction: str, references: Sequence[str], label: int | None) -> float:
    return float((prediction or "").strip() == gold_label(references, label))


def binary_f1(tp: float, fp: float, fn: float) -> float:
    denominator = 2 * tp + fp + fn
    return float(2 * tp / denominator) if denominator else 0.0


def matthews(correct: float, predicted_per_class: np.ndarray, gold_per_class: np.ndarray) -> float:
    """Gorodkin's multi-class MCC from class totals (scikit-learn's formula)."""
    total = predicted_per_class.sum()
    covariance = correct * total - float(predicted_per_class @ gold_per_class)
    spread_pred = total * total - float(predicted_per_class @ predicted_per_class)
    spread_gold = total * total - float(gold_per_class @ gold_per_class)
    if spread_pred <= 0 or spread_gold <= 0:
        return 0.0
    return float(covariance / math.sqrt(spread_pred * spread_gold))


class AccuracyMetric:
    name = "accuracy"
    names: tuple[str, ...] = ("accuracy",)
    is_mean = True

    def per_example(self, prediction: str, references: Sequence[str], label: int | None = None) -> dict[str, float]:
        return {"accuracy": correctness(prediction, references, label)}

    def corpus(self, data: ScoringInput) -> dict[str, float]:
        golds, preds = gold_labels(data), predicted_labels(data)
        return {"accuracy": sum(p == g for p, g in zip(preds, golds)) / len(golds) if golds else 0.0}


class F1Metric:
    """Binary F1 with positive class "1"."""

    name = "f1"
    names: tuple[str, ...] = ("f1",)
    is_mean = False

    def per_example(self, prediction: str, references: Sequence[str], label: int | None = None) -> dict[str, float]:
        return {"f1": correctness(prediction, references, label)}

    def sufficient_stats(self, data: ScoringInput) -> np.ndarray:
        """Per-example [tp, fp, fn] for the positive class."""
        import numpy as np

        rows = [
            (float(p == POSITIVE and g == POSITIVE), float(p == POSITIVE and g != POSITIVE), float(p != POSITIVE and g == POSITIVE))
            for p, g in zip(predicted_labels(data), gold_labels(data))
        ]
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), 3)

    def score_from_stats(self, totals: np.ndarray) -> dict[str, float]:
        return {"f1": binary_f1(*totals)}

    def corpus(self, data: ScoringInput) -> dict[str, float]:
        return self.score_from_stats(self.sufficient_stats(data).sum(axis=0))


class MccMetric:
    """Matthews correlation coefficient over every label seen in gold or predictions."""

    name = "mcc"
    names: tuple[str, ...] = ("mcc",)
    is_mean = False

    def per_example(self, prediction: str, references: Sequence[str], label: int | None = None) -> dict[str, float]:
        return {"mcc": correctness(prediction, references, label)}

    def sufficient_stats(self, data: ScoringInput) -> np.ndarray:
        """Per-example [correct, one-hot predicted class (K), one-hot gold class (K)].

        The class list is fixed from the whole data, so resamples of these rows sum consistently.
        """
        import numpy as np

        golds, preds = gold_labels(data), predicted_labels(data)
        classes = sorted(set(golds) | set(preds))
        index = {label: position for position, label in enumerate(classes)}
        rows = np.zeros((len(golds), 1 + 2 * len(classes)))
        for row, (pred, gold) in enumerate(zip(preds, golds)):
            rows[row, 0] = float(pred == gold)
            rows[row, 1 + index[pred]] = 1.0
            rows[row, 1 + len(classes) + index[gold]] = 1.0
        return rows

    def score_from_stats(self, totals: np.ndarray) -> dict[str, float]:
        n_classes = (len(totals) - 1) // 2
        predicted, gold = totals[1 : 1 + n_classes], totals[1 + n_classes :]
        return {"mcc": matthews(float(totals[0]), predicted, gold)}

    def corpus(self, data: ScoringInput) -> dict[str, float]:
        return self.score_from_stats(self.sufficient_stats(data).sum(axis=0))
