"""The one loopback-server base class and the process helpers every dev and test server uses.

``LoopbackServer``: an aiohttp app on its own event loop in a daemon thread, bound to 127.0.0.1 on
the port it is given (0, the default: any free port, reported as ``server.port`` / ``server.url``).
``with Server(...) as server: server.url`` in a test; ``server.serve_forever(port)`` in the
foreground of a process of its own, printing ``READY_LINE`` + ``http://127.0.0.1:PORT`` once it
listens, which ``announced_server`` waits for. Nothing probes a free port and binds it later.

Process helpers: ``announced_server`` (run a server command, yield the port it announced, stop it on
exit), ``serve_in_subprocess`` (the dev RM server ``rewards.serve_rm`` as such a process),
``stop_process`` (terminate, then kill), ``free_port`` (only for "nothing listens here").
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import queue
import socket
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass, field

from aiohttp import web

READY_LINE = "loopback server listening on "  # followed by http://127.0.0.1:PORT, the port actually bound


@dataclass
class ServerLog:
    """What a loopback server saw: requests arrived, held at once, answers by kind, bodies (if kept)."""

    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    answered: Counter = field(default_factory=Counter)  # answer kind -> count
    bodies: list = field(default_factory=list)  # with keep_bodies: each request's JSON body
    headers: list = field(default_factory=list)  # with keep_bodies: each request's headers (a dict)

    @property
    def served(self) -> Counter:
        return self.answered


class LoopbackServer:
    """An aiohttp app on its own event loop in a daemon thread (see the module docstring).

    Subclasses give ``routes()``; ``/health`` is added. ``self.log`` counts what arrived; ``track()``
    wraps a handler's work so ``in_flight`` and ``max_in_flight`` stay right."""

    def __init__(self, keep_bodies: bool = False) -> None:
        self.keep_bodies = keep_bodies
        self.log = ServerLog()
        self._arrived = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self._closing: asyncio.Event | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def routes(self) -> list[web.RouteDef]:
        raise NotImplementedError

    def arrived(self, request: web.Request, body) -> int:
        """Count one request (keeping its body and headers if asked); its 0-based number."""
        with self._arrived:
            number = self.log.requests
            self.log.requests += 1
            if self.keep_bodies:
                self.log.bodies.append(body)
                self.log.headers.append(dict(request.headers))
            self._arrived.notify_all()
        return number

    def wait_for_requests(self, count: int, timeout_s: float = 60.0) -> bool:
        """Block until ``count`` requests have arrived (for tests that act at a given point)."""
        with self._arrived:
            return self._arrived.wait_for(lambda: self.log.requests >= count, timeout=timeout_s)

    @contextlib.contextmanager
    def track(self):
        self.log.in_flight += 1
        self.log.max_in_flight = max(self.log.max_in_flight, self.log.in_flight)
        try:
            yield
        finally:
            self.log.in_flight -= 1

    async def hang(self) -> None:
        """Never answer (until the server stops)."""
        await self._closing.wait()

    async def _health(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _start(self, port: int = 0) -> None:
        self._closing = asyncio.Event()
        app = web.Application()
        app.add_routes(self.routes() + [web.get("/health", self._health)])
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5, handler_cancellation=True)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port).start()
        self.port = self._runner.addresses[0][1]

    async def _stop(self) -> None:
        self._closing.set()
        await self._runner.cleanup()

    def start(self, port: int = 0):
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(port), self._loop).result(timeout=60)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def serve_forever(self, port: int = 0) -> None:
        """Serve in the foreground of this process; announce ``READY_LINE`` + url once listening."""
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start(port))
        print(f"{READY_LINE}{self.url}", flush=True)
        self._loop.run_forever()


def free_port() -> int:
    """A loopback port that was free a moment ago. Only for "nothing listens here" (a closed port in
    tests): a server must bind port 0 itself, since another process may take this one meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pump_output(stream, ready_line: str, ready: queue.Queue, tail: collections.deque, log) -> None:
    """Drain the child's output (so a full pipe never blocks it), copy it to ``log``, keep its tail,
    and hand over the bound port from the readiness line; None when the output ends."""
    announced = False
    for line in stream:
        tail.append(line)
        if log is not None:
            log.write(line)
            log.flush()
        if not announced and line.startswith(ready_line):
            announced = True
            ready.put(int(line.rsplit(":", 1)[1]))
    ready.put(None)


def stop_process(process: subprocess.Popen, timeout_s: float = 30) -> None:
    """SIGTERM, then SIGKILL if ``process`` has not exited within ``timeout_s``; waits for it either way."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout_s)


@contextlib.contextmanager
def announced_server(command: list[str], ready_line: str = READY_LINE, log_path=None, startup_timeout_s: float = 120.0):
    """Run a server ``command`` that binds port 0 and prints ``ready_line`` + ``http://HOST:PORT``;
    yield that port once announced, and stop the process on exit. Used for ``rewards.serve_rm`` and
    for this package's servers run as processes."""
    name = " ".join(command[1:3])
    log = open(log_path, "w") if log_path else None
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", bufsize=1
    )
    ready: queue.Queue = queue.Queue()
    tail: collections.deque = collections.deque(maxlen=40)
    pump = threading.Thread(target=_pump_output, args=(process.stdout, ready_line, ready, tail, log), daemon=True)
    pump.start()
    try:
        try:
            port = ready.get(timeout=startup_timeout_s)
        except queue.Empty:
            raise TimeoutError(f"{name} did not report a listening port within {startup_timeout_s:.0f} s") from None
        if port is None:
            process.wait(timeout=30)
            detail = f"see {log_path}" if log else "".join(tail)[-2000:]
            raise RuntimeError(f"{name} exited with {process.returncode} before serving: {detail}")
        yield port
    finally:
        stop_process(process)
        pump.join(timeout=10)
        process.stdout.close()
        if log:
            log.close()


@contextlib.contextmanager
def serve_in_subprocess(
    model_dir,
    served_model_name: str | None = None,
    threads: int = 1,
    log_path=None,
    startup_timeout_s: float = 120.0,
    max_length: int | None = None,
):
    """The dev RM server (``python -m rewards.serve_rm``) for ``model_dir`` in a child process on a loopback
    port it binds itself (port 0); yields that port once it announces it listens, and stops it on exit."""
    from rewards.serve_rm import READY_LINE as RM_READY_LINE

    command = [sys.executable, "-m", "rewards.serve_rm", "--model", str(model_dir), "--port", "0"]
    command += ["--threads", str(threads)]
    if served_model_name:
        command += ["--served-model-name", served_model_name]
    if max_length:
        command += ["--max-length", str(max_length)]
    with announced_server(command, RM_READY_LINE, log_path, startup_timeout_s) as port:
        yield port
