"""The response cache: an exact-match cache of answers, as a pipeline stage.

    key.py        the canonical request and its key (sha256); which requests are deterministic
    codec.py      streams assembled into an answer and played back from one (shared with replay)
    backends.py   where entries live: the trace store's table, Redis, or memory
    _batching.py  store round trips shared by concurrent calls (batched reads, writes off the path)
    stage.py      CacheStage: the rule for what is read and written, hits and misses in the notes

    stage = CacheStage(inner, cache_backend(settings), settings.cache.ttl)
"""

from __future__ import annotations

from .backends import CacheBackend as CacheBackend
from .backends import MemoryCacheBackend as MemoryCacheBackend
from .backends import RedisCacheBackend as RedisCacheBackend
from .backends import StoreCacheBackend as StoreCacheBackend
from .backends import cache_backend as cache_backend
from .key import canonical_request as canonical_request
from .key import digest as digest
from .key import is_deterministic as is_deterministic
from .stage import CacheStage as CacheStage

__all__ = [
    "CacheBackend",
    "CacheStage",
    "MemoryCacheBackend",
    "RedisCacheBackend",
    "StoreCacheBackend",
    "cache_backend",
    "canonical_request",
    "digest",
    "is_deterministic",
]
