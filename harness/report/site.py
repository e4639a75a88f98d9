"""Writes the HTML report folder: index, one page per task, per adapter, per (task, adapter) examples.

    out/index.html                      overall table (mean win rate), tasks, spectra, training curves
    out/tasks/<task>.html               the task's sortable leaderboard and its figures
    out/adapters/<adapter>.html         one adapter (or base) across tasks: facts, spectra, loss curves
    out/examples/<task>/<adapter>.html  drill-down: input, reference, prediction, score, differences
    out/assets/                         plotly.min.js (once), report.css, table.js, examples.js
    out/leaderboard.{csv,json,md}       exports (+ leaderboard.schema.json, the JSON's schema)
    out/spectral_quality.md             Spearman correlations of spectral diagnostics with quality, per task
    out/domain_shift.md                 each adapter's gap between a task and the one it shifts from (shift_of)

`write_report` draws all of it from a results store. `write_report_from_export` rebuilds the index,
task and adapter pages and the exports from a leaderboard.json alone (what `harness publish` commits):
the same templates, minus what the export does not hold (drill-downs, spectra figures).

Jinja2 autoescaping is on for every template: predictions, references, inputs, error messages and
adapter names are escaped wherever they appear. Tasks marked `private` (real people's resumes)
show field-level results only: no input, reference or prediction text reaches any page.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.errors import HarnessError
from harness.report import domain_shift, figures, spectral_quality
from harness.report.export import boards_from_export, correlations_from_export, read_export, shifts_from_export, write_exports, write_text
from harness.report.leaderboard import (
    COLUMN_FORMATS,
    COST_COLUMNS,
    TIMING_COLUMNS,
    LeaderboardRow,
    OverallRow,
    TaskBoard,
    build,
    format_bytes,
    format_count,
    format_metric,
    format_number,
    SIGNIFICANCE_NOTES,
    metric_order,
    resolve_runs,
)
from harness.report.significance import format_p
from harness.spec import Example, TaskSpec
from harness.store import Prediction, Store

TEMPLATES = Path(__file__).resolve().parent / "templates"
STATIC_FILES = ("report.css", "table.js", "examples.js")
INPUT_CHARS = 600  # inputs are truncated on the drill-down page; references and predictions are not
CARD_FILE = "card.json"
# `harness publish` writes it; a folder holding one is a committed reference, never a report's output
PUBLISHED_MARK = "manifest.json"
# Two adapters "disagree" on an example when their scores differ by this share of the score scale.
DISAGREEMENT = 0.25
SPECTRAL_NOTE = (
    "Singular values of each adapter's weight update ΔW show how many directions it really uses: a fast decay "
    "(effective rank well below the nominal rank r) means most of the rank is unused, and stable rank, "
    "‖ΔW‖²_F/‖ΔW‖²₂, is a noise-robust count of the same. Unusual: an effective rank pinned at r in every layer "
    "(the update may want more rank), a relative update ‖ΔW‖_F/‖W₀‖_F far above the other layers, or intruder "
    "dimensions — singular vectors of the tuned weight that match none of the base's (Shuttleworth et al. 2024), "
    "linked to forgetting."
)


def format_signed(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:+.{digits}f}"


# ------------------------------------------------------------------------------------ naming


def slug(*parts: str) -> str:
    """A file name for any adapter or task name ('zoo/smollm2/lora_r8' -> 'zoo-smollm2-lora_r8-1a2b3c')."""
    text = "--".join(parts)
    readable = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.")[:60] or "x"
    return f"{readable}-{hashlib.sha256(text.encode('utf-8')).hexdigest()[:6]}"


def adapter_page(row: LeaderboardRow | OverallRow) -> str:
    return f"adapters/{slug(row.base, row.adapter)}.html"


def examples_page(row: LeaderboardRow) -> str:
    return f"examples/{slug(row.task)}/{slug(row.base, row.adapter)}.html"


def task_page(task: str) -> str:
    return f"tasks/{slug(task)}.html"


# ------------------------------------------------------------------------------------ drill-down


@dataclass(frozen=True)
class DiffPiece:
    text: str
    kind: Literal["same", "added", "removed"]


@dataclass(frozen=True)
class FieldResult:
    name: str
    score: float | None
    gold: str | None  # None on private tasks
    predicted: str | None

    @property
    def verdict(self) -> str:
        if self.score is None:
            return "unknown"
        return "right" if self.score >= 0.999 else "wrong" if self.score <= 0.001 else "partial"


@dataclass
class ExampleView:
    example_id: str
    anchor: str
    position: int
    input_text: str | None
    reference: str | None
    extra_references: int
    prediction: str | None
    score: float | None
    scores: dict[str, float]
    diff: list[DiffPiece] = field(default_factory=list)
    fields: list[FieldResult] = field(default_factory=list)
    json_valid: bool | None = None
    correct: bool | None = None  # classification
    others: list[float | None] = field(default_factory=list)  # score of each compared adapter


@dataclass(frozen=True)
class Comparison:
    label: str
    href: str


@dataclass
class ExamplesPage:
    row: LeaderboardRow
    private: bool
    score_key: str | None
    examples: list[ExampleView]
    comparisons: list[Comparison]
    threshold: float
    note: str | None = None


def word_diff(reference: str, prediction: str) -> list[DiffPiece]:
    """Word-level differences: what the prediction added and what of the reference it left out."""
    ref_words, pred_words = re.findall(r"\S+\s*", reference), re.findall(r"\S+\s*", prediction)
    matcher = difflib.SequenceMatcher(a=ref_words, b=pred_words, autojunk=False)
    pieces: list[DiffPiece] = []
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal":
            pieces.append(DiffPiece("".join(pred_words[b0:b1]), "same"))
            continue
        if a1 > a0:
            pieces.append(DiffPiece("".join(ref_words[a0:a1]), "removed"))
        if b1 > b0:
            pieces.append(DiffPiece("".join(pred_words[b0:b1]), "added"))
    return pieces


def truncate(text: str, limit: int = INPUT_CHARS) -> str:
    return text if len(text) <= limit else text[:limit].rstrip() + f" … [{len(text) - limit} more characters]"


def score_key(scores: Mapping[str, Mapping[str, float]]) -> str | None:
    """The per-example score the page sorts on: the first headline key the examples carry."""
    keys = metric_order(key for values in scores.values() for key in values)
    return keys[0] if keys else None


def _task_spec(task: str) -> TaskSpec | None:
    from harness.registry import task_registry

    try:
        return task_registry().get(task)
    except HarnessError:
        return None  # a task removed since the run, or an lm-eval task: predictions only


def _examples(spec: TaskSpec | None, split: str) -> tuple[dict[str, Example], str | None]:
    """The split's examples by id, or a note saying why they are not shown."""
    if spec is None:
        return {}, "this task is not in the task registry, so only its scores are shown (it may hold private data)"
    from harness.data import load_examples

    try:
        return {example.id: example for example in load_examples(spec, split)}, None
    except (HarnessError, OSError) as error:
        return {}, f"inputs and references are not shown: {error}"


