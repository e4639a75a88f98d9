"""Field-level scoring of resume-to-JSON extraction (the `resume_json` tasks).

The gold reference (`references[0]`) is a JSON object with six keys: five strings (`name`, `email`,
`phone`, `experience`, `education`; "" when the resume has none) and `skills`, a list of strings.

Scores (metric name "json_fields"):
- `json_valid`: the output holds a JSON object. Text around the FIRST balanced `{...}` is stripped
  (brace matching ignores braces inside JSON strings); if that object does not parse, the output is
  invalid - we do not hunt for a later object, so prose with a stray "{" costs the model.
- `schema_valid`: the object has all six keys with the right types. Extra keys are allowed.
- `f1_<field>` for every scored field and `field_f1`, the micro F1 over all scored fields.

Counting conventions (TP/FP/FN per field, summed into the micro scores):
- name, email, phone are single items compared after normalisation (name: case and whitespace
  folded; email: lower-cased and stripped; phone: digits only, and a leading country code "1" is
  ignored when one side has 11 digits and the other 10). A right value is 1 TP; a wrong value is
  1 FP and 1 FN; a missing value is 1 FN; a value where gold has none is 1 FP.
- skills are a set of normalised items (case and whitespace folded, order ignored): each skill is
  one item, so TP = |pred & gold|, FP = |pred - gold|, FN = |gold - pred|.
- experience and education are free text scored by SQuAD-style token F1 (bag of lower-case
  alphanumeric tokens with counts). So that a long paragraph weighs like one field and not like
  fifty, the token counts are divided by the gold token count: TP = overlap/|gold|,
  FP = (|pred| - overlap)/|gold|, FN = (|gold| - overlap)/|gold|. This keeps the field's F1 equal
  to the token F1 while giving the whole field a weight of one item. Text predicted where gold has
  none is 1 FP; nothing predicted where gold has text is 1 FN.
- A field empty in both gold and prediction counts nothing (no TP, FP or FN). An F1 over zero
  counts (nothing to find, nothing found) is 1.0.
- An invalid output (no parseable object, empty, truncated) finds nothing: every gold item is a FN,
  and every per-example score of that example is 0.0. Scoring never raises on model output.
- A skills value given as one string (schema-invalid) is split on commas; scalar values that are
  numbers are read as their decimal text; other wrong types count as a wrong value.

Corpus scores: `json_valid`/`schema_valid` are means; the F1 scores are micro averages over the
corpus (counts summed over all examples, then F1), so `is_mean` is False. Per example, each F1 is
that example's own micro F1. The corpus is computed from summed per-example counts
(`sufficient_stats`/`score_from_stats`), which lets the bootstrap recompute micro F1 on resamples cheaply.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.metrics.base import ScoringInput

if TYPE_CHECKING:
    import numpy as np

ALL_FIELDS: tuple[str, ...] = ("name", "email", "phone", "experience", "education", "skills")
SCALAR_FIELDS: frozenset[str] = frozenset({"name", "email", "phone"})
TEXT_FIELDS: frozenset[str] = frozenset({"experience", "education"})
STRING_FIELDS: tuple[str, ...] = ("name", "email", "phone", "experience", "education")

_WS = re.compile(r"\s+")
_TOKEN = re.compile(r"[^\W_]+")  # unicode letters and digits: "alphanumeric tokens"
_DIGITS = re.compile(r"\d")


@dataclass(frozen=True)
class Counts:
    tp: float = 0.0
    fp: float = 0.0
    fn: float = 0.0


def f1_from_counts(tp: float, fp: float, fn: float) -> float:
    """F1 = 2TP / (2TP + FP + FN); 1.0 when nothing was to be found and nothing was found."""
    denominator = 2 * tp + fp + fn
    return 1.0 if denominator == 0 else 2 * tp / denominator


# ---------------------------------------------------------------- extraction


def first_balanced_object(text: str) -> str | None:
    """The substring from the first "{" to its matching "}", ignoring braces inside JSON strings."""
    start = text.find("{")
    if start < 0:
        return None
    depth = 0
    in_string = False
    escaped = False
    for position in range(start, len(text)):
        char = text[position]
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start : position + 1]
    return None  # truncated: the object never closes


def extract_json_object(text: str) -> dict[str, Any] | None:
    """The JSON object in a model's output, or None when there is no parseable one."""
    candidate = first_balanced_object(text)
    if candidate is None:
        return None
    try:
        value = json.loads(candidate)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def is_schema_valid(obj: dict[str, Any]) -> bool:
    """All six keys present; five strings and skills a list of strings (extra keys allowed)."""
    if any(not isinstance(obj.get(key), str) for key in STRING_FIELDS):
        return False
    skills = obj.get("skills")
    return isinstance(skills, list) and all(isinstance(item, str) for item in skills)


