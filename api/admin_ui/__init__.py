"""The admin pages at ``/admin`` (SQLAdmin), for administrators only.

``mount_admin(app)`` mounts them on the issuemap app. Their database sessions are bound
at each use to the engine that the app's lifespan made (``AppState.engine``), so nothing
here opens a connection before the app starts. A view is added by naming it in
``VIEWS`` (one line per view); the catalogue and access views are in ``views``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqladmin import Admin, BaseView, ModelView
from sqlalchemy.orm import Session, sessionmaker
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from api.admin_ui import boundaries, views
from api.admin_ui.auth import ADMIN_PATH, AdminAuth, AdminHeaders, page_language
from api.deps import app_state
from geo.maps.assets import static_url

TEMPLATES = Path(__file__).resolve().parent / "templates"
"""Our templates, looked up before SQLAdmin's (``sqladmin/*`` here overrides its own)."""

VIEWS: list[type[ModelView] | type[BaseView]] = [
    *views.VIEWS,
    boundaries.BoundariesView,
    boundaries.AttentionView,
]
"""Every admin view, in the menu's order."""


class LifespanSessions(sessionmaker[Session]):
    """A session factory bound, at each call, to the engine of the app's running lifespan."""

    def __init__(self, app: FastAPI) -> None:
        super().__init__(class_=Session)
        self._app = app

    def __call__(self, **local_kw: Any) -> Session:
        """A new session on the app's engine (the app must be running)."""
        return super().__call__(bind=app_state(self._app).engine, **local_kw)


class IssuemapAdmin(Admin):
    """SQLAdmin without its own sign-in form: staff sign in and out at ``/login``."""

    async def login(self, request: Request) -> Response:
        """Any method: 303 to ``/login``, which comes back to ``/admin/``."""
        answer = await AdminAuth().login(request)
        assert isinstance(answer, Response)
        return answer

    async def logout(self, request: Request) -> Response:
        """The sign-out form, which posts to ``/logout`` with the CSRF token."""
        answer = await AdminAuth().logout(request)
        assert isinstance(answer, Response)
        return answer


def _static_url(request: Request, path: str) -> str:
    """The service's URL of its static file ``path`` (content-hashed), from an admin page.

    The admin app is mounted: its requests' root path ends with ``ADMIN_PATH``, and
    ``/static`` is the main app's.
    """
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/").removesuffix(ADMIN_PATH) + static_url(path)


def mount_admin(
    app: FastAPI, *, extra: Sequence[type[ModelView] | type[BaseView]] = ()
) -> IssuemapAdmin:
    """Mount the admin pages on ``app`` at ``/admin``, with ``VIEWS`` and ``extra``."""
    admin = IssuemapAdmin(
        app,
        session_maker=LifespanSessions(app),
        base_url=ADMIN_PATH,
        title="issuemap admin",
        templates_dir=str(TEMPLATES),
        authentication_backend=AdminAuth(),
        middlewares=[Middleware(AdminHeaders)],
    )
    # The mounted app reaches the main app's state through this (``auth.main_state``).
    admin.admin.state.issuemap_main = app
    admin.templates.env.globals["page_language"] = page_language
    admin.templates.env.globals["static_url"] = _static_url
    for view in (*VIEWS, *extra):
        admin.add_view(view)
    return admin
