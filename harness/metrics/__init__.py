"""Metrics by name, and `score`: every key of every metric with a 95% interval (Wilson or bootstrap).

Names a task.yaml may use:
- "rouge", "bleu", "accuracy", "f1", "mcc", "json_fields";
- "json_fields(fields=name,email,experience,education,skills)" to score a subset of the fields,
  and its shorthand "json_fields:no_phone" (resume_json_real labels no phone);
- "evaluate:NAME" or "evaluate:./module.py" for a Hugging Face `evaluate` module (see plugin.py).

The metric modules import rouge_score/sacrebleu/nltk/evaluate inside functions, so importing this
package stays cheap for the CLI.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.metrics.base import Metric, MetricReport, MetricValue, ScoringInput
from harness.metrics.bleu import BleuMetric
from harness.metrics.classification import AccuracyMetric, F1Metric, MccMetric
from harness.metrics.json_fields import ALL_FIELDS, JsonFieldsMetric, parse_fields_option
from harness.metrics.plugin import PREFIX as EVALUATE_PREFIX
from harness.metrics.rouge import RougeMetric

__all__ = [
    "Metric",
    "MetricReport",
    "MetricValue",
    "ScoringInput",
    "available_metrics",
    "bootstrap_interval",
    "get_metric",
    "paired_resample_indices",
    "resampled_values",
    "score",
]

# name -> factory(option text or None); options are what follows the name in (...) or after ":".
_Factory = Callable[[str | None], Metric]


def _no_options(name: str, make: Callable[[], Metric]) -> _Factory:
    def factory(option: str | None) -> Metric:
        if option is not None:
            raise HarnessError(f"The metric '{name}' takes no options; write just '{name}'.")
        return make()

    return factory


def _json_fields(option: str | None) -> Metric:
    if option is None:
        return JsonFieldsMetric()
    if option == "no_phone":
        return JsonFieldsMetric(fields=tuple(field for field in ALL_FIELDS if field != "phone"))
    return JsonFieldsMetric(fields=parse_fields_option(option))


_BUILTINS: dict[str, _Factory] = {
    "rouge": _no_options("rouge", RougeMetric),
    "bleu": _no_options("bleu", BleuMetric),
    "accuracy": _no_options("accuracy", AccuracyMetric),
    "f1": _no_options("f1", F1Metric),
    "mcc": _no_options("mcc", MccMetric),
    "json_fields": _json_fields,
}

_SPEC = re.compile(r"^(?P<name>[A-Za-z0-9_]+)(?:\((?P<paren>.*)\)|:(?P<colon>[A-Za-z0-9_]+))?$")


_BOOTSTRAP_EXPORTS = frozenset({"bootstrap_interval", "paired_resample_indices", "resampled_values"})


def __getattr__(name: str) -> Any:
    # bootstrap needs numpy at import time; loading it on first use keeps `import harness.metrics` cheap
    if name in _BOOTSTRAP_EXPORTS:
        from harness.metrics import bootstrap

        return getattr(bootstrap, name)
    raise AttributeError(f"module 'harness.metrics' has no attribute '{name}'")


def available_metrics() -> tuple[str, ...]:
    return tuple(sorted(_BUILTINS))


def get_metric(name: str, task_folder: Path | None = None) -> Metric:
    """The metric a task names; an unknown name is a HarnessError with a suggestion."""
    spec = name.strip()
    if spec.startswith(EVALUATE_PREFIX):
        from harness.metrics.plugin import EvaluateMetric

        return EvaluateMetric(spec[len(EVALUATE_PREFIX) :].strip(), task_folder)
    match = _SPEC.match(spec)
    factory = _BUILTINS.get(match.group("name")) if match else None
    if match is None or factory is None:
        base = match.group("name") if match else spec
        close = difflib.get_close_matches(base, list(_BUILTINS), n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"choose one of {', '.join(available_metrics())} or 'evaluate:PATH.py'."
        raise HarnessError(f"Unknown metric '{spec}'; {hint}")
    option = match.group("paren") if match.group("paren") is not None else match.group("colon")
    return factory(option)


def _labels(data: ScoringInput) -> Sequence[int | None]:
    return data.labels if len(data.labels) == len(data.predictions) else [None] * len(data.predictions)


def score(
    metric_names: Sequence[str],
    data: ScoringInput,
    seed: int = 0,
    n_resamples: int = 1000,
    task_folder: Path | None = None,
) -> MetricReport:
    """Corpus values with 95% intervals for every key, and the merged per-example scores.

    Proportions (a mean of 0/1 per-example scores: accuracy, json_valid, schema_valid) get the
    Wilson interval, which does not collapse at 0 or 1; every other key a percentile bootstrap
    interval, every metric resampled with the same seed, hence the same example indices.
    """
    from harness.metrics.bootstrap import bootstrap_interval
    from harness.metrics.intervals import honest_all, proportion_keys

    if not data.predictions:
        raise HarnessError("There is nothing to score: the prediction list is empty; check the split and --limit.")
    corpus: dict[str, MetricValue] = {}
    per_example: list[dict[str, float]] = [{} for _ in data.predictions]
    owner: dict[str, str] = {}
    for metric_name in metric_names:
        metric = get_metric(metric_name, task_folder)
        rows = [
            metric.per_example(prediction, references, label)
            for prediction, references, label in zip(data.predictions, data.references, _labels(data))
        ]
        values = bootstrap_interval(metric, data, rows, n_resamples=n_resamples, seed=seed)
        for key in values:
            if key in owner:
                raise HarnessError(
                    f"The metrics '{owner[key]}' and '{metric_name}' both produce '{key}'; list only one of them in task.yaml."
                )
            owner[key] = metric_name
        corpus.update(honest_all(values, rows, proportion_keys(metric)))
        for merged, row in zip(per_example, rows):
            merged.update(row)
    return MetricReport(corpus=corpus, per_example=per_example)
