"""A request body over the API's limit is a 413 before it is read, not a request that holds the event loop.

Every body the API takes is a camera's change (a zone of at most 64 points, a calibration, names): a few
kilobytes. Without a limit, a 19 MB list of points was read, parsed and echoed back in a 422 on the event
loop, and every other client and feed waited 17 s. The declared ``Content-Length`` is checked first; a body
sent without one (chunked) is counted as it comes.
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse


class _TooLarge(HTTPException):
    """Raised where the body is read: an HTTPException, so that FastAPI's body reading passes it on (any other
    error there is its 400 "error parsing the body") and the app answers it."""


class BodyLimit:
    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes
        self.why = f"the request body is over {max_bytes} bytes, this API's limit (api.max_body_bytes)"

    def _refusal(self) -> JSONResponse:
        return JSONResponse(status_code=413, headers={"Connection": "close"}, content={"detail": self.why})

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refusal()(scope, receive, send)
        received, started = 0, False

        async def counted():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge(413, self.why)
            return message

        async def watched(message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _TooLarge:
            if started:
                raise
            await self._refusal()(scope, receive, send)
