"""Dropping a connection without an answer: the transport half of the reset effects.

A hook cannot reach the socket through Flask, and it must not close it under the server's
feet (the request log is written after the hooks). So a hook only marks the WSGI environ; the
`ConnectionFaults` middleware, outermost around the Flask app, lets the request finish (state
committed or not, request log written) and then drops the connection before one byte of the
answer is written:

- the socket comes from the server's environ: `gunicorn.socket` (gunicorn, any worker class)
  or `werkzeug.socket` (werkzeug's server, as in sandbox.live);
- SO_LINGER {on, 0} then shutdown(SHUT_RDWR): the client reads EOF where the status line
  should be (http.client's RemoteDisconnected, a ConnectionError in requests); when the server
  closes the socket, the zero linger turns the close into an RST;
- the server's own write then fails with EPIPE, which werkzeug ("connection dropped") and
  gunicorn ("Ignoring connection epipe") both treat as a client gone, quietly;
- with no socket (Flask's test client) the middleware raises ConnectionResetError instead, so
  in-process tests see what a real client sees.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterable

ABORT_KEY = "payscore.fault.drop_connection"
SOCKET_KEYS = ("gunicorn.socket", "werkzeug.socket")


def drop_connection(environ: dict) -> None:
    """Ask the middleware to drop this request's connection instead of answering."""
    environ[ABORT_KEY] = True


def _abort(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # the client is already gone: nothing left to drop
        pass


class ConnectionFaults:
    """WSGI middleware: performs the drops that fault hooks asked for."""

    def __init__(self, wsgi_app: Callable):
        self.wsgi_app = wsgi_app

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        result = self.wsgi_app(environ, start_response)
        if not environ.get(ABORT_KEY):
            return result
        close = getattr(result, "close", None)
        if close is not None:
            close()
        sock = next((environ[k] for k in SOCKET_KEYS if environ.get(k) is not None), None)
        if sock is None:
            raise ConnectionResetError("payscore fault: connection dropped without an answer")
        _abort(sock)
        return []
