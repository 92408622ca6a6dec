"""The generation engine behind ``tinylang serve``: one thread owns the model and batches every
request in flight (continuous batching), however many HTTP threads wait on it.

Requests join the running batch as soon as they arrive and leave when they stop, so a short answer
never waits for a long one. Each request keeps its own sampling settings and seed: batching changes
speed, never the bytes a seeded request gets.

    engine = Engine(model, max_batch=8).start()
    request = engine.submit(GenerationRequest("Olipa kerran", max_bytes=200, temperature=0.8))
    for event in request.events():   # text pieces, then one Finished
        ...
"""

from __future__ import annotations

import codecs
import queue
import threading
import time
from dataclasses import dataclass, field

import torch

from ..model import BOS_ID, EOS_ID, LogitsProcessor, Megabyte, sample_next_byte
from ..model.batched import RaggedBatch


@dataclass
class Finished:
    reason: str  # "stop" (end of story or a stop string), "length" (max_bytes) or "error"
    generated_bytes: int
    error: str | None = None


@dataclass
class GenerationRequest:
    """One completion. Text arrives on ``events()`` as decoded pieces, then a ``Finished``."""

    prompt: str
    max_bytes: int = 256
    temperature: float = 1.0
    top_p: float | None = None
    top_k: int | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    ignore_eos: bool = False  # keep going past the end of the story (benchmarks), as vLLM's option
    index: int = 0  # which choice of a multi-choice answer this is; events arrive as (index, event)
    processor: LogitsProcessor | None = None  # changes this row's logits before sampling (word guidance)
    sink: queue.Queue = field(default_factory=queue.Queue, repr=False)  # may be shared by several requests
    cancelled: threading.Event = field(default_factory=threading.Event, repr=False)

    def events(self, timeout: float | None = None):
        """Yield str pieces until the Finished event, which is yielded last (a sink of its own)."""
        while True:
            _, event = self.sink.get(timeout=timeout)
            yield event
            if isinstance(event, Finished):
                return

    def put(self, event: "str | Finished") -> None:
        self.sink.put((self.index, event))

    def cancel(self) -> None:
        """The client went away: the engine drops the row at its next step."""
        self.cancelled.set()


FLUSH_SECONDS = 0.02  # text reaches a waiting client at least this often; larger pieces, fewer wake-ups


class _Row:
    """A request in the batch: its sampler, its UTF-8 decoder, the text held back because it could
    be the start of a stop string, and the text ready to go out.

    Ready text is handed over every FLUSH_SECONDS rather than byte by byte: each hand-over wakes the
    client's thread (which then competes with the engine for the interpreter) and becomes one
    server-sent event, so a few larger pieces cost less than hundreds of one-byte ones."""

    def __init__(self, request: GenerationRequest, device: torch.device):
        self.request = request
        self.generator = None if request.seed is None else torch.Generator(device=device).manual_seed(request.seed)
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.pending = ""
        self.ready = ""
        self.flushed_at = time.monotonic()
        self.generated = 0
        self.hold = max((len(s) for s in request.stop), default=1) - 1
        self.finished = False
        self.last: torch.Tensor | None = None  # the id sampled at the step before, for the processor

    def feed(self, byte: int) -> str | None:
        """Take one new id; return the finish reason when the request is complete."""
        if byte == EOS_ID and not self.request.ignore_eos:
            return self.finish("stop")
        self.generated += 1
        if byte < 256:  # special ids (a begin-of-story mid-story, an ignored end) show as nothing
            self.pending += self.decoder.decode(bytes([byte]))
        found = [at for stop in self.request.stop if (at := self.pending.find(stop)) >= 0]
        if found:  # cut at the earliest stop string in the text, whatever its place in the list
            self.pending = self.pending[: min(found)]
            return self.finish("stop", flush_decoder=False)
        ready = len(self.pending) - self.hold
        if ready > 0:
            self.ready += self.pending[:ready]
            self.pending = self.pending[ready:]
        if self.generated >= self.request.max_bytes:
            # a character cut by the byte budget is dropped, not shown as U+FFFD
            return self.finish("length", flush_decoder=False)
        now = time.monotonic()
        if self.ready and now - self.flushed_at >= FLUSH_SECONDS:
            self.request.put(self.ready)
            self.ready, self.flushed_at = "", now
        return None

    def finish(self, reason: str, flush_decoder: bool = True) -> str:
        tail = self.ready + self.pending + (self.decoder.decode(b"", final=True) if flush_decoder else "")
        if tail:
            self.request.put(tail)
        self.request.put(Finished(reason, self.generated))
        self.finished = True
        return reason

    def fail(self, message: str) -> None:
        """End the request with an error, unless it already ended."""
        if not self.finished:
            self.request.put(Finished("error", self.generated, message))
            self.finished = True


def _fail_request(request: GenerationRequest, message: str) -> None:
    request.put(Finished("error", 0, message))


class EngineBusy(RuntimeError):
    """More rows are already waiting for a batch slot than the engine queues."""


