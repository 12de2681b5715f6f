"""Every admin API refusal in the OpenAI envelope (errors.render), never FastAPI's own shapes:
the service layer's GatewayErrors, request validation (400, not 422), Starlette's 404 and 405
(with an `Allow` header that names every method the path serves), and a body over the limit
(413)."""

from __future__ import annotations

import re

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from keystead.errors import (
    BadRequest,
    BodyTooLarge,
    GatewayError,
    InvalidField,
    InvalidJSON,
    MethodNotAllowed,
    RouteNotFound,
    render,
)

__all__ = ["allowed_methods", "install_error_handlers"]

# Where a request value comes from; not part of the parameter's name in an error.
_LOCATIONS = ("body", "query", "path", "header", "cookie")
_PARAM_MAX = 128  # a parameter's name may hold a client's dict key: never echo much of it


def _response(error: GatewayError, headers: dict[str, str] | None = None) -> Response:
    merged = {k.decode(): v.decode() for k, v in error.headers()}
    merged.update(headers or {})
    return Response(render(error), status_code=error.status, media_type="application/json",
                    headers=merged)


def _template(path: str) -> re.Pattern[str]:
    """/admin/keys/{key} as a pattern: a parameter is one path segment."""
    return re.compile("^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(path)) + "$")


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method the OpenAPI document lists for `path` (Starlette's own 405 names only the
    first matching route's, so DELETE /admin/keys/x would answer Allow: GET, not GET, PATCH).
    Read from the document, the one public list of every route and method."""
    table: list[tuple[re.Pattern[str], set[str]]] | None = getattr(app.state, "allow", None)
    if table is None:
        table = [(_template(template), {method.upper() for method in item})
                 for template, item in app.openapi().get("paths", {}).items()]
        app.state.allow = table
    return sorted({m for pattern, methods in table if pattern.match(path) for m in methods})


async def _gateway_error(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return _response(exc)


async def _invalid(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    error: GatewayError
    if first.get("type") == "json_invalid":  # its loc is a byte offset, not a parameter
        error = InvalidJSON("The request body is not valid JSON.",
                            hint="Send a JSON object with Content-Type: application/json.")
    else:
        loc = list(first.get("loc", ()))
        if loc and loc[0] in _LOCATIONS:
            del loc[0]
        param = ".".join(str(part) for part in loc)[:_PARAM_MAX]
        error = InvalidField(f"Invalid value for '{param}': {first.get('msg', 'invalid')}.",
                             param=param or None)
    return _response(error)


async def _http_error(request: Request, exc: Exception) -> Response:
    # Starlette's own 404/405 (no such route or method) in the envelope, like the data plane.
    assert isinstance(exc, StarletteHTTPException)
    headers = dict(exc.headers or {})
    error: GatewayError
    if exc.status_code == 404:
        error = RouteNotFound(f"Unknown admin route {request.method} {request.url.path}.",
                              hint="GET /admin/openapi.json lists the admin routes.")
    elif exc.status_code == 405:
        # The docs' own routes are not in the document: Starlette's Allow is right for them.
        starlettes = [m.strip() for m in headers.pop("Allow", "").split(",") if m.strip()]
        allow = allowed_methods(request.app, request.url.path) or starlettes
        error = MethodNotAllowed(f"{request.url.path} does not accept {request.method}.",
                                 allow=allow,
                                 hint=f"It accepts {', '.join(allow)}." if allow else None)
    elif exc.status_code == 413:  # past the app's max_body_size
        error = BodyTooLarge("The request body is too large for the admin API.",
                             hint="An admin request is a few KB; send less.")
    elif 400 <= exc.status_code < 500:  # e.g. a body FastAPI could not read
        error = BadRequest(str(exc.detail)[:200])
        error.status = exc.status_code
    else:
        error = GatewayError(str(exc.detail)[:200])
        error.status = exc.status_code
    return _response(error, headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GatewayError, _gateway_error)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http_error)
