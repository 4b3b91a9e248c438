"""Signals the inbox sends; the task layer listens and starts the chain."""

from django.dispatch import Signal

# Sent after the transaction that queued messages has committed. The database holds the queue:
# a receiver that fails costs a delay (the sweep finds the messages), never a message.
messages_queued = Signal()
