"""A tiny HTTP/1.1 origin (trio + h11, 127.0.0.1) for the proxy's tests.

Subclasses answer `route(path, headers)` with (status, headers, body) or
(status, headers, body, chunks): with `chunks`, `body` is sent that many times chunked."""

from __future__ import annotations

import h11
import trio


class OriginServer:
    def __init__(self) -> None:
        self.port = 0
        self.seen: list[tuple[str, dict[str, str]]] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hits(self, path: str) -> list[dict[str, str]]:
        return [h for p, h in self.seen if p == path]

    async def route(self, path: str, headers: dict[str, str]):
        raise NotImplementedError

    async def handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            with trio.move_on_after(5):
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        data = await stream.receive_some(65536)
                        conn.receive_data(data)
                        if not data:
                            return
                        continue
                    if isinstance(event, h11.Request):
                        break
                    return
                headers = {k.decode().lower(): v.decode() for k, v in event.headers}
                path = event.target.decode()
                self.seen.append((path, headers))
                status, rh, body, *rest = await self.route(path, headers)
                chunks = rest[0] if rest else None
                rh = [*rh, ("Connection", "close")]
                if chunks is None:
                    rh.append(("Content-Length", str(len(body))))
                else:
                    rh.append(("Transfer-Encoding", "chunked"))
                await stream.send_all(conn.send(h11.Response(status_code=status, headers=rh)))
                for _ in range(1 if chunks is None else chunks):
                    if body:
                        await stream.send_all(conn.send(h11.Data(data=body)))
                await stream.send_all(conn.send(h11.EndOfMessage()))
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            pass
        finally:
            await stream.aclose()
