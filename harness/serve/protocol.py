"""The OpenAI-compatible wire format: request bodies (validated by pydantic) and error bodies.

Unknown fields are ignored, as OpenAI-compatible servers do (clients send many); known fields of the
wrong type or out of range are a 422. Errors are `{"error": {"message", "type", "param", "code"}}`
with one sentence in `message`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class ApiError(Exception):
    """An error a client caused (or a server limit it hit): its HTTP status and one sentence."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.param = param


def error_body(status: int, message: str, kind: str = "invalid_request_error", param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": param, "code": status}}


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class SamplingFields(_Body):
    model: str
    max_tokens: int | None = Field(None, ge=1)
    temperature: float = Field(1.0, ge=0.0, le=2.0)  # OpenAI's default; 0 = greedy
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    n: int = Field(1, ge=1)

    def stop_strings(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class CompletionBody(SamplingFields):
    # a text, several texts, a list of token ids, or several lists of token ids (as OpenAI accepts)
    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool = False
    logprobs: int | None = None


class ChatMessage(_Body):
    role: Literal["system", "user", "assistant", "developer"]
    content: str


class ChatBody(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)


class TaskBody(_Body):
    """Raw input for a task's own prompt: a text (tasks with one input field) or {field: text}."""

    input: str | dict[str, str]
    model: str | None = None  # default: the base model
    prompt: str | None = None  # prompt template name (default: the task's)
    max_tokens: int | None = Field(None, ge=1)


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens}
