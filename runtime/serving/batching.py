"""Dynamic batching: requests that arrive close together run as one batch.

A batch takes the requests already queued while their samples fit `max_batch`, and waits
up to `max_delay` for more only while requests are still being received (`expecting()`),
so a lone client, or a full set of closed-loop clients all already queued, never pays the
delay. The inputs are concatenated along axis 0,
the model runs once on its worker thread, and each request gets its own rows of every
output. Requests arriving while a batch computes form the next one.

A model whose batch dimension is fixed at B (a TVM artifact compiled for batch B) takes
any batch up to B: the concatenated inputs are zero-padded to B and the padding rows are
dropped from the outputs. A model with a symbolic batch runs the batch as it is.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import numpy as np


@dataclass
class _Request:
    inputs: dict[str, np.ndarray]
    rows: int
    future: asyncio.Future
    queued: float = field(default_factory=time.perf_counter)


class Batcher:
    """Collects requests for one model and runs them in batches of at most `max_batch` samples."""

    def __init__(self, run, max_batch: int, max_delay: float, fixed_batch: int | None, executor, observe,
                 expecting=lambda: False):
        self.run, self.max_batch, self.max_delay, self.expecting = run, max_batch, max_delay, expecting
        self.fixed_batch, self.executor, self.observe = fixed_batch, executor, observe
        self.queue: asyncio.Queue[_Request] = asyncio.Queue()
        self.task: asyncio.Task | None = None

    async def submit(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._loop())
        rows = len(next(iter(inputs.values())))
        request = _Request(inputs, rows, asyncio.get_running_loop().create_future())
        await self.queue.put(request)
        return await request.future

    async def _loop(self) -> None:
        pending: _Request | None = None
        while True:
            first = pending or await self.queue.get()
            batch, rows, pending = [first], first.rows, None
            deadline = time.perf_counter() + self.max_delay
            while rows < self.max_batch:
                if not self.queue.empty():
                    nxt = self.queue.get_nowait()
                elif self.expecting() and time.perf_counter() < deadline:  # a request is on its way
                    try:
                        nxt = await asyncio.wait_for(self.queue.get(), deadline - time.perf_counter())
                    except asyncio.TimeoutError:
                        break
                else:
                    break
                if rows + nxt.rows > self.max_batch:
                    pending = nxt  # starts the next batch
                    break
                batch.append(nxt)
                rows += nxt.rows
            await self._run(batch, rows)

    async def _run(self, batch: list[_Request], rows: int) -> None:
        start = time.perf_counter()
        for r in batch:
            self.observe("queue", start - r.queued)
        feed = {name: np.concatenate([r.inputs[name] for r in batch]) for name in batch[0].inputs}
        if self.fixed_batch and rows < self.fixed_batch:
            feed = {k: np.concatenate([v, np.zeros((self.fixed_batch - rows, *v.shape[1:]), v.dtype)])
                    for k, v in feed.items()}
        try:
            outputs = await asyncio.get_running_loop().run_in_executor(self.executor, self.run, feed)
        except Exception as e:  # noqa: BLE001 - every waiting request learns of the failure
            for r in batch:
                if not r.future.done():  # a client that hung up has a cancelled future
                    r.future.set_exception(e)
            return
        self.observe("compute", time.perf_counter() - start)
        self.observe("batch_size", rows)
        offset = 0
        for r in batch:
            if not r.future.done():
                r.future.set_result({k: v[offset:offset + r.rows] for k, v in outputs.items()})
            offset += r.rows
