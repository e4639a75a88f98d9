"""Output filters: what a task does to a model's text before its metrics see it (lm-eval's "filters").

A task names its filters in task.yaml (`filters: [strip_code_fences, first_json_object, ...]`; unknown
names are refused when the task is read); they run
in that order on every prediction. Scores of the filtered text are the task's scores; when a task has
filters, the scores of the raw text are stored beside them with the suffix `RAW_SUFFIX`, so a reader
sees how much the extraction did. Filters never change what the model is asked, so they are not part
of a prediction's key: adding one re-scores the stored predictions and regenerates nothing.

Every filter returns its input unchanged when it does not apply: a filter may help a score, never
hide an output (an unparseable answer stays unparseable).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence

from harness.metrics.json_fields import first_balanced_object

RAW_SUFFIX = "_raw"

_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\n?(?P<body>.*?)(?:```|$)", re.DOTALL)


def strip_code_fences(text: str) -> str:
    """The body of the first Markdown code fence (```json ... ```); the text itself when there is none."""
    match = _FENCE.search(text)
    return match.group("body").strip() if match else text


def first_json_object(text: str) -> str:
    """The first balanced `{...}` (braces inside JSON strings ignored); the text itself when none closes."""
    candidate = first_balanced_object(text)
    return candidate if candidate is not None else text


def unwrap_single_key_list(text: str) -> str:
    """`{"resumes": [{...}]}` or `[{...}]` becomes the one object inside; anything else is left alone.

    Only a wrapper around exactly one object is unwrapped: a list of several objects is a different
    answer, and picking one of them would be guessing.
    """
    try:
        value = json.loads(text)
    except ValueError:
        return text
    if isinstance(value, dict) and len(value) == 1:
        value = next(iter(value.values()))
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict):
        return json.dumps(value[0], ensure_ascii=False)
    return text


FILTERS: dict[str, Callable[[str], str]] = {
    "strip": str.strip,
    "strip_code_fences": strip_code_fences,
    "first_json_object": first_json_object,
    "unwrap_single_key_list": unwrap_single_key_list,
}


def apply_filters(names: Sequence[str], text: str) -> str:
    for name in names:
        text = FILTERS[name](text)
    return text
