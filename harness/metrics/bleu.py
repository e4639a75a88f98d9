"""BLEU and chrF for short generated answers (the `hcm_qa` task).

Keys:
- `bleu`: sacrebleu corpus BLEU (0-100, default 13a tokenisation), with all references. sacrebleu
  wants references as streams (stream k holds every example's k-th reference); examples with
  fewer references are padded with None, which sacrebleu reads as "no reference here".
- `sentence_bleu`: the mean over examples of nltk's `sentence_bleu` on whitespace tokens (0-1),
  as the student project this task comes from reported it. Smoothing: Chen & Cherry method 1
  (`SmoothingFunction().method1`, epsilon 0.1 added to zero n-gram counts), without which any
  answer shorter than four words would score 0.
- `chrf`: sacrebleu corpus chrF (0-100).

BLEU and chrF are corpus metrics (is_mean False): the corpus value is computed from summed n-gram
statistics, never as a mean of sentence scores. `sufficient_stats` returns each example's sufficient
statistics (sacrebleu's own, the ones its paired bootstrap uses), and `score_from_stats` turns summed
statistics into the corpus values, so a bootstrap resample recomputes corpus BLEU exactly.
Per example, `bleu` is sacrebleu's sentence BLEU (effective order), `chrf` sentence chrF and
`sentence_bleu` nltk's score, so the gate and the drill-down have per-example numbers.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from harness.metrics.base import ScoringInput

if TYPE_CHECKING:
    import numpy as np


def reference_streams(references: Sequence[Sequence[str]]) -> list[list[str | None]]:
    """Transpose per-example reference lists into sacrebleu's streams, padding with None."""
    width = max((len(refs) for refs in references), default=0)
    return [[refs[k] if k < len(refs) else None for refs in references] for k in range(max(width, 1))]


@lru_cache(maxsize=1)
def _corpus_bleu() -> Any:
    from sacrebleu.metrics import BLEU

    return BLEU()


@lru_cache(maxsize=1)
def _sentence_bleu() -> Any:
    from sacrebleu.metrics import BLEU

    return BLEU(effective_order=True)


@lru_cache(maxsize=1)
def _chrf() -> Any:
    from sacrebleu.metrics import CHRF

    return CHRF()


def nltk_sentence_bleu(prediction: str, references: Sequence[str]) -> float:
    """nltk sentence BLEU on whitespace tokens with smoothing method 1; 0.0 without references."""
    return _nltk_sentence_bleu(prediction, tuple(references))


@lru_cache(maxsize=65536)
def _nltk_sentence_bleu(prediction: str, references: tuple[str, ...]) -> float:
    # cached: `score` asks for it per example and again for the corpus statistics
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    reference_tokens = [reference.split() for reference in references if reference.split()]
    if not reference_tokens:
        return 0.0
    with warnings.catch_warnings():
        # nltk warns (and returns 0) when the hypothesis shares no n-gram: a score, not a problem
        warnings.simplefilter("ignore")
        return float(
            sentence_bleu(reference_tokens, prediction.split(), smoothing_function=SmoothingFunction().method1)
        )


class BleuMetric:
    name = "bleu"
    names: tuple[str, ...] = ("bleu", "sentence_bleu", "chrf")
    is_mean = False

    def per_example(self, prediction: str, references: Sequence[str], label: int | None = None) -> dict[str, float]:
        prediction = prediction or ""
        present = [reference for reference in references if reference is not None]
        if not present:
            return dict.fromkeys(self.names, 0.0)
        return {
            "bleu": float(_sentence_bleu().sentence_score(prediction, present).score),
            "sentence_bleu": nltk_sentence_bleu(prediction, present),
            "chrf": float(_chrf().sentence_score(prediction, present).score),
        }

    def _stat_widths(self) -> tuple[int, int]:
        # BLEU: hyp length, ref length, matches and totals for n = 1..4; chrF: 3 per char/word order
        bleu, chrf = _corpus_bleu(), _chrf()
        return 2 + 2 * bleu.max_ngram_order, 3 * (chrf.char_order + chrf.word_order)

    def sufficient_stats(self, data: ScoringInput) -> np.ndarray:
        """Per-example columns: BLEU stats, chrF stats, nltk sentence BLEU, 1 (the count)."""
        import numpy as np

        predictions = [prediction or "" for prediction in data.predictions]
        streams = reference_streams(data.references)
        bleu_stats = np.asarray(_corpus_bleu()._extract_corpus_statistics(predictions, streams), dtype=np.float64)
        chrf_stats = np.asarray(_chrf()._extract_corpus_statistics(predictions, streams), dtype=np.float64)
        nltk_scores = [nltk_sentence_bleu(p, [r for r in refs if r is not None]) for p, refs in zip(predictions, data.references)]
        bleu_width, chrf_width = self._stat_widths()
        columns = [
            bleu_stats.reshape(len(predictions), bleu_width),
            chrf_stats.reshape(len(predictions), chrf_width),
            np.asarray(nltk_scores, dtype=np.float64).reshape(-1, 1),
            np.ones((len(predictions), 1)),
        ]
        return np.hstack(columns)

    def score_from_stats(self, totals: np.ndarray) -> dict[str, float]:
        bleu_width, chrf_width = self._stat_widths()
        bleu_totals = totals[:bleu_width]
        chrf_totals = totals[bleu_width : bleu_width + chrf_width]
        nltk_sum, count = totals[-2], totals[-1]
        # sacrebleu's BLEU indexes lengths as ints; the totals are whole numbers stored as floats
        bleu = _corpus_bleu()._compute_score_from_stats([int(round(x)) for x in bleu_totals]).score
        chrf = _chrf()._compute_score_from_stats(chrf_totals).score
        return {
            "bleu": float(bleu),
            "sentence_bleu": float(nltk_sum / count) if count else 0.0,
            "chrf": float(chrf),
        }

    def corpus(self, data: ScoringInput) -> dict[str, float]:
        if not data.predictions:
            return dict.fromkeys(self.names, 0.0)
        return self.score_from_stats(self.sufficient_stats(data).sum(axis=0))
