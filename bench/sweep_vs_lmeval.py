"""Sweep benchmark: K LoRA adapters on the same prompts, `harness run` vs K `lm_eval ... peft=` runs.

Both sides get the same rendered prompts (resume_json test examples), greedy decoding, the same
stop string and max_new_tokens, the same dtype (`--dtype`, float32 by default) on the CPU. Prints
both wall times, their ratio, and whether the predictions agree; then compares the engine's generated tokens/s with a plain batched
`model.generate` loop on the same batches (our overhead).

    .venv/bin/python bench/sweep_vs_lmeval.py --k 4 8 --examples 16 --max-new-tokens 64

The K adapters are the zoo's trained resume_json adapters when present (`--zoo`), else LoRA
adapters made here with small random B factors (outputs stay close to the base's, so rows stop
at realistic lengths). Timings are ratios measured in one run on one machine; never compare
absolute seconds across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))
os.environ.setdefault("HARNESS_DATA_DIR", str((PROJECT.parent / "shared" / "data").resolve()))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"

VENV_BIN = Path(sys.executable).parent
STOP = "###"


def make_adapters(base_folder: Path, count: int, out: Path) -> list[Path]:
    """LoRA r8 adapters on q/k/v/o with random A and small random B (a real, non-zero effect)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    folders = []
    for index in range(count):
        torch.manual_seed(100 + index)
        model = AutoModelForCausalLM.from_pretrained(base_folder, dtype=torch.float32)
        config = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"], init_lora_weights=False)
        peft_model = get_peft_model(model, config)
        with torch.no_grad():
            for name, parameter in peft_model.named_parameters():
                if "lora_B" in name:
                    parameter.mul_(0.02)
        folder = out / f"bench_lora_{index}"
        peft_model.save_pretrained(folder)
        folders.append(folder)
    return folders


def zoo_adapters(count: int) -> list[Path]:
    zoo = PROJECT / "adapters_zoo" / "smollm2-135m" / "resume_json"
    folders = sorted(p.parent for p in zoo.glob("lora_r*/adapter_config.json"))
    if len(folders) < count:
        raise SystemExit(f"--zoo needs {count} LoRA adapters in {zoo}; found {len(folders)}")
    return folders[:count]


def rendered_prompts(count: int) -> list[tuple[str, str]]:
    from harness.data import load_examples
    from harness.prompts import render
    from harness.registry import task_registry

    task = task_registry().get("resume_json")
    return [(example.id, render(task, example)) for example in load_examples(task, limit=count)]


def write_lmeval_task(folder: Path, prompts: list[tuple[str, str]], max_new_tokens: int) -> None:
    data = folder / "prompts.jsonl"
    data.write_text("".join(json.dumps({"id": i, "prompt": p}) + "\n" for i, p in prompts), encoding="utf-8")
    (folder / "bench_resume.yaml").write_text(
        "\n".join(
            [
                "task: bench_resume",
                "dataset_path: json",
                f"dataset_kwargs: {{data_files: {{test: {json.dumps(str(data))}}}}}",
                "test_split: test",
                "output_type: generate_until",
                'doc_to_text: "{{prompt}}"',
                'doc_to_target: ""',
                f"generation_kwargs: {{until: [{json.dumps(STOP)}], max_gen_toks: {max_new_tokens}, do_sample: false}}",
                "metric_list: [{metric: exact_match}]",
                "",
            ]
        ),
        encoding="utf-8",
    )


