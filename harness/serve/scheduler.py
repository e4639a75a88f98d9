"""Continuous batching for the server: requests share decode steps, adapters mixed, rows join and leave.

One worker thread owns the model (torch is not asyncio-friendly); the asyncio side submits a `Job`
and awaits its `concurrent.futures.Future`. The worker keeps one running batch per adapter group
(`AdapterHost.group_of`: the base and every plain LoRA adapter share one mixed batch through PEFT's
`adapter_names`; DoRA, IA3 and prompt tuning run in batches of their own). Each turn of its loop it

1. admits waiting jobs: when idle it waits a short collection window so requests that arrive
   together are prefilled together; new rows are prefilled as one batch per group and their KV
   cache is *merged* into the group's running batch (left-padded to a common width), so a request
   never waits for another batch's whole generation;
2. runs one decode step of every running batch; a row that hits EOS, a stop string or its token
   budget is answered at once and leaves the batch (its cache rows are dropped, and left padding
   that no remaining row needs is trimmed).

It is built from the same public pieces as the engine (`AdapterHost.route`, `with_prefix`,
`positions`), with the engine's stop rule (harness.serve.decoding), so greedy answers equal
`harness run`'s. The cache is transformers' plain DynamicCache: its layers expose `keys`/`values`
tensors, which is what merging needs. A model whose cache has other layer kinds (sliding windows)
still works, but new rows then wait until their group's batch is empty.
"""

from __future__ import annotations

import inspect
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from harness.run.adapter_host import AdapterHost
from harness.run.forward import positions, with_prefix
from harness.serve.decoding import RowText, SamplingParams, eos_ids, next_token, row_generator

if TYPE_CHECKING:
    import torch

StreamSink = Callable[[str | None], None]  # text deltas, then None when the row is done


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" or "length"


@dataclass(eq=False)
class Job:
    """One request's row: its prompt tokens, adapter, decoding rules and where the answer goes."""

    ids: list[int]
    adapter: str | None
    params: SamplingParams
    rule: RowText
    generator: Any
    sink: StreamSink | None = None
    future: Future[Completion] = field(default_factory=Future)
    tokens: list[int] = field(default_factory=list)
    streamed: int = 0  # characters already sent to the sink
    cancelled: bool = False


@dataclass
class _Batch:
    """One group's running rows: cache, attention mask, last positions and the tokens to feed next."""

    jobs: list[Job]
    cache: Any
    mask: torch.Tensor
    last_pos: torch.Tensor
    next_ids: Any = None


@dataclass(frozen=True)
class SchedulerLimits:
    batch_cap: int = 32  # rows per running batch (per adapter group)
    window_s: float = 0.01  # how long an idle worker waits for companions of a first request
    prefill_chunk: int = 8  # newcomers prefilled together (sorted by length, so padding stays small)


