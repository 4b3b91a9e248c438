"""Redis commands issued in the same turn of the event loop, sent together as one pipeline.

A bulk run has hundreds of SMTP conversations asking Redis for tokens, slots and cache entries at
once. Sent one by one, each costs a connection from the pool, a socket write and a wakeup, and
that client-side CPU, not Redis, is what bounds the run. Sent together they cost one of each.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from redis.exceptions import NoScriptError


class CommandBatcher:
    def __init__(self, client) -> None:
        self.client = client
        self._pending: list[tuple[tuple, asyncio.Future]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sending: set[asyncio.Task] = set()
        self._scripts: dict[str, str] = {}

    def call(self, *command: Any) -> asyncio.Future:
        """Queue one command; the future holds its reply, or the error it raised.

        The command is sent even if the caller stops waiting: a caller that must undo what the
        command did (a slot granted to nobody) shields the future and looks at it."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # A client serves one event loop; what another loop queued died with it.
            self._loop, self._pending = loop, []
        if not self._pending:
            # Runs in the next turn of the loop, after every caller woken in this one has queued.
            task = loop.create_task(self._send())
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        future = loop.create_future()
        self._pending.append((command, future))
        return future

    def script(self, source: str):
        """A Lua script called as script(keys, args) -> future, by its SHA1 (EVALSHA), loaded
        again if Redis has forgotten it (a restart, SCRIPT FLUSH)."""
        sha = hashlib.sha1(source.encode()).hexdigest()  # noqa: S324 (Redis names scripts by SHA1)
        self._scripts[sha] = source

        def call(keys: list, args: list) -> asyncio.Future:
            return self.call("EVALSHA", sha, len(keys), *keys, *args)

        return call

    async def _send(self) -> None:
        batch, self._pending = self._pending, []
        try:
            replies = await self._execute([command for command, _ in batch])
            missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if missing:
                for sha in {batch[i][0][1] for i in missing}:
                    await self.client.script_load(self._scripts[sha])
                retried = await self._execute([batch[i][0] for i in missing])
                for i, reply in zip(missing, retried, strict=True):
                    replies[i] = reply
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue  # its caller stopped waiting
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _execute(self, commands: list[tuple]) -> list[Any]:
        # No transaction: each command stands alone; the scripts are atomic by themselves.
        async with self.client.pipeline(transaction=False) as pipe:
            for command in commands:
                pipe.execute_command(*command)
            return await pipe.execute(raise_on_error=False)
