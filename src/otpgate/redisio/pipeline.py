"""Automatic pipelining: the commands that concurrent coroutines issue within one turn of
the event loop go to Redis together, as one pipeline (one write and one read per server;
on Cluster, per primary at once), instead of a round trip each.

What a Redis call costs a busy otpgate process is mostly its client's own work per
command (a connection taken from the pool and given back, a retry wrapper, a write and a
read system call); in a pipeline most of that is paid once per batch. The first caller of
a turn waits that one turn for others to join, then sends the batch itself, bounded by
``seconds``; each caller gets its own reply or its own error. Blocking commands must not
come here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Protocol

Arg = str | bytes | int | float


class PipelineClient(Protocol):
    async def execute_command(self, *args: Any, **options: Any) -> Any: ...

    def pipeline(self, transaction: bool = ...) -> Any: ...


class BatchFailed(Exception):
    """The batch a call was in ended before its reply came (its sender was cancelled)."""


class Pipeliner:
    def __init__(self, client: PipelineClient, seconds: float) -> None:
        self._client = client
        self._seconds = seconds
        self._open: list[tuple[Sequence[Arg], asyncio.Future[Any]]] | None = None

    async def call(self, *args: Arg) -> Any:
        """``args`` as one command of this turn's batch; its reply (or its error)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self._open is not None:
            self._open.append((args, future))
            return await future
        batch = self._open = [(args, future)]
        try:
            try:
                await asyncio.sleep(0)  # one turn of the loop: who else has a command?
            finally:
                self._open = None
            async with asyncio.timeout(self._seconds):
                await self._send(batch)
        finally:
            for _, waiting in batch[1:]:
                if not waiting.done():
                    waiting.set_exception(BatchFailed("the batch was not sent"))
        return future.result()

    async def _send(self, batch: list[tuple[Sequence[Arg], asyncio.Future[Any]]]) -> None:
        replies: list[Any]
        try:
            if len(batch) == 1:
                replies = [await self._client.execute_command(*batch[0][0])]
            else:
                pipe = self._client.pipeline(transaction=False)
                for args, _ in batch:
                    pipe.execute_command(*args)
                replies = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # the batch as a whole failed: so did each of its calls
            replies = [exc] * len(batch)
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():  # its caller gave up waiting
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)
