"""A real HTTP forward proxy on loopback, for tests: CONNECT tunnels (https) and absolute-form
forwarding (plain http), optional basic authentication, and a record of what it was asked.

    with ForwardProxy(user="ops", password="s3cret") as proxy:
        os.environ["HTTPS_PROXY"] = proxy.url_with_credentials()
        ...
        proxy.seen          # [("CONNECT", "127.0.0.1:41234"), ("GET", "http://127.0.0.1:41234/api/x"), ...]
        proxy.rejected      # requests answered 407 (no or wrong credentials)

`silent=True` accepts connections and never answers (a proxy that hangs). Each forwarded plain-http
request gets its own upstream connection and `Connection: close`, so no request is ever answered by
another one's upstream.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
from urllib.parse import quote, urlsplit

HOP_BY_HOP = {"proxy-authorization", "proxy-connection", "connection", "keep-alive"}


class ForwardProxy:
    def __init__(self, user: str | None = None, password: str | None = None, *,
                 silent: bool = False) -> None:
        self.user = user
        self.password = password
        self.silent = silent
        self._expected = (
            "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode() if user is not None else None
        )
        self.seen: list[tuple[str, str]] = []
        self.rejected = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._stopping: asyncio.Event | None = None
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._stopping = asyncio.Event()
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._accept, "127.0.0.1", 0)
            )
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="forward-proxy", daemon=True)
        self._thread.start()
        ready.wait(10)
        assert self._server is not None
        self.port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def url_with_credentials(self, password: str | None = None) -> str:
        """The proxy URL with this proxy's user and `password` (its own by default), percent-encoded."""
        secret = self.password if password is None else password
        credentials = f"{quote(self.user or '', safe='')}:{quote(secret or '', safe='')}"
        return f"http://{credentials}@127.0.0.1:{self.port}"

    def __enter__(self) -> ForwardProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            # Connections are closed, not their tasks cancelled: each task ends as a closed peer ends it.
            assert self._server is not None
            assert self._stopping is not None
            self._server.close()
            self._stopping.set()
            for writer in list(self._writers):
                writer.close()
            await asyncio.gather(*self._tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    # -- serving ------------------------------------------------------------------------------------
    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        assert self._stopping is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            if self.silent:
                await self._stopping.wait()  # a proxy that hangs, until the test ends
            else:
                await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        first = await reader.readexactly(1)
        if not first.isalpha():  # e.g. a TLS ClientHello (0x16): a plain proxy answers it in plain text
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
            return
        head = (first + await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        request_line, *lines = head.split("\r\n")[:-2]
        method, target, version = request_line.split(" ", 2)
        headers = [tuple(part.strip() for part in line.split(":", 1)) for line in lines]
        self.seen.append((method, target))
        given = next((value for name, value in headers if name.lower() == "proxy-authorization"), None)
        if self._expected is not None and given != self._expected:
            self.rejected += 1
            writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic "
                         b'realm="test"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')
            await writer.drain()
            return
        if method == "CONNECT":
            await self._tunnel(target, reader, writer)
        else:
            await self._forward(method, target, version, headers, reader, writer)

    async def _tunnel(self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, _, port = target.rpartition(":")
        try:
            up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
        except OSError:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return
        self._writers.add(up_writer)
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async def _forward(self, method: str, target: str, version: str, headers: list[tuple[str, ...]],
                       reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        url = urlsplit(target)
        if url.scheme != "http" or not url.hostname:
            writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            await writer.drain()
            return
        length = int(next((value for name, value in headers if name.lower() == "content-length"), "0"))
        body = await reader.readexactly(length) if length else b""
        up_reader, up_writer = await asyncio.open_connection(url.hostname, url.port or 80)
        self._writers.add(up_writer)
        path = (url.path or "/") + (f"?{url.query}" if url.query else "")
        kept = "".join(f"{name}: {value}\r\n" for name, value in headers if name.lower() not in HOP_BY_HOP)
        request = f"{method} {path} {version}\r\n{kept}Connection: close\r\n\r\n"
        up_writer.write(request.encode("latin-1") + body)
        await up_writer.drain()
        await _pipe(up_reader, writer)  # the answer, until the upstream closes (Connection: close)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()
