"""The FastAPI app: OpenAI-compatible completions and chat, the task endpoint, models and health.

Every request is checked (auth, model, prompt length, limits) before it reaches the scheduler, and
every error leaves as OpenAI-style error JSON with one sentence; a traceback stays in the server log.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from harness.serve.decoding import SamplingParams
from harness.serve.protocol import ApiError, ChatBody, CompletionBody, SamplingFields, TaskBody, error_body, usage
from harness.serve.scheduler import Completion, Job
from harness.serve.served import Served
from harness.serve.task_endpoint import answer_task, task_job

ROUTES = "/health, /v1/models, /v1/completions, /v1/chat/completions and /v1/tasks/{task}"


@dataclass(frozen=True)
class ServeLimits:
    api_key: str | None = None
    max_concurrent: int = 64  # requests in flight; more get 429
    max_tokens_cap: int = 1024  # largest max_tokens a request may ask for
    default_max_tokens: int = 16  # OpenAI's default for completions
    request_timeout_s: float = 300.0


def create_app(served: Served, limits: ServeLimits = ServeLimits(), include_paths: tuple[Any, ...] = ()) -> FastAPI:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        served.scheduler.start()
        yield
        served.scheduler.stop()

    app = FastAPI(title="harness serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    gate = _Gate(limits.max_concurrent)
    _install_error_handlers(app)
    _install_auth(app, limits.api_key)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": served.base_id, "adapters": sorted(served.host.adapters), "running": served.scheduler.running_rows}

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        return {"object": "list", "data": served.model_entries()}

    @app.post("/v1/completions")
    async def completions(body: CompletionBody) -> Any:
        if body.echo or (body.logprobs or 0) > 0:
            raise ApiError(400, "This server does not return logprobs or echo prompts; ask for generated text only (echo false, no logprobs).", param="logprobs")
        prompts = _prompt_ids(served, body.prompt)
        return await _serve(served, limits, gate, body, prompts, chat=False)

    @app.post("/v1/chat/completions")
    async def chat(body: ChatBody) -> Any:
        messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.content} for m in body.messages]
        tokenizer = served.host.base.tokenizer
        if not getattr(tokenizer, "chat_template", None):
            raise ApiError(400, f"Model '{served.base_id}' has no chat template; use /v1/completions with a plain prompt.")
        text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        if body.max_completion_tokens and not body.max_tokens:
            body = body.model_copy(update={"max_tokens": body.max_completion_tokens})
        return await _serve(served, limits, gate, body, [tokenizer(text)["input_ids"]], chat=True)

    @app.post("/v1/tasks/{task}")
    async def task(task: str, body: TaskBody) -> Any:
        ids, adapter, params, spec = task_job(served, task, body, include_paths, limits.max_tokens_cap)
        _check_length(served, ids, adapter)
        async with gate:
            done = await _await_job(served.scheduler.submit(ids, adapter, params), limits.request_timeout_s)
        return answer_task(spec, body.model or served.base_id, done)

    return app


# ---------------------------------------------------------------- request handling


class _Gate:
    """At most `limit` requests in flight; one more is refused at once (429), not queued unseen."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    async def __aenter__(self) -> None:
        if self.active >= self.limit:
            raise ApiError(429, f"The server is at its limit of {self.limit} concurrent requests; retry shortly.", kind="rate_limit_error")
        self.active += 1

    async def __aexit__(self, *exc: Any) -> None:
        self.active -= 1


def _prompt_ids(served: Served, prompt: str | list[str] | list[int] | list[list[int]]) -> list[list[int]]:
    tokenizer = served.host.base.tokenizer
    if isinstance(prompt, str):
        return [tokenizer(prompt)["input_ids"]]
    if not prompt:
        raise ApiError(400, "The prompt is empty; send a text or a list of token ids.", param="prompt")
    if all(isinstance(p, int) for p in prompt):
        return [list(prompt)]  # type: ignore[arg-type]
    return [tokenizer(p)["input_ids"] if isinstance(p, str) else list(p) for p in prompt]  # type: ignore[union-attr]


