"""The response cache (P17): exact-match keys, stored entries, stream codecs and stores.

The pieces are independent so the request line pays only for what it uses: `cache_key` on the
way in, a store `get`, and either the stored body or its replay as a stream on a hit (`replay`);
on a miss, an assembler beside the SSE relay (`assemble`) and one `set` after the answer is
complete. `RedisCache` is
in `keystead.cache.redis_store`, imported only where it is used (it loads redis-py).
"""

from keystead.cache.assemble import (
    CompletionAssembler,
    ResponseAssembler,
    completion_from_stream,
    response_from_stream,
)
from keystead.cache.entry import CachedResponse
from keystead.cache.key import CACHEABLE_ENDPOINTS, cache_key, key_prefix
from keystead.cache.replay import stream_from_completion, stream_from_response
from keystead.cache.store import (
    CacheStats,
    CacheStore,
    CacheUnavailable,
    MemoryCache,
)

__all__ = [
    "CACHEABLE_ENDPOINTS",
    "CacheStats",
    "CacheStore",
    "CacheUnavailable",
    "CachedResponse",
    "CompletionAssembler",
    "MemoryCache",
    "ResponseAssembler",
    "cache_key",
    "completion_from_stream",
    "key_prefix",
    "response_from_stream",
    "stream_from_completion",
    "stream_from_response",
]
