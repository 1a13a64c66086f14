"""Powertools for AWS Lambda (Python) peer of the Guard orders perimeter (examples/orders), timed
from the payload text to the response text: json.loads (what the Python runtime does with the
invocation payload) + the handler + json.dumps (what it does with the answer).

Stack, outermost first, built from Powertools' own pieces:
  logger.inject_lambda_context   Powertools Logger on a null handler (see LOG_SINK below)
  decision_log                   one JSON line per invocation (allow or deny) through that Logger
  http_errors                    exceptions -> status responses (what Middy's http-error-handler does)
  source_ip_allowlist            requestContext.http.sourceIp in 203.0.113.0/24 or 198.51.100.0/24, else 403
  validated_body                 content type (415), JSON parse and schema validation, in two modes:
     as shipped    Powertools `validate(event, schema, envelope=API_GATEWAY_HTTP)`, which calls
                   `fastjsonschema.validate` and so generates and compiles the validator on every call;
     precompiled   `json.loads` + a validator built once with `fastjsonschema.compile`.
The middlewares are `lambda_handler_decorator`s (Powertools' middleware factory).
Bare: the same handler function called directly.

Output contract (see ../README.md): one JSON line per mode on stdout; everything else goes to stderr.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from importlib import metadata
from pathlib import Path

import fastjsonschema
from aws_lambda_powertools import Logger
from aws_lambda_powertools.middleware_factory import lambda_handler_decorator
from aws_lambda_powertools.utilities.validation import SchemaValidationError, envelopes, validate

REPO = Path(__file__).resolve().parents[3]

WARMUP = int(os.environ.get("BENCH_WARMUP", "5000"))
ITERS = int(os.environ.get("BENCH_ITERS", "100000"))
# As shipped costs milliseconds per call: fewer samples keep the run short.
SHIPPED_WARMUP = int(os.environ.get("BENCH_SHIPPED_WARMUP", "50"))
SHIPPED_ITERS = int(os.environ.get("BENCH_SHIPPED_ITERS", "1000"))
ROUNDS = 10  # stack and bare alternate in rounds so drift hits both alike


def fail(msg: str) -> None:
    print(f"powertools: sanity check failed: {msg}", file=sys.stderr)
    sys.exit(1)


# ---- inputs shared with every language -----------------------------------------------------------
ORDER_TEXT = (REPO / "examples/orders/order.json").read_text()
TEMPLATE_TEXT = (REPO / "benches/peers/fixtures/apigw-v2-orders.json").read_text()
if json.loads(TEMPLATE_TEXT)["body"] != ORDER_TEXT.rstrip("\n"):
    fail("fixtures/apigw-v2-orders.json body is not examples/orders/order.json")

# fastjsonschema implements drafts 4/6/7/2019-09; a 2020-12 `$schema` selects its newest generator,
# and every keyword of the order schema means the same there. `format: email` is asserted by default.
ORDER_SCHEMA = json.loads((REPO / "examples/orders/order.schema.json").read_text())
VALIDATE_ORDER = fastjsonschema.compile(ORDER_SCHEMA)


class LambdaContext:
    """The attributes Powertools reads from the Lambda context object."""

    function_name = "shop-orders-prod-intake"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:shop-orders-prod-intake"
    memory_limit_in_mb = 512
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    log_group_name = "/aws/lambda/shop-orders-prod-intake"
    log_stream_name = "2026/11/01/[$LATEST]0123456789abcdef"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 30_000


CONTEXT = LambdaContext()


class NullSink:
    """A stream that drops what it is given but counts it."""

    def __init__(self) -> None:
        self.lines = 0
        self.chars = 0

    def write(self, text: str) -> int:
        self.lines += 1
        self.chars += len(text)
        return len(text)

    def flush(self) -> None:
        pass


SINK = NullSink()
# Default: the Logger's handler is a `logging.NullHandler` (counting its records so the one-line-per-call
# checks hold). Powertools still builds the LogRecord (caller lookup, extra keys) but its JSON formatter
# never runs, so no line is formatted: this favours Powertools, and matches issue 7's reference figure.
# POWERTOOLS_LOG_SINK=stream gives the Logger a stream that drops the text instead, so the JSON line is
# formatted as in production (about 20 µs more per call on the reference machine).
LOG_SINK = os.environ.get("POWERTOOLS_LOG_SINK", "nullhandler")
if LOG_SINK not in ("nullhandler", "stream"):
    sys.exit(f"powertools: POWERTOOLS_LOG_SINK must be nullhandler or stream, not {LOG_SINK!r}")
NULL_HANDLER = LOG_SINK == "nullhandler"


class CountingNullHandler(logging.NullHandler):
    def handle(self, record: logging.LogRecord) -> bool:
        SINK.lines += 1
        return True


logger = (
    Logger(service="orders", logger_handler=CountingNullHandler())
    if NULL_HANDLER
    else Logger(service="orders", stream=SINK)
)


# ---- the checks ------------------------------------------------------------------------------------
class HttpError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


def response(status: int, body: str) -> dict:
    return {"statusCode": status, "headers": {"content-type": "application/json"}, "body": body}


_IPV4 = re.compile(r"(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})", re.ASCII)


def ipv4_to_int(text: object) -> int:
    m = _IPV4.fullmatch(text) if isinstance(text, str) else None
    if m is None:
        return -1
    n = 0
    for octet in map(int, m.groups()):
        if octet > 255:
            return -1
        n = n * 256 + octet
    return n


def cidr(text: str) -> tuple[int, int]:
    base, bits = text.split("/")
    start = ipv4_to_int(base)
    return start, start + 2 ** (32 - int(bits))


ALLOWED = [cidr("203.0.113.0/24"), cidr("198.51.100.0/24")]


@lambda_handler_decorator
def source_ip_allowlist(handler, event, context):
    ip = ipv4_to_int(event.get("requestContext", {}).get("http", {}).get("sourceIp"))
    for lo, hi in ALLOWED:
        if lo <= ip < hi:
            return handler(event, context)
    raise HttpError(403)


@lambda_handler_decorator
def http_errors(handler, event, context):
    try:
        return handler(event, context)
    except HttpError as e:
        return response(e.status, '{"message":"request refused"}')
    except (SchemaValidationError, fastjsonschema.JsonSchemaValueException):
        return response(400, '{"message":"Event object failed validation"}')
    except ValueError:  # json.JSONDecodeError
        return response(400, '{"message":"malformed JSON"}')


@lambda_handler_decorator
def decision_log(handler, event, context):
    started = time.perf_counter_ns()
    result = handler(event, context)
    status = result.get("statusCode", 500)
    logger.info(
        "guard.decision",
        extra={
            "outcome": "allow" if status < 400 else "deny",
            "status": status,
            "code": None if status < 400 else f"powertools.{status}",
            "trace_id": event.get("headers", {}).get("x-amzn-trace-id"),
            "peer": event.get("requestContext", {}).get("http", {}).get("sourceIp"),
            "latency_us": (time.perf_counter_ns() - started) // 1000,
        },
    )
    return result


def as_shipped(event: dict) -> object:
    return validate(event=event, schema=ORDER_SCHEMA, envelope=envelopes.API_GATEWAY_HTTP)


def precompiled(event: dict) -> object:
    return VALIDATE_ORDER(json.loads(event["body"]))


def validated_body(check):
    @lambda_handler_decorator
    def middleware(handler, event, context):
        content_type = event.get("headers", {}).get("content-type", "")
        if not content_type.startswith("application/json"):
            raise HttpError(415)
        event["body"] = check(event)
        return handler(event, context)

    return middleware


# ---- handler, stacks, bare -------------------------------------------------------------------------
def handler(event, context):
    """Does not read the body, so bare and stack run the same business code."""
    return response(201, '{"accepted":true}')


def build_stack(check):
    @logger.inject_lambda_context
    @decision_log
    @http_errors
    @source_ip_allowlist
    @validated_body(check)
    def stacked(event, context):
        return handler(event, context)

    return stacked


STACKS = {"precompiled": build_stack(precompiled), "as shipped": build_stack(as_shipped)}


# ---- cold start (benches/peers/cold): serve the Lambda Runtime API loop instead of benchmarking -----
# A minimal runtime client on http.client, as a custom runtime would be: next -> json.loads -> stack ->
# json.dumps -> response. Everything above (imports, schema compile) is what a cold start pays.
if os.environ.get("AWS_LAMBDA_RUNTIME_API"):
    import http.client

    host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
    conn = http.client.HTTPConnection(host, int(port))
    base = "/2018-06-01/runtime/invocation"
    while True:
        conn.request("GET", f"{base}/next")
        res = conn.getresponse()
        event = json.loads(res.read())
        request_id = res.headers["Lambda-Runtime-Aws-Request-Id"]
        answer = json.dumps(STACKS["precompiled"](event, CONTEXT)).encode()
        conn.request("POST", f"{base}/{request_id}/response", body=answer)
        conn.getresponse().read()

# ---- sanity: never time a stack that does not do the work ------------------------------------------
def fresh_event() -> dict:
    return json.loads(TEMPLATE_TEXT)


def with_body(mutate) -> dict:
    event = fresh_event()
    order = json.loads(event["body"])
    mutate(order)
    event["body"] = json.dumps(order)
    return event


def with_event(mutate) -> dict:
    event = fresh_event()
    mutate(event)
    return event


CASES = [
    ("valid order", fresh_event, 201),
    ("qty 0", lambda: with_body(lambda o: o["items"][0].update(qty=0)), 400),
    ("invalid email", lambda: with_body(lambda o: o.update(customer_email="not-an-email")), 400),
    ("unknown property", lambda: with_body(lambda o: o.update(coupon="FREE")), 400),
    ("string total (no coercion)", lambda: with_body(lambda o: o.update(total_cents="4599")), 400),
    ("malformed JSON", lambda: with_event(lambda e: e.update(body='{"order_id":')), 400),
    ("text/plain", lambda: with_event(lambda e: e["headers"].update({"content-type": "text/plain"})), 415),
    ("source 192.0.2.1", lambda: with_event(lambda e: e["requestContext"]["http"].update(sourceIp="192.0.2.1")), 403),
    ("source 203.0.114.1", lambda: with_event(lambda e: e["requestContext"]["http"].update(sourceIp="203.0.114.1")), 403),
    ("source 198.51.100.255", lambda: with_event(lambda e: e["requestContext"]["http"].update(sourceIp="198.51.100.255")), 201),
]

for mode, stack in STACKS.items():
    for name, make, want in CASES:
        before = SINK.lines
        try:
            got = stack(make(), CONTEXT)["statusCode"]
        except Exception as e:  # noqa: BLE001 - any escape is a failed check
            fail(f"{mode}: {name}: raised {type(e).__name__}")
        if got != want:
            fail(f"{mode}: {name}: status {got}, want {want}")
        if SINK.lines != before + 1:
            fail(f"{mode}: {name}: {SINK.lines - before} log lines, want 1")
if handler(fresh_event(), CONTEXT)["statusCode"] != 201:
    fail("bare handler: not 201")


# ---- timing ----------------------------------------------------------------------------------------
def measure(fn, n: int, out: list[int] | None) -> None:
    """Bytes to bytes: the runtime's json.loads of the payload and json.dumps of the answer are timed."""
    clock = time.perf_counter_ns
    loads, dumps, text = json.loads, json.dumps, TEMPLATE_TEXT
    bad = 0
    for _ in range(n):
        t0 = clock()
        res = fn(loads(text), CONTEXT)
        answer = dumps(res)
        t1 = clock()
        if out is not None:
            out.append(t1 - t0)
        if res["statusCode"] != 201 or not answer:
            bad += 1
    if bad:
        fail(f"{bad} timed invocations were not 201")


