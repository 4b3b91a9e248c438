"""Signals the verification app sends; the task layer listens and runs the work in the background."""

from django.dispatch import Signal

# An address checked through the API that its time budget (or a greylisting server) left
# undecided: finish the check in the background and store its answer under `key`. Sent with
# address, key and countdown (seconds to wait before asking the server again).
validation_deferred = Signal()

# A bulk job's rows are committed (or a stalled shard found): run these shards on the verify
# pool. Sent with job_id and shards (a list of shard numbers).
job_shards_ready = Signal()
