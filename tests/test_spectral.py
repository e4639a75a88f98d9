"""Spectral diagnostics: exact low-rank spectra, adapter reading, intruders, weightwatcher isolation."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.diagnostics import intruders
from harness.diagnostics.adapter_weights import read_adapter
from harness.diagnostics.intruders import BaseSVD, base_svd, count_intruders
from harness.diagnostics.lowrank import lowrank_singular_values, spectrum_stats
from harness.diagnostics.spectral import diagnose
from harness.diagnostics.spectral_output import format_table, print_diagnostics, to_records
from harness.diagnostics.weightwatcher import weightwatcher_metrics
from harness.errors import HarnessError

# (m, n, r): r = 1, r = min(m, n) for tall, wide and square, r above min(m, n), and an ordinary case.
SHAPES = [(7, 5, 1), (40, 30, 1), (20, 30, 3), (30, 20, 20), (16, 16, 16), (12, 40, 12), (64, 48, 8), (5, 7, 9)]


def _dense_values(B: np.ndarray, A: np.ndarray, scale: float) -> np.ndarray:
    return np.linalg.svd(scale * (B @ A), compute_uv=False)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize(("m", "n", "r"), SHAPES)
def test_factored_singular_values_equal_dense_svd(m: int, n: int, r: int, backend: str) -> None:
    rng = np.random.default_rng(m * 100 + n + r)
    B, A, scale = rng.standard_normal((m, r)), rng.standard_normal((r, n)), 16 / math.sqrt(r)
    ours = lowrank_singular_values(B, A, scale, backend=backend)
    dense = _dense_values(B, A, scale)
    assert ours.shape == (min(m, n, r),)
    np.testing.assert_allclose(ours, dense[: ours.size], rtol=1e-5, atol=1e-10 * dense[0])
    assert np.all(dense[ours.size :] <= 1e-10 * dense[0])  # the rest of the dense spectrum is zero


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_batched_layers_with_their_own_scales(backend: str) -> None:
    rng = np.random.default_rng(1)
    B, A = rng.standard_normal((5, 24, 4)), rng.standard_normal((5, 4, 18)).astype(np.float32)
    scales = [0.5, 1.0, 2.0, -3.0, 8.0]  # a negative scale flips signs, not singular values
    batched = lowrank_singular_values(B, A, scales, backend=backend)
    for i, scale in enumerate(scales):
        np.testing.assert_allclose(batched[i], _dense_values(B[i], A[i].astype(np.float64), abs(scale))[:4], rtol=1e-5)


def test_spectrum_stats_definitions() -> None:
    stats = spectrum_stats(np.array([3.0, 4.0]))
    assert stats.spectral_norm == 4.0
    assert stats.frobenius_norm == pytest.approx(5.0)
    assert stats.stable_rank == pytest.approx(25 / 16)  # Σσ²/σ₁²
    assert spectrum_stats(np.ones(7)).effective_rank == pytest.approx(7.0)  # flat spectrum: full entropy
    zero = spectrum_stats(np.zeros(4))
    assert (zero.stable_rank, zero.effective_rank, zero.frobenius_norm) == (0.0, 0.0, 0.0)


def test_stable_rank_equals_weightwatchers_after_scaling() -> None:
    rng = np.random.default_rng(2)
    B, A, scale = rng.standard_normal((24, 24)), rng.standard_normal((24, 32)), 0.25
    ww = weightwatcher_metrics({"layer": scale * (B @ A)}, "delta")["layer"]
    ours = spectrum_stats(lowrank_singular_values(B, A, scale))
    assert ww.stable_rank == pytest.approx(ours.stable_rank, rel=1e-5)
    # weightwatcher's spectral norm is λ_max = σ₁²: its log is twice ours.
    assert ww.log_spectral_norm == pytest.approx(2 * math.log10(ours.spectral_norm), rel=1e-5)


def test_intruders_zero_for_no_change_and_found_for_a_planted_direction() -> None:
    rng = np.random.default_rng(3)
    w0 = rng.standard_normal((60, 20))  # tall: its left singular vectors span only 20 of 60 dims
    base = BaseSVD(U=np.linalg.svd(w0, full_matrices=False)[0].astype(np.float32), S=np.zeros(20))
    assert count_intruders(w0, base, k=10, threshold=0.5) == 0
    left = np.linalg.qr(np.concatenate([w0, rng.standard_normal((60, 1))], axis=1))[0][:, -1]  # ⟂ W₀'s columns
    planted = 10 * np.linalg.norm(w0, 2) * np.outer(left, rng.standard_normal(20) / math.sqrt(20))
    assert count_intruders(w0 + planted, base, k=10, threshold=0.5) == 1


def test_intruders_for_a_large_square_matrix_use_the_iterative_path() -> None:
    rng = np.random.default_rng(4)
    w0 = rng.standard_normal((96, 96)) * np.linspace(3, 0.1, 96)  # decaying spectrum, like trained weights
    base = BaseSVD(U=np.linalg.svd(w0)[0].astype(np.float32), S=np.zeros(96))
    assert count_intruders(w0, base, k=4) == 0
    direction = rng.standard_normal(96)
    direction /= np.linalg.norm(direction)  # random: spread thin over every base direction
    planted = 20 * np.linalg.norm(w0, 2) * np.outer(direction, direction)
    assert count_intruders(w0 + planted, base, k=4) == 1


def test_base_svd_is_cached_in_memory_and_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w0 = np.random.default_rng(5).standard_normal((12, 9))
    first = base_svd(w0, tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 1
    monkeypatch.setattr(intruders, "_BASE_SVD_MEMORY", {})

    def no_svd(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the base SVD was recomputed")

    monkeypatch.setattr(intruders.np.linalg, "svd", no_svd)
    again = base_svd(w0, tmp_path)  # from disk
    assert base_svd(w0, tmp_path) is again  # then from memory
    np.testing.assert_array_equal(first.U, again.U)


# --------------------------------------------------------------------------------------------
# Real PEFT adapters on a tiny Llama
# --------------------------------------------------------------------------------------------

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


@pytest.fixture(scope="module")
def tiny_base() -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=50, hidden_size=32, intermediate_size=40, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2,
    )  # fmt: skip
    torch.manual_seed(0)
    return LlamaForCausalLM(config)


def _base_state(model: Any) -> dict[str, Any]:
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def _make_adapter(
    base: Any, config: Any, folder: Path, perturb: str | None = None, merge: bool = True
) -> tuple[Path, dict[str, Any]]:
    """Saves a PEFT adapter and returns it with the merged weights PEFT itself computes."""
    import copy

    import torch
    from peft import get_peft_model

    model = get_peft_model(copy.deepcopy(base), config)
    if perturb is not None:  # move DoRA magnitudes / IA3 vectors away from their identity init
        torch.manual_seed(1)
        with torch.no_grad():
            for name, parameter in model.named_parameters():
                if perturb in name:
                    parameter.mul_(1 + 0.3 * torch.rand_like(parameter))
    model.save_pretrained(folder)
    return folder, _base_state(model.merge_and_unload()) if merge else {}


def test_lora_rslora_and_patterns_match_peft_merge(tiny_base: Any, tmp_path: Path) -> None:
    from peft import LoraConfig

    config = LoraConfig(
        r=4, lora_alpha=8, target_modules=TARGETS, init_lora_weights=False, use_rslora=True,
        rank_pattern={"v_proj": 2}, alpha_pattern={"down_proj": 3},
    )  # fmt: skip
    folder, merged = _make_adapter(tiny_base, config, tmp_path / "rslora")
    weights = read_adapter(folder)
    assert weights.method == "rslora"
    by_name = {layer.name: layer for layer in weights.lowrank}
    assert by_name["model.layers.1.self_attn.v_proj"].rank == 2
    assert by_name["model.layers.0.mlp.down_proj"].scale == pytest.approx(3 / 2)  # alpha/√r
    assert by_name["model.layers.0.self_attn.q_proj"].scale == pytest.approx(8 / 2)

    base = _base_state(tiny_base)
    diag = diagnose(folder, base_weights=base)
    assert len(diag.layers) == 2 * len(TARGETS)
    for row in diag.layers:
        key = f"{row.name}.weight"
        delta = (merged[key] - base[key]).double().numpy()
        dense = np.linalg.svd(delta, compute_uv=False)
        assert row.kind == "lowrank-exact"
        np.testing.assert_allclose(row.singular_values, dense[: row.rank], rtol=1e-4)
        assert row.relative_update == pytest.approx(np.linalg.norm(delta) / base[key].norm().item(), rel=1e-4)
        assert row.intruders is not None
    assert diag.summary.median_stable_rank == pytest.approx(np.median([row.stable_rank for row in diag.layers]))
    assert diag.summary.total_intruders == sum(row.intruders or 0 for row in diag.layers)


def test_untrained_lora_has_no_intruders(tiny_base: Any, tmp_path: Path) -> None:
    from peft import LoraConfig

    folder, _ = _make_adapter(tiny_base, LoraConfig(r=4, target_modules=["q_proj", "down_proj"]), tmp_path / "zero")
    diag = diagnose(folder, base_weights=_base_state(tiny_base), base_svd_cache_dir=tmp_path / "svd")
    assert diag.summary.total_intruders == 0  # B = 0 at init, so ΔW = 0
    assert diag.summary.max_relative_update == 0.0
    assert len(list((tmp_path / "svd").glob("*.npz"))) == 4


def test_dora_gives_lora_part_exactly_and_full_delta_densely(tiny_base: Any, tmp_path: Path) -> None:
    from peft import LoraConfig

    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False, use_dora=True)
    folder, merged = _make_adapter(tiny_base, config, tmp_path / "dora", perturb="lora_magnitude_vector")
    base = _base_state(tiny_base)

    without_base = diagnose(folder)
    assert {row.delta for row in without_base.layers} == {"lora"}
    assert any("DoRA" in note for note in without_base.notes)

    diag = diagnose(folder, base_weights=base)
    full_rows = [row for row in diag.layers if row.delta == "dora_full"]
    assert len(full_rows) == 4 and all(row.kind == "dense" and row.primary for row in full_rows)
    assert all(not row.primary for row in diag.layers if row.delta == "lora")
    for row in full_rows:
        key = f"{row.name}.weight"
        delta = (merged[key] - base[key]).double().numpy()
        dense = np.linalg.svd(delta, compute_uv=False)
        np.testing.assert_allclose(row.singular_values, dense[: len(row.singular_values)], rtol=1e-4, atol=1e-6)
        assert row.rank == min(delta.shape) > 4  # the magnitude rescaling makes it full rank


def test_ia3_profile_matches_peft_merge(tiny_base: Any, tmp_path: Path) -> None:
    from peft import IA3Config

    config = IA3Config(target_modules=["k_proj", "down_proj"], feedforward_modules=["down_proj"])
    folder, merged = _make_adapter(tiny_base, config, tmp_path / "ia3", perturb="ia3_l")
    base = _base_state(tiny_base)
    diag = diagnose(folder, base_weights=base)
    assert diag.method == "ia3" and not diag.layers
    axes = {row.name.rsplit(".", 1)[-1]: row.axis for row in diag.scalings}
    assert axes == {"k_proj": "output", "down_proj": "input"}
    for row in diag.scalings:
        key = f"{row.name}.weight"
        expected = (merged[key] - base[key]).norm().item() / base[key].norm().item()
        assert row.relative_update == pytest.approx(expected, rel=1e-4)
        assert 1.0 <= row.min <= row.max <= 1.3
    assert diag.summary.max_relative_update == pytest.approx(max(row.relative_update for row in diag.scalings))


def test_prompt_tuning_norms_and_nearest_tokens(tiny_base: Any, tmp_path: Path) -> None:
    import torch
    from peft import PromptTuningConfig

    folder, _ = _make_adapter(tiny_base, PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3), tmp_path / "pt", merge=False)
    base = _base_state(tiny_base)
    from safetensors.torch import load_file, save_file

    tensors = load_file(folder / "adapter_model.safetensors")
    tensors["prompt_embeddings"][1] = 5 * base["model.embed_tokens.weight"][7]  # a scaled copy of token 7
    save_file({key: value.contiguous() for key, value in tensors.items()}, folder / "adapter_model.safetensors")

    diag = diagnose(folder, base_weights=base, token_text=lambda token: f"[tok{token}]")
    prompt = diag.prompt
    assert prompt is not None and prompt.num_virtual_tokens == 3 and prompt.dim == 32
    assert prompt.token_norms[1] == pytest.approx(5 * torch.linalg.norm(base["model.embed_tokens.weight"][7]).item(), rel=1e-5)
    assert prompt.nearest[1][0].token_id == 7 and prompt.nearest[1][0].cosine == pytest.approx(1.0)
    console_text = _render(diag)
    assert "[tok7]" in console_text  # token text is printed literally, not read as rich markup


def test_unsupported_methods_get_a_note_not_a_crash(tiny_base: Any, tmp_path: Path) -> None:
    from peft import LoHaConfig

    folder, _ = _make_adapter(tiny_base, LoHaConfig(r=2, target_modules=["q_proj"]), tmp_path / "loha")
    diag = diagnose(folder)
    assert diag.method == "loha" and not diag.layers
    assert diag.notes == ["spectral diagnostics are not supported for loha"]
    assert {record["record"] for record in to_records(diag)} == {"note", "summary"}


def test_bad_folders_are_one_sentence_errors(tmp_path: Path) -> None:
    with pytest.raises(HarnessError, match="adapter_config.json"):
        read_adapter(tmp_path)
    (tmp_path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4}))
    (tmp_path / "adapter_model.bin").write_bytes(b"pickle")
    with pytest.raises(HarnessError, match="pickled"):
        read_adapter(tmp_path)
    (tmp_path / "adapter_model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(HarnessError, match="could not be read"):
        read_adapter(tmp_path)


def test_records_are_flat_and_the_table_renders(tiny_base: Any, tmp_path: Path) -> None:
    from peft import LoraConfig

    config = LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False)
    folder, _ = _make_adapter(tiny_base, config, tmp_path / "lora")
    diag = diagnose(folder, base_weights=_base_state(tiny_base), weightwatcher=True)
    records = to_records(diag)
    assert all(isinstance(v, (str, int, float, bool, type(None))) for record in records for v in record.values())
    layer = next(record for record in records if record["record"] == "layer")
    assert len(json.loads(layer["singular_values"])) == 2 and layer["ww_target"] == "merged"
    assert layer["ww_stable_rank"] > 0
    assert records[-1]["record"] == "summary" and records[-1]["layers"] == 2
    text = _render(diag)
    assert "model.layers.1.self_attn.q_proj" in text.replace("\n", "").replace("│", "").replace(" ", "")
    assert format_table(diag).row_count == 2


def _render(diag: Any) -> str:
    from rich.console import Console

    console = Console(file=io.StringIO(), width=200)
    print_diagnostics(diag, console)
    return console.file.getvalue()


def test_weightwatcher_leaks_no_logging_handler_and_no_output() -> None:
    # A fresh interpreter: weightwatcher's import-time basicConfig and prints happen only once.
    script = """
import logging, sys
import numpy as np
from harness.diagnostics.weightwatcher import import_weightwatcher, weightwatcher_metrics
root = logging.getLogger()
before = (list(root.handlers), root.level)
import_weightwatcher()
metrics = weightwatcher_metrics({"w": np.random.default_rng(0).standard_normal((20, 16))}, "merged")
assert (list(root.handlers), root.level) == before, (root.handlers, root.level)
assert metrics["w"].stable_rank > 1
logging.getLogger("weightwatcher").warning("must not reach stderr")
print("DONE")
"""
    project_root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=project_root)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "DONE\n"
    assert "Defaulting to SciPy" not in result.stderr and "must not reach" not in result.stderr