def _resume_fields(example: Example | None, prediction: str, scores: Mapping[str, float], private: bool) -> tuple[list[FieldResult], bool]:
    from harness.metrics.json_fields import ALL_FIELDS, as_text, extract_json_object, parse_gold

    predicted = extract_json_object(prediction)
    gold = parse_gold(example.references[0]) if example and example.references and not private else {}
    results = []
    for name in ALL_FIELDS:
        if f"f1_{name}" not in scores:
            continue  # the task does not score this field (resume_json_real has no phone)
        shown_gold = shown_pred = None
        if not private:
            shown_gold = _field_text(gold.get(name), as_text)
            shown_pred = _field_text(predicted.get(name), as_text) if predicted is not None else None
        results.append(FieldResult(name, scores.get(f"f1_{name}"), shown_gold, shown_pred))
    return results, predicted is not None


def _field_text(value: Any, as_text: Any) -> str:
    if isinstance(value, list):
        return ", ".join(as_text(item) for item in value)
    return "" if value is None else as_text(value)


def _choice(spec: TaskSpec, value: str | int | None) -> str:
    try:
        return spec.choices[int(value)].strip()  # type: ignore[arg-type]
    except (TypeError, ValueError, IndexError):
        return str(value)


def example_view(
    position: int,
    prediction: Prediction,
    example: Example | None,
    spec: TaskSpec | None,
    scores: Mapping[str, float],
    key: str | None,
) -> ExampleView:
    # a task the registry no longer knows may have been private: show its scores, never its text
    private = spec is None or spec.private
    view = ExampleView(
        example_id=prediction.example_id,
        anchor="ex-" + slug(prediction.example_id),
        position=position,
        input_text=None,
        reference=None,
        extra_references=0,
        prediction=None if private else prediction.prediction,
        score=scores.get(key) if key else None,
        scores=dict(scores),
    )
    if spec is not None and "json_valid" in scores:
        view.fields, view.json_valid = _resume_fields(example, prediction.prediction, scores, private)
    if private or example is None:
        return view
    view.input_text = truncate("\n".join(example.inputs.values()) if len(example.inputs) == 1 else
                               "\n".join(f"{k}: {v}" for k, v in example.inputs.items()))
    if spec is not None and spec.choices and example.label is not None:
        view.reference = _choice(spec, example.label)
        view.prediction = _choice(spec, prediction.prediction)
        view.correct = prediction.prediction.strip() == str(example.label)
    elif example.references:
        view.reference = example.references[0]
        view.extra_references = len(example.references) - 1
        if not view.fields:  # the field table is the difference of a JSON answer; a text diff of JSON is noise
            view.diff = word_diff(view.reference, prediction.prediction)
    return view


