"""One rate limit and one breaker for a whole fleet: limiter and breaker state in Redis (`pip install 'rfobs[redis]'`).

`RedisStore` holds the connection; `RedisRateLimitBackend` and `RedisBreakerBackend` keep the state of any
number of limiters and breakers in it, each decision one Lua script on Redis server time. Pass them as
`backend=`, or set `ratelimit.backend` / `breaker.backend` to `redis` and `redis.url`.
"""

from rfobs.fleet._store import RedisStore, Script, StoreUnavailable
from rfobs.fleet.breaker import BreakerFaultPolicy, RedisBreakerBackend
from rfobs.fleet.health import RedisCheck
from rfobs.fleet.limiter import LimiterFaultPolicy, RedisRateLimitBackend

__all__ = [
    "BreakerFaultPolicy",
    "LimiterFaultPolicy",
    "RedisBreakerBackend",
    "RedisCheck",
    "RedisRateLimitBackend",
    "RedisStore",
    "Script",
    "StoreUnavailable",
]
