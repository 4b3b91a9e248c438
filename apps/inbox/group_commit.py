"""Stores that arrive together share one round trip and one commit.

In a web worker several requests store messages at once. Each used to send its own statement and
wait for its own commit; PostgreSQL spends a good part of a store on what every query and every
commit costs, whatever it carries (docs/benchmarks.md: 0.84 ms of its CPU per message stored
alone, 0.61 four at a time, 0.53 eight at a time). Here one thread of the process (a greenlet in
a gevent worker) sends the stores: while one group is in flight, the stores that arrive wait, and
go together as the next group. A store that finds nothing in flight goes at once, so a quiet
process waits for nothing; groups form only when requests overlap, which is when the saving
counts.

Nothing is answered before its group has committed. A group that fails for one of its stores
(a statement refused) is sent again store by store, so each gets its own outcome; one that fails
for the connection gives every store in it that error, as each would have got alone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError, InterfaceError, OperationalError, connection

from apps.core.connections import close_if_server_left

logger = logging.getLogger(__name__)

# Stores in one group at most: with gunicorn's app_concurrency places (8) a web worker never has
# more waiting; other callers get the same bound on a statement's size.
MAX_GROUP = 16


@dataclass(eq=False)
class _Waiting:
    job: Any
    done: threading.Event = field(default_factory=threading.Event)
    outcome: Any = None
    error: BaseException | None = None

    @property
    def answered(self) -> bool:
        return self.outcome is not None or self.error is not None


class GroupCommit:
    """Runs jobs through run_group (a list of jobs, one transaction, a list of outcomes in the same
    order) on a connection of its own, one group at a time; run_one is used when a group fails."""

    def __init__(
        self,
        run_group: Callable[[Sequence[Any]], list[Any]],
        run_one: Callable[[Any], Any],
        *,
        max_group: int = MAX_GROUP,
    ) -> None:
        self._run_group, self._run_one, self._max_group = run_group, run_one, max_group
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._waiting: list[_Waiting] = []
        self._sender: threading.Thread | None = None
        self._closing = False

    def run(self, job: Any) -> Any:
        """The job's outcome once its group has committed, or the error its group met."""
        waiting = _Waiting(job)
        with self._lock:
            if self._closing:
                raise RuntimeError("The group commit is closed.")
            if self._sender is None:
                self._start_sender()
            self._waiting.append(waiting)
            self._arrived.notify()
        waiting.done.wait()
        if waiting.error is not None:
            raise waiting.error
        return waiting.outcome

    def close(self) -> None:
        """Send what is waiting, then stop and close the connection (a test's or a process's end)."""
        with self._lock:
            self._closing = True
            self._arrived.notify()
        while True:
            with self._lock:
                sender = self._sender
            if sender is None:
                return
            sender.join()

    def _start_sender(self) -> None:
        # Called with the lock held.
        self._sender = threading.Thread(target=self._send, name="group-commit", daemon=True)
        self._sender.start()

    def _send(self) -> None:
        try:
            while True:
                with self._lock:
                    while not self._waiting and not self._closing:
                        self._arrived.wait()
                    if not self._waiting:
                        return
                    group = self._waiting[: self._max_group]
                    del self._waiting[: self._max_group]
                try:
                    self._send_group(group)
                except Exception:
                    # Its requests have the error; the sender goes on with the next group.
                    logger.exception("A group of %d stores failed", len(group))
                    connection.close()
        finally:
            connection.close()
            with self._lock:
                # Stopped from outside: stores that arrived meanwhile get a sender of their own.
                self._sender = None
                if self._waiting:
                    self._start_sender()

    def _send_group(self, group: list[_Waiting]) -> None:
        try:
            self._store(group)
        except BaseException as exc:
            # Whatever stopped the sender (a bug, the greenlet killed), no request waits forever.
            for waiting in group:
                if not waiting.answered:
                    waiting.error = exc
            raise
        finally:
            for waiting in group:
                waiting.done.set()

    def _store(self, group: list[_Waiting]) -> None:
        try:
            # The next group opens a new connection rather than failing on a dead one.
            close_if_server_left(connection)
            outcomes = self._run_group([waiting.job for waiting in group])
        except (OperationalError, InterfaceError) as exc:
            # The connection (or the server) failed: each store alone would have met it too.
            _close_if_unusable()
            for waiting in group:
                waiting.error = exc
        except DatabaseError as exc:
            _close_if_unusable()
            if len(group) == 1:
                group[0].error = exc
            else:
                # One statement refused rolls back the group: every store gets its own outcome.
                logger.info("A group of %d stores failed (%s); storing each alone", len(group), exc)
                for waiting in group:
                    self._send_alone(waiting)
        except Exception as exc:  # noqa: BLE001 - handed to each request, which reports it
            for waiting in group:
                waiting.error = exc
        else:
            for waiting, outcome in zip(group, outcomes, strict=True):
                waiting.outcome = outcome

    def _send_alone(self, waiting: _Waiting) -> None:
        try:
            waiting.outcome = self._run_one(waiting.job)
        except Exception as exc:  # noqa: BLE001 - handed to the request, which reports it
            _close_if_unusable()
            waiting.error = exc


def _close_if_unusable() -> None:
    if connection.connection is not None and not connection.is_usable():
        connection.close()
