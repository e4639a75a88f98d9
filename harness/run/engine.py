"""Batched inference over an `AdapterHost`: generate_until, multiple_choice (log-likelihood), classify.

All inputs are already-rendered prompt strings. Requests are grouped by what may share a batch
(`AdapterHost.group_of`: the base and every plain LoRA adapter of a base share one mixed batch through
PEFT's `adapter_names`; DoRA, IA3 and prompt tuning are batched per adapter), sorted longest first
(so padding is small and the first, largest batch shows memory trouble early) and chunked.

Causal generation is our own decode loop over a `DynamicCache` whose layers append in place
(harness/kv_cache.py); the prefill projects only the last position onto the vocabulary. A row that
hits EOS, a stop string or its token budget is reported at once through `on_result` and LEAVES the
batch — its rows are dropped from the KV cache (`Cache.batch_select_indices`), the attention mask,
the positions and the per-row adapter names — so finished sequences stop costing work. Left-padding columns that no remaining row
needs are trimmed from the cache as well. Positions are computed from the attention mask, so a prompt's
logits do not depend on how much padding its batch needed.

Seq2seq models use PEFT/transformers `generate` per batch (with per-row stop strings); rows are
reported when their batch ends. Sampling (settings.do_sample) draws from torch's global RNG, which the
caller seeds; sampled text, unlike greedy text, depends on batch composition.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from harness.errors import HarnessError
from harness.run.adapter_host import AdapterHost
from harness.run.forward import Route, encode, positions, with_prefix
from harness.run.loading import LoadedBase
from harness.spec import GenerationSettings

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class GenRequest:
    key: str
    prompt: str
    adapter: str | None  # None = the base model


@dataclass(frozen=True)
class GenResult:
    key: str
    text: str
    prompt_tokens: int
    new_tokens: int
    seconds: float  # from the start of its batch to the moment this row finished


@dataclass(frozen=True)
class ChoiceRequest:
    key: str
    prompt: str
    choices: tuple[str, ...]
    adapter: str | None


@dataclass(frozen=True)
class ClassifyRequest:
    key: str
    text: str
    text_pair: str | None
    adapter: str | None


@dataclass
class ChoiceResult:
    key: str
    scores: tuple[float, ...]  # summed log-likelihood per choice (multiple_choice) or logits (classify)
    choice: int  # argmax of scores
    seconds: float  # this request's share of the batches it ran in


Progress = Callable[[int], None]
R = TypeVar("R")


# ---------------------------------------------------------------- batching


def _batches(host: AdapterHost, items: Sequence[R], adapter: Callable[[R], str | None],
             length: Callable[[R], int], batch_size: int) -> Iterator[list[R]]:
    """Group items by what may share a batch, sort each group longest first, chunk."""
    if batch_size < 1:
        raise HarnessError(f"batch_size must be at least 1, got {batch_size}; pass --batch-size 1 or more.")
    groups: dict[str, list[R]] = defaultdict(list)
    for item in items:
        groups[host.group_of(adapter(item))].append(item)
    for group in groups.values():
        group.sort(key=length, reverse=True)
        for start in range(0, len(group), batch_size):
            # rows of one adapter side by side: batched multi-LoRA then slices instead of gathering
            yield sorted(group[start : start + batch_size], key=lambda item: adapter(item) or "")


@contextmanager
def _timed(recorder: Any | None, prompt_tokens: list[int]) -> Iterator[Any]:
    """The batch's timing record (harness.diagnostics.recorder.TimingRecorder), or None when nobody times."""
    with recorder.batch(prompt_tokens) if recorder is not None else nullcontext() as record:
        yield record


def _token_count(base: LoadedBase, text: str) -> int:
    return len(base.tokenizer(text, add_special_tokens=True)["input_ids"])


# ---------------------------------------------------------------- generate_until


def generate_until(host: AdapterHost, requests: Sequence[GenRequest], settings: GenerationSettings,
                   batch_size: int, on_result: Callable[[GenResult], None], progress: Progress | None = None,
                   recorder: Any | None = None) -> None:
    """Generate for every request; `on_result` is called as soon as each one finishes.

    `recorder` (a harness.diagnostics.recorder.TimingRecorder) times each batch when given.
    """
    import torch

    base = host.base
    if base.kind == "encoder":
        raise HarnessError(f"Model '{base.name}' is an encoder classifier and cannot generate text; use a causal or seq2seq model.")
    lengths = {r.key: _token_count(base, r.prompt) for r in requests}
    decode = _decode_causal if base.kind == "causal" else _generate_seq2seq
    with torch.inference_mode():
        for batch in _batches(host, requests, lambda r: r.adapter, lambda r: lengths[r.key], batch_size):
            finished: dict[str, GenResult] = {}
            with _timed(recorder, [lengths[r.key] for r in batch]) as record:
                for result in decode(host, batch, settings):
                    finished[result.key] = result
                    on_result(result)
                    if progress is not None:
                        progress(1)
            if record is not None:
                in_order = [finished[r.key] for r in batch]
                record.finish([r.new_tokens for r in in_order], [r.seconds for r in in_order])


