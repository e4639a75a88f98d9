"""The HTML leaderboard: table data, win rates, figures, drill-down, exports, escaping, privacy."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest
from helpers_report import ATTRIBUTE_INJECTION, ERROR_INJECTION, RUN_ID, SCRIPT_INJECTION, DemoRun, build_demo_store

from harness.errors import HarnessError
from harness.metrics.base import MetricValue
from harness.report import figures
from harness.report.export import LeaderboardExport
from harness.report.leaderboard import (
    LeaderboardRow,
    TaskBoard,
    best_values,
    build,
    collect_rows,
    metric_order,
    overall,
    task_boards,
    win_rates,
)
from harness.report.site import CardSummary, examples_page, read_card, slug, task_page, word_diff, write_report
from harness.store import Prediction, Store


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    folder = tmp_path_factory.mktemp("demo")
    return build_demo_store(folder / "results.sqlite", folder / "adapters")


@pytest.fixture(scope="module")
def report(demo: DemoRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(demo.store, tmp_path_factory.mktemp("report") / "reports").parent


def _row(adapter: str, value: float | None, *, status: str = "done", rank: int | None = None, params: int | None = None) -> LeaderboardRow:
    metrics = {"accuracy": MetricValue(value, value - 0.1, value + 0.1)} if value is not None else {}
    return LeaderboardRow(
        cell_id=1, run_id="r", task="t", split="test", base="m", adapter=adapter, adapter_path=None,
        adapter_hash=None if adapter == "base" else f"h-{adapter}", method=None if adapter == "base" else "LORA",
        rank=rank, trainable_params=params, adapter_bytes=None, status=status, error=None, n_examples=10,
        metrics=metrics, latency_p50=0.5 if value is not None else None,
    )  # fmt: skip


def _board(*rows: LeaderboardRow) -> TaskBoard:
    return task_boards(list(rows))[0]


# ------------------------------------------------------------------------------ table data


def test_win_rate_counts_ties_half_and_skips_failed_rows() -> None:
    board = _board(_row("base", 0.5), _row("a", 0.7), _row("b", 0.7), _row("c", None, status="failed"))
    rates = win_rates(board)
    assert rates == {("m", "base"): 0.0, ("m", "a"): 0.75, ("m", "b"): 0.75}


def test_overall_averages_win_rates_over_tasks() -> None:
    first = _board(_row("base", 0.1), _row("a", 0.9))
    second = task_boards([_row("base", 0.8), _row("a", 0.2)])[0]
    second.task = "u"
    rows = {row.adapter: row for row in overall([first, second])}
    assert rows["a"].mean_win_rate == pytest.approx(0.5)
    assert rows["base"].mean_win_rate == pytest.approx(0.5)
    assert {task: v.value for task, v in rows["a"].values.items()} == {"t": 0.9, "u": 0.2}  # raw values, not min-max
    assert rows["a"].deltas == {"t": pytest.approx(0.8), "u": pytest.approx(-0.6)}


def test_best_marks_lowest_cost_with_ties_and_leaves_metrics_to_tiers() -> None:
    board = _board(_row("a", 0.9, params=100), _row("b", 0.9, params=50), _row("c", 0.2, params=10, status="failed"))
    best = best_values(board)
    assert "accuracy" not in best  # metric columns get significance tiers, not a star on a point estimate
    assert best["trainable_params"] == {("m", "b")}  # the failed row's tiny cost does not count


def test_metric_order_puts_headline_metrics_first() -> None:
    assert metric_order(["f1_name", "json_valid", "field_f1", "zeta"]) == ["field_f1", "json_valid", "f1_name", "zeta"]
    assert metric_order(["rougeLsum", "rouge2", "rougeL", "rouge1"]) == ["rougeL", "rouge1", "rouge2", "rougeLsum"]


def test_newest_finished_cell_wins_over_a_later_failure(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    fields = {"base": "m", "adapter": "a", "task": "t", "split": "test", "settings_json": {}, "status": "running"}
    for run_id, status, value in (("r1", "done", 0.3), ("r2", "done", 0.6), ("r3", "failed", None)):
        store.start_run(run_id, {})
        cell_id = store.upsert_cell(run_id, "c", fields)
        if value is not None:
            store.set_metrics(cell_id, {"accuracy": MetricValue(value, value, value)})
        store.set_cell_status(cell_id, status, None if value else "out of memory")
    [row] = collect_rows(store)
    assert (row.run_id, row.metrics["accuracy"].value) == ("r2", 0.6)
    [only_failed] = collect_rows(store, ["r3"])
    assert (only_failed.status, only_failed.error) == ("failed", "out of memory")


def test_unknown_run_and_empty_store_are_one_sentence_errors(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    with pytest.raises(HarnessError, match="No run 'nope'"):
        write_report(store, tmp_path / "out", ["nope"])
    with pytest.raises(HarnessError, match="holds no cells yet"):
        write_report(store, tmp_path / "out")


# ------------------------------------------------------------------------------ figures and helpers


def test_pareto_front_keeps_only_undominated_points() -> None:
    points = [(10, 0.5), (20, 0.4), (30, 0.8), (5, 0.1), (30, 0.7), (40, 0.8)]
    assert figures.pareto_front(points) == [(5, 0.1), (10, 0.5), (30, 0.8)]


def test_rank_curve_needs_a_sweep_and_draws_band_and_base() -> None:
    board = _board(_row("base", 0.2), _row("r4", 0.5, rank=4), _row("r8", 0.7, rank=8))
    fig = figures.rank_curve(board)
    assert fig is not None
    line = [trace for trace in fig.data if trace.mode == "lines+markers"][0]
    assert list(line.x) == [4, 8] and list(line.y) == [0.5, 0.7]
    assert len(fig.layout.shapes) == 1  # the base model's dashed line
    assert figures.rank_curve(_board(_row("base", 0.2), _row("r4", 0.5, rank=4))) is None


def test_figure_text_is_escaped() -> None:
    board = _board(_row("base", 0.2, params=None), _row("<b>x</b>", 0.5, rank=4, params=10), _row("y", 0.6, rank=8, params=20))
    fig = figures.pareto(board, "trainable_params")
    assert fig is not None
    texts = [text for trace in fig.data for text in (trace.text or [])]
    assert any("&lt;b&gt;x&lt;/b&gt;" in text for text in texts)
    assert not any("<b>x" in text for text in texts)


def test_spectral_heatmap_orders_layers_and_adapters() -> None:
    records = [{"record": "layer", "layer": f"model.layers.{i}.self_attn.q_proj", "stable_rank": float(i), "primary": True} for i in (10, 2)]
    spectra = [figures.AdapterSpectrum("r8", "LORA", 8, records), figures.AdapterSpectrum("r4", "LORA", 4, records[:1])]
    records.append({"record": "layer", "layer": "model.layers.2.self_attn.v_proj", "stable_rank": 5.0, "primary": True})
    fig = figures.spectral_heatmap(spectra, "stable_rank")
    assert fig is not None
    # one panel per module type, transformer blocks (numbers, in order) as columns
    assert [a.text for a in fig.layout.annotations] == ["q_proj", "v_proj"]
    q_panel, v_panel = fig.data
    assert list(q_panel.x) == [2, 10] and list(q_panel.y) == ["r4", "r8"]
    assert list(q_panel.z[0]) == [None, 10.0] and list(v_panel.z[1]) == [5.0, None]
    assert figures.spectral_heatmap(spectra, "relative_update") is None  # nothing to draw
    single = figures.spectral_heatmap(spectra[:1], "stable_rank")  # one adapter: modules as rows
    assert single is not None and list(single.data[0].y) == ["q_proj", "v_proj"] and list(single.data[0].x) == [2, 10]


def test_singular_value_decay_and_effective_rank_plots() -> None:
    def layer(block: int, values: list[float]) -> dict[str, object]:
        return {"record": "layer", "layer": f"model.layers.{block}.self_attn.q_proj", "module": "q_proj", "primary": True,
                "stable_rank": 1.0, "effective_rank": float(len(values)) - 0.5, "singular_values": json.dumps(values)}
    spectra = [figures.AdapterSpectrum("r4", "LoRA", 4, [layer(0, [4.0, 2.0, 1.0, 0.5]), layer(1, [2.0, 2.0, 0.2, 0.2])])]
    decay = figures.singular_value_decay(spectra)
    assert decay is not None
    assert list(decay.data[0].x) == [1, 2, 3, 4]
    assert list(decay.data[0].y) == pytest.approx([1.0, 0.75, 0.175, 0.1125])  # medians of σ_i/σ_1 over layers
    ranks = figures.effective_rank_plot(spectra)
    assert ranks is not None and list(ranks.data[0].y) == [3.5, 3.5] and list(ranks.data[1].y) == [4]
    assert figures.singular_value_decay([figures.AdapterSpectrum("ia3", "IA3", None, [])]) is None


def test_word_diff_marks_added_and_removed_words() -> None:
    pieces = word_diff("the cat sat on the mat", "the dog sat on the mat")
    assert [(p.kind, p.text.strip()) for p in pieces] == [("same", "the"), ("removed", "cat"), ("added", "dog"), ("same", "sat on the mat")]


def test_read_card_tolerates_missing_and_odd_cards(tmp_path: Path) -> None:
    assert read_card(None, "a") == CardSummary() and read_card(str(tmp_path / "missing"), "a") == CardSummary()
    (tmp_path / "card.json").write_text("{not json", encoding="utf-8")
    assert read_card(str(tmp_path), "a") == CardSummary()
    # harness.zoo.train's keys, a "curves" mapping, a bad point and a float that only looks like a curve key
    card = {"train_loss": [[0, 2.0], [10, 1.5], ["bad"]], "curves": {"dev": [{"step": 10, "loss": 1.7}]},
            "final_dev_loss": 1.7, "recipe": "lora_r8"}
    (tmp_path / "card.json").write_text(json.dumps(card), encoding="utf-8")
    summary = read_card(str(tmp_path), "a")
    curves = {curve.split: curve for curve in summary.curves}
    assert sorted(curves) == ["dev", "train"]
    assert curves["train"].steps == (0.0, 10.0) and curves["train"].losses == (2.0, 1.5)
    assert curves["dev"].losses == (1.7,)
    assert ("recipe", "lora_r8") in summary.facts and ("final_dev_loss", "1.700") in summary.facts


# ------------------------------------------------------------------------------ the written report


def test_report_folder_has_every_page_and_one_plotly(demo: DemoRun, report: Path) -> None:
    assert (report / "index.html").is_file()
    assert [p.name for p in report.rglob("plotly*.js")] == ["plotly.min.js"]
    for task in ("resume_json", "glue_sst2", "resume_json_real"):
        assert (report / task_page(task)).is_file()
    done = [row for row in collect_rows(demo.store) if row.status == "done"]
    for row in done:
        assert (report / examples_page(row)).is_file()
    assert len(list((report / "adapters").glob("*.html"))) == 6  # base, r4, r8, r16, ia3 and the failed r32
    for page in report.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        assert len(text) < 500_000, f"{page} inlines too much"
        assert "cdn.plot.ly" not in text and "https://" not in text  # the report works offline
        for src in re.findall(r'<script src="([^"]+)"', text):
            assert (page.parent / src).resolve().is_file(), f"{page}: {src}"


def test_task_leaderboard_rows_tiers_and_failure_reason(report: Path) -> None:
    text = (report / task_page("resume_json")).read_text(encoding="utf-8")
    rows = re.findall(r'<tr class="status-(\w+)[^"]*" data-adapter="([^"]+)"', text)
    assert rows == [("done", "base"), ("done", "ia3"), ("done", "lora_r4"), ("done", "lora_r8"), ("done", "lora_r16"), ("failed", "lora_r32")]
    assert "trained for another base" in text
    assert text.count('class="plotly-graph-div"') == 3  # rank curve and two Pareto plots
    board_rows = re.findall(r'<tr class="status-[^"]*" data-adapter="([^"]+)".*?</tr>', text, re.S)
    tiers = {m.group(1): re.search(r'significance tier (\d+)', m.group(0)) for m in re.finditer(r'<tr class="status-[^"]*" data-adapter="([^"]+)".*?</tr>', text, re.S)}
    assert len(board_rows) == 6 and tiers["lora_r16"] and tiers["lora_r16"].group(1) == "1"
    assert tiers["lora_r32"] is None  # a failed row has no tier
    assert 'id="pairwise"' in text and "McNemar" in text
    assert 'class="badge incomplete"' in text  # the failed row is not a final result


def test_injected_markup_is_escaped_everywhere(report: Path) -> None:
    for page in report.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        for raw in (SCRIPT_INJECTION, ATTRIBUTE_INJECTION, ERROR_INJECTION, "onerror=\"window"):
            assert raw not in text, f"{page} holds unescaped {raw!r}"
    examples = next((report / "examples").glob("resume_json-*/smollm2-135m--lora_r4-*.html")).read_text(encoding="utf-8")
    assert "&lt;script&gt;window.__pwned = 1;&lt;/script&gt;" in examples
    assert "invalid JSON" in examples  # the injected answer is no JSON object


def test_private_task_shows_only_field_level_results(demo: DemoRun, report: Path) -> None:
    private_pages = list((report / "examples").glob("resume_json_real-*/*.html"))
    assert len(private_pages) == 2
    texts = [page.read_text(encoding="utf-8") for page in private_pages]
    assert any("field-right" in text for text in texts) and any("field-wrong" in text for text in texts)
    for text in texts:
        assert 'class="fields"' in text and "only field-level results are shown" in text
        assert '<pre class="input">' not in text and '<pre class="prediction">' not in text
    for page in report.rglob("*"):
        if page.is_file() and page.suffix in (".html", ".csv", ".json", ".md"):
            text = page.read_text(encoding="utf-8")
            for secret in demo.private_texts:
                assert secret not in text, f"{page} shows real people's data"


def test_exports_csv_json_markdown(report: Path) -> None:
    lines = list(csv.DictReader(io.StringIO((report / "leaderboard.csv").read_text(encoding="utf-8"))))
    assert len(lines) == 6 + 3 + 2
    failed = [line for line in lines if line["status"] == "failed"]
    assert [line["adapter"] for line in failed] == ["lora_r32"] and "another base" in failed[0]["error"]
    r16 = next(line for line in lines if line["task"] == "resume_json" and line["adapter"] == "lora_r16")
    assert float(r16["field_f1"]) == 1.0 and r16["field_f1_low"] != "" and float(r16["latency_p50"]) > 0
    assert r16["tier"] == "1" and r16["n_examples"] == "4" and r16["json_valid_interval"] == "wilson"
    sst2_base = next(line for line in lines if line["task"] == "glue_sst2" and line["adapter"] == "base")
    assert "majority-class rate" in sst2_base["flags"]

    export = LeaderboardExport.model_validate_json((report / "leaderboard.json").read_text(encoding="utf-8"))
    assert export.runs == [RUN_ID] and [t.task for t in export.tasks] == ["glue_sst2", "resume_json", "resume_json_real"]
    # on 4-6 examples no difference is significant against lora_r8 on sst2, so ties count half
    assert export.overall[0].adapter == "lora_r16" and export.overall[0].tiers == {"glue_sst2": 1, "resume_json": 1, "resume_json_real": 1}
    r16_json = next(row for row in export.tasks[1].rows if row.adapter == "lora_r16")
    assert r16_json.tier == 1 and r16_json.metrics["json_valid"].interval == "wilson" and r16_json.metrics["json_valid"].n == 4
    assert r16_json.metrics["json_valid"].low < 1.0  # Wilson: 4/4 right is not certainty
    assert r16_json.metrics["field_f1"].delta_vs_base == 1.0
    assert len(export.tasks[1].pairs) == 10  # five finished rows, every pair
    schema = json.loads((report / "leaderboard.schema.json").read_text(encoding="utf-8"))
    assert "mean_win_rate" in json.dumps(schema)

    markdown = (report / "leaderboard.md").read_text(encoding="utf-8")
    assert "### resume_json" in markdown and "| 1 | lora_r16 | LoRA | 16 | 4 |" in markdown and "McNemar" in markdown
    assert "<img" not in markdown and "&lt;img" in markdown


def test_examples_page_carries_scores_for_comparison(report: Path) -> None:
    page = next((report / "examples").glob("glue_sst2-*/smollm2-135m--base-*.html")).read_text(encoding="utf-8")
    scores = re.findall(r'data-score="([^"]*)" data-others="([^"]*)"', page)
    assert len(scores) == 6
    assert all(len(json.loads(others.replace("&#34;", '"'))) == 2 for _, others in scores)  # lora_r8 and lora_r16
    assert 'data-threshold="0.25"' in page
    assert "correct" in page and "wrong" in page


def test_slug_is_a_safe_unique_file_name() -> None:
    assert slug("zoo/smollm2/lora_r8") != slug("zoo-smollm2-lora_r8")
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", slug("../<script>/a b"))


def test_adapter_page_shows_card_spectrum_and_results(report: Path) -> None:
    page = next((report / "adapters").glob("smollm2-135m--lora_r8-*.html")).read_text(encoding="utf-8")
    assert "card: final dev loss" in page and 'id="fig-adapter-training"' in page
    assert 'id="fig-adapter-stable-rank"' in page and 'id="fig-adapter-intruders"' in page
    assert page.count('class="drill"') == 2  # resume_json and glue_sst2


def test_task_unknown_to_the_registry_shows_scores_but_no_text(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.sqlite")
    store.start_run("r1", {})
    fields = {"base": "m", "adapter": None, "task": "gone_task", "split": "test", "settings_json": {}, "status": "running"}
    cell_id = store.upsert_cell("r1", "c", fields)
    store.add_prediction(Prediction("k1", "e1", "Jane Doe, 12 Main St", {}, 1, 1, 0.1), task="gone_task", base_hash="b", adapter_hash=None)
    store.set_cell_examples(cell_id, [("e1", "k1")])
    store.set_metrics(cell_id, {"accuracy": MetricValue(1.0, 1.0, 1.0)})
    store.set_example_scores(cell_id, [("e1", {"accuracy": 1.0})])
    store.set_cell_status(cell_id, "done")
    out = write_report(store, tmp_path / "out", runs=[]).parent
    [page] = list((out / "examples").rglob("*.html"))
    text = page.read_text(encoding="utf-8")
    assert "only its scores are shown" in text and "accuracy = <b>1.000</b>" in text
    assert "Jane Doe" not in text


def test_short_labels_drop_the_shared_folder_prefix() -> None:
    labels = ["minilm-l6/glue_sst2/lora_r1", "minilm-l6/glue_sst2/lora_r16", "minilm-l6/glue_mrpc/lora_r8"]
    assert figures.short_labels(labels) == {
        labels[0]: "glue_sst2/lora_r1", labels[1]: "glue_sst2/lora_r16", labels[2]: "glue_mrpc/lora_r8",
    }
    assert figures.short_labels(["zoo/x/lora_r1"]) == {"zoo/x/lora_r1": "lora_r1"}
    assert figures.short_labels(["a", "b"]) == {"a": "a", "b": "b"}


def test_training_curves_show_one_legend_entry_per_adapter_below_the_plot() -> None:
    curves = [figures.LossCurve(name, split, (0.0, 10.0), (2.0, 1.0)) for name in ("z/r1", "z/r8") for split in ("train", "dev")]
    fig = figures.training_curves(curves)
    assert fig is not None
    assert [t.name for t in fig.data if t.showlegend] == ["r1", "r8"]
    assert fig.layout.legend.yref == "container" and fig.layout.margin.b >= 80  # room below the axis title


def test_board_says_when_rows_were_scored_on_different_examples_or_bases() -> None:
    from dataclasses import replace

    same = _board(_row("base", 0.5), _row("a", 0.7))
    assert same.notes == []
    other_n = replace(_row("a", 0.7), n_examples=32)
    other_base = replace(_row("b", 0.6), base="other-model")
    board = _board(_row("base", 0.5), other_n, other_base)
    assert any("different example sets (n = 10, 32)" in note for note in board.notes)
    assert any("several base models" in note for note in board.notes)
    assert board.name(other_base) == "other-model / b" and board.name(other_n) == "m / a"
    assert board.delta(other_n, "accuracy") == pytest.approx(0.2) and board.delta(other_base, "accuracy") is None


def test_method_labels_tell_qlora_dora_and_rslora_from_lora(tmp_path: Path) -> None:
    from harness.report.rows import base_description, method_label

    for name, config, card, expected in (
        ("q", {"use_dora": False}, {"load_in_4bit": True}, "QLoRA"),
        ("d", {"use_dora": True}, {}, "DoRA"),
        ("rs", {"use_rslora": True}, {}, "rsLoRA"),
        ("plain", {}, {}, "LoRA"),
    ):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", **config}), encoding="utf-8")
        (folder / "card.json").write_text(json.dumps(card), encoding="utf-8")
        assert method_label("LORA", str(folder)) == expected
    assert method_label("LOHA", None) == "LoHa" and method_label("VERA", None) == "VeRA"
    assert method_label(None, None) == "base"
    assert "untrained classification head" in base_description("classify", "minilm-l6")


def test_cells_record_dora_and_rslora_so_the_label_survives_a_moved_folder(tmp_path: Path) -> None:
    """PEFT files DoRA and rsLoRA as LORA; a store outlives the checkout its adapter paths point into."""
    import numpy as np
    from safetensors.numpy import save_file

    from harness.report.rows import method_label
    from harness.run.adapter_checks import adapter_facts
    from harness.run.adapter_host import AttachedAdapter
    from harness.spec import AdapterSpec

    for name, config, expected in (("d", {"use_dora": True}, "DoRA"), ("rs", {"use_rslora": True}, "rsLoRA"),
                                   ("plain", {}, "LoRA"), ("ia3", {"peft_type": "IA3"}, "IA3")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4, **config}), encoding="utf-8")
        save_file({"lora_A": np.ones((4, 8), dtype=np.float32)}, str(folder / "adapter_model.safetensors"))
        facts = adapter_facts(AdapterSpec(name=name, path=folder))
        assert facts is not None
        attached = AttachedAdapter(name, folder, facts.method, 4, True, True, facts.weights_hash, 32, json.loads(
            (folder / "adapter_config.json").read_text(encoding="utf-8")))
        assert facts.recorded_method == attached.recorded_method
        gone = str(tmp_path / "moved-away" / name)  # the label must not need the folder any more
        assert method_label(facts.recorded_method, gone) == expected


def test_corpus_headlines_are_tested_as_corpus_values_and_mean_headlines_as_means(demo: DemoRun) -> None:
    boards, _ = build(demo.store)
    by_task = {board.task: board for board in boards}
    resume = by_task["resume_json"]  # field_f1: micro F1 over the examples, not the mean of per-example F1
    rows = {row.adapter: row for row in resume.rows if row.status == "done"}
    pair = resume.versus(rows["lora_r16"], rows["base"])
    assert pair is not None and pair.test == "corpus bootstrap"
    # the tested difference is the difference of the values the board prints
    assert pair.delta == pytest.approx(rows["lora_r16"].value("field_f1") - rows["base"].value("field_f1"))
    sst2 = by_task["glue_sst2"]  # accuracy: a mean of 0/1 scores, McNemar
    assert sst2.significance is not None and {p.test for p in sst2.significance.pairs.values()} <= {"mcnemar", "none"}


def test_a_board_says_when_its_corpus_headline_is_tested_on_means_because_the_data_is_missing(
    demo: DemoRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path))  # an empty mirror: the real resumes cannot be read
    boards, _ = build(demo.store)
    real = {board.task: board for board in boards}["resume_json_real"]
    assert real.significance is not None
    assert "corpus bootstrap" not in {pair.test for pair in real.significance.pairs.values()}
    note = next(note for note in real.notes if "compare per-example means" in note)
    assert "field_f1" in note and "resume_json_real" in note and "HARNESS_DATA_DIR" in note
    sst2 = {board.task: board for board in boards}["glue_sst2"]  # a mean headline loses nothing: no note
    assert not any("per-example means" in note for note in sst2.notes)
    monkeypatch.undo()
    restored = {board.task: board for board in build(demo.store)[0]}["resume_json_real"]
    assert not any("per-example means" in note for note in restored.notes)
    assert restored.significance is not None and "corpus bootstrap" in {p.test for p in restored.significance.pairs.values()}
