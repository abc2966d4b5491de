"""`advisor bench` pieces that run real processes: cold starts, HTTP load, server memory."""

import asyncio
import json
import os
import select
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from app.bench_report import percentiles

READY_TIMEOUT_S = 180.0  # a loaded 2-core machine can take long to import everything
# What `advisor ask` imports besides Chroma, and what `serve` adds: import time, told apart
# from the time spent loading and answering.
APP_ASK_IMPORTS = "app.cli, app.runtime, app.offline, app.render, chromadb, langchain_chroma"
SERVE_IMPORTS = "app.serve, app.server, app.ui, uvicorn, fastapi"


def advisor_command() -> list[str]:
    """The `advisor` console script of this interpreter, else `python -m app`."""
    script = Path(sys.executable).with_name("advisor")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "app"]


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment without ADVISOR_/SLACK_ variables, offline, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ADVISOR_", "SLACK_"))}
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        GRADIO_ANALYTICS_ENABLED="False",
        ANONYMIZED_TELEMETRY="False",
        PYTHONUNBUFFERED="1",
    )
    return env | extra


def measure_cold_start(env: dict[str, str], question: str, runs: int) -> dict[str, Any]:
    """Fresh `advisor ask` processes, and how long the imports alone take."""
    cold = [timed_ask(env, question) for _ in range(runs)]
    ask = import_seconds(env, "chromadb, langchain_chroma", APP_ASK_IMPORTS)
    serve = import_seconds(env, "gradio", APP_ASK_IMPORTS, SERVE_IMPORTS)
    return {
        "ask_s": summary([c[0] for c in cold]),
        "ask_exit_s": summary([c[1] for c in cold]),
        "imports_s": round(sum(ask), 3),
        "chroma_imports_s": round(ask[0], 3),
        "serve_imports_s": round(sum(serve), 3),
        "gradio_import_s": round(serve[0], 3),
    }


def measure_server(
    env: dict[str, str],
    questions: list[str],
    warm: list[str],
    runs: int,
    seconds: float,
    tmp: Path,
    step: Callable[[str], None],
) -> dict[str, Any]:
    """`runs` server start-ups; the first also takes the HTTP load, then its peak memory."""
    ready: list[float] = []
    loads: list[dict[str, Any]] = []
    peak = None
    for n in range(runs):
        with running_server(env, tmp / "serve.log") as server:
            ready.append(server.ready_s)
            if n == 0:
                load(server.url, warm, 4, seconds / 4)  # a steady state, not a cold one
                for clients in (1, 8, 32):
                    step(f"http: {clients} clients for {seconds:g} s")
                    loads.append(load_server(server, questions, clients, seconds))
                peak = server.peak_rss_bytes()
    return {
        "serve_ready_s": summary(ready),
        "http": {"seconds": seconds, "runs": loads},
        "memory": {"server_peak_rss_bytes": peak},
    }


def timed_ask(env: dict[str, str], question: str) -> tuple[float, float]:
    """Seconds until a fresh `advisor ask` has printed its whole answer, and until it exited."""
    return timed_output([*advisor_command(), "ask", question], env)