@dataclass
class _Row:
    request: GenRequest
    prompt_tokens: int
    tokens: list[int]


class _StopCheck:
    """Decides when one row is done and what text it returns."""

    def __init__(self, base: LoadedBase, settings: GenerationSettings) -> None:
        self.tokenizer = base.tokenizer
        self.stops = tuple(s for s in settings.stop if s)
        self.eos = _eos_ids(base)
        self.budget = settings.max_new_tokens

    def text(self, tokens: list[int]) -> str:
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        cut = min((i for i in (text.find(s) for s in self.stops) if i >= 0), default=-1)
        return text if cut < 0 else text[:cut]

    def done(self, tokens: list[int]) -> bool:
        if tokens and tokens[-1] in self.eos or len(tokens) >= self.budget:
            return True
        if not self.stops:
            return False
        # Only the tail can hold a new stop string: decode a window that covers the longest stop.
        window = self.tokenizer.decode(tokens[-(8 + max(len(s) for s in self.stops)):], skip_special_tokens=True)
        return any(s in window for s in self.stops)


def _eos_ids(base: LoadedBase) -> set[int]:
    ids: set[int] = set()
    for source in (base.tokenizer.eos_token_id, getattr(base.model.generation_config, "eos_token_id", None)):
        if isinstance(source, int):
            ids.add(source)
        elif isinstance(source, (list, tuple)):
            ids.update(int(i) for i in source)
    return ids


def _next_tokens(logits: torch.Tensor, settings: GenerationSettings) -> torch.Tensor:
    import torch

    if not settings.do_sample:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / settings.temperature, dim=-1)
    if settings.top_p < 1.0:
        sorted_p, order = probs.sort(dim=-1, descending=True)
        # keep the smallest prefix whose mass reaches top_p (always at least the top token)
        drop = sorted_p.cumsum(dim=-1) - sorted_p >= settings.top_p
        sorted_p = sorted_p.masked_fill(drop, 0.0)
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_p)
    return torch.multinomial(probs, num_samples=1).squeeze(-1)


def _decode_causal(host: AdapterHost, batch: list[GenRequest], settings: GenerationSettings) -> Iterator[GenResult]:
    """Our KV-cache decode loop; finished rows are yielded and dropped from the batch."""
    import torch
    from harness.run.kv_cache import growing_cache

    base = host.base
    start = time.perf_counter()
    route = host.route([r.adapter for r in batch])
    enc = encode(base, [r.prompt for r in batch])
    rows = [_Row(r, int(m.sum()), []) for r, m in zip(batch, enc["attention_mask"])]
    inputs = with_prefix(route, enc["input_ids"], enc["attention_mask"])
    mask = inputs["attention_mask"]
    pos = positions(mask)
    cache = growing_cache(base.model.config, reserve=settings.max_new_tokens)
    out = route(**inputs, position_ids=pos, past_key_values=cache, use_cache=True, **_last_logits_only(base))
    logits, last_pos = out.logits[:, -1], pos[:, -1]
    check = _StopCheck(base, settings)
    while rows:
        chosen = _next_tokens(logits, settings)
        keep: list[int] = []
        for i, (row, token) in enumerate(zip(rows, chosen.tolist())):
            row.tokens.append(token)
            if check.done(row.tokens):
                yield GenResult(row.request.key, check.text(row.tokens), row.prompt_tokens, len(row.tokens),
                                time.perf_counter() - start)
            else:
                keep.append(i)
        if not keep:
            return
        if len(keep) < len(rows):
            index = torch.tensor(keep, device=mask.device)
            cache.batch_select_indices(index)
            rows, mask, last_pos, chosen = [rows[i] for i in keep], mask[index], last_pos[index], chosen[index]
            route = route.select(keep)
            mask = _trim_left_padding(cache, mask)
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
        last_pos = last_pos + 1
        out = route(input_ids=chosen[:, None], attention_mask=mask, position_ids=last_pos[:, None],
                    past_key_values=cache, use_cache=True)
        logits = out.logits[:, -1]


def _last_logits_only(base: LoadedBase) -> dict[str, int]:
    """`logits_to_keep=1` where the model takes it: the prefill then projects only the last position
    onto the vocabulary. Every other position's logits are thrown away, and for SmolLM2 (49k-token
    vocabulary) computing them is a fifth of the prefill's FLOPs and a batch x prompt x vocab tensor."""
    import inspect

    takes_it = "logits_to_keep" in inspect.signature(base.model.forward).parameters
    return {"logits_to_keep": 1} if takes_it else {}


