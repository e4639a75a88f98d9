"""Hugging Face `evaluate` metric modules as harness metrics: "evaluate:NAME" or "evaluate:PATH.py".

- "evaluate:bleu" loads a module from the Hugging Face hub by name (or from evaluate's cache);
  it needs hub access, so it fails offline with a HarnessError that suggests the path form.
- "evaluate:./my_metric.py" (relative to the task folder, else to the working directory) or an
  absolute path loads a local module: a file defining a subclass of `evaluate.Metric` with
  `_info` and `_compute`.

The module's `compute(predictions=..., references=...)` result becomes the scores: every numeric
value is a key (lists and strings are dropped). References are passed as one string per example
when every example has exactly one reference, else as a list of strings per example. `names` is
known only after the first computation. The corpus value is whatever the module computes on the
whole data; nothing says it is a mean, so the bootstrap recomputes it on each resample (slow for
big corpora: each resample is a `compute` call).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.errors import HarnessError
from harness.metrics.base import ScoringInput

PREFIX = "evaluate:"


def is_path_form(target: str) -> bool:
    """A file path (ends in .py, or starts like a path); "owner/name" stays a hub name."""
    return target.endswith(".py") or target.startswith(("./", "../", "~")) or Path(target).is_absolute()


def resolve_module_path(target: str, task_folder: Path | None) -> Path:
    path = Path(target).expanduser()
    if not path.is_absolute():
        path = (task_folder or Path.cwd()) / path
    if not path.is_file():
        raise HarnessError(f"The evaluate metric module {path} does not exist; check the path after 'evaluate:' in task.yaml.")
    return path.resolve()


def load_module(target: str, task_folder: Path | None) -> Any:
    """The evaluate module named by `target` (the text after "evaluate:")."""
    import evaluate  # lazy: evaluate imports datasets, which is slow to import

    if is_path_form(target):
        path = resolve_module_path(target, task_folder)
        try:
            return evaluate.load(str(path), keep_in_memory=True)
        except Exception as error:  # a broken user module: say which file, keep the cause
            raise HarnessError(
                f"The evaluate metric module {path} failed to load ({type(error).__name__}: {error}); fix that file."
            ) from error
    try:
        return evaluate.load(target, keep_in_memory=True)
    except Exception as error:  # offline, unknown name, hub error: all mean "not available by name"
        raise HarnessError(
            f"The evaluate metric '{target}' could not be loaded by name ({type(error).__name__}), which needs "
            f"Hugging Face hub access; save the module's .py file in the task folder and name it 'evaluate:./{target}.py'."
        ) from error


def numeric_results(result: dict[str, Any] | None) -> dict[str, float]:
    """The numeric entries of a compute() result, as floats."""
    return {
        key: float(value)
        for key, value in (result or {}).items()
        if isinstance(value, numbers.Number) and not isinstance(value, bool)
    }


class EvaluateMetric:
    """A wrapped `evaluate` module; `name` is the spec as written ("evaluate:./m.py")."""

    is_mean = False

    def __init__(self, target: str, task_folder: Path | None = None) -> None:
        self.name = PREFIX + target
        self.module = load_module(target, task_folder)
        self.names: tuple[str, ...] = ()

    def _compute(self, predictions: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
        single = all(len(refs) == 1 for refs in references)
        refs: list[Any] = [refs[0] for refs in references] if single else [list(refs) for refs in references]
        try:
            result = self.module.compute(predictions=list(predictions), references=refs)
        except Exception as error:
            raise HarnessError(
                f"The evaluate metric {self.name} failed to compute ({type(error).__name__}: {error}); "
                "check that its features accept string predictions and references."
            ) from error
        scores = numeric_results(result)
        if not self.names:
            self.names = tuple(scores)
        return scores

    def per_example(self, prediction: str, references: Sequence[str], label: int | None = None) -> dict[str, float]:
        return self._compute([prediction or ""], [references])

    def corpus(self, data: ScoringInput) -> dict[str, float]:
        return self._compute([p or "" for p in data.predictions], data.references)
