"""ROUGE, BLEU, classification, bootstrap, the metric registry and the evaluate plugin."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from harness.errors import HarnessError
from harness.metrics import get_metric, score
from harness.metrics.base import Metric, ScoringInput
from harness.metrics.bleu import BleuMetric, nltk_sentence_bleu, reference_streams
from harness.metrics.bootstrap import bootstrap_interval, paired_resample_indices, resampled_values
from harness.metrics.classification import AccuracyMetric, F1Metric, MccMetric
from harness.metrics.rouge import RougeMetric, split_sentences

# ---------------------------------------------------------------------- ROUGE


def test_rouge_hand_computed() -> None:
    # R1: 4 of 5 predicted unigrams match, all 4 reference unigrams found: P=.8 R=1 F=.889
    # R2: bigrams "it is", "cold outside" match: P=2/4 R=2/3 F=.571
    scores = RougeMetric().per_example("It is very cold outside.", ["It is cold outside."], None)
    assert scores["rouge1"] == pytest.approx(0.889, abs=5e-4)
    assert scores["rouge2"] == pytest.approx(0.571, abs=5e-4)


def test_rouge_takes_the_best_reference_per_key() -> None:
    metric = RougeMetric()
    single = metric.per_example("It is very cold outside.", ["It is cold outside."], None)
    multi = metric.per_example("It is very cold outside.", ["Something else entirely.", "It is cold outside."], None)
    assert multi == single
    assert metric.per_example("", ["It is cold outside."], None) == dict.fromkeys(metric.names, 0.0)


def test_rouge_stems_and_splits_sentences_without_nltk_data() -> None:
    assert split_sentences("Hi there. How are you?  Fine!\nBye") == "Hi there.\nHow are you?\nFine!\nBye"
    scores = RougeMetric().per_example("The cats were running", ["the cat was running"], None)
    assert scores["rouge1"] == pytest.approx(0.75)  # cats->cat, running->run match; were/was do not


def test_rouge_cached_stemmer_matches_rouge_score_defaults() -> None:
    from rouge_score import rouge_scorer

    reference = rouge_scorer.RougeScorer(list(RougeMetric.names), use_stemmer=True)
    prediction, target = "The meetings were running late. Offices closed!", "Meeting runs late; the office is closing."
    expected = reference.score(split_sentences(target), split_sentences(prediction))
    ours = RougeMetric().per_example(prediction, [target], None)
    assert ours == pytest.approx({key: score.fmeasure for key, score in expected.items()})


def test_rouge_corpus_is_the_mean() -> None:
    data = ScoringInput(["It is very cold outside.", "nothing"], [["It is cold outside."], ["something"]])
    assert RougeMetric().corpus(data)["rouge1"] == pytest.approx(0.889 / 2, abs=5e-4)


# ----------------------------------------------------------------------- BLEU


def test_corpus_bleu_matches_sacrebleu_with_a_missing_reference() -> None:
    import sacrebleu

    predictions = ["the cat sat on the mat today", "a dog barked at the mailman loudly"]
    references = [["the cat sat on the mat", "a cat was on the mat"], ["the dog barked at the mailman"]]
    data = ScoringInput(predictions, references)
    expected_streams = [[references[0][0], references[1][0]], [references[0][1], None]]
    assert reference_streams(references) == expected_streams
    corpus = BleuMetric().corpus(data)
    assert corpus["bleu"] == pytest.approx(sacrebleu.corpus_bleu(predictions, expected_streams).score)
    assert corpus["chrf"] == pytest.approx(sacrebleu.corpus_chrf(predictions, expected_streams).score)
    # corpus BLEU is not the mean of the sentence BLEUs
    sentence = [BleuMetric().per_example(p, r, None)["bleu"] for p, r in zip(predictions, references)]
    assert not math.isclose(corpus["bleu"], float(np.mean(sentence)))


def test_identical_sentences_score_100_and_nltk_one() -> None:
    scores = BleuMetric().per_example("the cat sat on the mat", ["the cat sat on the mat"], None)
    assert scores == pytest.approx({"bleu": 100.0, "sentence_bleu": 1.0, "chrf": 100.0})


def test_sentence_bleu_is_nltk_with_smoothing_method1() -> None:
    from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu

    expected = sentence_bleu([["the", "cat", "sat"]], ["the", "cat", "ran"], smoothing_function=SmoothingFunction().method1)
    assert nltk_sentence_bleu("the cat ran", ["the cat sat"]) == pytest.approx(expected)
    assert 0.0 < expected < 1.0
    assert nltk_sentence_bleu("", ["the cat sat"]) == 0.0
    # method 1 also smooths the absent 4-gram of a 3-word copy: 0.1 ** (1/4), not 1
    copy = sentence_bleu([["the", "cat", "sat"]], ["the", "cat", "sat"], smoothing_function=SmoothingFunction().method1)
    assert copy == pytest.approx(0.1**0.25)
    data = ScoringInput(["the cat ran", "the cat sat"], [["the cat sat"], ["the cat sat"]])
    assert BleuMetric().corpus(data)["sentence_bleu"] == pytest.approx((expected + copy) / 2)


# ------------------------------------------------------------- classification

# gold/pred pairs: TP=3, TN=4, FP=1, FN=2
GOLD = ["1", "1", "1", "0", "0", "0", "0", "0", "1", "1"]
PRED = ["1", "1", "1", "0", "0", "0", "0", "1", "0", "0"]
LABELS = ScoringInput(PRED, [[g] for g in GOLD])


def test_classification_hand_computed() -> None:
    assert AccuracyMetric().corpus(LABELS)["accuracy"] == pytest.approx(0.7)
    assert F1Metric().corpus(LABELS)["f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 2))
    # MCC = (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = 10 / sqrt(600)
    assert MccMetric().corpus(LABELS)["mcc"] == pytest.approx(10 / math.sqrt(600))


def test_classification_edge_cases() -> None:
    constant = ScoringInput(["0"] * 4, [["0"], ["1"], ["0"], ["1"]])
    assert MccMetric().corpus(constant)["mcc"] == 0.0
    assert F1Metric().corpus(constant)["f1"] == 0.0
    # gold from `label` when there is no reference; whitespace around labels is ignored
    from_labels = ScoringInput([" 1", "0"], [[], []], labels=[1, 1])
    assert AccuracyMetric().corpus(from_labels)["accuracy"] == 0.5
    # an unknown prediction is a wrong class of its own; three classes are fine for MCC
    perfect = ScoringInput(["0", "1", "2"], [["0"], ["1"], ["2"]])
    assert MccMetric().corpus(perfect)["mcc"] == pytest.approx(1.0)
    assert F1Metric().per_example("maybe", ["1"], None) == {"f1": 0.0}


# ------------------------------------------------------------------ bootstrap


def _bleu_data(n: int = 30) -> ScoringInput:
    rng = np.random.default_rng(1)
    words = "the a cat dog sat ran on under mat table quickly".split()
    predictions = [" ".join(rng.choice(words, 6)) for _ in range(n)]
    references = [[" ".join(rng.choice(words, 6))] for _ in range(n)]
    return ScoringInput(predictions, references)


def test_paired_resample_indices_are_seeded() -> None:
    first = paired_resample_indices(7, 5, seed=3)
    assert first.shape == (5, 7) and first.min() >= 0 and first.max() < 7
    assert np.array_equal(first, paired_resample_indices(7, 5, seed=3))
    assert not np.array_equal(first, paired_resample_indices(7, 5, seed=4))


@pytest.mark.parametrize("metric", [BleuMetric(), F1Metric(), MccMetric()], ids=lambda m: m.name)
def test_resampled_stats_equal_corpus_on_the_resample(metric: Metric) -> None:
    data = _bleu_data() if metric.name == "bleu" else ScoringInput(PRED * 3, [[g] for g in GOLD * 3])
    indices = paired_resample_indices(len(data.predictions), 4, seed=0)
    values = resampled_values(metric, data, [], indices)
    for row, rows in enumerate(indices):
        subset = ScoringInput([data.predictions[i] for i in rows], [data.references[i] for i in rows])
        for key, expected in metric.corpus(subset).items():
            assert values[key][row] == pytest.approx(expected)


def test_bootstrap_is_deterministic_and_contains_the_point() -> None:
    data = _bleu_data()
    metric = BleuMetric()
    rows = [metric.per_example(p, r, None) for p, r in zip(data.predictions, data.references)]
    first = bootstrap_interval(metric, data, rows, n_resamples=300, seed=5)
    assert first == bootstrap_interval(metric, data, rows, n_resamples=300, seed=5)
    assert first != bootstrap_interval(metric, data, rows, n_resamples=300, seed=6)
    for key, value in first.items():
        assert value.low <= value.value <= value.high, key
        assert value.low < value.high, key
    assert first["bleu"].value == pytest.approx(metric.corpus(data)["bleu"])


def test_bootstrap_without_resamples_is_the_point_value() -> None:
    interval = bootstrap_interval(F1Metric(), LABELS, [], n_resamples=0)["f1"]
    assert interval.value == interval.low == interval.high == pytest.approx(2 / 3)


def test_bootstrap_of_a_mean_metric() -> None:
    metric = AccuracyMetric()
    rows = [metric.per_example(p, r, None) for p, r in zip(LABELS.predictions, LABELS.references)]
    interval = bootstrap_interval(metric, LABELS, rows, n_resamples=2000, seed=0)["accuracy"]
    assert interval.value == pytest.approx(0.7)
    assert 0.3 <= interval.low < 0.7 < interval.high <= 1.0


# ------------------------------------------------------------------- registry


def test_score_merges_every_key_with_intervals() -> None:
    data = ScoringInput(["It is very cold outside.", "the cat"], [["It is cold outside."], ["the cat sat"]])
    report = score(["rouge", "bleu"], data, seed=0, n_resamples=100)
    assert set(report.corpus) == {"rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "sentence_bleu", "chrf"}
    assert len(report.per_example) == 2 and set(report.per_example[0]) == set(report.corpus)
    assert report.per_example[0]["rouge1"] == pytest.approx(0.889, abs=5e-4)


def test_score_refuses_two_metrics_with_the_same_key() -> None:
    with pytest.raises(HarnessError, match="both produce 'f1'"):
        score(["f1", "f1"], LABELS, n_resamples=10)


def test_score_refuses_empty_data() -> None:
    with pytest.raises(HarnessError, match="nothing to score"):
        score(["accuracy"], ScoringInput([], []))


def test_unknown_metric_suggests_the_closest_name() -> None:
    with pytest.raises(HarnessError, match="did you mean 'rouge'"):
        get_metric("rogue")
    with pytest.raises(HarnessError, match="takes no options"):
        get_metric("bleu(tokenize=intl)")
    assert isinstance(get_metric("mcc"), Metric)


# -------------------------------------------------------------- evaluate plugin

EXACT_MODULE = '''
import datasets
import evaluate


class ExactMatch(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="exact string match",
            citation="",
            features=datasets.Features(
                {"predictions": datasets.Value("string"), "references": datasets.Value("string")}
            ),
        )

    def _compute(self, predictions, references):
        hits = [p == r for p, r in zip(predictions, references)]
        return {"exact": sum(hits) / len(hits), "label": "not a number"}
'''


def test_evaluate_plugin_from_a_path_relative_to_the_task(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "modules"))
    (tmp_path / "exact_match.py").write_text(EXACT_MODULE)
    data = ScoringInput(["a", "b", "c", "d"], [["a"], ["x"], ["c"], ["d"]])
    metric = get_metric("evaluate:./exact_match.py", task_folder=tmp_path)
    assert metric.corpus(data) == {"exact": 0.75}
    assert metric.per_example("b", ["x"], None) == {"exact": 0.0}
    report = score(["evaluate:./exact_match.py"], data, n_resamples=20, task_folder=tmp_path)
    assert report.corpus["exact"].value == 0.75
    assert report.corpus["exact"].low <= 0.75 <= report.corpus["exact"].high
    with pytest.raises(HarnessError, match="does not exist"):
        get_metric("evaluate:./missing.py", task_folder=tmp_path)


def test_evaluate_by_name_offline_says_to_use_a_path(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HarnessError, match=r"hub access.*'evaluate:\./no_such_metric_xyz\.py'"):
        get_metric("evaluate:no_such_metric_xyz")
