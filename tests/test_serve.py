"""`harness serve` as a real subprocess, and the endpoint backend against it (tiny random models)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from helpers_models import adapter_factory, single_thread, tiny_llama  # noqa: F401
from helpers_serve import free_port, server_env, start_server, stop_server
from helpers_tasks import GEN_TASK, make_task, task_body

from harness.data import load_examples
from harness.errors import HarnessError
from harness.prompts import render
from harness.registry import task_registry
from harness.run import engine
from harness.run.matrix import execute
from harness.run.adapter_host import AdapterHost
from harness.run.loading import load_base
from harness.serve.client import EndpointOptions
from harness.serve.endpoint_runner import EndpointRunSpec, ServedAdapter, execute_endpoint
from harness.serve.task_endpoint import json_result
from harness.spec import AdapterSpec, GenerationSettings, ModelSpec, RunSpec
from harness.store import Store
from harness.zoo.adapters import resolve_adapters

KEY = "test-key"
TASK = "serve_gen"
ADAPTERS = ("a1", "a2", "a3", "a4")


@pytest.fixture(scope="module")
def world(tiny_llama, adapter_factory, tmp_path_factory):
    """The tiny base, four LoRA adapters, a task folder, and a server serving them all."""
    folder = tmp_path_factory.mktemp("serve")
    tasks = make_task(folder / "tasks", task_body(GEN_TASK, name=TASK), 12)
    adapters = {name: adapter_factory(tiny_llama, "causal", "lora", seed=10 + i) for i, name in enumerate(ADAPTERS)}
    port = free_port()
    args = ["--model", str(tiny_llama), "--include-path", str(tasks), "--max-tokens", "64"]
    for name, path in adapters.items():
        args += ["--adapter", f"{name}={path}"]
    process = start_server(args, port, KEY, folder / "server.log")
    yield {"base": tiny_llama, "adapters": adapters, "tasks": tasks, "url": f"http://127.0.0.1:{port}/v1", "port": port}
    stop_server(process)


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


def sha256(path: Path) -> str:
    return hashlib.sha256((path / "adapter_model.safetensors").read_bytes()).hexdigest()


def test_models_lists_base_and_adapters_with_their_hashes(world) -> None:
    data = httpx.get(world["url"] + "/models", headers=auth()).json()["data"]
    by_id = {entry["id"]: entry for entry in data}
    assert set(by_id) == {str(world["base"]), *ADAPTERS}
    assert by_id[str(world["base"])]["metadata"]["kind"] == "base"
    for name, path in world["adapters"].items():
        assert by_id[name]["metadata"]["adapter_hash"] == sha256(path)


def test_endpoint_predictions_equal_in_process_and_rerun_is_cached(world, tmp_path) -> None:
    include = [world["tasks"]]
    local = Store(tmp_path / "local.sqlite")
    chosen = ["a1", "a2"]
    spec = RunSpec(tasks=(TASK,), model=ModelSpec(name=str(world["base"]), dtype="float32"),
                   adapters=tuple(resolve_adapters([world["adapters"][n] for n in chosen])), batch_size=4)
    in_process = execute(spec, local, include)
    remote = Store(tmp_path / "remote.sqlite")
    options = EndpointOptions(url=world["url"], api_key=KEY, concurrency=6)
    served = EndpointRunSpec(endpoint=world["url"], tasks=(TASK,), adapters=tuple(ServedAdapter(name=n, path=world["adapters"][n]) for n in chosen))
    first = execute_endpoint(served, options, remote, include)
    assert [o.status for o in first.outcomes] == ["done"] * 3
    assert sum(o.computed for o in first.outcomes) == 3 * 12

    def texts(store: Store, outcome) -> dict[str, str]:
        return {p.example_id: p.prediction for p in store.cell_predictions(outcome.cell_id)}

    local_texts = [texts(local, o) for o in in_process.outcomes]  # base, then the adapters in order
    remote_texts = [texts(remote, o) for o in first.outcomes]
    assert remote_texts == local_texts
    assert len(set(json.dumps(t, sort_keys=True) for t in remote_texts)) == 3  # the adapters do change the answers
    timing = remote.timing(first.outcomes[1].cell_id)
    assert timing["backend"] == "endpoint" and 0 < timing["latency_p50"] <= timing["latency_p95"]
    assert timing["generated_tokens"] > 0 and timing["generated_tokens_per_s"] > 0

    # the same run again, and the adapters named without their folders (the server publishes their hashes): all cached
    again = execute_endpoint(served, options, remote, include)
    by_name = EndpointRunSpec(endpoint=world["url"], tasks=(TASK,), adapters=tuple(ServedAdapter(name=n) for n in chosen))
    named = execute_endpoint(by_name, options, remote, include)
    assert sum(o.computed for o in again.outcomes + named.outcomes) == 0
    assert [texts(remote, o) for o in named.outcomes] == local_texts

    # a folder whose weights differ from what the server serves under that name is not taken from the cache
    wrong = EndpointRunSpec(endpoint=world["url"], tasks=(TASK,), include_base=False,
                            adapters=(ServedAdapter(name="a1", path=world["adapters"]["a3"]),))
    outcome = execute_endpoint(wrong, options, remote, include).outcomes[0]
    assert outcome.status == "failed" and "serves other weights as 'a1'" in outcome.error and outcome.computed == 0


def in_process_answers(world, requests: list[engine.GenRequest], max_tokens: int) -> dict[str, str]:
    host = AdapterHost(load_base(ModelSpec(name=str(world["base"]), dtype="float32")))
    for name, path in world["adapters"].items():
        host.add(AdapterSpec(path=path, name=name))
    answers: dict[str, str] = {}
    settings = GenerationSettings(max_new_tokens=max_tokens, stop=(".",))
    engine.generate_until(host, requests, settings, 8, lambda r: answers.__setitem__(r.key, r.text))
    return answers


def test_32_concurrent_requests_across_4_adapters_come_back_right(world) -> None:
    task = task_registry([world["tasks"]]).get(TASK)
    prompts = [render(task, example) for example in load_examples(task)]
    requests = [engine.GenRequest(f"r{i}", prompts[i % len(prompts)] + " " * (i // len(prompts)), ADAPTERS[i % 4]) for i in range(32)]
    expected = in_process_answers(world, requests, 12)

    async def ask_all() -> list[dict]:
        async with httpx.AsyncClient(headers=auth(), timeout=120) as client:
            async def ask(request: engine.GenRequest) -> dict:
                body = {"model": request.adapter, "prompt": request.prompt, "max_tokens": 12, "temperature": 0, "stop": ["."]}
                response = await client.post(world["url"] + "/completions", json=body)
                assert response.status_code == 200, response.text
                return response.json()
            return await asyncio.gather(*(ask(r) for r in requests))

    answers = asyncio.run(ask_all())
    assert [a["choices"][0]["text"] for a in answers] == [expected[r.key] for r in requests]
    assert all(a["usage"]["completion_tokens"] >= 1 and a["usage"]["prompt_tokens"] > 0 for a in answers)


def test_streamed_text_equals_the_plain_answer_and_carries_usage(world) -> None:
    body = {"model": "a2", "prompt": "the quick brown fox ->", "max_tokens": 12, "temperature": 0}
    plain = httpx.post(world["url"] + "/completions", json=body, headers=auth(), timeout=60).json()
    events = []
    with httpx.stream("POST", world["url"] + "/completions", json=body | {"stream": True}, headers=auth(), timeout=60) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(line[6:])
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks) == plain["choices"][0]["text"]
    assert chunks[-1]["usage"] == plain["usage"] and chunks[-1]["choices"][0]["finish_reason"] == plain["choices"][0]["finish_reason"]


def test_sampling_with_a_seed_repeats_and_temperature_zero_is_greedy(world) -> None:
    body = {"model": "a3", "prompt": "a resume lists", "max_tokens": 10, "temperature": 1.0, "top_p": 0.9, "seed": 7}
    first, second = (httpx.post(world["url"] + "/completions", json=body, headers=auth(), timeout=60).json() for _ in range(2))
    assert first["choices"][0]["text"] == second["choices"][0]["text"]


def test_bad_requests_get_openai_errors_with_one_sentence(world) -> None:
    url = world["url"]
    cases = [
        (httpx.post(url + "/completions", json={"model": "a1", "prompt": "x"}), 401),
        (httpx.post(url + "/completions", json={"model": "a1", "prompt": "x"}, headers={"Authorization": "Bearer wrong"}), 401),
        (httpx.post(url + "/completions", json={"model": "nope", "prompt": "x"}, headers=auth()), 404),
        (httpx.post(url + "/completions", json={"model": "a1", "prompt": "the " * 400}, headers=auth()), 400),
        (httpx.post(url + "/completions", json={"model": "a1", "prompt": "x", "max_tokens": 500}, headers=auth()), 400),
        (httpx.post(url + "/completions", content=b"{not json", headers=auth() | {"content-type": "application/json"}), 422),
        (httpx.post(url + "/completions", json={"model": "a1", "prompt": "x", "max_tokens": "many"}, headers=auth()), 422),
        (httpx.post(url + "/chat/completions", json={"model": "a1"}, headers=auth()), 422),
        (httpx.post(url + "/tasks/no_such_task", json={"input": "x"}, headers=auth()), 404),
        (httpx.get(url + "/nowhere", headers=auth()), 404),
    ]
    for response, status in cases:
        assert response.status_code == status, response.text
        error = response.json()["error"]
        message = error["message"]
        assert message.endswith(".") and "Traceback" not in response.text and message.count(". ") == 0, message
        assert error["code"] == status


def test_task_endpoint_renders_generates_and_validates(world) -> None:
    body = {"input": "Jane Roe, jane@example.com, python and sql", "model": "a1", "max_tokens": 16}
    response = httpx.post(world["url"] + "/tasks/resume_json", json=body, headers=auth(), timeout=60)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["task"] == "resume_json" and answer["usage"]["completion_tokens"] >= 1
    result = answer["result"]
    # a random tiny model writes no JSON: the answer says so instead of hiding it
    assert result["json_valid"] is (json_result(answer["text"])["json"] is not None)
    assert result["schema_valid"] is False and result["problem"]


def test_json_result_reports_valid_and_schema_invalid_output() -> None:
    good = json_result('{"name": "A", "email": "", "phone": "", "experience": "", "education": "", "skills": ["x"]} trailing')
    assert good["json_valid"] and good["schema_valid"] and good["problem"] is None
    partial = json_result('{"name": "A"}')
    assert partial["json_valid"] and not partial["schema_valid"] and partial["json"] == {"name": "A"}


def test_lm_eval_local_completions_runs_a_task_against_harness_serve(world, tmp_path) -> None:
    task_dir = tmp_path / "lm_eval_tasks"
    task_dir.mkdir()
    (task_dir / "rows.jsonl").write_text("".join(json.dumps({"q": f"the quick brown {w} ->", "a": w}) + "\n" for w in ("fox", "dog", "city", "name")))
    (task_dir / "tiny_serve.yaml").write_text(
        "task: tiny_serve\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: " + str(task_dir / "rows.jsonl") + "\n"
        "test_split: test\noutput_type: generate_until\ndoc_to_text: '{{q}}'\ndoc_to_target: '{{a}}'\n"
        "generation_kwargs:\n  until: ['.']\n  max_gen_toks: 8\n  do_sample: false\n"
        "metric_list:\n  - metric: exact_match\n")
    model_args = f"model=a1,base_url={world['url']}/completions,tokenizer_backend=None,tokenized_requests=False,num_concurrent=2,max_retries=1"
    command = [sys.executable, "-m", "lm_eval", "--model", "local-completions", "--model_args", model_args, "--tasks", "tiny_serve",
               "--include_path", str(task_dir), "--output_path", str(tmp_path / "out"), "--log_samples"]
    env = server_env() | {"OPENAI_API_KEY": KEY}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    samples = list((tmp_path / "out").rglob("samples_tiny_serve*.jsonl"))
    rows = [json.loads(line) for line in samples[0].read_text().splitlines()]
    assert len(rows) == 4
    # lm-eval's answers are the server's greedy answers for the same prompts
    for row in rows:
        body = {"model": "a1", "prompt": row["arguments"]["gen_args_0"]["arg_0"], "max_tokens": 8, "temperature": 0, "stop": ["."]}
        ours = httpx.post(world["url"] + "/completions", json=body, headers=auth(), timeout=60).json()["choices"][0]["text"]
        assert row["resps"][0][0] == ours


def test_endpoint_run_against_nothing_is_one_sentence(tmp_path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    spec = EndpointRunSpec(endpoint=url, tasks=("resume_json",), limit=1)
    with pytest.raises(HarnessError, match=r"did not answer \(connection refused\) after 2 tries; start the server"):
        execute_endpoint(spec, EndpointOptions(url=url, retries=1, backoff_s=0.01), Store(tmp_path / "s.sqlite"))
