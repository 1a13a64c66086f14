"""Cold start: process start to the first answered invocation, against a local Lambda Runtime API.

A small HTTP server (a fresh one on a new port for each start) speaks the Runtime API (`GET /2018-06-01/runtime/invocation/next`, `POST
.../{id}/response`, `.../{id}/error`, `.../init/error`) on a loopback port. For each run the harness
starts the function's process with `AWS_LAMBDA_RUNTIME_API` pointing at it, hands it the orders event
(benches/peers/fixtures/apigw-v2-orders.json) on its first `next`, and stops the clock when the
answer arrives; then it kills the process. Every answer must be a 201 (the allow path), or the run
aborts. The time includes everything the process does first: exec, dynamic loading, the runtime's
own start, module imports, policy load and schema compile, secret prefetch from the environment,
and the first event end to end.

Usage: cold.py RUNS NAME=COMMAND... (COMMAND split on spaces); prints one JSON line per stack on
stdout: {"name", "median_ms", "min_ms", "p90_ms", "runs"}.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
EVENT = (REPO / "benches/peers/fixtures/apigw-v2-orders.json").read_bytes()
PREFIX = "/2018-06-01/runtime"


class Run:
    """One process start: its request id, whether the event went out, the answer."""

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.sent = False
        self.answered = threading.Event()
        self.answer: bytes | None = None
        self.error: str | None = None
        self.t_answer = 0.0
        self.lock = threading.Lock()


class QuietServer(ThreadingHTTPServer):
    """A killed function leaves connections behind: their resets are expected, not reported."""

    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass


CURRENT: Run | None = None
STOP = threading.Event()


class RuntimeApi(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _reply(self, status: int, body: bytes = b"", headers: dict | None = None) -> None:
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        run = CURRENT
        if self.path != f"{PREFIX}/invocation/next" or run is None:
            self._reply(404)
            return
        with run.lock:
            first = not run.sent
            run.sent = True
        if not first:
            # The function asks for its second event: hold it until the run is over.
            STOP.wait(30)
            self.close_connection = True
            return
        deadline = int(time.time() * 1000) + 30_000
        self._reply(200, EVENT, {
            "Content-Type": "application/json",
            "Lambda-Runtime-Aws-Request-Id": run.request_id,
            "Lambda-Runtime-Deadline-Ms": str(deadline),
            "Lambda-Runtime-Invoked-Function-Arn":
                "arn:aws:lambda:us-east-1:123456789012:function:shop-orders-prod-intake",
            "Lambda-Runtime-Trace-Id": "Root=1-67891233-abcdef012345678912345678;Parent=53995c3f42cd8ad8;Sampled=0",
        })

    def do_POST(self) -> None:
        t = time.perf_counter()
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        run = CURRENT
        self._reply(202, b'{"status":"OK"}', {"Content-Type": "application/json"})
        if run is None:
            return
        if self.path == f"{PREFIX}/invocation/{run.request_id}/response":
            run.answer, run.t_answer = body, t
        else:
            run.error = f"{self.path}: {body[:300]!r}"
        run.answered.set()


def status_of(answer: bytes) -> int | None:
    try:
        return json.loads(answer).get("statusCode")
    except (ValueError, AttributeError):
        return None


def time_one(argv: list[str], i: int) -> float:
    global CURRENT
    run = Run(f"cold-{os.getpid()}-{i}")
    CURRENT = run
    STOP.clear()
    # A fresh server (and port) per start: a request the previous process sent just before it was
    # killed can never take this run's event.
    server = QuietServer(("127.0.0.1", 0), RuntimeApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server_addr = f"127.0.0.1:{server.server_address[1]}"
    env = dict(os.environ)
    env.update({
        "AWS_LAMBDA_RUNTIME_API": server_addr,
        "AWS_LAMBDA_FUNCTION_NAME": "shop-orders-prod-intake",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_STREAM_NAME": "cold",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/shop-orders-prod-intake",
        "AWS_REGION": "us-east-1",
        "GUARD_SECRETS_PROVIDER": "env",
        "GUARD_SECRET_ORDERS_API_KEY": "cold-start-key",
        "GUARD_SECRET_ORDERS_WEBHOOK_HMAC": "cold-start-webhook-key",
    })
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ok = run.answered.wait(30)
    STOP.set()
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    server.shutdown()
    server.server_close()
    CURRENT = None
    if not ok:
        sys.exit(f"cold.py: {argv[0]} never answered (stderr: {err[-500:]!r})")
    if run.error or status_of(run.answer or b"") != 201:
        sys.exit(f"cold.py: {argv[0]} did not answer 201: {run.error or run.answer!r} (stderr: {err[-500:]!r})")
    return (run.t_answer - t0) * 1000


def main() -> None:
    runs = int(sys.argv[1])
    stacks = [a.split("=", 1) for a in sys.argv[2:]]
    times: dict[str, list[float]] = {name: [] for name, _ in stacks}
    for name, cmd in stacks:  # one unmeasured start each: the files are in the page cache
        time_one(shlex.split(cmd), -1)
    for i in range(runs):  # interleaved, so load drift hits every stack alike
        for name, cmd in stacks:
            times[name].append(time_one(shlex.split(cmd), i))
    for name, _ in stacks:
        t = sorted(times[name])
        print(json.dumps({
            "name": name,
            "median_ms": round(t[len(t) // 2], 2),
            "min_ms": round(t[0], 2),
            "p90_ms": round(t[min(len(t) - 1, int(len(t) * 0.9))], 2),
            "runs": len(t),
        }), flush=True)


if __name__ == "__main__":
    main()
