"""A FastAPI app shaped like a project generated from the popular full-stack template: its
routes under `/api/v1`, an OAuth2 password form at `/login/access-token`, sign-up, password
recovery and reset, app state and a dependency the tests override.

`fastapi run tests/apps/fullstack.py` and `uvicorn tests.apps.fullstack:app` both serve it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Form, HTTPException, Request, Response
from fastapi.security import OAuth2PasswordRequestForm

from launchready_sdk import LaunchReady, Settings

login = APIRouter(tags=["login"])
users = APIRouter(prefix="/users", tags=["users"])
items = APIRouter(prefix="/items", tags=["items"])
ATTEMPTS: dict[str, int] = {}


def current_user() -> dict[str, str]:
    return {"email": "real@example.com"}


@login.post("/login/access-token")
def access_token(form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> dict[str, str]:
    ATTEMPTS[form.username] = ATTEMPTS.get(form.username, 0) + 1
    if form.password != "right-password":
        raise HTTPException(status_code=400, detail="Incorrect email or password")
    return {"access_token": "t-" + form.username, "token_type": "bearer"}


@login.post("/login/test-token")
def test_token(user: Annotated[dict[str, str], Depends(current_user)]) -> dict[str, str]:
    return user


@login.post("/password-recovery/{email}")
def recover_password(email: str) -> dict[str, str]:
    return {"message": "Password recovery email sent"}


@login.post("/reset-password/")
def reset_password(token: Annotated[str, Form()], new_password: Annotated[str, Form()]) -> Any:
    return {"message": "Password updated successfully"}


@login.get("/login-history")
def login_history() -> list[str]:
    return ["2026-12-01"]


@users.post("/signup")
def signup(body: dict[str, str]) -> dict[str, str]:
    return {"email": body.get("email", "")}


@users.get("/me")
def me(user: Annotated[dict[str, str], Depends(current_user)]) -> dict[str, str]:
    return user


@items.get("/")
def list_items() -> list[int]:
    return [1, 2, 3]


CREATED: list[int] = []


@items.post("/")
def create_item() -> dict[str, int]:
    CREATED.append(len(CREATED) + 1)
    return {"id": CREATED[-1]}


api_router = APIRouter()
api_router.include_router(login)
api_router.include_router(users)
api_router.include_router(items)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app as the template's `main.py` builds it, with the SDK's one line added."""
    app = FastAPI(title="full-stack")
    app.state.started = "yes"
    app.include_router(api_router, prefix="/api/v1")

    @app.exception_handler(ValueError)
    async def broken_handler(request: Request, exc: ValueError) -> Response:
        raise RuntimeError("the app's own exception handler failed")

    app = LaunchReady(settings).wrap(app)  # type: ignore[assignment]

    @app.get("/api/v1/utils/health-check/")  # added after the SDK's line: still served
    def health_check() -> bool:
        return bool(app.state.started == "yes")

    @app.get("/api/v1/utils/boom")
    def boom() -> None:
        raise ValueError("boom")

    return app


def __getattr__(name: str) -> Any:
    """`app` is built on first access (`uvicorn`, `fastapi run`), not when tests import this."""
    if name != "app":
        raise AttributeError(name)
    app = globals()["app"] = create_app()
    return app


def __dir__() -> list[str]:
    return sorted([*globals(), "app"])
