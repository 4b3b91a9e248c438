"""What log records carry (the task and messages in hand) and what they leave out (addresses,
what tasks were given and returned) unless DEBUG is on."""

from __future__ import annotations

import json
import logging
import logging.config

from django.conf import settings

from apps.core import logcontext


def json_lines(caplog_records: list[logging.LogRecord]) -> list[dict]:
    config = settings.LOGGING["formatters"]["json"]
    formatter = logging.config.DictConfigurator({}).configure_custom(dict(config))
    return [json.loads(formatter.format(record)) for record in caplog_records]


def test_records_carry_the_task_and_its_messages(caplog):
    logger = logging.getLogger("mailscore.test")
    handler_filter = logcontext.ContextFilter()
    caplog.handler.addFilter(handler_filter)
    with caplog.at_level(logging.INFO):
        with logcontext.bound(task_id="task-1", message_id=[7, 8]):
            logger.info("inside")
        logger.info("outside")
    inside, outside = json_lines(caplog.records)
    assert inside["task_id"] == "task-1" and inside["message_id"] == [7, 8]
    assert inside["message"] == "inside" and inside["level"] == "INFO" and inside["time"]
    assert outside["task_id"] is None and outside["message_id"] is None


def test_addresses_are_masked_unless_debug(settings):
    settings.DEBUG = False
    assert logcontext.mask_address("alice@example.com") == "a***@example.com"
    assert logcontext.mask_address("not an address") == "***"
    settings.DEBUG = True
    assert logcontext.mask_address("alice@example.com") == "alice@example.com"


def _celery_record(**data) -> logging.LogRecord:
    record = logging.LogRecord("celery.app.trace", logging.INFO, __file__, 1,
                               "Task %(name)s succeeded: %(return_value)s",
                               None, None)  # fmt: skip
    record.args = {"name": "mailscore.verification.verify_address",
                   "return_value": {"address": "alice@example.com"}}  # fmt: skip
    record.data = {"id": "1", "args": ["alice@example.com"], "kwargs": {}, **data}
    return record


def test_task_arguments_and_results_stay_out_unless_debug(settings):
    settings.DEBUG = False
    record = _celery_record()
    logcontext.PrivacyFilter().filter(record)
    assert "alice" not in record.getMessage() and "alice" not in json.dumps(record.data)
    assert record.data == {"id": "1"}
    settings.DEBUG = True
    record = _celery_record()
    logcontext.PrivacyFilter().filter(record)
    assert "alice@example.com" in record.getMessage()
