"""The verification task: called directly, and through a real worker on the real Redis broker."""

import pytest
from celery.contrib.testing.worker import start_worker

from mailscore.celery import app
from tasks.queues import CeleryQueue
from tasks.verification import verify_address


def test_task_body_called_directly(farm_settings):
    result = verify_address.apply(args=["nobody@normal.test"]).get()
    assert (result["verdict"], result["reason"]) == ("undeliverable", "mailbox_not_found")


@pytest.fixture(scope="module")
def worker():
    with start_worker(
        app, queues=[str(CeleryQueue.VERIFY)], perform_ping_check=False, shutdown_timeout=30
    ) as running:
        yield running


def test_task_routes_to_the_verify_queue():
    assert app.amqp.router.route({}, verify_address.name)["queue"].name == CeleryQueue.VERIFY
    assert verify_address.name == "mailscore.verification.verify_address"


def test_greylisted_address_is_rescheduled_until_accepted(farm_settings, worker):
    # The farm greylists for 1 s; the task retries with a countdown instead of sleeping.
    async_result = verify_address.delay("alice@greylist.test")
    result = async_result.get(timeout=60)
    assert (result["verdict"], result["reason"]) == ("deliverable", "ok")
    assert result["smtp"]["attempts"] == 1  # each run asked once; the broker did the waiting
