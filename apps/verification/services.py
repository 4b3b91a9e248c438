"""Build the verification engine from Django settings."""

from __future__ import annotations

from django.conf import settings

from apps.verification.engine import Verifier, VerifierConfig
from apps.verification.engine.cache import MemoryCache, NoCache, redis_client


def verifier_config(**overrides) -> VerifierConfig:
    return VerifierConfig.from_mapping({**settings.MAILSCORE_VERIFICATION, **overrides})


def build_verifier(*, use_cache: bool = True, **overrides) -> Verifier:
    """A verifier whose cache and politeness limits live in Redis when Redis is configured, so
    they hold across every worker, and in memory otherwise.

    Build it inside the event loop that will use it: the Redis client belongs to that loop."""
    config = verifier_config(**overrides)
    options = settings.MAILSCORE_VERIFICATION
    prefix = options.get("cache_prefix", "mailscore:verify:")
    if options.get("cache") == "redis" and settings.REDIS_URL:
        return Verifier.shared_through_redis(
            config, redis_client(settings.REDIS_URL), prefix=prefix, use_cache=use_cache
        )
    return Verifier(config, cache=MemoryCache() if use_cache else NoCache())