def run_lmeval(base_folder: Path, adapter: Path, task_dir: Path, out: Path, batch_size: int, limit: int,
               dtype: str) -> tuple[float, list[str]]:
    command = [
        str(VENV_BIN / "lm_eval"), "--model", "hf",
        "--model_args", f"pretrained={base_folder},peft={adapter},dtype={dtype}",
        "--tasks", "bench_resume", "--include_path", str(task_dir), "--batch_size", str(batch_size),
        "--limit", str(limit), "--output_path", str(out), "--log_samples", "--device", "cpu",
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    samples = sorted(out.rglob("samples_bench_resume_*.jsonl"))[-1]
    rows = [json.loads(line) for line in samples.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows.sort(key=lambda row: row["doc_id"])
    return seconds, [row["filtered_resps"][0] if isinstance(row["filtered_resps"][0], str) else row["filtered_resps"][0][0] for row in rows]


def run_harness(adapters: list[Path], store: Path, batch_size: int, limit: int, max_new_tokens: int,
                dtype: str, cost_profile: bool) -> tuple[float, dict[str, list[str]]]:
    command = [str(VENV_BIN / "harness"), "run", "--task", "resume_json", "--no-base", "--limit", str(limit),
               "--batch-size", str(batch_size), "--max-new-tokens", str(max_new_tokens), "--store", str(store),
               "--dtype", dtype]
    if not cost_profile:  # lm_eval measures no per-adapter latency; the like-for-like sweep skips it too
        command.append("--no-cost-profile")
    for adapter in adapters:
        command += ["--adapter", str(adapter)]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    from harness.store import Store

    results = Store(store)
    predictions = {}
    for cell in results.cells():
        predictions[Path(cell.adapter_path or "").name] = [p.prediction for p in results.cell_predictions(cell.cell_id)]
    return seconds, predictions


def agreement(ours: dict[str, list[str]], theirs: dict[str, list[str]]) -> tuple[int, int, int]:
    """(exact matches, matches after stripping whitespace, total)."""
    exact = stripped = total = 0
    for name, texts in theirs.items():
        for mine, other in zip(ours[name], texts):
            total += 1
            exact += mine == other
            stripped += mine.strip() == other.strip()
    return exact, stripped, total


def overhead(adapters: list[Path], prompts: list[tuple[str, str]], batch_size: int, max_new_tokens: int,
             dtype: str) -> dict[str, float]:
    """Generated tokens/s of the engine vs a plain batched model.generate loop, per adapter, same batches."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    from harness.run import engine
    from harness.run.adapter_host import AdapterHost
    from harness.run.loading import load_base
    from harness.spec import AdapterSpec, GenerationSettings, ModelSpec

    torch.manual_seed(0)
    base = load_base(ModelSpec(name="smollm2-135m", dtype=dtype))
    host = AdapterHost(base)
    names = []
    for folder in adapters:
        host.add(AdapterSpec(path=folder, name=folder.name))
        names.append(folder.name)
    settings = GenerationSettings(max_new_tokens=max_new_tokens, stop=(STOP,))
    texts = [prompt for _, prompt in prompts]

    engine_tokens = 0
    started = time.perf_counter()
    for name in names:
        results: list = []
        engine.generate_until(host, [engine.GenRequest(key=f"{name}-{i}", prompt=t, adapter=name) for i, t in enumerate(texts)],
                              settings, batch_size, results.append)
        engine_tokens += sum(r.new_tokens for r in results)
    engine_seconds = time.perf_counter() - started

    tokenizer = base.tokenizer
    order = sorted(range(len(texts)), key=lambda i: -len(tokenizer(texts[i]).input_ids))

    class StopOnString(StoppingCriteria):
        def __init__(self, prompt_length: int) -> None:
            self.prompt_length = prompt_length

        def __call__(self, input_ids, scores, **kwargs):  # per-row "done" flags
            tails = tokenizer.batch_decode(input_ids[:, self.prompt_length:], skip_special_tokens=True)
            return torch.tensor([STOP in tail for tail in tails])

    plain_tokens = 0
    started = time.perf_counter()
    for name in names:
        for start in range(0, len(order), batch_size):
            batch = [texts[i] for i in order[start : start + batch_size]]
            inputs = tokenizer(batch, return_tensors="pt", padding=True)
            # the host's route is the shared PeftModel with this adapter on every row: plain generate
            model = host.route([name] * len(batch))
            with torch.no_grad():
                output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                        stopping_criteria=StoppingCriteriaList([StopOnString(inputs.input_ids.shape[1])]),
                                        pad_token_id=tokenizer.pad_token_id)
            for row in tokenizer.batch_decode(output[:, inputs.input_ids.shape[1]:], skip_special_tokens=True):
                cut = row.split(STOP)[0]
                plain_tokens += len(tokenizer(cut, add_special_tokens=False).input_ids)
    plain_seconds = time.perf_counter() - started
    return {
        "engine_tokens_per_s": engine_tokens / engine_seconds,
        "plain_tokens_per_s": plain_tokens / plain_seconds,
        "engine_seconds": engine_seconds,
        "plain_seconds": plain_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--k", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--examples", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8, help="lm_eval's batch size")
    parser.add_argument("--harness-batch-size", type=int, default=32)
    parser.add_argument("--zoo", action="store_true", help="use the zoo's trained LoRA adapters")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="both sides compute in it")
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--cost-profile", action="store_true",
                        help="let harness run profile each adapter alone as well (its default; lm_eval does nothing like it)")
    parser.add_argument("--lmeval-cache", type=Path, help="reuse (or write) lm_eval's timings and predictions (one file per --dtype); "
                        "only comparable within one machine and session")
    args = parser.parse_args()

    from harness.run.bases import smollm2_folder

    base_folder = smollm2_folder()
    prompts = rendered_prompts(args.examples)
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        adapters = zoo_adapters(max(args.k)) if args.zoo else make_adapters(base_folder, max(args.k), scratch)
        task_dir = scratch / "lmeval_task"
        task_dir.mkdir()
        write_lmeval_task(task_dir, prompts, args.max_new_tokens)
        lmeval_seconds: dict[str, float] = {}
        lmeval_predictions: dict[str, list[str]] = {}
        cached = json.loads(args.lmeval_cache.read_text()) if args.lmeval_cache and args.lmeval_cache.is_file() else {}
        for adapter in adapters:
            if adapter.name in cached:  # same seeded adapters, prompts and settings as the run that wrote it
                seconds, texts = cached[adapter.name]["seconds"], cached[adapter.name]["predictions"]
            else:
                seconds, texts = run_lmeval(base_folder, adapter, task_dir, scratch / f"out_{adapter.name}", args.batch_size, args.examples, args.dtype)
            lmeval_seconds[adapter.name], lmeval_predictions[adapter.name] = seconds, texts
            print(f"lm_eval {adapter.name}: {seconds:.1f} s{' (from --lmeval-cache)' if adapter.name in cached else ''}", flush=True)
        if args.lmeval_cache and not cached:
            args.lmeval_cache.write_text(json.dumps({n: {"seconds": lmeval_seconds[n], "predictions": lmeval_predictions[n]} for n in lmeval_seconds}))
        print(f"\n| K | harness run (s) | K x lm_eval (s) | speed-up | predictions equal (exact / stripped) |")
        print("| --- | --- | --- | --- | --- |")
        for k in args.k:
            chosen = adapters[:k]
            seconds, ours = run_harness(chosen, scratch / f"store_{k}.sqlite", args.harness_batch_size, args.examples, args.max_new_tokens, args.dtype, args.cost_profile)
            theirs = {a.name: lmeval_predictions[a.name] for a in chosen}
            total = sum(lmeval_seconds[a.name] for a in chosen)
            exact, stripped, count = agreement(ours, theirs)
            print(f"| {k} | {seconds:.1f} | {total:.1f} | {total / seconds:.2f}x | {exact}/{count} / {stripped}/{count} |", flush=True)
        if not args.skip_overhead:
            figures = overhead(adapters[: min(args.k)], prompts, args.batch_size, args.max_new_tokens, args.dtype)
            ratio = figures["plain_tokens_per_s"] / figures["engine_tokens_per_s"]
            print(
                f"\nengine {figures['engine_tokens_per_s']:.1f} tok/s vs plain generate loop {figures['plain_tokens_per_s']:.1f} tok/s "
                f"(batch {args.batch_size}, per-adapter batches): engine overhead {100 * (ratio - 1):+.1f}%"
            )


if __name__ == "__main__":
    main()
