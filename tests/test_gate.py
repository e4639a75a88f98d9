"""The regression gate on synthetic per-example scores with known effects.

The metrics here are tiny hand-written ones (plus sacrebleu called directly), so these tests
do not depend on harness/metrics/*.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import replace
from statistics import NormalDist
from xml.etree import ElementTree as ET

import numpy as np
import pytest
import sacrebleu

from harness.errors import HarnessError
from harness.gate.decide import (
    GateInput,
    GateSettings,
    Side,
    Verdict,
    calibration_widening,
    discordant_pairs,
    holm,
    mcnemar_exact,
    resample_corpus,
    resample_indices,
    resample_stats,
    run_gate,
)
from harness.gate.outputs import MARKDOWN_HEADER, to_json, to_junit_xml, to_markdown
from harness.metrics.base import Metric, ScoringInput, SummableMetric

N = 200


class ScoreMetric:
    """A mean metric whose per-example score is the prediction itself (a number as text)."""

    name = "score"
    names = ("score",)
    is_mean = True

    def per_example(self, prediction: str, references: Sequence[str], label: int | None) -> dict[str, float]:
        return {"score": float(prediction)}

    def corpus(self, data: ScoringInput) -> dict[str, float]:
        return {"score": float(np.mean([float(p) for p in data.predictions]))}


class Accuracy:
    name = "accuracy"
    names = ("accuracy",)
    is_mean = True

    def per_example(self, prediction: str, references: Sequence[str], label: int | None) -> dict[str, float]:
        return {"accuracy": float(prediction == references[0])}

    def corpus(self, data: ScoringInput) -> dict[str, float]:
        hits = [p == r[0] for p, r in zip(data.predictions, data.references, strict=True)]
        return {"accuracy": sum(hits) / len(hits)}


def _matched(prediction: str, reference: str) -> tuple[int, int]:
    ref = reference.split()
    hyp = prediction.split()
    return sum(1 for token in hyp if token in ref), len(hyp)


class UnigramPrecision:
    """Corpus metric: matched tokens / predicted tokens over the whole corpus (a ratio of sums)."""

    name = "uprec"
    names = ("uprec",)
    is_mean = False

    def per_example(self, prediction: str, references: Sequence[str], label: int | None) -> dict[str, float]:
        hit, total = _matched(prediction, references[0])
        return {"uprec": hit / total}

    def corpus(self, data: ScoringInput) -> dict[str, float]:
        pairs = [_matched(p, r[0]) for p, r in zip(data.predictions, data.references, strict=True)]
        return {"uprec": sum(h for h, _ in pairs) / sum(t for _, t in pairs)}


class SacreBleu:
    name = "bleu"
    names = ("bleu",)
    is_mean = False

    def per_example(self, prediction: str, references: Sequence[str], label: int | None) -> dict[str, float]:
        return {"bleu": sacrebleu.sentence_bleu(prediction, list(references)).score}

    def corpus(self, data: ScoringInput) -> dict[str, float]:
        refs = [r[0] for r in data.references]
        return {"bleu": sacrebleu.corpus_bleu(list(data.predictions), [refs]).score}


class SummableBleu(SacreBleu):
    """The same BLEU, also exposing sacrebleu's additive sentence statistics (the gate's fast path)."""

    def __init__(self) -> None:
        self.bleu = sacrebleu.BLEU()

    def sufficient_stats(self, data: ScoringInput) -> np.ndarray:
        return np.array(self.bleu._extract_corpus_statistics(list(data.predictions), [[r[0] for r in data.references]]))

    def score_from_stats(self, totals: np.ndarray) -> dict[str, float]:
        return {"bleu": self.bleu._compute_score_from_stats(totals.tolist()).score}


class Perplexity(ScoreMetric):
    name = "ppl"
    names = ("ppl",)

    def per_example(self, prediction: str, references: Sequence[str], label: int | None) -> dict[str, float]:
        return {"ppl": float(prediction)}


def _ids(n: int = N) -> list[str]:
    return [f"ex-{i}" for i in range(n)]


def score_side(values: Sequence[float]) -> Side:
    return Side(ids=_ids(len(values)), predictions=[repr(float(v)) for v in values], references=[("",)] * len(values))


def accuracy_side(correct: Sequence[bool]) -> Side:
    return Side(
        ids=_ids(len(correct)),
        predictions=["yes" if ok else "no" for ok in correct],
        references=[("yes",)] * len(correct),
    )


def score_gate(base: Sequence[float], cand: Sequence[float], task: str = "t") -> GateInput:
    return GateInput(task=task, metrics=[ScoreMetric()], baseline=score_side(base), candidate=score_side(cand))


def accuracy_gate(base: Sequence[bool], cand: Sequence[bool], task: str = "acc") -> GateInput:
    return GateInput(task=task, metrics=[Accuracy()], baseline=accuracy_side(base), candidate=accuracy_side(cand))


def baseline_scores() -> np.ndarray:
    return np.random.default_rng(7).uniform(0.3, 0.9, N)


def alternating(scale: float) -> np.ndarray:
    """+scale, -scale, ...: noise whose mean is exactly zero."""
    return scale * np.where(np.arange(N) % 2 == 0, 1.0, -1.0)


# ----------------------------------------------------------------------------- the five done-when cases


def test_true_drop_is_flagged_with_mcnemar() -> None:
    base = [i < 160 for i in range(N)]  # 80% right
    cand = [i < 130 for i in range(N)]  # 30 of those now wrong, none gained
    report = run_gate([accuracy_gate(base, cand)])
    (row,) = report.rows
    assert row.verdict is Verdict.REGRESSION
    assert row.baseline == pytest.approx(0.80) and row.candidate == pytest.approx(0.65)
    assert row.delta == pytest.approx(-0.15)
    assert row.ci_high < -row.allowed_drop
    assert row.p_value == pytest.approx(1 / (report.settings.n_resamples + 1))
    assert row.mcnemar_p == pytest.approx(2 / 2**30)
    assert report.verdict is Verdict.REGRESSION
    assert report.exit_code() == 1


def test_identical_candidate_passes_even_with_zero_margin() -> None:
    base = baseline_scores()
    for settings in (GateSettings(), GateSettings(max_drop=0.0)):
        report = run_gate([score_gate(base, base)], settings)
        (row,) = report.rows
        assert row.verdict is Verdict.NO_REGRESSION
        assert (row.delta, row.ci_low, row.ci_high) == (0.0, 0.0, 0.0)
        assert row.p_value == 1.0
        assert report.exit_code(strict=True) == 0


def test_small_noise_passes_with_default_margin() -> None:
    base = baseline_scores()
    report = run_gate([score_gate(base, base + alternating(0.005))])
    (row,) = report.rows
    assert row.verdict is Verdict.NO_REGRESSION
    assert row.allowed_drop == pytest.approx(0.01 * base.mean())  # the default min_ratio 0.99
    assert row.ci_low < 0.0 < row.ci_high
    assert report.exit_code(strict=True) == 0


def test_effect_inside_the_margin_is_inconclusive() -> None:
    base = baseline_scores()
    # mean drop exactly 0.007 (inside the 0.01 margin), standard error 0.07 / sqrt(200) = 0.005:
    # the interval reaches past -0.01 but also past 0, so neither claim can be made.
    cand = base - 0.007 + alternating(0.07)
    report = run_gate([score_gate(base, cand)], GateSettings(max_drop=0.01))
    (row,) = report.rows
    assert row.delta == pytest.approx(-0.007)
    assert row.ci_low < -0.01 < row.ci_high
    assert row.verdict is Verdict.INCONCLUSIVE
    assert row.mcnemar_p is None  # scores are not 0/1
    assert report.exit_code() == 0
    assert report.exit_code(strict=True) == 2


def test_same_seed_same_verdict_and_numbers() -> None:
    base = baseline_scores()
    gates = [score_gate(base, base - 0.007 + alternating(0.07))]
    first = run_gate(gates, GateSettings(max_drop=0.01, seed=3))
    again = run_gate(gates, GateSettings(max_drop=0.01, seed=3))
    other = run_gate(gates, GateSettings(max_drop=0.01, seed=4))
    assert first.rows == again.rows
    assert to_json(first) == to_json(again)
    assert other.rows[0].p_value != first.rows[0].p_value  # the seed does drive the resampling


def test_corpus_metric_recomputed_on_each_resample_by_hand() -> None:
    # A: 1 token, matched; B: 9 tokens, none matched.
    side = Side(ids=["a", "b"], predictions=["x", "q " * 9], references=[("x",), ("y",)])
    values = resample_corpus(UnigramPrecision(), side, ["uprec"], np.array([[0, 1, 1], [0, 0, 0], [1, 1, 1]]))
    # pooled counts (1 + 0 + 0) / (1 + 9 + 9), not the mean of per-example ratios (1 + 0 + 0) / 3
    assert values["uprec"].tolist() == pytest.approx([1 / 19, 1.0, 0.0])


def test_corpus_bleu_recomputed_on_each_resample_matches_hand_computation() -> None:
    side = Side(
        ids=["a", "b"],
        predictions=["a b c d e", "a b c d x"],
        references=[("a b c d e",), ("a b c d y",)],
    )
    values = resample_corpus(SacreBleu(), side, ["bleu"], np.array([[0, 1, 1]]))
    # n-gram matches/totals pooled over A, B, B: 1-grams 13/15, 2-grams 10/12, 3-grams 7/9,
    # 4-grams 4/6; hypothesis and reference lengths are equal, so the brevity penalty is 1.
    by_hand = 100 * (13 / 15 * 10 / 12 * 7 / 9 * 4 / 6) ** 0.25
    assert values["bleu"][0] == pytest.approx(by_hand, abs=1e-9)
    mean_of_sentences = (100 + 2 * 100 * (4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25) / 3
    assert abs(values["bleu"][0] - mean_of_sentences) > 0.2


def _museum_corpus() -> tuple[Side, Side]:
    refs = [f"the museum opens at {h} on day {d}" for h, d in zip(range(20), range(20, 40), strict=True)]
    base = Side(ids=_ids(20), predictions=refs, references=[(r,) for r in refs])
    garbled = [r if i % 2 else "closed" for i, r in enumerate(refs)]
    return base, replace(base, predictions=garbled)


def test_summed_bleu_statistics_equal_recomputed_corpus_bleu() -> None:
    _, side = _museum_corpus()
    metric = SummableBleu()
    assert isinstance(metric, SummableMetric) and not isinstance(SacreBleu(), SummableMetric)
    (chunk,) = resample_indices(20, 30, seed=1, task="hcm_qa")
    stats = np.asarray(metric.sufficient_stats(side.scoring_input()), dtype=float)
    fast = resample_stats(metric, stats, ["bleu"], chunk)["bleu"]
    slow = resample_corpus(SacreBleu(), side, ["bleu"], chunk)["bleu"]
    assert fast == pytest.approx(slow, abs=1e-9)
    assert len(set(fast.round(6))) > 5  # the resamples really differ


def test_corpus_bleu_drop_is_flagged_through_the_gate() -> None:
    base, cand = _museum_corpus()
    report = run_gate([GateInput(task="hcm_qa", metrics=[SummableBleu()], baseline=base, candidate=cand)])
    (row,) = report.rows
    assert row.baseline == pytest.approx(100.0)
    assert row.candidate == pytest.approx(sacrebleu.corpus_bleu(cand.predictions, [base.predictions]).score)
    assert row.mcnemar_p is None
    assert row.verdict is Verdict.REGRESSION


def test_plain_corpus_metric_through_the_gate() -> None:
    # uprec falls from 1 to 0.7 when 30 of 100 one-token answers go wrong
    refs = [f"w{i}" for i in range(100)]
    base = Side(ids=_ids(100), predictions=refs, references=[(r,) for r in refs])
    cand = replace(base, predictions=[r if i >= 30 else "wrong" for i, r in enumerate(refs)])
    drop = run_gate([GateInput(task="t", metrics=[UnigramPrecision()], baseline=base, candidate=cand)]).rows[0]
    assert (drop.baseline, drop.candidate, drop.verdict) == (1.0, pytest.approx(0.7), Verdict.REGRESSION)
    same = run_gate([GateInput(task="t", metrics=[UnigramPrecision()], baseline=base, candidate=base)]).rows[0]
    assert same.verdict is Verdict.NO_REGRESSION


# ----------------------------------------------------------------------------- the small tests


def test_mcnemar_exact_on_hand_computed_tables() -> None:
    assert mcnemar_exact(8, 2) == pytest.approx(2 * (1 + 10 + 45) / 1024)  # 0.109375
    assert mcnemar_exact(2, 8) == mcnemar_exact(8, 2)
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(6, 0) == pytest.approx(2 / 64)
    assert discordant_pairs([1, 1, 0, 0, 1], [1, 0, 1, 0, 0]) == (2, 1)


def test_holm_on_hand_computed_example() -> None:
    # sorted: 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> monotone 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def _three_task_report() -> tuple[list[GateInput], GateSettings]:
    base = baseline_scores()
    gates = [
        accuracy_gate([i < 160 for i in range(N)], [i < 130 for i in range(N)], task="dropped"),
        score_gate(base, base - 0.007 + alternating(0.07), task="unclear"),
        score_gate(base, base, task="same"),
    ]
    return gates, GateSettings(max_drop=0.01)


def test_holm_runs_across_tasks_and_rows() -> None:
    report = run_gate(*_three_task_report())
    assert [r.task for r in report.rows] == ["dropped", "unclear", "same"]
    assert [r.p_adjusted for r in report.rows] == pytest.approx(holm([r.p_value for r in report.rows]))
    assert [r.verdict for r in report.rows] == [Verdict.REGRESSION, Verdict.INCONCLUSIVE, Verdict.NO_REGRESSION]
    assert report.verdict is Verdict.REGRESSION


def test_junit_xml_parses_with_failure_and_skip_counts() -> None:
    report = run_gate(*_three_task_report())
    root = ET.fromstring(to_junit_xml(report))
    suite = root.find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("3", "1", "1")
    cases = suite.findall("testcase")
    assert [c.get("classname") for c in cases] == ["gate.dropped", "gate.unclear", "gate.same"]
    assert len(root.findall(".//failure")) == 1 and cases[0].find("failure") is not None
    assert len(root.findall(".//skipped")) == 1 and cases[1].find("skipped") is not None


def test_markdown_and_json_reports() -> None:
    report = run_gate(*_three_task_report())
    text = to_markdown(report)
    assert text.startswith("## Regression gate: REGRESSION")
    assert MARKDOWN_HEADER in text
    assert "| dropped | accuracy | 0.8 | 0.65 | -0.15 [" in text
    assert "**inconclusive**" in text
    payload = json.loads(to_json(report))
    assert payload["verdict"] == "regression"
    assert [r["verdict"] for r in payload["rows"]] == ["regression", "inconclusive", "no regression"]
    assert payload["settings"]["max_drop"] == 0.01


def test_progress_is_reported_per_chunk_of_resamples() -> None:
    calls: list[tuple[str, int, int]] = []
    gates, settings = _three_task_report()
    run_gate(gates, settings, progress=lambda task, done, total: calls.append((task, done, total)))
    assert [c for c in calls if c[1] == c[2]] == [("dropped", 2000, 2000), ("unclear", 2000, 2000), ("same", 2000, 2000)]
    assert all(b[1] > a[1] for a, b in zip(calls, calls[1:], strict=False) if a[0] == b[0])


def test_candidate_in_another_order_is_aligned_by_id() -> None:
    base = baseline_scores()
    cand = base - 0.007 + alternating(0.07)
    gate = score_gate(base, cand)
    shuffled = gate.candidate.subset(list(reversed(range(N))))
    aligned = run_gate([gate], GateSettings(max_drop=0.01))
    reordered = run_gate([replace(gate, candidate=shuffled)], GateSettings(max_drop=0.01))
    assert reordered.rows == aligned.rows


def test_stored_scores_are_used_when_given() -> None:
    base = baseline_scores()
    stored = [{"score": float(v)} for v in base]
    side = Side(ids=_ids(), predictions=["ignored"] * N, references=[("",)] * N, scores=stored)
    report = run_gate([GateInput(task="t", metrics=[ScoreMetric()], baseline=side, candidate=side)])
    assert report.rows[0].baseline == pytest.approx(base.mean())


def test_min_ratio_margin_and_lower_is_better() -> None:
    base = baseline_scores()
    ratio = run_gate([score_gate(base, base * 0.9)], GateSettings(min_ratio=0.95)).rows[0]
    assert ratio.allowed_drop == pytest.approx(0.05 * base.mean())
    assert ratio.verdict is Verdict.REGRESSION
    within = run_gate([score_gate(base, base * 0.98)], GateSettings(min_ratio=0.95)).rows[0]
    assert within.verdict is Verdict.NO_REGRESSION
    # perplexity going up by 20% is a regression; going down is fine
    ppl = 10 + 5 * base
    up = GateInput("lm", [Perplexity()], score_side(ppl), score_side(ppl * 1.2), higher_is_better={"ppl": False})
    down = replace(up, candidate=score_side(ppl * 0.8))
    assert run_gate([up]).rows[0].verdict is Verdict.REGRESSION
    assert run_gate([down]).rows[0].verdict is Verdict.NO_REGRESSION


def test_calibration_widens_the_margin_for_sampled_decoding_only() -> None:
    base = baseline_scores()
    cand = base - 0.007 + alternating(0.07)
    reruns = [score_side(base + 0.01), score_side(base - 0.01)]  # corpus values m, m+0.01, m-0.01: std 0.01
    gate = replace(score_gate(base, cand), do_sample=True, baseline_reruns=reruns)
    settings = GateSettings(max_drop=0.01, calibrate=True)
    calibrated = run_gate([gate], settings)
    widening = NormalDist().inv_cdf(0.95) * math.sqrt(2) * 0.01
    assert calibration_widening(0.01, 0.05) == pytest.approx(widening)
    assert calibrated.rows[0].allowed_drop == pytest.approx(0.01 + widening)
    assert calibrated.rows[0].verdict is Verdict.NO_REGRESSION  # the widened margin now covers the interval
    assert "margin widened from 3 baseline runs" in calibrated.notes[0]

    greedy = run_gate([replace(gate, do_sample=False)], settings)
    assert greedy.rows[0].allowed_drop == pytest.approx(0.01)
    assert greedy.notes == ["t: greedy decoding is deterministic: no calibration needed."]

    with pytest.raises(HarnessError, match="at least 2 baseline runs"):
        run_gate([replace(gate, baseline_reruns=())], settings)


def test_user_errors_are_one_sentence_harness_errors() -> None:
    base = baseline_scores()
    gate = score_gate(base, base)
    with pytest.raises(HarnessError, match="cover different examples"):
        run_gate([replace(gate, candidate=score_side(base[:-1]))])
    with pytest.raises(HarnessError, match="has no metric 'rougeL'; pick one of score"):
        run_gate([replace(gate, keys=["rougeL"])])
    with pytest.raises(HarnessError, match="give only one"):
        GateSettings(max_drop=0.01, min_ratio=0.9)
    with pytest.raises(HarnessError, match="at least 2000"):
        GateSettings(n_resamples=500)
    with pytest.raises(HarnessError, match="no tasks"):
        run_gate([])
    with pytest.raises(HarnessError, match="3 predictions for 2 example ids"):
        Side(ids=["a", "b"], predictions=["x", "y", "z"], references=[("x",), ("y",)])


def test_test_metrics_satisfy_the_protocol() -> None:
    for metric in (ScoreMetric(), Accuracy(), UnigramPrecision(), SacreBleu(), SummableBleu(), Perplexity()):
        assert isinstance(metric, Metric)
