"""Signals about webhooks. The apps send the first two inside the transaction that made the
event true, and apps/webhooks/events.py records a delivery per subscribed endpoint in that same
transaction; once it commits, deliveries_ready tells the task layer (tasks/webhooks.py) to send
them. A receiver that fails costs a delay (beat's retry sweep finds pending deliveries), never
an event, and never the work that caused it."""

from django.dispatch import Signal

# The chain gave messages their final status (triaged or needs_review). Args: messages.
message_triaged = Signal()
# A reviewer's decision was stored as feedback. Args: feedback, message.
message_reviewed = Signal()
# A bulk verification job ended: completed, cancelled or failed. Args: job, summary (a dict).
job_finished = Signal()
# Deliveries were recorded and committed, to be sent now. Args: delivery_ids (strings).
deliveries_ready = Signal()
