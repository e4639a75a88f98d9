"""POST /v1/tasks/{task}: raw input rendered with the task's own prompt, generated, post-processed.

For tasks scored by `json_fields` (resume_json) the answer carries the parsed JSON object and whether
it is valid JSON and valid against the task's schema; an invalid answer is reported as such (with
the raw text), never replaced or hidden.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from harness.errors import HarnessError
from harness.metrics.json_fields import extract_json_object, is_schema_valid
from harness.serve.decoding import SamplingParams
from harness.serve.protocol import ApiError, TaskBody, usage
from harness.serve.scheduler import Completion
from harness.serve.served import Served
from harness.spec import Example, TaskSpec


def task_job(served: Served, name: str, body: TaskBody, include_paths: Sequence[Any], cap: int) -> tuple[list[int], str | None, SamplingParams, TaskSpec]:
    """The prompt tokens, adapter and greedy settings (the task's own) for one task request."""
    from harness.prompts import render
    from harness.registry import task_registry

    registry = task_registry(list(include_paths))
    if name not in registry.names():
        raise ApiError(404, f"Task '{name}' is not known to this server; choose one of: {', '.join(registry.names())}.",
                       kind="not_found_error", param="task")
    spec = registry.get(name)
    if spec.output_type != "generate_until":
        raise ApiError(400, f"Task '{name}' is a {spec.output_type} task; this endpoint serves tasks that generate text.", param="task")
    model = body.model or served.base_id
    if not served.knows(model):
        known = ", ".join([served.base_id, *served.host.adapters])
        raise ApiError(404, f"Model '{model}' is not served here; choose one of: {known}.", kind="not_found_error", param="model")
    example = Example(id="request", inputs=_inputs(spec, body.input))
    try:
        prompt = render(spec, example, body.prompt, served.host.base.tokenizer)
    except HarnessError as error:
        raise ApiError(400, str(error), param="prompt") from None
    budget = body.max_tokens or spec.generation.max_new_tokens
    if budget > cap:
        raise ApiError(400, f"max_tokens is {budget} but this server allows at most {cap}; ask for fewer.", param="max_tokens")
    params = SamplingParams(max_tokens=budget, stop=spec.generation.stop)
    return served.host.base.tokenizer(prompt)["input_ids"], served.adapter_of(model), params, spec


def _inputs(spec: TaskSpec, given: str | dict[str, str]) -> dict[str, str]:
    fields = list(spec.fields.inputs)
    if isinstance(given, str):
        if len(fields) != 1:
            raise ApiError(400, f"Task '{spec.name}' takes the inputs {fields}; send input as an object with those keys.", param="input")
        return {fields[0]: given}
    missing = [f for f in fields if f not in given]
    if missing:
        raise ApiError(400, f"Task '{spec.name}' needs the input fields {missing}; add them to input.", param="input")
    return {f: given[f] for f in fields}


def answer_task(spec: TaskSpec, model: str, done: Completion) -> dict[str, Any]:
    answer: dict[str, Any] = {"task": spec.name, "model": model, "text": done.text, "finish_reason": done.finish_reason,
                              "usage": usage(done.prompt_tokens, done.completion_tokens)}
    if "json_fields" in spec.metrics:
        answer["result"] = json_result(done.text)
    else:
        answer["result"] = {"output": done.text.strip()}
    return answer


def json_result(text: str) -> dict[str, Any]:
    """The parsed object and its validity, with a sentence saying what is wrong when it is not valid."""
    parsed = extract_json_object(text)
    if parsed is None:
        return {"json": None, "json_valid": False, "schema_valid": False,
                "problem": "The model's output holds no parseable JSON object."}
    if not is_schema_valid(parsed):
        return {"json": parsed, "json_valid": True, "schema_valid": False,
                "problem": "The JSON object lacks a key of the schema or has a wrong type (five strings and a list of skills)."}
    return {"json": parsed, "json_valid": True, "schema_valid": True, "problem": None}
