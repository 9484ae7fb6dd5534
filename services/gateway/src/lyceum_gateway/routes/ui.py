"""The web UI at /ui: the single-page app's built files (web/, `make web`), same origin as the API. It needs
no API key to load; the page asks for one and sends it with each API call. Without a build, /ui says how to
make one, and the APIs are unaffected."""

from __future__ import annotations

from html import escape
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

PREFIX = "/ui"

_MISSING = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Lyceum UI not built</title></head>
<body><main><h1>The web UI is not built</h1>
<p>Lyceum's APIs are running; the UI's files were not found in <code>{folder}</code>.</p>
<p>Build them with Node.js 20+ and npm: <code>make web</code> (or <code>make run</code>, which builds them
when npm is installed), then reload. The API docs are at <a href="/docs">/docs</a>.</p></main>
</body></html>"""


def mount(app: FastAPI, folder: Path) -> None:
    """Serves `folder` (index.html and its hashed assets) at /ui/, and /ui itself redirects there."""

    @app.get(PREFIX, include_in_schema=False)
    def ui_root() -> RedirectResponse:
        return RedirectResponse(PREFIX + "/")

    if (folder / "index.html").is_file():
        app.mount(PREFIX, StaticFiles(directory=folder, html=True), name="ui")
        return

    @app.get(PREFIX + "/{path:path}", include_in_schema=False)
    def ui_missing(path: str) -> HTMLResponse:
        return HTMLResponse(_MISSING.format(folder=escape(str(folder))), status_code=503)