class Engine:
    """Continuous batching: up to ``max_batch`` rows generate together; at most ``max_queue`` more
    wait for a slot, so a flood of requests (n=16, a million bytes each) is refused at the door
    rather than left to wait without end."""

    def __init__(self, model: Megabyte, max_batch: int = 8, max_queue: int = 256):
        if max_batch < 1 or max_queue < 0:
            raise ValueError("max_batch must be at least 1 and max_queue at least 0")
        self.model, self.max_batch, self.max_queue = model.eval(), max_batch, max_queue
        self._queued = 0  # submitted, not yet in the batch
        self._queued_lock = threading.Lock()
        self.device = next(model.parameters()).device
        self._incoming: queue.Queue[GenerationRequest | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="tinylang-engine", daemon=True)
        self._stopping = False
        self.steps = 0  # batched steps taken (for tests and statistics)
        self.largest_batch = 0
        self.active = 0  # requests in the batch now

    def start(self) -> "Engine":
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop the engine; requests still in flight or queued end with an error, never hang."""
        self._stopping = True
        self._incoming.put(None)
        self._thread.join(timeout=10)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stopping

    def submit(self, request: GenerationRequest) -> GenerationRequest:
        return self.submit_all([request])[0]

    def submit_all(self, requests: list[GenerationRequest]) -> list[GenerationRequest]:
        """Queue requests together, or none of them (EngineBusy) when the queue cannot take them all."""
        if not self.alive:
            raise RuntimeError("the generation engine is not running")
        with self._queued_lock:
            free = self.max_queue + max(0, self.max_batch - self.active) - self._queued
            if len(requests) > free:
                raise EngineBusy(f"the server is busy: {self._queued} request row(s) already wait for a batch "
                                 f"slot (--max-queue {self.max_queue}); retry later")
            self._queued += len(requests)
        for request in requests:
            self._incoming.put(request)
        return requests

    # -- the engine thread ------------------------------------------------------------------------

    def _run(self) -> None:
        batch, rows = RaggedBatch(self.model), []
        waiting: list[GenerationRequest] = []
        while not self._stopping:
            try:
                self._admit(batch, rows, waiting)
                if not rows:
                    continue
                self._step(batch, rows)
            except Exception as error:  # never leave a client waiting: fail everything in flight
                for row in rows:
                    row.fail(f"{type(error).__name__}: {error}")
                batch, rows = RaggedBatch(self.model), []
                self.active = 0
        for row in rows:  # shutting down
            row.fail("the server is shutting down")
        while True:
            try:
                item = self._incoming.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                waiting.append(item)
        for request in waiting:
            _fail_request(request, "the server is shutting down")

    def _admit(self, batch: RaggedBatch, rows: list[_Row], waiting: list[GenerationRequest]) -> None:
        """Move arrived requests into the batch (blocking only when there is nothing to do)."""
        block = not rows and not waiting
        while True:
            try:
                item = self._incoming.get(block=block, timeout=None)
            except queue.Empty:
                break
            block = False
            if item is None:
                return
            waiting.append(item)
        while waiting and len(rows) < self.max_batch:
            request = waiting.pop(0)
            with self._queued_lock:
                self._queued -= 1
            if request.cancelled.is_set():
                continue
            try:  # a request that cannot start (a seed torch refuses, ...) fails alone
                row = _Row(request, self.device)
                if request.max_bytes <= 0:
                    row.finish("length")
                    continue
                ids = torch.tensor([[BOS_ID, *request.prompt.encode("utf-8")]], device=self.device)
                batch.add(ids)
            except Exception as error:
                _fail_request(request, f"{type(error).__name__}: {error}")
                continue
            rows.append(row)

    @staticmethod
    def _sample(logits: torch.Tensor, rows: list[_Row]) -> torch.Tensor:
        """One id per row. Rows with a seed draw from their own generator, so what they get never
        depends on their neighbours; unseeded rows with the same settings are sampled in one call."""
        chosen = torch.empty(len(rows), dtype=torch.long, device=logits.device)
        groups: dict[tuple, list[int]] = {}
        for i, row in enumerate(rows):
            r = row.request
            if row.generator is not None:
                chosen[i] = sample_next_byte(logits[i : i + 1], r.temperature, r.top_k, r.top_p, row.generator)[0]
            else:
                groups.setdefault((r.temperature, r.top_k, r.top_p), []).append(i)
        for (temperature, top_k, top_p), members in groups.items():
            if len(members) == len(rows):
                return sample_next_byte(logits, temperature, top_k, top_p)
            index = torch.tensor(members, device=logits.device)
            chosen[index] = sample_next_byte(logits[index], temperature, top_k, top_p)
        return chosen

    def _step(self, batch: RaggedBatch, rows: list[_Row]) -> None:
        self.steps += 1
        self.largest_batch = max(self.largest_batch, len(rows))
        logits = batch.logits
        if any(row.request.processor is not None for row in rows):
            logits = logits.clone()
            for i, row in enumerate(rows):
                if row.request.processor is not None:
                    logits[i : i + 1] = row.request.processor(logits[i : i + 1], row.last)
        new_bytes = self._sample(logits, rows)
        for i, row in enumerate(rows):
            if row.request.processor is not None:
                row.last = new_bytes[i : i + 1]
        done = [i for i, (row, byte) in enumerate(zip(rows, new_bytes.tolist()))
                if row.request.cancelled.is_set() or row.feed(byte) is not None]
        if len(done) < len(rows):
            batch.advance(new_bytes)
        batch.remove(done)
        for i in reversed(done):
            rows.pop(i)
        self.active = len(rows)
