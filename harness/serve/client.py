"""An OpenAI-compatible HTTP client for evaluation: timeouts, retries with backoff, streaming timing.

It speaks only the common subset (`/v1/models`, `/v1/completions`, `/v1/chat/completions`), so any
server that implements the OpenAI API works: `harness serve`, vLLM, llama.cpp's server, TGI, LoRAX.
Connection failures, timeouts, 429 and 5xx answers are retried with exponential backoff; any other
4xx is the request's fault and fails at once. Every failure is an `EndpointError` with one sentence.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx

from harness.errors import HarnessError

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


class EndpointError(HarnessError):
    """The endpoint could not give an answer; the sentence says why and what to do."""


@dataclass(frozen=True)
class EndpointOptions:
    url: str  # the API root, e.g. http://127.0.0.1:8000/v1
    api_key: str | None = None
    concurrency: int = 8
    timeout_s: float = 120.0
    retries: int = 3  # tries after the first
    backoff_s: float = 0.5  # first wait; doubles per retry
    stream: bool = False  # stream answers (measures time to first token)

    @property
    def root(self) -> str:
        return self.url.rstrip("/")


@dataclass(frozen=True)
class Answer:
    text: str
    prompt_tokens: int | None  # from the server's usage, when it sends one
    completion_tokens: int | None
    finish_reason: str | None
    latency_s: float  # request sent to last byte, as the client sees it
    ttft_s: float | None  # time to the first text chunk (streaming only)


class EndpointClient:
    def __init__(self, options: EndpointOptions) -> None:
        self.options = options
        headers = {"Authorization": f"Bearer {options.api_key}"} if options.api_key else {}
        self.http = httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(options.timeout_s, connect=min(10.0, options.timeout_s)))

    async def close(self) -> None:
        await self.http.aclose()

    async def models(self) -> list[dict[str, Any]]:
        """The served models (GET /v1/models)."""
        response = await self._send("GET", "/models", None, what="the model list")
        data = response.json().get("data")
        if not isinstance(data, list):
            raise EndpointError(f"Endpoint {self.options.root} answered /models without a 'data' list; is it an OpenAI-compatible API?")
        return data

    async def complete(self, model: str, prompt: str, settings: dict[str, Any], chat: bool) -> Answer:
        """One generation: POST /completions (a prompt) or /chat/completions (one user message)."""
        body: dict[str, Any] = {"model": model, **settings}
        if chat:
            body["messages"] = [{"role": "user", "content": prompt}]
        else:
            body["prompt"] = prompt
        path = "/chat/completions" if chat else "/completions"
        if self.options.stream:
            return await self._streamed(path, body | {"stream": True, "stream_options": {"include_usage": True}}, chat, model)
        start = time.perf_counter()
        response = await self._send("POST", path, body, what=f"model '{model}'")
        payload = response.json()
        latency = time.perf_counter() - start
        choice = (payload.get("choices") or [{}])[0]
        text = choice["message"].get("content") or "" if chat else choice.get("text", "")
        use = payload.get("usage") or {}
        return Answer(text, use.get("prompt_tokens"), use.get("completion_tokens"), choice.get("finish_reason"), latency, None)

    # ------------------------------------------------------------ transport

    async def _send(self, method: str, path: str, body: dict[str, Any] | None, what: str) -> httpx.Response:
        last = ""
        for attempt in range(self.options.retries + 1):
            if attempt:
                await asyncio.sleep(self.options.backoff_s * 2 ** (attempt - 1))
            try:
                response = await self.http.request(method, self.options.root + path, json=body)
            except httpx.HTTPError as error:
                last = _transport_reason(error)
                continue
            if response.status_code < 400:
                return response
            if response.status_code not in RETRY_STATUSES:
                raise self._refused(response, what)
            last = f"HTTP {response.status_code}: {_server_message(response.text)}"
        raise self._gave_up(last)

    async def _streamed(self, path: str, body: dict[str, Any], chat: bool, model: str) -> Answer:
        last = ""
        for attempt in range(self.options.retries + 1):
            if attempt:
                await asyncio.sleep(self.options.backoff_s * 2 ** (attempt - 1))
            try:
                return await self._read_stream(path, body, chat, model)
            except httpx.HTTPError as error:
                last = _transport_reason(error)
            except _Retryable as error:
                last = str(error)
        raise self._gave_up(last)

    async def _read_stream(self, path: str, body: dict[str, Any], chat: bool, model: str) -> Answer:
        start = time.perf_counter()
        parts: list[str] = []
        ttft: float | None = None
        finish: str | None = None
        use: dict[str, Any] = {}
        async with self.http.stream("POST", self.options.root + path, json=body) as response:
            if response.status_code >= 400:
                text = (await response.aread()).decode("utf-8", "replace")
                if response.status_code in RETRY_STATUSES:
                    raise _Retryable(f"HTTP {response.status_code}: {_server_message(text)}")
                raise self._refused_text(response.status_code, text, f"model '{model}'")
            async for line in response.aiter_lines():
                if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                    continue
                chunk = json.loads(line[5:])
                if "error" in chunk:
                    raise _Retryable(f"stream error: {_server_message(json.dumps(chunk))}")
                use = chunk.get("usage") or use
                for choice in chunk.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content") or "" if chat else choice.get("text") or ""
                    if piece and ttft is None:
                        ttft = time.perf_counter() - start
                    parts.append(piece)
                    finish = choice.get("finish_reason") or finish
        return Answer("".join(parts), use.get("prompt_tokens"), use.get("completion_tokens"), finish, time.perf_counter() - start, ttft)

    # ------------------------------------------------------------ sentences

    def _refused(self, response: httpx.Response, what: str) -> EndpointError:
        return self._refused_text(response.status_code, response.text, what)

    def _refused_text(self, status: int, text: str, what: str) -> EndpointError:
        return EndpointError(f"Endpoint {self.options.root} refused the request for {what} (HTTP {status}: {_server_message(text)}); fix the request or what the server serves.")

    def _gave_up(self, reason: str) -> EndpointError:
        tries = self.options.retries + 1
        return EndpointError(f"Endpoint {self.options.root} did not answer ({reason}) after {tries} tries; start the server and re-run to resume.")


class _Retryable(Exception):
    """A streamed answer that failed in a way a retry may fix."""


def _transport_reason(error: httpx.HTTPError) -> str:
    if isinstance(error, httpx.ConnectError):
        return "connection refused"
    if isinstance(error, httpx.TimeoutException):
        return "timed out"
    return f"connection lost: {type(error).__name__}"


def _server_message(text: str) -> str:
    """The server's own sentence from an OpenAI-style error body, else the start of the body."""
    try:
        error = json.loads(text).get("error")
        message = error.get("message") if isinstance(error, dict) else error
        if message:
            return str(message).rstrip(".")
    except (ValueError, AttributeError):
        pass
    return text.strip()[:200] or "no body"
