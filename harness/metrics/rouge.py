"""ROUGE-1/2/L/Lsum F-measures with the `rouge-score` package (Google's reimplementation).

With several references (DialogSum's test split has three) each key takes the best F-measure over
the references, example by example. ROUGE-Lsum scores the LCS sentence by sentence, so it needs the
text split into newline-separated sentences; we split with a regex on ".", "!" or "?" followed by
whitespace instead of nltk's punkt, whose data would have to be downloaded. Stemming (Porter, which
needs no data) is on, as in most published DialogSum numbers. The corpus score is the mean of the
per-example scores, so the bootstrap resamples the per-example matrix directly.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from harness.metrics.base import ScoringInput

ROUGE_KEYS: tuple[str, ...] = ("rouge1", "rouge2", "rougeL", "rougeLsum")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_sentences(text: str) -> str:
    """One sentence per line: split after . ! ? followed by whitespace, and at existing newlines."""
    sentences = (part.strip() for line in text.splitlines() for part in _SENTENCE_END.split(line))
    return "\n".join(sentence for sentence in sentences if sentence)


class _CachedStemmer:
    """nltk's Porter stemmer with a memo: stemming is two thirds of ROUGE's time, and a corpus
    repeats the same words (each prediction is re-tokenised once per reference)."""

    def __init__(self) -> None:
        from nltk.stem import porter  # no downloaded data needed

        self.stem = lru_cache(maxsize=200_000)(porter.PorterStemmer().stem)


class _StemmingTokenizer:
    """rouge-score's default tokenisation (same function, same tokens) with the cached stemmer."""

    def __init__(self) -> None:
        self._stemmer = _CachedStemmer()

    def tokenize(self, text: str) -> list[str]:
        from rouge_score import tokenize

        return tokenize.tokenize(text, self._stemmer)


@lru_cache(maxsize=1)
def _scorer() -> Any:
    from rouge_score import rouge_scorer  # lazy: keeps `import harness.metrics` cheap

    return rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=True, tokenizer=_StemmingTokenizer())


def rouge_best(prediction: str, references: Sequence[str]) -> dict[str, float]:
    """Best F-measure over the references for each ROUGE key (0.0 when there is no reference)."""
    best = dict.fromkeys(ROUGE_KEYS, 0.0)
    prediction_lines = split_sentences(prediction)
    for reference in references:
        scores = _scorer().score(split_sentences(reference), prediction_lines)
        for key in ROUGE_KEYS:
            best[key] = max(best[key], float(scores[key].fmeasure))
    return best


class RougeMetric:
    name = "rouge"
    names = ROUGE_KEYS
    is_mean = True

    def per_example(self, prediction: str, references: Sequence[str], label: int | None = None) -> dict[str, float]:
        return rouge_best(prediction or "", references)

    def corpus(self, data: ScoringInput) -> dict[str, float]:
        rows = [self.per_example(p, r) for p, r in zip(data.predictions, data.references)]
        if not rows:
            return dict.fromkeys(ROUGE_KEYS, 0.0)
        return {key: math.fsum(row[key] for row in rows) / len(rows) for key in ROUGE_KEYS}
