"""The sandbox dashboard at /sandbox/ui/: static HTML, vanilla JS and CSS shipped in the package.

No build step and no CDN: the browser loads these files and reads /sandbox/api/ (JSON) every
two seconds. The pages build their DOM with textContent only; the Content-Security-Policy
below is a second line of defence (no inline script, nothing from other origins).
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, send_from_directory

STATIC = Path(__file__).with_name("static")

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")

bp = Blueprint("ui", __name__, url_prefix="/sandbox/ui", static_folder=str(STATIC),
               static_url_path="/static")


@bp.get("/")
def dashboard() -> Response:
    return send_from_directory(STATIC, "index.html", max_age=0)


@bp.after_request
def _harden(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    # Assets change with the package; a stale app.js against a newer API is worse than a refetch.
    response.headers["Cache-Control"] = "no-cache"
    return response