class Scheduler:
    """Owns the model in one worker thread; `submit` is safe to call from any thread."""

    def __init__(self, host: AdapterHost, limits: SchedulerLimits = SchedulerLimits()) -> None:
        self.host = host
        self.limits = limits
        self.eos = eos_ids(host.base.tokenizer, host.base.model)
        self._inbox: queue.Queue[Job] = queue.Queue()
        self._waiting: list[Job] = []
        self._batches: dict[str, _Batch] = {}
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="harness-serve-engine", daemon=True)
        self._last_only = _last_logits_only(host.base.model)

    # ------------------------------------------------------------ public side

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=10)

    def submit(self, ids: list[int], adapter: str | None, params: SamplingParams, sink: StreamSink | None = None) -> Job:
        rule = RowText(self.host.base.tokenizer, self.eos, params)
        job = Job(list(ids), adapter, params, rule, row_generator(params, self.host.base.device), sink)
        self._inbox.put(job)
        return job

    @property
    def running_rows(self) -> int:
        return sum(len(b.jobs) for b in self._batches.values())

    # ------------------------------------------------------------ worker loop

    def _run(self) -> None:
        import torch

        with torch.inference_mode():
            while not self._stopping.is_set():
                self._admit(wait=not self._batches and not self._waiting)
                for group, batch in list(self._batches.items()):
                    self._guarded(batch.jobs, lambda b=batch: self._decode_step(b))
                    if not batch.jobs:
                        del self._batches[group]
        for job in self._waiting + [j for b in self._batches.values() for j in b.jobs]:
            _fail(job, RuntimeError("the server is shutting down"))

    def _guarded(self, jobs: list[Job], work: Callable[[], None]) -> None:
        """Run `work`; if it raises, its jobs are answered with the error and forgotten."""
        try:
            work()
        except Exception as error:  # the loop must outlive one bad batch; the app hides the details
            for job in list(jobs):
                _fail(job, error)
            jobs.clear()

    def _admit(self, wait: bool) -> None:
        self._collect(wait)
        by_group: dict[str, list[Job]] = defaultdict(list)
        for job in self._waiting:
            if not job.cancelled:
                by_group[self.host.group_of(job.adapter)].append(job)
        self._waiting = []
        for group, jobs in by_group.items():
            room = self._room(group)
            admitted = jobs[:room]
            self._waiting += jobs[room:]  # no room yet: they join at a later step
            if admitted:
                self._guarded(admitted, lambda g=group, a=admitted: self._join(g, a))

    def _collect(self, wait: bool) -> None:
        """Move jobs from the inbox to the waiting list; when idle, wait for a first one and its companions."""
        if wait:
            try:
                self._waiting.append(self._inbox.get(timeout=0.05))
            except queue.Empty:
                return
            deadline = time.perf_counter() + self.limits.window_s
            while len(self._waiting) < self.limits.batch_cap and (left := deadline - time.perf_counter()) > 0:
                try:
                    self._waiting.append(self._inbox.get(timeout=left))
                except queue.Empty:
                    break
        while True:
            try:
                self._waiting.append(self._inbox.get_nowait())
            except queue.Empty:
                return

    def _room(self, group: str) -> int:
        running = self._batches.get(group)
        if running is None:
            return self.limits.batch_cap
        if not _mergeable(running.cache):
            return 0
        return max(0, self.limits.batch_cap - len(running.jobs))

    # ------------------------------------------------------------ prefill, merge, decode

    def _join(self, group: str, jobs: list[Job]) -> None:
        """Prefill newcomers longest first in chunks of similar length (a 100-token prompt padded to
        230 costs as much as a 230-token one: one padded prefill of 32 resume prompts did 48% more
        work than their tokens), then merge each chunk into the group's running batch."""
        jobs = sorted(jobs, key=lambda job: len(job.ids), reverse=True)
        size = self.limits.prefill_chunk
        for start in range(0, len(jobs), size):
            running = self._batches.get(group)
            if running is not None and not _mergeable(running.cache):
                self._waiting += jobs[start:]  # this cache cannot take rows mid-flight: wait for it to empty
                return
            fresh = self._prefill(jobs[start : start + size])
            if fresh.jobs:
                self._batches[group] = fresh if running is None else _merge(running, fresh)

    def _prefill(self, jobs: list[Job]) -> _Batch:
        from transformers import DynamicCache

        base = self.host.base
        route = self.host.route([job.adapter for job in jobs])
        ids, mask = _left_pad([job.ids for job in jobs], base.tokenizer.pad_token_id, base.device)
        inputs = with_prefix(route, ids, mask)
        mask = inputs["attention_mask"]
        pos = positions(mask)
        cache = DynamicCache(config=base.model.config)
        out = route(**inputs, position_ids=pos, past_key_values=cache, use_cache=True, **self._last_only)
        batch = _Batch(list(jobs), cache, mask, pos[:, -1])
        self._advance(batch, out.logits[:, -1])
        return batch

    def _decode_step(self, batch: _Batch) -> None:
        import torch

        live = [i for i, job in enumerate(batch.jobs) if not job.cancelled]
        if len(live) < len(batch.jobs):
            _select(batch, live)
            if not batch.jobs:
                return
        route = self.host.route([job.adapter for job in batch.jobs])
        batch.mask = torch.cat([batch.mask, batch.mask.new_ones(batch.mask.shape[0], 1)], dim=1)
        batch.last_pos = batch.last_pos + 1
        out = route(input_ids=batch.next_ids[:, None], attention_mask=batch.mask, position_ids=batch.last_pos[:, None],
                    past_key_values=batch.cache, use_cache=True)
        self._advance(batch, out.logits[:, -1])

    def _advance(self, batch: _Batch, logits: torch.Tensor) -> None:
        """Pick each row's next token; answer finished rows and drop them from the batch."""
        import torch

        greedy = logits.argmax(dim=-1).tolist()
        keep: list[int] = []
        for i, job in enumerate(batch.jobs):
            if job.cancelled:
                continue
            job.tokens.append(greedy[i] if job.params.greedy else next_token(logits[i], job.params, job.generator))
            if job.rule.done(job.tokens):
                _finish(job)
            else:
                keep.append(i)
                _stream(job)
        if len(keep) < len(batch.jobs):
            _select(batch, keep)
        batch.next_ids = torch.tensor([job.tokens[-1] for job in batch.jobs], dtype=torch.long, device=batch.mask.device)