def _check_length(served: Served, ids: list[int], adapter: str | None) -> int:
    """Tokens left for the answer; 400 when the prompt alone fills the context."""
    used = len(ids) + served.virtual_tokens(adapter)
    if not ids:
        raise ApiError(400, "The prompt is empty; send at least one token.", param="prompt")
    if used >= served.context:
        raise ApiError(400, f"The prompt is {used} tokens long but model '{served.base_id}' has a context of {served.context} tokens; shorten the prompt.", param="prompt")
    vocab = served.host.base.model.config.vocab_size
    if any(not 0 <= t < vocab for t in ids):
        raise ApiError(400, f"The prompt holds token ids outside the vocabulary (0..{vocab - 1}); send text or valid ids.", param="prompt")
    return served.context - used


def _params(body: SamplingFields, limits: ServeLimits, room: int) -> SamplingParams:
    wanted = body.max_tokens or limits.default_max_tokens
    if wanted > limits.max_tokens_cap:
        raise ApiError(400, f"max_tokens is {wanted} but this server allows at most {limits.max_tokens_cap}; ask for fewer.", param="max_tokens")
    if body.n != 1:
        raise ApiError(400, "This server returns one choice per prompt; send n=1.", param="n")
    return SamplingParams(max_tokens=min(wanted, room), temperature=body.temperature, top_p=body.top_p,
                          stop=body.stop_strings(), seed=body.seed)


def _model(served: Served, name: str) -> str | None:
    if not served.knows(name):
        known = ", ".join([served.base_id, *served.host.adapters])
        raise ApiError(404, f"Model '{name}' is not served here; choose one of: {known}.", kind="not_found_error", param="model")
    return served.adapter_of(name)


async def _serve(served: Served, limits: ServeLimits, gate: _Gate, body: SamplingFields, prompts: list[list[int]], chat: bool) -> Any:
    adapter = _model(served, body.model)
    params = [_params(body, limits, _check_length(served, ids, adapter)) for ids in prompts]
    if body.stream:
        if len(prompts) != 1:
            raise ApiError(400, "Streaming answers one prompt at a time; send a single prompt with stream true.", param="stream")
        await gate.__aenter__()
        return StreamingResponse(_stream(served, limits, gate, body.model, prompts[0], adapter, params[0], chat),
                                 media_type="text/event-stream")
    async with gate:
        jobs = [served.scheduler.submit(ids, adapter, p) for ids, p in zip(prompts, params)]
        results = await asyncio.gather(*(_await_job(job, limits.request_timeout_s) for job in jobs))
    return _answer(body.model, results, chat)


async def _await_job(job: Job, timeout: float) -> Completion:
    try:
        return await asyncio.wait_for(asyncio.wrap_future(job.future), timeout)
    except asyncio.TimeoutError:
        job.cancelled = True
        raise ApiError(504, f"The request did not finish within the server's limit of {timeout:g} s; ask for fewer tokens or retry.", kind="timeout_error") from None
    except asyncio.CancelledError:
        job.cancelled = True  # the client went away: stop spending decode steps on it
        raise
    except Exception as error:
        raise ApiError(500, f"The model failed on this request ({type(error).__name__}); see the server log.", kind="server_error") from error


def _answer(model: str, results: list[Completion], chat: bool) -> dict[str, Any]:
    prompt_tokens = sum(r.prompt_tokens for r in results)
    completion_tokens = sum(r.completion_tokens for r in results)
    if chat:
        choices = [{"index": i, "message": {"role": "assistant", "content": r.text}, "finish_reason": r.finish_reason}
                   for i, r in enumerate(results)]
    else:
        choices = [{"index": i, "text": r.text, "logprobs": None, "finish_reason": r.finish_reason} for i, r in enumerate(results)]
    return {"id": _id(chat), "object": "chat.completion" if chat else "text_completion", "created": int(time.time()),
            "model": model, "choices": choices, "usage": usage(prompt_tokens, completion_tokens)}


