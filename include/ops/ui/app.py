"""The FastAPI app behind the ClimateWatch page (mounted by Airflow at ``/climatewatch``).

Routes, relative to the mount point:

- ``/``                              the page (HTML);
- ``/api/summary``                   the same data as JSON;
- ``/icon.svg``                      the icon of the Airflow navigation entry;
- ``/reports/index.html``            the reports index, when the generator wrote one;
- ``/reports/{YYYY-MM-DD}/{file}``   a day's report files (.html, .pdf, .csv, .json);
- ``/data-docs/{path}``              the Great Expectations Data Docs site.

File routes only serve existing files below their own directory: the day must be a real
date, the file name a plain name, and resolved paths must stay inside the directory.
Handlers are plain ``def`` so FastAPI runs them in its thread pool: DuckDB and file I/O
never block the API server's event loop.

Airflow mounts plugin apps as they are, without its authentication. With
``airflow_auth=True`` (what the plugin uses) every route requires an Airflow user
allowed to see plugins, read the way the Airflow UI sends it (the ``_token`` cookie set
at login, or an ``Authorization: Bearer`` token); a browser without a session is sent to
Airflow's login page and comes back afterwards.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

from include.ops.ui import render
from include.settings import Settings, get_settings
from warehouse import status

NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
SettingsSource = Callable[[], Settings]


class LoginRequired(Exception):
    """No (valid) Airflow session on a request that needs one."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


async def require_airflow_user(request: Request) -> None:
    """Airflow's own check, as its REST API does it: the user of the bearer token or of
    the UI's ``_token`` cookie, authorised for the plugins view."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
    from airflow.api_fastapi.core_api.security import bearer_scheme, get_user

    credentials = await bearer_scheme(request)
    try:
        user = await get_user(request, None, credentials)
    except HTTPException as exc:
        if exc.status_code in (401, 403):
            raise LoginRequired(str(exc.detail)) from None
        raise
    if not get_auth_manager().is_authorized_view(access_view=AccessView.PLUGINS, user=user):
        raise HTTPException(403, "Forbidden: this Airflow user may not see plugin pages")


def _login_redirect(request: Request, exc: LoginRequired) -> Response:
    """Browsers go to Airflow's login page (and back); API clients get a plain 401."""
    if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
        from airflow.api_fastapi.app import get_auth_manager

        login = get_auth_manager().get_url_login(next_url=str(request.url))
        return RedirectResponse(login, status_code=303)
    return JSONResponse({"detail": exc.detail}, status_code=401)


def safe_file(base: Path, relative: str) -> Path | None:
    """``base / relative`` when it is an existing file inside ``base`` (symlinks resolved)."""
    if "\x00" in relative:
        return None
    root = base.resolve()
    candidate = (root / relative).resolve()
    if not candidate.is_relative_to(root) or not candidate.is_file():
        return None
    return candidate


def _serve(base: Path, relative: str, missing: str) -> FileResponse:
    """The file ``relative`` below ``base``, or a 404 saying ``missing``."""
    path = safe_file(base, relative)
    if path is None:
        raise HTTPException(404, missing)
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if media_type.startswith("text/") or media_type in ("application/json",):
        media_type += "; charset=utf-8"
    return FileResponse(path, media_type=media_type, headers=NO_STORE)


def create_app(
    settings: Settings | SettingsSource | None = None,
    *,
    airflow_auth: bool = False,
    kafka_timeout_s: float = status.KAFKA_TIMEOUT_S,
) -> FastAPI:
    """The app; ``settings`` (or a function returning them) default to the environment's,
    read at the first request so that importing the plugin reads nothing."""

    def current() -> Settings:
        if settings is None:
            return get_settings()
        return settings() if callable(settings) else settings

    dependencies: list[Any] = [Depends(require_airflow_user)] if airflow_auth else []
    app = FastAPI(
        title="ClimateWatch",
        description="Reports, alerts, data quality and archive status of ClimateWatch.",
        dependencies=dependencies,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.add_exception_handler(LoginRequired, _login_redirect)  # type: ignore[arg-type]
    _page_routes(app, current, kafka_timeout_s)
    _file_routes(app, current)
    return app


def _page_routes(app: FastAPI, current: SettingsSource, kafka_timeout_s: float) -> None:
    """The page, its JSON and its icon."""

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        """The ClimateWatch page."""
        summary = status.gather(current(), kafka_timeout_s=kafka_timeout_s)
        return HTMLResponse(render.render_page(summary), headers=NO_STORE)

    @app.get("/icon.svg")
    def icon() -> Response:
        """The navigation entry's icon."""
        return Response(render.ICON_SVG, media_type="image/svg+xml")

    @app.get("/api/summary")
    def summary() -> JSONResponse:
        """The page's data as JSON."""
        body = status.gather(current(), kafka_timeout_s=kafka_timeout_s).to_dict()
        return JSONResponse(body, headers=NO_STORE)


def _file_routes(app: FastAPI, current: SettingsSource) -> None:
    """Report files and the Data Docs site, each only from below its own directory."""

    @app.get("/reports/index.html")
    def reports_index() -> FileResponse:
        """The index page the report generator writes beside the days."""
        return _serve(current().reports_dir, "index.html", "no reports index yet")

    @app.get("/reports/{day}/{name}")
    def report_file(day: str, name: str) -> FileResponse:
        """One report file of one day."""
        if not status.valid_day(day):
            raise HTTPException(400, "the day must be a date written YYYY-MM-DD")
        if not status.valid_report_file(name):
            raise HTTPException(404, "no such report file")
        return _serve(current().reports_dir / day, name, f"no {name} for {day}")

    @app.get("/data-docs/{path:path}")
    def data_docs(path: str) -> FileResponse:
        """The Data Docs site, file by file."""
        return _serve(current().data_docs_dir, path or "index.html", "no such Data Docs page")