def _trim_left_padding(cache: Any, mask: torch.Tensor) -> torch.Tensor:
    """Drop leading cache columns that are padding for every remaining row (they only cost work)."""
    from harness.run.kv_cache import drop_leading_positions

    used = mask.any(dim=0).nonzero()
    first = int(used[0]) if used.numel() else 0
    return mask[:, first:] if drop_leading_positions(cache, first) else mask


def _generate_seq2seq(host: AdapterHost, batch: list[GenRequest], settings: GenerationSettings) -> Iterator[GenResult]:
    """Encoder once, decoder by transformers' generate (correctness over speed for T5-style models)."""
    base = host.base
    start = time.perf_counter()
    route = host.route([r.adapter for r in batch])
    enc = encode(base, [r.prompt for r in batch])
    inputs = with_prefix(route, enc["input_ids"], enc["attention_mask"])
    options: dict[str, Any] = {"max_new_tokens": settings.max_new_tokens, "do_sample": settings.do_sample}
    if settings.do_sample:
        options |= {"temperature": settings.temperature, "top_p": settings.top_p}
    if settings.stop:
        options |= {"stop_strings": list(settings.stop), "tokenizer": base.tokenizer}
    out = route.generate(**inputs, **options)
    check = _StopCheck(base, settings)
    seconds = time.perf_counter() - start
    pad = base.tokenizer.pad_token_id
    for request, ids, mask in zip(batch, out.tolist(), enc["attention_mask"]):
        tokens = [t for t in ids[1:] if t != pad]  # drop the decoder start token and tail padding
        yield GenResult(request.key, check.text(tokens), int(mask.sum()), len(tokens), seconds)


# ---------------------------------------------------------------- multiple_choice


@dataclass
class _ChoiceRow:
    request: int
    choice: int
    adapter: str | None
    context: list[int]
    continuation: list[int]


