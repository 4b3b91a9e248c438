"""Encoder output kept between the chain's steps.

classify runs the encoder; summarize and draft_reply need the same vectors on another worker
pool. Rather than encode twice, classify leaves each message's vectors in Redis (float16, an
hour by default); a step that finds them gone (expired, or Redis restarted) encodes again.
"""

from __future__ import annotations

import numpy as np

from apps.core.connections import redis_connection
from apps.triage.engine.encoder import Encoded

TTL_SECONDS = 3600


def _key(message_id: int, run: int, encoder_version: str) -> str:
    return f"mailscore:encoding:{encoder_version}:{message_id}:{run}"


def store(keys: list[tuple[int, int]], encoded: Encoded, encoder_version: str) -> None:
    """keys[i] is (message id, run) of encoded row i."""
    pipe = redis_connection().pipeline(transaction=False)
    for i, (message_id, run) in enumerate(keys):
        rows = np.vstack([encoded.vectors[i : i + 1], encoded.sentence_vectors[i]])
        pipe.set(
            _key(message_id, run, encoder_version), rows.astype(np.float16).tobytes(),
            ex=TTL_SECONDS,
        )  # fmt: skip
    pipe.execute()


def load(keys: list[tuple[int, int]], encoder_version: str, dimension: int) -> Encoded | None:
    """The stored encodings of every message in keys, or None if any is missing."""
    if not keys:
        return None
    blobs = redis_connection().mget([_key(m, r, encoder_version) for m, r in keys])
    if any(blob is None for blob in blobs):
        return None
    vectors, sentences = [], []
    for blob in blobs:
        rows = np.frombuffer(blob, dtype=np.float16).reshape(-1, dimension).astype(np.float32)
        vectors.append(rows[0])
        sentences.append(rows[1:])
    return Encoded(vectors=np.vstack(vectors), sentence_vectors=sentences)
