"""Scores predictions against a task's examples, whoever made the predictions.

Used by the runner after a cell's predictions are stored, and by `harness score` for predictions
made by another engine (JSONL lines of {"id", "prediction"}).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from harness.errors import HarnessError
from harness.metrics import score
from harness.metrics.base import MetricReport, ScoringInput
from harness.metrics.filters import RAW_SUFFIX, apply_filters
from harness.spec import Example, TaskSpec


def normalise_choice(task: TaskSpec, prediction: str) -> str:
    """A classification prediction as the label index string: '1', 'positive' and ' Positive' all work."""
    text = prediction.strip()
    if text.isdigit():
        return text
    for index, choice in enumerate(task.choices):
        if text.lower() == choice.strip().lower():
            return str(index)
    return text  # an answer that is no label: scored as wrong, never an exception


def scoring_input(task: TaskSpec, examples: Sequence[Example], predictions: Sequence[str]) -> ScoringInput:
    if task.choices:
        predictions = [normalise_choice(task, text) for text in predictions]
        references = [(str(example.label),) for example in examples]
    else:
        references = [example.references for example in examples]
    return ScoringInput(predictions=list(predictions), references=references, labels=[e.label for e in examples])


def score_examples(task: TaskSpec, examples: Sequence[Example], predictions: Sequence[str], seed: int = 0) -> MetricReport:
    """The task's scores; with output filters, those of the filtered text plus the raw text's as `<key>_raw`."""
    raw = score(list(task.metrics), scoring_input(task, examples, predictions), seed=seed, task_folder=task.folder)
    if not task.filters:
        return raw
    filtered_text = [apply_filters(task.filters, text) for text in predictions]
    filtered = score(list(task.metrics), scoring_input(task, examples, filtered_text), seed=seed, task_folder=task.folder)
    corpus = filtered.corpus | {key + RAW_SUFFIX: value for key, value in raw.corpus.items()}
    per_example = [
        row | {key + RAW_SUFFIX: value for key, value in raw_row.items()} for row, raw_row in zip(filtered.per_example, raw.per_example)
    ]
    return MetricReport(corpus=corpus, per_example=per_example)


def read_predictions(path: Path) -> dict[str, str]:
    """Lines of {"id": ..., "prediction": ...}; a repeated id is an error, not a silent overwrite."""
    if not path.is_file():
        raise HarnessError(f"Predictions file '{path}' does not exist; pass a JSONL file of {{\"id\", \"prediction\"}} lines.")
    predictions: dict[str, str] = {}
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                example_id, text = str(row["id"]), row["prediction"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise HarnessError(f"Line {number} of '{path}' is not a JSON object with 'id' and 'prediction'; fix that line.")
            if example_id in predictions:
                raise HarnessError(f"Line {number} of '{path}' repeats id '{example_id}'; keep one prediction per example.")
            predictions[example_id] = text if isinstance(text, str) else json.dumps(text)
    return predictions


def align(examples: Sequence[Example], predictions: Mapping[str, str], path: Path) -> tuple[list[Example], list[str]]:
    """The examples that have a prediction, in task order; ids unknown to the task are an error."""
    known = {example.id for example in examples}
    unknown = [example_id for example_id in predictions if example_id not in known]
    if unknown:
        raise HarnessError(
            f"'{path}' has {len(unknown)} ids that are not in this split (first: '{unknown[0]}'); check --split and the ids."
        )
    chosen = [example for example in examples if example.id in predictions]
    if not chosen:
        raise HarnessError(f"'{path}' has no predictions for this split; check --split.")
    return chosen, [predictions[example.id] for example in chosen]
