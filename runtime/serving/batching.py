"""Dynamic batching: requests that arrive close together run as one batch.

Only a model with a batch axis is batched: one symbolic first dimension shared by every
input and output of its ONNX graph (`dlc.onnxio.batch_dim`). Any other model (an output
reduced over axis 0, a scalar output, a fixed first dimension) runs each request alone
and answers with its whole outputs.

A batch takes the requests already queued while their samples fit `max_batch`, and waits
up to `max_delay` for more only while requests are still being received (`expecting()`),
so a lone client, or a full set of closed-loop clients all already queued, never pays the
delay. Only requests whose inputs agree past axis 0 (dtype and every other dimension)
share a batch; the others keep their place for the next one. The inputs are concatenated
along axis 0, the model runs once on its worker thread, and each request gets its own
rows of every output. Requests arriving while a batch computes form the next one.

A model whose batch dimension is fixed at B (a TVM artifact compiled for batch B) takes
any batch up to B: the concatenated inputs are zero-padded to B and the padding rows are
dropped from the outputs. A model with a symbolic batch runs the batch as it is.

Whatever fails while a batch is formed, run or cut apart answers that batch's requests
with the error; the batcher goes on with the next. Should its loop end all the same, the
model reports not ready and every waiting request gets an error, none hangs.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np


class BatcherStopped(RuntimeError):
    """The batcher's loop ended: the model takes no more requests."""


@dataclass
class _Request:
    inputs: dict[str, np.ndarray]
    rows: int
    key: tuple  # requests share a batch only when these agree: each input's dtype and shape past axis 0
    future: asyncio.Future
    queued: float = field(default_factory=time.perf_counter)


class Batcher:
    """Collects requests for one model and runs them in batches of at most `max_batch` samples."""

    def __init__(self, run, max_batch: int, max_delay: float, fixed_batch: int | None, executor, observe,
                 expecting=lambda: False, batched: bool = True):
        self.run, self.max_delay, self.expecting = run, max_delay, expecting
        self.max_batch = max_batch if batched else 1
        self.fixed_batch, self.batched, self.executor, self.observe = fixed_batch, batched, executor, observe
        self.queue: asyncio.Queue[_Request] = asyncio.Queue()
        self.task: asyncio.Task | None = None
        self._getter: asyncio.Future | None = None  # a queue.get() that outlived a timeout (see _next)
        self.failure: str | None = None  # why the loop ended, if it did

    async def submit(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.failure:
            raise BatcherStopped(self.failure)
        loop = asyncio.get_running_loop()
        if self.task is None:
            self.task = loop.create_task(self._loop())
            self.task.add_done_callback(self._ended)
        if self.batched:
            rows = len(next(iter(inputs.values())))
            key = tuple(sorted((k, v.dtype.str, v.shape[1:]) for k, v in inputs.items()))
        else:
            rows, key = 1, ()
        request = _Request(inputs, rows, key, loop.create_future())
        await self.queue.put(request)
        return await request.future

    def _ended(self, task: asyncio.Task) -> None:
        """The loop ended (it never should): every request still queued learns it, and none is taken again."""
        error = None if task.cancelled() else task.exception()
        self.failure = self.failure or (f"the model's batcher stopped ({type(error).__name__}: {error})" if error
                                        else "the model's batcher stopped")
        if self._getter is not None:  # a get still waiting would take the next request for no one
            if self._getter.done() and not self._getter.cancelled():
                _fail([self._getter.result()], BatcherStopped(self.failure))
            self._getter.cancel()
            self._getter = None
        while not self.queue.empty():
            _fail([self.queue.get_nowait()], BatcherStopped(self.failure))

    async def _loop(self) -> None:
        held: deque[_Request] = deque()  # requests taken from the queue that did not fit the last batch
        batch: list[_Request] = []
        passed: list[_Request] = []
        try:
            while True:
                first = held.popleft() if held else await self._next(None)
                batch, rows, passed = [first], first.rows, []
                deadline = time.perf_counter() + self.max_delay
                while rows < self.max_batch:
                    if held:
                        nxt = held.popleft()
                    elif self._ready():
                        nxt = await self._next(None)
                    elif self.expecting() and time.perf_counter() < deadline:  # a request is on its way
                        nxt = await self._next(deadline - time.perf_counter())
                        if nxt is None:
                            break
                    else:
                        break
                    if nxt.key != first.key or rows + nxt.rows > self.max_batch:
                        passed.append(nxt)  # keeps its place for the next batch
                        continue
                    batch.append(nxt)
                    rows += nxt.rows
                held.extendleft(reversed(passed))
                passed = []
                await self._run(batch, rows)
                batch = []
        except BaseException as e:  # requests already taken from the queue must not wait forever either
            self.failure = f"the model's batcher stopped ({type(e).__name__}: {e})"
            taken = [*batch, *passed, *held]
            if self._getter is not None and self._getter.done() and not self._getter.cancelled():
                taken.append(self._getter.result())
            _fail(taken, BatcherStopped(self.failure))
            raise

    def _ready(self) -> bool:
        """Whether a request is queued (or already fetched by the pending get)."""
        return not self.queue.empty() or (self._getter is not None and self._getter.done())

    async def _next(self, timeout: float | None) -> _Request | None:
        """The next queued request, or None after `timeout` seconds.

        One get stays pending across timeouts: cancelling `queue.get()` on a timeout can lose
        the request it had just taken (asyncio.wait_for before Python 3.12).
        """
        if self._getter is None:
            self._getter = asyncio.ensure_future(self.queue.get())
        done, _ = await asyncio.wait({self._getter}, timeout=timeout)
        if not done:
            return None
        getter, self._getter = self._getter, None
        return getter.result()

    async def _run(self, batch: list[_Request], rows: int) -> None:
        start = time.perf_counter()
        try:
            for r in batch:
                self.observe("queue", start - r.queued)
            outputs = await asyncio.get_running_loop().run_in_executor(self.executor, self.run,
                                                                       self._feed(batch, rows))
            answers = self._split(outputs, batch)
            self.observe("compute", time.perf_counter() - start)
            self.observe("batch_size", rows)
        except Exception as e:  # noqa: BLE001 - every waiting request learns of the failure; the loop goes on
            _fail(batch, e)
            return
        for r, answer in zip(batch, answers):
            if not r.future.done():
                r.future.set_result(answer)

    def _feed(self, batch: list[_Request], rows: int) -> dict[str, np.ndarray]:
        if len(batch) == 1 and not (self.fixed_batch and rows < self.fixed_batch):
            return batch[0].inputs
        feed = {name: np.concatenate([r.inputs[name] for r in batch]) for name in batch[0].inputs}
        if self.fixed_batch and rows < self.fixed_batch:
            feed = {k: np.concatenate([v, np.zeros((self.fixed_batch - rows, *v.shape[1:]), v.dtype)])
                    for k, v in feed.items()}
        return feed

    def _split(self, outputs: dict[str, np.ndarray], batch: list[_Request]) -> list[dict[str, np.ndarray]]:
        if not self.batched:
            return [outputs]
        answers, offset = [], 0
        for r in batch:
            answers.append({k: v[offset:offset + r.rows] for k, v in outputs.items()})
            offset += r.rows
        return answers


def _fail(requests: list[_Request], error: BaseException) -> None:
    for r in requests:
        if not r.future.done():  # a client that hung up has a cancelled future
            r.future.set_exception(error)
