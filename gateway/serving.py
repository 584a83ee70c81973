"""How uvicorn runs the gateway: one set of options for ``emotune serve`` and ``emotune up``, and an HTTP protocol
that bounds what a slow or idle client may hold.

uvicorn times out only idle keep-alive connections; a client that opens a connection and sends nothing, or sends
its headers a byte at a time, holds the connection for ever. ``BoundedHttpToolsProtocol`` closes a connection whose
request line and headers have not arrived within ``header_timeout_s`` of its first byte (or of the connection), or
whose headers pass ``max_header_bytes``. The body's pace is bounded by ``gateway.uploads.BodyLimit``.
"""

from __future__ import annotations

import asyncio

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gateway.settings import Settings, get_settings


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """Named by import path in uvicorn's options (so worker processes rebuild it); its bounds come from the settings."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        settings = get_settings()
        self.header_timeout_s, self.max_header_bytes = settings.header_timeout_s, settings.max_header_bytes
        self._header_bytes = 0
        self._awaiting_headers = True
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def data_received(self, data: bytes) -> None:
        if self._awaiting_headers:
            self._header_bytes += len(data)
        super().data_received(data)  # a chunk may hold the end of the headers and the body: the parser says which
        if self._awaiting_headers and self._header_bytes > self.max_header_bytes:
            self._refuse(b"431 Request Header Fields Too Large", b'{"error":"headers_too_large","message":"request headers over the limit"}')

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._awaiting_headers:  # the next request on a kept-alive connection gets its own deadline
            self._awaiting_headers, self._header_bytes = True, 0
            self._cancel_header_timer()
            self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_too_slow)

    def on_headers_complete(self) -> None:
        self._awaiting_headers = False
        self._cancel_header_timer()
        if len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers) > self.max_header_bytes:
            self._refuse(b"431 Request Header Fields Too Large", b'{"error":"headers_too_large","message":"request headers over the limit"}')
            return
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def _cancel_header_timer(self) -> None:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self._awaiting_headers and not self.transport.is_closing():
            if self._header_bytes:
                self._refuse(b"408 Request Timeout", b'{"error":"request_timeout","message":"the request headers took too long"}')
            else:
                self.transport.close()

    def _refuse(self, status: bytes, body: bytes) -> None:
        self._cancel_header_timer()
        if not self.transport.is_closing():
            self.transport.write(
                b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\nconnection: close\r\n"
                b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )
            self.transport.close()


def uvicorn_options(settings: Settings) -> dict:
    """Keyword arguments for ``uvicorn.run("gateway.app:create_app", factory=True, **options)``."""
    return {
        "host": settings.host,
        "port": settings.port,
        "workers": settings.workers,
        "log_level": settings.log_level,
        "http": "gateway.serving:BoundedHttpToolsProtocol",
        "timeout_keep_alive": settings.keep_alive_timeout_s,
        "timeout_graceful_shutdown": settings.graceful_shutdown_s,
        "limit_concurrency": settings.max_connections,
    }