def timed_output(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Seconds until `command` printed the last of its output, and until it exited (status 0)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    printed, out = started, b""
    streams = {process.stdout.fileno(): process.stdout, process.stderr.fileno(): process.stderr}
    while streams:
        ready, _, _ = select.select(list(streams), [], [], 60)
        if not ready:
            process.kill()
            raise RuntimeError(f"{command[0]} printed nothing for 60 s")
        for fd in ready:
            data = os.read(fd, 1 << 16)
            if not data:
                del streams[fd]
            elif fd == process.stdout.fileno():
                printed, out = time.perf_counter(), out + data
    code = process.wait()
    exited = time.perf_counter()
    if code != 0 or not out.strip():
        raise RuntimeError(f"{' '.join(command[:2])} failed with exit code {code}")
    return printed - started, exited - started


def import_seconds(env: dict[str, str], *groups: str) -> list[float]:
    """Seconds to import each group of modules in turn, in one fresh interpreter."""
    timed = "".join(
        f"t = time.perf_counter(); import {g}; print(time.perf_counter() - t)\n" for g in groups
    )
    done = subprocess.run(
        [sys.executable, "-c", f"import time\n{timed}"], env=env, capture_output=True, check=True
    )
    return [float(x) for x in done.stdout.decode().split()[-len(groups) :]]


def summary(runs: list[float]) -> dict[str, Any]:
    """Median and every run, rounded."""
    return {"median": round(statistics.median(runs), 3), "runs": [round(x, 3) for x in runs]}


@dataclass
class Server:
    """A running `advisor serve` and the seconds it took to be ready."""

    process: subprocess.Popen[bytes]
    url: str
    ready_s: float

    def cpu_seconds(self) -> float | None:
        """User plus system CPU time the process has used so far, or None off Linux."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_bytes(self) -> int | None:
        """The process's peak resident set size so far (VmHWM), or None off Linux."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        return None


@contextmanager
def running_server(env: dict[str, str], log: Path) -> Iterator[Server]:
    """Start `advisor serve` on a free loopback port, time it until /readyz is 200, stop it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [*advisor_command(), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield Server(process, url, _wait_ready(process, url, started, log))
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)


def _wait_ready(process: subprocess.Popen[bytes], url: str, started: float, log: Path) -> float:
    with httpx.Client(timeout=2.0) as client:
        while time.perf_counter() - started < READY_TIMEOUT_S:
            if process.poll() is not None:
                raise RuntimeError(f"advisor serve exited early; see {log}")
            try:
                if client.get(f"{url}/readyz").status_code == 200:
                    return time.perf_counter() - started
            except httpx.TransportError:
                pass
            time.sleep(0.02)
    raise RuntimeError(f"advisor serve not ready in {READY_TIMEOUT_S:g} s; see {log}")


def load(url: str, questions: list[str], clients: int, seconds: float) -> dict[str, Any]:
    """POST /api/ask from `clients` concurrent clients for `seconds`; every question distinct."""
    return asyncio.run(_load(url, questions, clients, seconds))


def load_server(
    server: Server, questions: list[str], clients: int, seconds: float
) -> dict[str, Any]:
    """`load` on a server, plus the CPU each answer cost the server and the load generator."""
    server_before, client_before = server.cpu_seconds(), time.process_time()
    got = load(server.url, questions, clients, seconds)
    server_after, client_after = server.cpu_seconds(), time.process_time()
    if got["requests"] and server_before is not None and server_after is not None:
        # The warm-up requests are not counted: a slight overestimate, on the safe side.
        got["server_cpu_ms"] = round(1000 * (server_after - server_before) / got["requests"], 2)
        got["client_cpu_ms"] = round(1000 * (client_after - client_before) / got["requests"], 2)
    return got


async def _load(url: str, questions: list[str], clients: int, seconds: float) -> dict[str, Any]:
    target = urlsplit(url)
    path = f"{target.path.rstrip('/')}/api/ask"
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    sent = 0

    async def client_loop(connection: _Connection, deadline: float) -> None:
        nonlocal sent
        while time.perf_counter() < deadline:
            n, sent = sent, sent + 1
            # A number makes every question new (no embedding-cache hits) for two more tokens.
            payload = {"question": f"{questions[n % len(questions)]} #{n}"}
            began = time.perf_counter()
            try:
                status = str(await asyncio.wait_for(connection.post(path, payload), 30))
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                status = type(exc).__name__
                connection.close()
            if status == "200":
                latencies.append(time.perf_counter() - began)
            else:
                statuses[status] += 1
        connection.close()

    host, port = target.hostname or "127.0.0.1", target.port or 80
    connections = [_Connection(host, port) for _ in range(clients)]
    # Connect every client and warm the server up before timing.
    warm = [{"question": questions[i % len(questions)]} for i in range(clients)]
    await asyncio.gather(*(c.post(path, w) for c, w in zip(connections, warm, strict=True)))
    began = time.perf_counter()
    await asyncio.gather(*(client_loop(c, began + seconds) for c in connections))
    elapsed = time.perf_counter() - began
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "requests": len(latencies) + sum(statuses.values()),
        "rps": round(len(latencies) / elapsed, 1),
        "errors": sum(statuses.values()),
        "statuses": dict(statuses),
        **{k: v for k, v in percentiles(latencies).items() if k != "n"},
    }


class _Connection:
    """One keep-alive HTTP/1.1 connection that POSTs JSON and reads the status.

    httpx costs ~2 ms of CPU a request, ten times this; on two cores shared with the server,
    a heavy load generator would measure itself as much as the server.
    """

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, payload: dict[str, Any]) -> int:
        """The response's status code; the body is read and dropped."""
        if self.reader is None or self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        body = json.dumps(payload).encode()
        head = f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
        self.writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        lines = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(":", 1) for line in lines[1:] if ":" in line)
        if "content-length" not in headers:
            raise ValueError("response without Content-Length")
        await self.reader.readexactly(int(headers["content-length"]))
        if headers.get("connection", "").strip() == "close":
            self.close()
        return int(lines[0].split()[1])

    def close(self) -> None:
        """Drop the connection; the next post opens a new one."""
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None