async def _stream(served: Served, limits: ServeLimits, gate: _Gate, model: str, ids: list[int], adapter: str | None,
                  params: SamplingParams, chat: bool) -> AsyncIterator[str]:
    """Server-sent events: one chunk per text delta, a last chunk with finish_reason and usage, [DONE]."""
    loop = asyncio.get_running_loop()
    deltas: asyncio.Queue[str | None] = asyncio.Queue()
    job = served.scheduler.submit(ids, adapter, params, sink=lambda text: loop.call_soon_threadsafe(deltas.put_nowait, text))
    ident, created = _id(chat), int(time.time())
    try:
        deadline = loop.time() + limits.request_timeout_s
        while (text := await asyncio.wait_for(deltas.get(), max(0.0, deadline - loop.time()))) is not None:
            yield _event(_chunk(ident, created, model, chat, text, None))
        done = await _await_job(job, max(0.0, deadline - loop.time()))
        last = _chunk(ident, created, model, chat, "", done.finish_reason)
        last["usage"] = usage(done.prompt_tokens, done.completion_tokens)
        yield _event(last)
    except asyncio.TimeoutError:
        job.cancelled = True
        yield _event(error_body(504, f"The request did not finish within the server's limit of {limits.request_timeout_s:g} s; ask for fewer tokens or retry.", "timeout_error"))
    except ApiError as error:
        yield _event(error_body(error.status, error.message, error.kind))
    finally:
        job.cancelled = job.cancelled or not job.future.done()
        await gate.__aexit__()
    yield "data: [DONE]\n\n"


def _chunk(ident: str, created: int, model: str, chat: bool, text: str, finish: str | None) -> dict[str, Any]:
    if chat:
        choice: dict[str, Any] = {"index": 0, "delta": {"content": text} if text else {}, "finish_reason": finish}
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
    return {"id": ident, "object": "chat.completion.chunk" if chat else "text_completion", "created": created, "model": model, "choices": [choice]}


def _event(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def _id(chat: bool) -> str:
    return ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex[:24]


# ---------------------------------------------------------------- errors and auth


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return JSONResponse(error_body(error.status, error.message, error.kind, error.param), status_code=error.status)

    @app.exception_handler(RequestValidationError)
    async def malformed(_: Request, error: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body(422, validation_sentence(error.errors())), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        if error.status_code == 404:
            message = f"There is no route {request.method} {request.url.path}; the API has {ROUTES}."
        elif error.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}; see the OpenAI API for the right method."
        else:
            message = f"{error.detail}."
        return JSONResponse(error_body(error.status_code, message), status_code=error.status_code)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, error: Exception) -> JSONResponse:
        message = f"The server failed on this request ({type(error).__name__}); see the server log."
        return JSONResponse(error_body(500, message, "server_error"), status_code=500)


def validation_sentence(errors: Any) -> str:
    """One sentence for pydantic's list of problems: the first, naming the field."""
    first = list(errors)[0] if errors else {}
    if first.get("type") == "json_invalid":
        return "The request body is not valid JSON; send a JSON object."
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "body"
    if first.get("type") == "missing":
        return f"The request body lacks the field '{where}'; add it."
    return f"Field '{where}' is invalid ({first.get('msg', 'bad value')}); fix it and resend."


def _install_auth(app: FastAPI, api_key: str | None) -> None:
    if not api_key:
        return

    @app.middleware("http")
    async def require_key(request: Request, call_next: Any) -> Any:
        header = request.headers.get("authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(given.strip().encode(), api_key.encode()):
            message = "This server needs an API key; send the header 'Authorization: Bearer KEY'."
            return JSONResponse(error_body(401, message, "authentication_error"), status_code=401)
        return await call_next(request)