def examples_page_data(store: Store, board: TaskBoard, row: LeaderboardRow, spec: TaskSpec | None) -> ExamplesPage:
    by_id, note = _examples(spec, row.split)
    scores = store.example_scores(row.cell_id)
    key = score_key(scores)
    others = [other for other in board.rows if other.key != row.key and other.status == "done"]
    other_scores = [store.example_scores(other.cell_id) for other in others]
    views = []
    for position, prediction in enumerate(store.cell_predictions(row.cell_id)):
        view = example_view(position, prediction, by_id.get(prediction.example_id), spec, scores.get(prediction.example_id, {}), key)
        view.others = [(s.get(prediction.example_id) or {}).get(key) if key else None for s in other_scores]
        views.append(view)
    magnitudes = [abs(v) for view in views for v in [view.score, *view.others] if v is not None]
    threshold = DISAGREEMENT * (max(magnitudes) if magnitudes and max(magnitudes) > 0 else 1.0)
    comparisons = [Comparison(other.adapter if len({r.base for r in board.rows}) == 1 else f"{other.base} / {other.adapter}",
                              "../../" + examples_page(other)) for other in others]
    return ExamplesPage(row, spec is not None and spec.private, key, views, comparisons, threshold, note)


# ------------------------------------------------------------------------------------ cards


@dataclass(frozen=True)
class CardSummary:
    """What the report shows of an adapter's card.json: its loss curves and a few training facts."""

    curves: list[figures.LossCurve] = field(default_factory=list)
    facts: list[tuple[str, str]] = field(default_factory=list)


# harness.zoo.train writes these card keys; the report shows them when present
CARD_FACTS = ("recipe", "task", "steps", "epochs", "stopped_early", "train_examples", "dev_examples",
              "best_dev_loss", "final_dev_loss", "wall_time_s", "save_dtype", "trained_at")  # fmt: skip