# ------------------------------------------------------------- normalisation


def fold(text: str) -> str:
    """Case-fold and collapse whitespace."""
    return _WS.sub(" ", text).strip().casefold()


def as_text(value: Any) -> str:
    """A scalar field's value as text: None is empty, numbers are their decimal text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return json.dumps(value, ensure_ascii=False)  # a wrong type: compared as text, never equal


def normalise_scalar(field: str, value: str) -> str:
    if field == "email":
        return value.strip().lower()
    if field == "phone":
        return "".join(_DIGITS.findall(value))
    return fold(value)


def same_phone(gold: str, pred: str) -> bool:
    """Digit strings equal, allowing a leading country code 1 on one side (11 vs 10 digits)."""
    if len(gold) == 11 and len(pred) == 10 and gold.startswith("1"):
        gold = gold[1:]
    elif len(pred) == 11 and len(gold) == 10 and pred.startswith("1"):
        pred = pred[1:]
    return gold == pred


def skill_set(value: Any) -> frozenset[str]:
    if value is None:
        return frozenset()
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else [value]
    return frozenset(folded for folded in (fold(as_text(item)) for item in items) if folded)


def tokens(text: str) -> Counter[str]:
    return Counter(_TOKEN.findall(text.casefold()))


# ------------------------------------------------------------------- counting


def scalar_counts(field: str, gold: str, pred: str) -> Counts:
    gold_n, pred_n = normalise_scalar(field, gold), normalise_scalar(field, pred)
    if not gold_n and not pred_n:
        return Counts()
    if not pred_n:
        return Counts(fn=1.0)
    if not gold_n:
        return Counts(fp=1.0)
    equal = same_phone(gold_n, pred_n) if field == "phone" else gold_n == pred_n
    return Counts(tp=1.0) if equal else Counts(fp=1.0, fn=1.0)


def text_counts(gold: str, pred: str) -> Counts:
    gold_t, pred_t = tokens(gold), tokens(pred)
    gold_len, pred_len = sum(gold_t.values()), sum(pred_t.values())
    if gold_len == 0:
        return Counts(fp=1.0) if pred_len else Counts()
    overlap = sum((gold_t & pred_t).values())
    return Counts(tp=overlap / gold_len, fp=(pred_len - overlap) / gold_len, fn=(gold_len - overlap) / gold_len)


def set_counts(gold: frozenset[str], pred: frozenset[str]) -> Counts:
    return Counts(tp=float(len(gold & pred)), fp=float(len(pred - gold)), fn=float(len(gold - pred)))


def field_counts(field: str, gold: dict[str, Any], pred: dict[str, Any] | None) -> Counts:
    """TP/FP/FN of one field; `pred` None (invalid output) finds nothing."""
    if field == "skills":
        return set_counts(skill_set(gold.get("skills")), skill_set(pred.get("skills") if pred else None))
    gold_value = as_text(gold.get(field))
    pred_value = as_text(pred.get(field)) if pred else ""
    if field in TEXT_FIELDS:
        return text_counts(gold_value, pred_value)
    return scalar_counts(field, gold_value, pred_value)


def parse_gold(reference: str) -> dict[str, Any]:
    try:
        gold = json.loads(reference)
    except ValueError:
        gold = None
    if not isinstance(gold, dict):
        raise HarnessError(
            f"The gold reference {reference[:60]!r} is not a JSON object; fix the task data so that "
            "references[0] is the gold JSON."
        )
    return gold


@dataclass(frozen=True)
class ExampleScore:
    valid: bool
    schema: bool
    counts: tuple[Counts, ...]  # one per scored field, in field order


@lru_cache(maxsize=65536)
def score_example(prediction: str, gold_reference: str, fields: tuple[str, ...]) -> ExampleScore:
    """Cached: the bootstrap and the gate score the same (prediction, gold) pairs many times."""
    gold = parse_gold(gold_reference)
    pred = extract_json_object(prediction)
    counts = tuple(field_counts(field, gold, pred) for field in fields)
    return ExampleScore(valid=pred is not None, schema=pred is not None and is_schema_valid(pred), counts=counts)


# -------------------------------------------------------------------- metric


class JsonFieldsMetric:
    """json_valid, schema_valid, field_f1 and f1_<field>; see the module docstring for the rules."""

    name = "json_fields"
    is_mean = False
    proportions = ("json_valid", "schema_valid")  # means of 0/1 flags: Wilson intervals (metrics.intervals)

    def __init__(self, fields: Sequence[str] = ALL_FIELDS) -> None:
        unknown = [field for field in fields if field not in ALL_FIELDS]
        if unknown or not fields:
            raise HarnessError(
                f"json_fields cannot score fields {unknown or '(none)'}; choose among {', '.join(ALL_FIELDS)}."
            )
        self.fields: tuple[str, ...] = tuple(dict.fromkeys(fields))
        self.names: tuple[str, ...] = ("json_valid", "schema_valid", "field_f1") + tuple(
            f"f1_{field}" for field in self.fields
        )

    def _score(self, prediction: str, references: Sequence[str]) -> ExampleScore:
        if not references:
            raise HarnessError("A json_fields example has no gold JSON; give every example its gold JSON as references[0].")
        return score_example(prediction or "", references[0], self.fields)

    def per_example(self, prediction: str, references: Sequence[str], label: int | None = None) -> dict[str, float]:
        score = self._score(prediction, references)
        if not score.valid:
            return dict.fromkeys(self.names, 0.0)
        micro = Counts(*(sum(getattr(c, part) for c in score.counts) for part in ("tp", "fp", "fn")))
        result = {
            "json_valid": 1.0,
            "schema_valid": float(score.schema),
            "field_f1": f1_from_counts(micro.tp, micro.fp, micro.fn),
        }
        for field, counts in zip(self.fields, score.counts):
            result[f"f1_{field}"] = f1_from_counts(counts.tp, counts.fp, counts.fn)
        return result

    def sufficient_stats(self, data: ScoringInput) -> np.ndarray:
        """Per-example sufficient statistics: [1, valid, schema, tp, fp, fn per field]."""
        import numpy as np

        rows = []
        for prediction, references in zip(data.predictions, data.references):
            score = self._score(prediction, references)
            row = [1.0, float(score.valid), float(score.schema)]
            for counts in score.counts:
                row += [counts.tp, counts.fp, counts.fn]
            rows.append(row)
        return np.asarray(rows, dtype=np.float64).reshape(len(rows), 3 + 3 * len(self.fields))

    def score_from_stats(self, totals: np.ndarray) -> dict[str, float]:
        """Corpus scores from summed statistics: means of the flags, micro F1 of the counts."""
        n = totals[0]
        per_field = totals[3:].reshape(len(self.fields), 3)
        micro = per_field.sum(axis=0)
        result = {
            "json_valid": float(totals[1] / n) if n else 0.0,
            "schema_valid": float(totals[2] / n) if n else 0.0,
            "field_f1": float(f1_from_counts(*micro)),
        }
        for field, (tp, fp, fn) in zip(self.fields, per_field):
            result[f"f1_{field}"] = float(f1_from_counts(tp, fp, fn))
        return result

    def corpus(self, data: ScoringInput) -> dict[str, float]:
        return self.score_from_stats(self.sufficient_stats(data).sum(axis=0))


def parse_fields_option(option: str) -> tuple[str, ...]:
    """The field list of "fields=name,email,..." (the text inside json_fields(...))."""
    key, _, value = option.partition("=")
    if key.strip() != "fields" or not value.strip():
        raise HarnessError(
            f"json_fields option {option!r} is not understood; write json_fields(fields=name,email,...)."
        )
    return tuple(part.strip() for part in value.split(",") if part.strip())
