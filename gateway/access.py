"""Who may call, how often, and how many at once: API keys (401), rate limits (429) and admission control (429).

In that order, before any body is read. Admission is Hugging Face text-embeddings-inference's: a fixed number of
requests in flight, and beyond it an immediate 429 ``overloaded`` with ``Retry-After`` rather than a queue that
grows until every request times out. Rate limits use the ``limits`` library, per API key (or per client address
when the service is open), in memory by default or in Redis (``EMOTUNE_RATE_LIMIT_STORAGE=redis://…``) so that
several gateway replicas share one budget. Health, readiness and metrics are never refused: probes and scrapes
must see an overloaded gateway as alive.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time

from limits import parse_many
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string
from prometheus_client import Counter
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.error_handlers import response_for
from gateway.errors import EmotuneError, Overloaded, Unauthorized
from gateway.settings import Settings

log = logging.getLogger("gateway.access")

REFUSED = Counter("emotune_refused_requests", "Requests refused before any work, by reason", ["reason"])

PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
# Documentation and the page's own files carry no data; the page asks for a key when the service has keys.
PUBLIC = frozenset({"/", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/ui/config"})
PUBLIC_PREFIXES = ("/static/",)


class RateLimiter:
    def __init__(self, spec: str, storage_uri: str):
        self.limits = parse_many(spec)
        uri = storage_uri if storage_uri.startswith("async+") else f"async+{storage_uri}"
        options = {"implementation": "redispy", "socket_timeout": 0.5, "socket_connect_timeout": 0.5} if "redis" in uri else {}
        self.storage = storage_from_string(uri, **options)
        self.strategy = MovingWindowRateLimiter(self.storage)

    async def refusal(self, identity: str) -> Overloaded | None:
        """None when the request may go; else a 429 naming the exhausted limit and when it frees a slot."""
        for limit in self.limits:
            if not await self.strategy.hit(limit, identity):
                reset, _ = await self.strategy.get_window_stats(limit, identity)
                wait = max(1, math.ceil(reset - time.time()))
                return Overloaded("rate_limited", f"over the rate limit of {limit}; retry in {wait} s", retry_after=wait)
        return None


class AccessControl:
    """Pure ASGI, outside the routes: a refused request costs a header check, never a body read."""

    def __init__(self, app: ASGIApp, settings: Settings):
        self.app = app
        self.keys = [k.encode() for k in settings.api_keys]
        self.limiter = RateLimiter(settings.rate_limit, settings.rate_limit_storage) if settings.rate_limit else None
        self.capacity = settings.max_concurrent_requests
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in PROBES or scope.get("method") == "OPTIONS":
            return await self.app(scope, receive, send)
        try:
            await self._check(scope, path)
        except EmotuneError as refusal:
            REFUSED.labels(refusal.code).inc()
            return await response_for(refusal)(scope, receive, send)
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1

    async def _check(self, scope: Scope, path: str) -> None:
        public = path in PUBLIC or path.startswith(PUBLIC_PREFIXES)
        key = self._authenticate(scope) if self.keys and not public else None
        if self.limiter is not None and not public:
            identity = f"key:{hashlib.sha256(key).hexdigest()[:16]}" if key else f"addr:{(scope.get('client') or ('-',))[0]}"
            try:
                refusal = await self.limiter.refusal(identity)
            except Exception as exc:  # the limiter's store is down: serve, and say so in the log
                log.warning("rate limit store unavailable, request let through: %s", exc)
                refusal = None
            if refusal is not None:
                raise refusal
        if self.in_flight >= self.capacity:
            raise Overloaded("overloaded", f"{self.capacity} requests are in flight, the limit; retry shortly", retry_after=1)

    def _authenticate(self, scope: Scope) -> bytes:
        header = next((v for k, v in scope.get("headers", ()) if k == b"authorization"), b"")
        scheme, _, token = header.partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not token:
            raise Unauthorized("unauthorized", "send an API key: Authorization: Bearer <key>")
        if not any(hmac.compare_digest(token, k) for k in self.keys):
            raise Unauthorized("unauthorized", "the API key is not valid")
        return token
