"""The API's error answers: FastAPI's 422 with its input made JSON-safe and echoed in brief, and a 415 for a body
not sent as JSON. Routes that refuse input themselves echo it with :func:`brief` too."""

from __future__ import annotations

import math

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from schemas.base import error_text


async def validation_failed(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422, with the input it echoes made JSON-safe: a body may hold NaN or 1e999 (Python's
    JSON reader takes them), which the models refuse but JSON cannot carry back (it was a 500)."""
    # The reason in plain words, as the CLI gives it; the input echoed in brief (a list of 2 million points was).
    errors = [{**e, "msg": error_text(e), **({"input": brief(e["input"])} if "input" in e else {})} for e in exc.errors()]
    if _body_not_sent_as_json(request, errors):
        # `curl -d '{...}'` sends a form's Content-Type; the body is then text, not an object, and
        # FastAPI's "Input should be a valid dictionary" does not say why
        sent = request.headers.get("content-type") or "none"
        return JSONResponse(status_code=415, content={
            "detail": f"send the body as JSON, with the header Content-Type: application/json (this request's: {sent})"})
    return JSONResponse(status_code=422, content={"detail": _json_safe(jsonable_encoder(errors))})


def _body_not_sent_as_json(request: Request, errors: list[dict]) -> bool:
    body_refused_whole = any(tuple(e.get("loc", ())) == ("body",) and e.get("type") != "missing" for e in errors)
    media_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    return body_refused_whole and not (media_type == "application/json" or media_type.endswith("+json"))


# What a 422 echoes of a long input: enough to see which it was, not the whole of it again.
ECHO_ITEMS, ECHO_CHARS = 20, 200


def brief(value):
    """An input as a 422 echoes it: long strings and lists cut short, saying how long they were."""
    if isinstance(value, str) and len(value) > ECHO_CHARS:
        return f"{value[:ECHO_CHARS]}... ({len(value)} characters)"
    if isinstance(value, dict):
        return {k: brief(v) for k, v in list(value.items())[:ECHO_ITEMS]}
    if isinstance(value, (list, tuple)):
        shown = [brief(v) for v in value[:ECHO_ITEMS]]
        return shown + [f"... ({len(value)} items)"] if len(value) > ECHO_ITEMS else shown
    return value


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "nan", "inf", "-inf"
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value