def encode_pair(base: LoadedBase, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval's split. Causal: encode context+continuation together, the continuation is the tail.

    Trailing spaces of the context move to the continuation, so ' yes' is scored as one token the
    way the model would have produced it. Seq2seq (as lm-eval): the encoder reads the context and the
    decoder the continuation, each encoded on its own with the tokenizer's special tokens (EOS).
    """
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    tok = base.tokenizer
    if base.kind != "causal":
        return tok(context)["input_ids"], tok(continuation)["input_ids"]
    whole = tok(context + continuation, add_special_tokens=False)["input_ids"]
    ctx = tok(context, add_special_tokens=False)["input_ids"]
    if not context:
        ctx, whole = [_prefix_token(base)], [_prefix_token(base)] + whole
    return ctx, whole[len(ctx) :]


def _prefix_token(base: LoadedBase) -> int:
    tok = base.tokenizer
    return int(tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id)


def multiple_choice(host: AdapterHost, requests: Sequence[ChoiceRequest], batch_size: int,
                    on_result: Callable[[ChoiceResult], None], progress: Progress | None = None,
                    recorder: Any | None = None) -> None:
    """Score every choice of every request by summed log-likelihood; one row per (prompt, choice)."""
    import torch

    base = host.base
    if base.kind == "encoder":
        raise HarnessError(f"Model '{base.name}' is an encoder classifier; use output_type 'classify' for it.")
    rows = [_ChoiceRow(i, j, r.adapter, *_pair_for(base, r.prompt, c))
            for i, r in enumerate(requests) for j, c in enumerate(r.choices)]
    scores: dict[int, dict[int, float]] = defaultdict(dict)
    seconds: dict[int, float] = defaultdict(float)
    score_rows = _score_causal if base.kind == "causal" else _score_seq2seq
    with torch.inference_mode():
        for batch in _batches(host, rows, lambda r: r.adapter, lambda r: len(r.context) + len(r.continuation), batch_size):
            start = time.perf_counter()
            with _timed(recorder, [len(r.context) + len(r.continuation) for r in batch]) as record:
                values = score_rows(host, batch)
            if record is not None:
                record.finish([0] * len(batch))
            share = (time.perf_counter() - start) / len(batch)
            for row, value in zip(batch, values):
                scores[row.request][row.choice] = value
                seconds[row.request] += share
                if len(scores[row.request]) == len(requests[row.request].choices):
                    _emit_choice(requests[row.request].key, scores.pop(row.request), seconds.pop(row.request), on_result)
                    if progress is not None:
                        progress(1)


def _pair_for(base: LoadedBase, prompt: str, choice: str) -> tuple[list[int], list[int]]:
    ctx, cont = encode_pair(base, prompt, choice)
    if not cont:
        raise HarnessError(f"Choice '{choice}' encodes to no tokens after prompt '{prompt[-40:]}'; make each choice non-empty.")
    return ctx, cont


def _emit_choice(key: str, by_choice: dict[int, float], seconds: float, on_result: Callable[[ChoiceResult], None]) -> None:
    ordered = tuple(by_choice[j] for j in range(len(by_choice)))
    on_result(ChoiceResult(key, ordered, max(range(len(ordered)), key=ordered.__getitem__), seconds))


def _left_pad(seqs: list[list[int]], pad: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, seq in enumerate(seqs):
        ids[i, width - len(seq) :] = torch.tensor(seq)
        mask[i, width - len(seq) :] = 1
    return ids.to(device), mask.to(device)


def _score_causal(host: AdapterHost, batch: list[_ChoiceRow]) -> list[float]:
    """Feed context+continuation minus its last token; the last len(continuation) logits score it."""
    import torch

    base = host.base
    route = host.route([r.adapter for r in batch])
    # keep the tail that fits the context window (as lm-eval does); the continuation is at the end
    window = getattr(base.model.config, "max_position_embeddings", None) or 1 << 30
    seqs = [(r.context + r.continuation)[-(window + 1) :][:-1] for r in batch]
    ids, mask = _left_pad(seqs, base.tokenizer.pad_token_id, base.device)
    inputs = with_prefix(route, ids, mask)
    out = route(**inputs, position_ids=positions(inputs["attention_mask"]), use_cache=False)
    logprobs = torch.log_softmax(out.logits.float(), dim=-1)
    values = []
    for i, row in enumerate(batch):
        n = len(row.continuation)
        target = torch.tensor(row.continuation, device=logprobs.device)
        values.append(float(logprobs[i, -n:].gather(-1, target[:, None]).sum()))
    return values


def _score_seq2seq(host: AdapterHost, batch: list[_ChoiceRow]) -> list[float]:
    """Encoder reads the context; the decoder is teacher-forced on the continuation."""
    import torch

    base = host.base
    route = host.route([r.adapter for r in batch])
    pad = base.tokenizer.pad_token_id
    ctx_ids, ctx_mask = _right_pad([r.context for r in batch], pad, base.device)
    labels, _ = _right_pad([r.continuation for r in batch], -100, base.device)
    inputs = with_prefix(route, ctx_ids, ctx_mask)
    start = base.model.config.decoder_start_token_id
    dec = torch.cat([torch.full_like(labels[:, :1], start), labels[:, :-1].clamp(min=0)], dim=1)
    dec = dec.masked_fill(dec == -100, pad)
    out = route(**inputs, decoder_input_ids=dec, use_cache=False)
    logprobs = torch.log_softmax(out.logits.float(), dim=-1)
    picked = logprobs.gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)
    return [float(v) for v in picked.masked_fill(labels == -100, 0.0).sum(dim=1)]


def _right_pad(seqs: list[list[int]], pad: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, seq in enumerate(seqs):
        ids[i, : len(seq)] = torch.tensor(seq)
        mask[i, : len(seq)] = 1
    return ids.to(device), mask.to(device)


# ---------------------------------------------------------------- classify


def classify(host: AdapterHost, requests: Sequence[ClassifyRequest], batch_size: int,
             on_result: Callable[[ChoiceResult], None], progress: Progress | None = None,
             recorder: Any | None = None) -> None:
    """Run an encoder + classification head; scores are the logits."""
    import torch

    base = host.base
    if base.kind != "encoder":
        raise HarnessError(f"Model '{base.name}' is a {base.kind} model without a classifier head; use output_type 'multiple_choice' for it.")
    lengths = {r.key: len(r.text) + len(r.text_pair or "") for r in requests}
    with torch.inference_mode():
        for batch in _batches(host, requests, lambda r: r.adapter, lambda r: lengths[r.key], batch_size):
            start = time.perf_counter()
            tokens = [_token_count(base, r.text) + (_token_count(base, r.text_pair) if r.text_pair else 0) for r in batch] if recorder else []
            with _timed(recorder, tokens) as record:
                logits = _classify_batch(host, batch)
            if record is not None:
                record.finish([0] * len(batch))
            share = (time.perf_counter() - start) / len(batch)
            for request, row in zip(batch, logits.tolist()):
                on_result(ChoiceResult(request.key, tuple(row), max(range(len(row)), key=row.__getitem__), share))
                if progress is not None:
                    progress(1)


def _classify_batch(host: AdapterHost, batch: list[ClassifyRequest]) -> torch.Tensor:
    route: Route = host.route([r.adapter for r in batch])
    enc = encode(host.base, [r.text for r in batch], [r.text_pair for r in batch])
    inputs = with_prefix(route, enc["input_ids"], enc["attention_mask"])
    if "token_type_ids" in enc and route.prefix is None:  # PEFT drops segment ids under prompt tuning too
        inputs["token_type_ids"] = enc["token_type_ids"]
    return route(**inputs).logits.float()