# ---------------------------------------------------------------- answering rows


def _stream(job: Job) -> None:
    if job.sink is None:
        return
    text = job.rule.safe_prefix(job.tokens)
    if len(text) > job.streamed:
        job.sink(text[job.streamed :])
        job.streamed = len(text)


def _finish(job: Job) -> None:
    text = job.rule.text(job.tokens)
    if job.sink is not None:
        if len(text) > job.streamed:
            job.sink(text[job.streamed :])
        job.sink(None)
    if not job.future.done():  # a job already failed with its batch is not answered twice
        job.future.set_result(Completion(text, len(job.ids), len(job.tokens), job.rule.finish_reason(job.tokens)))


def _fail(job: Job, error: BaseException) -> None:
    if job.sink is not None:
        job.sink(None)
    if not job.future.done():
        job.future.set_exception(error)


# ---------------------------------------------------------------- batch surgery


def _left_pad(seqs: list[list[int]], pad: int, device: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Left padding as the tokenizer's `pad` does it for the engine (pad id, mask 0)."""
    import torch

    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, seq in enumerate(seqs):
        ids[i, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
        mask[i, width - len(seq) :] = 1
    return ids.to(device), mask.to(device)


def _mergeable(cache: Any) -> bool:
    from transformers.cache_utils import DynamicLayer

    return all(type(layer) is DynamicLayer for layer in cache.layers)


def _select(batch: _Batch, rows: list[int]) -> None:
    """Keep only `rows` of the batch, then trim left padding that no remaining row needs."""
    import torch

    batch.jobs = [batch.jobs[i] for i in rows]
    if not rows:
        return
    index = torch.tensor(rows, device=batch.mask.device)
    batch.cache.batch_select_indices(index)
    batch.mask, batch.last_pos = batch.mask[index], batch.last_pos[index]
    if batch.next_ids is not None and len(batch.next_ids) != len(rows):
        batch.next_ids = batch.next_ids[index]
    used = batch.mask.any(dim=0).nonzero()
    first = int(used[0]) if used.numel() else 0
    if first and _mergeable(batch.cache):
        for layer in batch.cache.layers:
            layer.keys, layer.values = layer.keys[:, :, first:], layer.values[:, :, first:]
        batch.mask = batch.mask[:, first:]


def _merge(running: _Batch, fresh: _Batch) -> _Batch:
    """One batch of both: caches and masks left-padded to a common width and stacked."""
    import torch

    width = max(running.mask.shape[1], fresh.mask.shape[1])
    for mine, theirs in zip(running.cache.layers, fresh.cache.layers):
        mine.keys = torch.cat([_pad_cache(mine.keys, width), _pad_cache(theirs.keys, width)])
        mine.values = torch.cat([_pad_cache(mine.values, width), _pad_cache(theirs.values, width)])
    running.mask = torch.cat([_pad_mask(running.mask, width), _pad_mask(fresh.mask, width)])
    running.last_pos = torch.cat([running.last_pos, fresh.last_pos])
    running.next_ids = torch.cat([running.next_ids, fresh.next_ids])
    running.jobs += fresh.jobs
    return running


def _pad_cache(tensor: torch.Tensor, width: int) -> torch.Tensor:
    missing = width - tensor.shape[-2]
    if not missing:
        return tensor
    shape = (*tensor.shape[:-2], missing, tensor.shape[-1])
    import torch

    return torch.cat([tensor.new_zeros(shape), tensor], dim=-2)


def _pad_mask(mask: torch.Tensor, width: int) -> torch.Tensor:
    import torch

    missing = width - mask.shape[1]
    return mask if not missing else torch.cat([mask.new_zeros(mask.shape[0], missing), mask], dim=1)


def _last_logits_only(model: Any) -> dict[str, int]:
    """`logits_to_keep=1` where the model takes it: the prefill projects only the last position."""
    return {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
