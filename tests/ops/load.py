"""Load drivers shared by tests/ops/test_load.py (correctness) and bench/bench_load.py (figures).

Concurrent uploaders and job-status pollers over plain keep-alive HTTP connections (one per client, like a
script or a browser tab), on loopback only. Nothing here asserts timings; it records them.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tests.audio import tone, wav_bytes

SAMPLE_RATE = 16000


def distinct_clip(client: int, number: int, seconds: float = 0.2) -> bytes:
    """A short WAV whose audio differs for every (client, number), so no upload is a duplicate of another."""
    frequency = 200.0 + 7.0 * client + 0.37 * number
    samples = tone(frequency, seconds, SAMPLE_RATE, amplitude=0.4, noise=0.02, seed=client * 100_003 + number)
    return wav_bytes(samples, SAMPLE_RATE)


def multipart(fields: dict[str, str], files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """(body, content type) of a multipart/form-data request; files are (field, file name, bytes)."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, filename, data in files:
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
            "Content-Type: audio/wav\r\n\r\n".encode() + data + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class Connection:
    """One keep-alive HTTP connection (a script, a browser tab), with a bearer `token` and/or other `headers`
    (a session cookie) sent on every request. A GET on a connection the server has just closed is retried once
    on a new connection, as browsers do (counted in `reconnects`); a POST is never silently repeated."""

    def __init__(self, port: int, token: str = "", headers: dict[str, str] | None = None, timeout: float = 120) -> None:
        self.port = port
        self.timeout = timeout
        self.headers = {**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        self.reconnects = 0

    def send(self, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None):
        """(status, body bytes, milliseconds)."""
        all_headers = {**self.headers, **(headers or {})}
        for attempt in (1, 2):
            started = time.perf_counter()
            try:
                self.connection.request(method, path, body=body, headers=all_headers)
                response = self.connection.getresponse()
                data = response.read()
                return response.status, data, (time.perf_counter() - started) * 1000
            except (OSError, http.client.HTTPException) as error:
                self.connection.close()
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
                stale = isinstance(error, (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError))
                if not stale or attempt == 2 or method != "GET":
                    raise
                self.reconnects += 1
        raise AssertionError("unreachable")

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None):
        """(status, parsed JSON body or None, milliseconds)."""
        status, data, elapsed = self.send(method, path, body, {"Content-Type": content_type} if content_type else None)
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = None
        return status, parsed, elapsed

    def json(self, method: str, path: str, body: dict | None = None) -> dict:
        """A JSON API call that must succeed: its answer, parsed (RuntimeError with the answer otherwise)."""
        payload = json.dumps(body).encode() if body is not None else None
        status, data, _ = self.send(method, path, payload, {"Content-Type": "application/json"} if body is not None else None)
        if status >= 400:
            raise RuntimeError(f"{method} {path} -> {status}: {data[:500]!r}")
        return json.loads(data)

    def close(self) -> None:
        self.connection.close()


@dataclass
class Run:
    """What a load run saw: one entry per request."""

    latencies_ms: list[float] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    bodies: list = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    reconnects: int = 0
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, status: int, body, elapsed: float) -> None:
        with self._lock:
            self.statuses.append(status)
            self.bodies.append(body)
            self.latencies_ms.append(elapsed)

    def fail(self, error: str) -> None:
        with self._lock:
            self.errors.append(error)

    def count_reconnects(self, connection: Connection) -> None:
        with self._lock:
            self.reconnects += connection.reconnects


def upload_load(port: int, token: str, dataset: str, clients: int = 20, clips_each: int = 50,
                seconds: float = 0.2) -> Run:
    """`clients` uploaders at once, each sending its `clips_each` clips one request at a time."""
    run = Run()
    bodies = {
        (client, number): distinct_clip(client, number, seconds) for client in range(clients) for number in range(clips_each)
    }
    start = threading.Barrier(clients)

    def uploader(client: int) -> None:
        connection = Connection(port, token)
        start.wait()
        try:
            for number in range(clips_each):
                body, content_type = multipart(
                    {"label": f"client-{client:02d}"}, [("files", f"c{client:02d}-{number:03d}.wav", bodies[client, number])]
                )
                try:
                    run.add(*connection.request("POST", f"/api/datasets/{dataset}/clips", body, content_type))
                except (OSError, http.client.HTTPException) as error:
                    run.fail(f"{error.__class__.__name__}: {error}")
        finally:
            run.count_reconnects(connection)
            connection.close()

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(uploader, range(clients)))
    run.seconds = time.perf_counter() - began
    return run


def poll_load(port: int, token: str, job_id: int, pollers: int = 50, interval: float = 1.0,
              seconds: float = 10.0, seed: int = 0) -> Run:
    """`pollers` clients each asking for the job's status every `interval` seconds (starts spread over the
    first interval, as browser tabs opened at different moments would be) for `seconds`."""
    run = Run()
    offsets = random.Random(seed).sample(range(1000), pollers)
    began = time.perf_counter()

    def poller(index: int) -> None:
        connection = Connection(port, token)
        try:
            due = began + interval * offsets[index] / 1000
            while due < began + seconds:
                time.sleep(max(0.0, due - time.perf_counter()))
                try:
                    run.add(*connection.request("GET", f"/api/jobs/{job_id}"))
                except (OSError, http.client.HTTPException) as error:
                    run.fail(f"{error.__class__.__name__}: {error}")
                due += interval
        finally:
            run.count_reconnects(connection)
            connection.close()

    with ThreadPoolExecutor(max_workers=pollers) as pool:
        list(pool.map(poller, range(pollers)))
    run.seconds = time.perf_counter() - began
    return run


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]
