"""Signals the verification app sends; the task layer listens and runs the work in the background."""

from django.dispatch import Signal

# An address checked through the API that its time budget (or a greylisting server) left
# undecided: finish the check in the background and store its answer under `key`. Sent with
# address, key and countdown (seconds to wait before asking the server again).
validation_deferred = Signal()