def read_card(adapter_path: str | None, label: str) -> CardSummary:
    """Loss curves and facts from the adapter folder's card.json.

    Curves are lists of [step, loss] (or {"step", "loss"}) under "<split>_loss" (what harness.zoo.train
    writes: train_loss, dev_loss), "<split>_loss_curve", or a "curves" mapping. A missing or
    malformed card gives an empty summary: cards are optional and older adapters have none.
    """
    if not adapter_path:
        return CardSummary()
    try:
        card = json.loads((Path(adapter_path) / CARD_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return CardSummary()
    if not isinstance(card, dict):
        return CardSummary()
    sources: dict[str, Any] = {}
    for key, value in card.items():
        for suffix in ("_loss_curve", "_loss"):
            if key.endswith(suffix) and isinstance(value, list):
                sources[key[: -len(suffix)]] = value
    nested = card.get("loss_curves") or card.get("curves")
    if isinstance(nested, dict):
        sources.update(nested)
    curves = []
    for split, points in sorted(sources.items()):
        steps, losses = _curve_points(points)
        if steps:
            curves.append(figures.LossCurve(label, str(split), tuple(steps), tuple(losses)))
    facts = [(key, _fact_text(card[key])) for key in CARD_FACTS if card.get(key) is not None]
    return CardSummary(curves, facts)


def _fact_text(value: Any) -> str:
    return format_number(value) if isinstance(value, float) else str(value)


def _curve_points(points: Any) -> tuple[list[float], list[float]]:
    steps: list[float] = []
    losses: list[float] = []
    if not isinstance(points, list):
        return steps, losses
    for point in points:
        if isinstance(point, (list, tuple)) and len(point) >= 2:
            step, loss = point[0], point[1]
        elif isinstance(point, dict):
            step, loss = point.get("step", point.get("epoch")), point.get("loss", point.get("value"))
        else:
            continue
        if isinstance(step, (int, float)) and isinstance(loss, (int, float)):
            steps.append(float(step))
            losses.append(float(loss))
    return steps, losses


# ------------------------------------------------------------------------------------ pages


@dataclass
class Figure:
    div_id: str
    html: str


def _figure(fig: Any, div_id: str) -> Figure | None:
    return Figure(div_id, figures.to_div(fig, div_id)) if fig is not None else None


def _present(*items: Figure | None) -> list[Figure]:
    return [item for item in items if item is not None]


def _spectra(store: Store, rows: Sequence[LeaderboardRow]) -> list[figures.AdapterSpectrum]:
    seen: dict[str, figures.AdapterSpectrum] = {}
    for row in rows:
        if row.adapter_hash and row.adapter_hash not in seen:
            records = store.spectra(row.adapter_hash)
            if records:
                seen[row.adapter_hash] = figures.AdapterSpectrum(row.adapter, row.method_name, row.rank, records, row.adapter_hash)
    return list(seen.values())


def _spectral_figures(spectra: Sequence[figures.AdapterSpectrum], prefix: str) -> list[Figure]:
    return _present(
        _figure(figures.singular_value_decay(spectra), f"{prefix}-decay"),
        _figure(figures.effective_rank_plot(spectra), f"{prefix}-effective-rank"),
        _figure(figures.spectral_heatmap(spectra, "stable_rank"), f"{prefix}-stable-rank"),
        _figure(figures.spectral_heatmap(spectra, "relative_update"), f"{prefix}-relative-update"),
        _figure(figures.intruder_bars(spectra), f"{prefix}-intruders"),
    )


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # every template, whatever its name: model output is never trusted
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        metric=format_metric,
        number=format_number,
        bytes=format_bytes,
        count=format_count,
        column=lambda value, key: COLUMN_FORMATS.get(key, format_number)(value),
        sortvalue=lambda value: "" if value is None else repr(float(value)),
        slug=lambda text: slug(text),
        json=lambda value: json.dumps(value),
        signed=format_signed,
        pvalue=format_p,
    )
    env.globals.update(
        adapter_page=adapter_page, examples_page=examples_page, task_page=task_page,
        cost_columns=COST_COLUMNS, timing_columns=TIMING_COLUMNS,
        significance_note_1=SIGNIFICANCE_NOTES[0], significance_note_2=SIGNIFICANCE_NOTES[1],
        spectral_note=SPECTRAL_NOTE,
    )  # fmt: skip
    return env


def _copy_assets(out: Path) -> None:
    assets = out / "assets"
    assets.mkdir(parents=True, exist_ok=True)
    for name in STATIC_FILES:
        shutil.copyfile(TEMPLATES / name, assets / name)
    figures.write_plotly_js(assets)


def _task_figures(board: TaskBoard) -> list[Figure]:
    prefix = "fig-" + slug(board.task)
    return _present(
        _figure(figures.rank_curve(board), f"{prefix}-rank"),
        _figure(figures.pareto(board, "trainable_params"), f"{prefix}-pareto-params"),
        _figure(figures.pareto(board, "latency_p50"), f"{prefix}-pareto-latency"),
    )


@dataclass
class SiteData:
    """What the pages are drawn from, whether read from a results store or from a leaderboard.json."""

    boards: list[TaskBoard]
    overall: list[OverallRow]
    runs: list[str]
    correlations: dict[str, list[spectral_quality.SpectralQuality]]  # task -> spectral-quality rows
    shifts: dict[str, list[domain_shift.DomainShift]]  # task -> domain-shift rows (empty unless it names shift_of)
    spectra: list[figures.AdapterSpectrum] = field(default_factory=list)  # only a store holds them
    examples_written: bool = True  # False: no drill-down pages exist, so no page may link to one


def refuse_published_folder(out: Path) -> None:
    """A folder with a manifest.json holds a committed reference (`harness publish`): the HTML would
    overwrite its leaderboard files with whatever the store or the export holds now."""
    if (Path(out) / PUBLISHED_MARK).exists():
        raise HarnessError(
            f"'{out}' holds a published reference leaderboard ({PUBLISHED_MARK}); write the HTML elsewhere "
            "(the default is reports/html), or update the reference with `harness publish`."
        )


def write_report(store: Store, out: Path, runs: Sequence[str] | None = None) -> Path:
    """Write the whole report folder from a results store and return the path of its index.html."""
    out = Path(out)
    refuse_published_folder(out)
    run_ids = resolve_runs(store, runs)
    boards, overall_rows = build(store, run_ids)
    if not boards:
        raise HarnessError(f"Results store '{store.path}' holds no cells yet; run `harness run` first, then `harness report`.")
    all_rows = [row for board in boards for row in board.rows]
    data = SiteData(
        boards, overall_rows, run_ids or [str(run["run_id"]) for run in store.runs()],
        {board.task: spectral_quality.task_correlations(store, board) for board in boards},
        domain_shift.board_shifts(store, boards), _spectra(store, all_rows),
    )  # fmt: skip
    env = _environment()
    index = write_pages(out, data, env)
    specs = {board.task: _task_spec(board.task) for board in boards}
    for board in boards:
        for row in board.rows:
            if row.status == "done":
                page = examples_page_data(store, board, row, specs[board.task])
                write_text(out / examples_page(row), env.get_template("examples.html").render(
                    root="../../", title=f"{board.task} · {row.adapter} examples", page=page, **_common(data),
                ))  # fmt: skip
    return index


def write_report_from_export(source: Path, out: Path) -> Path:
    """Rebuild the index, task and adapter pages from a leaderboard.json alone (no store, no predictions).

    Lacks what the export does not hold: the example drill-downs and the spectra figures. Adapter
    pages show card.json facts and loss curves when the adapter's folder exists from here."""
    out = Path(out)
    refuse_published_folder(out)
    if Path(source).resolve().parent == out.resolve():
        raise HarnessError(f"--out '{out}' is the folder '{source}' lies in; rebuilding there would overwrite it.")
    export = read_export(Path(source))
    boards, overall_rows = boards_from_export(export)
    if not boards:
        raise HarnessError(f"'{source}' holds no tasks; publish a store with finished cells first.")
    data = SiteData(
        boards, overall_rows, list(export.runs), correlations_from_export(export), shifts_from_export(export), examples_written=False
    )
    return write_pages(out, data, _environment())


def _common(data: SiteData) -> dict[str, Any]:
    return dict(runs=data.runs, tasks=[board.task for board in data.boards], examples_written=data.examples_written)


def write_pages(out: Path, data: SiteData, env: Any) -> Path:
    """The index, a page per task and per adapter, the assets and the exports; returns the index path."""
    out.mkdir(parents=True, exist_ok=True)
    _copy_assets(out)
    boards, common = data.boards, _common(data)
    all_rows = [row for board in boards for row in board.rows]
    specs = {board.task: _task_spec(board.task) for board in boards}
    by_adapter = _by_adapter(all_rows)
    curves = [curve for rows in by_adapter.values() for curve in read_card(rows[0].adapter_path, rows[0].adapter).curves]
    write_text(out / "index.html", env.get_template("index.html").render(
        root="", title="PEFT leaderboard", boards=boards, overall=data.overall, specs=specs,
        spectral=_spectral_figures(data.spectra, "fig-index"),
        training=_present(_figure(figures.training_curves(curves), "fig-index-training")), **common,
    ))  # fmt: skip
    for board in boards:
        write_text(out / task_page(board.task), env.get_template("task.html").render(
            root="../", title=f"{board.task} leaderboard", board=board, spec=specs[board.task],
            figures=_task_figures(board), spectral_quality=data.correlations.get(board.task, []),
            shifts=data.shifts.get(board.task, []),
            shift_metrics=domain_shift.shown_metrics(data.shifts.get(board.task, []), board.metric_names), **common,
        ))  # fmt: skip
    for (base, adapter), rows in by_adapter.items():
        own_spectra = [s for s in data.spectra if rows[0].adapter_hash and s.adapter_hash == rows[0].adapter_hash]
        card = read_card(rows[0].adapter_path, adapter)
        write_text(out / adapter_page(rows[0]), env.get_template("adapter.html").render(
            root="../", title=f"{adapter} ({base})", rows=rows, first=rows[0], boards={b.task: b for b in boards},
            spectral=_spectral_figures(own_spectra, "fig-adapter"), card=card,
            training=_present(_figure(figures.training_curves(card.curves, "training curves"), "fig-adapter-training")),
            **common,
        ))  # fmt: skip
    write_exports(out, boards, data.overall, data.runs, data.correlations, shifts=data.shifts)
    return out / "index.html"


def _by_adapter(rows: Sequence[LeaderboardRow]) -> dict[tuple[str, str], list[LeaderboardRow]]:
    grouped: dict[tuple[str, str], list[LeaderboardRow]] = {}
    for row in rows:
        grouped.setdefault(row.key, []).append(row)
    return grouped
