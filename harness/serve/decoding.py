"""Per-request decoding rules of the server: sampling settings, when a row is done, what text it returns.

The engine (harness.run.engine) applies one GenerationSettings to a whole batch; a server mixes
requests with their own max_tokens, temperature, top_p, stop strings and seed in one batch, so each
row carries its own `SamplingParams`. The stop rule and the text cut are the engine's (EOS, token
budget, first stop string), so a greedy answer equals `harness run`'s text for text.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

# How many extra tokens the stop check decodes beyond the longest stop string (as the engine does).
STOP_WINDOW_SLACK = 8


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0


def eos_ids(tokenizer: Any, model: Any) -> frozenset[int]:
    """Every token id that ends a generation (tokenizer's and generation config's EOS)."""
    ids: set[int] = set()
    for source in (tokenizer.eos_token_id, getattr(getattr(model, "generation_config", None), "eos_token_id", None)):
        if isinstance(source, int):
            ids.add(source)
        elif isinstance(source, (list, tuple)):
            ids.update(int(i) for i in source)
    return frozenset(ids)


class RowText:
    """Done-ness and text of one generated row, with the engine's rules."""

    def __init__(self, tokenizer: Any, eos: frozenset[int], params: SamplingParams) -> None:
        self.tokenizer = tokenizer
        self.eos = eos
        self.params = params
        self.stops = tuple(s for s in params.stop if s)

    def done(self, tokens: list[int]) -> bool:
        if tokens and tokens[-1] in self.eos or len(tokens) >= self.params.max_tokens:
            return True
        if not self.stops:
            return False
        window = tokens[-(STOP_WINDOW_SLACK + max(len(s) for s in self.stops)):]
        text = self.tokenizer.decode(window, skip_special_tokens=True)
        return any(s in text for s in self.stops)

    def text(self, tokens: list[int]) -> str:
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        return cut_at_stop(text, self.stops)

    def finish_reason(self, tokens: list[int]) -> str:
        """'stop' for EOS or a stop string, 'length' when the token budget ran out (OpenAI's names)."""
        if tokens and tokens[-1] in self.eos:
            return "stop"
        full = self.tokenizer.decode(tokens, skip_special_tokens=True)
        return "stop" if cut_at_stop(full, self.stops) != full else "length"

    def safe_prefix(self, tokens: list[int]) -> str:
        """Text that may already be streamed: a possible stop string's start and a half-decoded
        character at the end are held back until the next tokens settle them."""
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        hold = max((len(s) for s in self.stops), default=1) - 1
        text = text[: len(text) - hold] if hold else text
        return text.rstrip("\ufffd")


def cut_at_stop(text: str, stops: tuple[str, ...]) -> str:
    """The text before the first occurrence of any stop string."""
    cut = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
    return text if cut < 0 else text[:cut]


def row_generator(params: SamplingParams, device: Any) -> torch.Generator | None:
    """A private RNG per sampled row: its draws do not depend on which other rows share the batch."""
    if params.greedy:
        return None
    import torch

    generator = torch.Generator(device=device)
    generator.manual_seed(params.seed if params.seed is not None else int.from_bytes(os.urandom(7), "little"))
    return generator


def next_token(logits: torch.Tensor, params: SamplingParams, generator: torch.Generator | None) -> int:
    """One row's next token: argmax when greedy, else temperature + nucleus (top_p) sampling."""
    import torch

    if params.greedy:
        return int(logits.argmax(dim=-1))
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_p, order = probs.sort(descending=True)
        drop = sorted_p.cumsum(dim=-1) - sorted_p >= params.top_p  # keep the smallest prefix reaching top_p
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p.masked_fill(drop, 0.0))
    return int(torch.multinomial(probs, num_samples=1, generator=generator))
