"""Serve the ASGI app with uvicorn over HTTPS, TLS 1.3 only.

Uvicorn builds its own :class:`ssl.SSLContext` from ``ssl_*`` file options, which cannot pin
TLS 1.3 or set verification flags. :class:`TLSConfig` imposes ours instead: it lets
``uvicorn.Config.load()`` run, then replaces ``self.ssl`` with the context from
:func:`secretum.web.tls.build_server_ssl_context` before any listening socket exists (uvicorn
passes ``config.ssl`` to ``loop.create_server``). This works on every uvicorn version; newer ones
also accept ``ssl_context_factory``, which we do not need.

The config also selects :class:`~secretum.web.tls.TLSScopeH11Protocol` (client certificate in
the ASGI scope), disables uvicorn's logging config and access log (:mod:`secretum.logs` routes
``uvicorn.error`` through the redacting JSON handler; :mod:`secretum.web.requestlog` writes the
request lines), hides the ``server: uvicorn`` header and ignores ``X-Forwarded-*`` (we
terminate TLS ourselves; nothing in front is trusted).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import threading
from types import TracebackType
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from secretum.logs import configure_logging, get_logger
from secretum.web.tls import ClientCertMode, TLSScopeH11Protocol, build_server_ssl_context

_log = get_logger("secretum.web.server")

#: Largest WebSocket message the server reads (the call signaling takes 64 KiB).
WS_MAX_BYTES = 256 * 1024


class TLSConfig(uvicorn.Config):
    """A ``uvicorn.Config`` that serves with a caller-supplied :class:`ssl.SSLContext`."""

    def __init__(self, app: ASGIApp, *, ssl_context: ssl.SSLContext, **kwargs: Any) -> None:
        self.secretum_ssl_context = ssl_context
        defaults: dict[str, Any] = {
            "http": TLSScopeH11Protocol,
            "log_config": None,
            "access_log": False,
            "server_header": False,
            "proxy_headers": False,
            "lifespan": "on",
        }
        defaults.update(kwargs)
        super().__init__(app, **defaults)
        # The access log prints the raw path and query string: never emit it, even if a
        # handler gets attached to it later (uvicorn enables it when ``hasHandlers()``).
        logging.getLogger("uvicorn.access").disabled = True

    def load(self) -> None:
        """Load as uvicorn does, then impose our TLS context."""
        super().load()
        self.ssl = self.secretum_ssl_context


class _Server(uvicorn.Server):
    """``uvicorn.Server`` that signals readiness and logs the bound address as JSON."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()
        self.port: int | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets=sockets)
        finally:
            if self.started:
                servers = getattr(self, "servers", [])
                bound = servers[0].sockets[0].getsockname() if servers else None
                self.port = int(bound[1]) if bound else self.config.port
                _log.info(
                    "server.started",
                    scheme="https",
                    host=self.config.host,
                    port=self.port,
                    tls="1.3",
                )
            self.ready.set()


def build_config(
    app: ASGIApp,
    *,
    host: str,
    port: int,
    certfile: str | os.PathLike[str],
    keyfile: str | os.PathLike[str],
    cafile: str | os.PathLike[str] | None = None,
    client_certs: ClientCertMode = "optional",
    log_level: str = "info",
    **uvicorn_options: Any,
) -> TLSConfig:
    """The uvicorn config for ``app`` on ``host:port`` with the TLS 1.3-only context."""
    ctx = build_server_ssl_context(certfile, keyfile, cafile, client_certs=client_certs)
    # a WebSocket frame larger than the signaling accepts is refused by the server itself
    # (1009) before it is buffered whole; the signaling closes at 64 KiB (4400) below that
    uvicorn_options.setdefault("ws_max_size", WS_MAX_BYTES)
    return TLSConfig(
        app,
        ssl_context=ctx,
        host=host,
        port=port,
        log_level=log_level.lower(),
        **uvicorn_options,
    )


def serve(
    app: ASGIApp,
    *,
    host: str,
    port: int,
    certfile: str | os.PathLike[str],
    keyfile: str | os.PathLike[str],
    cafile: str | os.PathLike[str] | None = None,
    client_certs: ClientCertMode = "optional",
    log_level: str = "info",
    configure_logs: bool = True,
    **uvicorn_options: Any,
) -> None:
    """Run ``app`` over HTTPS (TLS 1.3 only) until SIGINT/SIGTERM. Blocks.

    ``cafile`` is the internal CA (trust store for client certificates). With
    ``configure_logs`` (default) logging is set up by :func:`secretum.logs.configure_logging`
    first. Extra keyword arguments go to ``uvicorn.Config`` (e.g. ``timeout_keep_alive``).
    """
    if configure_logs:
        configure_logging(log_level.upper())
    config = build_config(
        app,
        host=host,
        port=port,
        certfile=certfile,
        keyfile=keyfile,
        cafile=cafile,
        client_certs=client_certs,
        log_level=log_level,
        **uvicorn_options,
    )
    try:
        _Server(config).run()
    except KeyboardInterrupt:  # uvicorn re-raises SIGINT after its graceful shutdown
        _log.info("server.stopped", reason="SIGINT")


class ServerThread:
    """Run the HTTPS server in a background thread (tests, embedded use).

    ``port=0`` (default) binds an ephemeral port; read it from :attr:`port` once entered::

        with ServerThread(app, certfile=..., keyfile=..., cafile=...) as server:
            httpx.get(f"{server.url}/healthz", verify=ssl_ctx)
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        certfile: str | os.PathLike[str],
        keyfile: str | os.PathLike[str],
        cafile: str | os.PathLike[str] | None = None,
        client_certs: ClientCertMode = "optional",
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout: float = 10.0,
        **uvicorn_options: Any,
    ) -> None:
        uvicorn_options.setdefault("timeout_graceful_shutdown", 2)
        self.config = build_config(
            app,
            host=host,
            port=port,
            certfile=certfile,
            keyfile=keyfile,
            cafile=cafile,
            client_certs=client_certs,
            **uvicorn_options,
        )
        self.host = host
        self.startup_timeout = startup_timeout
        self._server = _Server(self.config)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._socket: socket.socket | None = None

    @property
    def port(self) -> int:
        """The bound TCP port."""
        if self._server.port is None:
            raise RuntimeError("server not started")
        return self._server.port

    @property
    def url(self) -> str:
        """``https://host:port`` (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    def start(self) -> None:
        """Bind, start the thread and wait until the server accepts connections."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.config.port))
        sock.listen(128)
        self._socket = sock
        self._thread = threading.Thread(
            target=self._run, args=(sock,), name="secretum-https", daemon=True
        )
        self._thread.start()
        if not self._server.ready.wait(self.startup_timeout) or not self._server.started:
            self.stop()
            raise RuntimeError("HTTPS server did not start") from self._error

    def stop(self) -> None:
        """Ask uvicorn to exit and join the thread."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()

    def _run(self, sock: socket.socket) -> None:
        try:
            asyncio.run(self._server.serve(sockets=[sock]))
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._server.ready.set()

    def __enter__(self) -> ServerThread:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
