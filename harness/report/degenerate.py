"""Results that look like results but are not: constant outputs and scores a trivial rule matches.

A GLUE adapter that answers "1" to every sentence scores the share of 1s in the data, which can
look respectable (MRPC: 0.68). Two checks, each a `Flag` the pages and exports show:
- constant: every prediction of the cell is the same text (all one class for a classifier);
- majority: on a classification task, the majority-class rate lies inside the accuracy's 95%
  interval, so the cell is not shown to beat always answering the most common label; for MCC the
  constant rule scores 0, so an interval that holds 0 is flagged the same way.
Gold labels come from the task's data (the report already loads it for the drill-down); when the
task is unknown to the registry only the constant check runs. The constant flag quotes the prediction
except on private tasks (and tasks the registry does not know): it reaches pages and committed exports.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from harness.errors import HarnessError
from harness.metrics.base import MetricValue

FlagKind = Literal["constant", "majority", "incomplete", "small_n"]
SHOWN_CHARS = 40


@dataclass(frozen=True)
class Flag:
    kind: FlagKind
    text: str


def constant_output(predictions: Sequence[str]) -> str | None:
    """The one text every prediction is, when there are at least two and they are all equal."""
    if len(predictions) < 2:
        return None
    first = predictions[0].strip()
    return first if all(text.strip() == first for text in predictions) else None


def majority_rate(gold: Sequence[str]) -> tuple[str, float] | None:
    """The most common gold label and its share."""
    if not gold:
        return None
    label, count = Counter(gold).most_common(1)[0]
    return label, count / len(gold)


def _inside(value: float, interval: MetricValue) -> bool:
    return interval.low is not None and interval.high is not None and interval.low <= value <= interval.high


def degenerate_flags(
    predictions: Sequence[str], gold: Sequence[str] | None, metrics: Mapping[str, MetricValue], show_text: bool = True
) -> list[Flag]:
    """The constant and majority-baseline flags of one finished cell; `show_text=False` (a private task)
    keeps the constant prediction out of the flag, which pages and committed exports show."""
    flags = []
    constant = constant_output(predictions)
    if constant is not None and not show_text:
        flags.append(Flag("constant", f"all {len(predictions)} predictions are the same (not shown: the task is private)"))
    elif constant is not None:
        shown = constant if len(constant) <= SHOWN_CHARS else constant[:SHOWN_CHARS] + "…"
        flags.append(Flag("constant", f"all {len(predictions)} predictions are the same: {shown!r}"))
    majority = majority_rate(gold) if gold else None
    accuracy = metrics.get("accuracy")
    if majority is not None and accuracy is not None and _inside(majority[1], accuracy):
        flags.append(Flag("majority", f"accuracy's 95% interval holds the majority-class rate "
                                      f"{majority[1]:.3f} (always answering label {majority[0]})"))
    mcc = metrics.get("mcc")
    if gold and mcc is not None and _inside(0.0, mcc):
        flags.append(Flag("majority", "MCC's 95% interval holds 0, the score of a constant answer"))
    return flags


@lru_cache(maxsize=64)
def task_is_private(task: str) -> bool:
    """Whether a task's text must stay off every page and export: marked `private`, or unknown to the
    registry (an lm-eval task, or one removed since the run, may have held private data)."""
    from harness.registry import task_registry

    try:
        return task_registry().get(task).private
    except HarnessError:
        return True


@lru_cache(maxsize=32)
def _gold_by_id(task: str, split: str) -> dict[str, str] | None:
    from harness.data import load_examples
    from harness.registry import task_registry

    try:
        spec = task_registry().get(task)
        if not spec.choices:
            return None
        return {example.id: str(example.label) for example in load_examples(spec, split) if example.label is not None}
    except (HarnessError, OSError):
        return None  # an lm-eval task or data that is gone: no majority check


def gold_labels(task: str, split: str, example_ids: Sequence[str]) -> list[str] | None:
    """The gold labels of a classification task's examples, in the given order; None when unknown."""
    by_id = _gold_by_id(task, split)
    if by_id is None or any(example_id not in by_id for example_id in example_ids):
        return None
    return [by_id[example_id] for example_id in example_ids]
