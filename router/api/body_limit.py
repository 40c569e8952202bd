"""ASGI middleware that refuses request bodies above `COBROWSE_MAX_BODY_BYTES` with 413 before
anything parses them: every API body is a few hundred bytes, so a large one is a mistake or an
attack, and reading it whole first would let one request hold unbounded memory."""

from __future__ import annotations

from .errors import error_response


class BodyLimit:
    """Refuse request bodies above `limit` bytes with 413, before any parsing."""

    def __init__(self, app, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def _refuse(self, scope, receive, send) -> None:
        resp = error_response(413, "body_too_large", f"request body larger than {self.limit} bytes")
        await resp(scope, receive, send)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.limit:
                    await self._refuse(scope, receive, send)
                    return
        body = bytearray()
        first = None
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                first = msg
                break
            body += msg.get("body", b"")
            if len(body) > self.limit:
                await self._refuse(scope, receive, send)
                return
            if not msg.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                if first is not None:
                    return first
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
