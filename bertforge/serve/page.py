"""``GET /``: one self-contained HTML page (no CDN, no build step) to try every pipeline the model serves."""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from bertforge.serve.state import ServerState


def html() -> str:
    return resources.files("bertforge.serve").joinpath("page.html").read_text(encoding="utf-8")


def register(app: FastAPI, state: ServerState) -> None:
    page = html()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index():
        return HTMLResponse(page)