def run(stack, warmup: int, iters: int) -> tuple[list[int], list[int]]:
    measure(stack, warmup, None)
    measure(handler, warmup, None)
    per = -(-iters // ROUNDS)
    stack_ns: list[int] = []
    bare_ns: list[int] = []
    before = SINK.lines
    for _ in range(ROUNDS):
        measure(stack, per, stack_ns)
        measure(handler, per, bare_ns)
    if SINK.lines - before != per * ROUNDS:
        fail("not one log line per timed invocation")
    return stack_ns, bare_ns


def pct(samples: list[int], p: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, -(-len(ordered) * p // 100) - 1))
    return ordered[int(index)] / 1000


VERSIONS = {
    "aws-lambda-powertools": metadata.version("aws-lambda-powertools"),
    "fastjsonschema": metadata.version("fastjsonschema"),
    "jmespath": metadata.version("jmespath"),
}

for mode, warmup, iters in (("precompiled", WARMUP, ITERS), ("as shipped", SHIPPED_WARMUP, SHIPPED_ITERS)):
    stack_ns, bare_ns = run(STACKS[mode], warmup, iters)
    line = {
        "name": f"powertools ({mode})",
        "median_us": pct(stack_ns, 50),
        "p99_us": pct(stack_ns, 99),
        "bare_median_us": pct(bare_ns, 50),
        "bare_p99_us": pct(bare_ns, 99),
        "samples": len(stack_ns),
        "runtime": f"python {sys.version.split()[0]}",
        "versions": VERSIONS,
        "note": ("schema compiled once by fastjsonschema.compile" if mode == "precompiled"
                 else "validate() recompiles the schema on every call")
        + ("; Logger on logging.NullHandler: the JSON line is not formatted" if NULL_HANDLER
           else "; Logger on a null stream: the JSON line is formatted"),
    }
    print(json.dumps(line), flush=True)
