"""Access control: API keys (stored hashed), entitlements, rate limits and monthly quotas.

- :mod:`.keys`: :class:`KeyStore` and :class:`FileKeyStore`, plans, :func:`entitled`,
  :func:`ensure_demo_key`;
- :mod:`.limits`: :class:`RateLimiter` and :class:`MemoryRateLimiter` (token bucket + quota);
- :mod:`.middleware`: :class:`AccessMiddleware`, the ASGI layer that enforces both;
- :mod:`.cli`: the ``tickwire keys`` commands (not imported here, to keep servers light).
"""

from __future__ import annotations

from .keys import (
    PLANS,
    Entitlements,
    FileKeyStore,
    InvalidKeySpecError,
    KeyLimits,
    KeyNotFoundError,
    KeyRecord,
    KeyStore,
    KeyStoreError,
    Plan,
    ensure_demo_key,
    entitled,
)
from .limits import Decision, MemoryRateLimiter, RateLimiter
from .middleware import (
    DEFAULT_PUBLIC_PATHS,
    AccessDenied,
    AccessMiddleware,
    ErrorRenderer,
    RedactApiKeys,
    access_middleware,
    native_error,
    tradermade_cost,
    tradermade_error,
)

__all__ = [
    "DEFAULT_PUBLIC_PATHS",
    "PLANS",
    "AccessDenied",
    "AccessMiddleware",
    "Decision",
    "Entitlements",
    "ErrorRenderer",
    "FileKeyStore",
    "InvalidKeySpecError",
    "KeyLimits",
    "KeyNotFoundError",
    "KeyRecord",
    "KeyStore",
    "KeyStoreError",
    "MemoryRateLimiter",
    "Plan",
    "RateLimiter",
    "RedactApiKeys",
    "access_middleware",
    "ensure_demo_key",
    "entitled",
    "native_error",
    "tradermade_cost",
    "tradermade_error",
]
