"""Beat's scheduler: the standard persistent one, with a task it could not send (the broker is
away) logged in one line rather than a traceback; it is sent again at its next run."""

from __future__ import annotations

import logging

from celery.beat import PersistentScheduler, SchedulingError

logger = logging.getLogger(__name__)


class OutageTolerantScheduler(PersistentScheduler):
    def apply_entry(self, entry, producer=None):
        try:
            self.apply_async(entry, producer=producer, advance=False)
        except SchedulingError as exc:
            logger.warning("Not sent, will be at its next run: %s", exc)
        else:
            logger.debug("Sent %s (%s)", entry.name, entry.task)
