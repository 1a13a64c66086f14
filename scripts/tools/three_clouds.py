#!/usr/bin/env python3
"""The three-cloud demo: the orders function of examples/ on AWS (under `cargo lambda watch`),
Azure (the custom handler, started the way the Functions host starts it) and Google Cloud (on
PORT), all from the one examples/orders/guard.toml, fed the same short scenario. Prints one table
of verdicts per cloud and a sample of the security events, and stops everything it started.

Secrets come from the Env source (GUARD_SECRET_*) and limits are in memory by default.
`--moto` (or GUARD_DEMO_SECRETS=moto) gives the AWS function its secrets from Secrets Manager on a
local moto_server; `--redis URL` (or GUARD_RATE_BACKEND=redis://...) keeps the three functions'
limits in Redis. Standard library only (plus the `openssl` command for the Pub/Sub push token).
"""

import base64
import hashlib
import hmac
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
ORDER = open(os.path.join(ROOT, "examples/orders/order.json"), "rb").read().rstrip()
BAD_ORDER = b'{"order_id":"42","customer_email":"ana@example.com","items":[],"total_cents":-1,"currency":"JPY"}'
WEBHOOK_KEY = "demo-webhook-key"
SECRETS = {
    "GUARD_SECRETS_PROVIDER": "env",
    "GUARD_SECRET_ORDERS_API_KEY": "demo-api-key",
    "GUARD_SECRET_ORDERS_WEBHOOK_HMAC": WEBHOOK_KEY,
}
PARTNER = "203.0.113.10"
OUTSIDE = "192.0.2.44"
PUSH_ACCOUNT = "orders-push@shop-prod.iam.gserviceaccount.com"
SUBSCRIPTION = "projects/shop-prod/subscriptions/orders-push"
FOREIGN_SUBSCRIPTION = "projects/shop-prod/subscriptions/returns-push"
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:orders"
FOREIGN_QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:returns"

started = []  # (name, Popen, output lines)


def say(msg):
    print(f"==> {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(name, cmd, env, cwd=None):
    """Starts `cmd` in its own process group and collects its stdout lines."""
    full_env = dict(os.environ)
    full_env.update(env)
    proc = subprocess.Popen(cmd, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    lines = []

    def pump():
        for raw in proc.stdout:
            lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    started.append((name, proc, lines))
    return lines


def stop_all():
    for name, proc, _ in started:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.time() + 10
    for name, proc, _ in started:
        try:
            proc.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_port(port, name, lines, timeout=300):
    proc = next(p for n, p, l in started if l is lines)
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            time.sleep(0.2)
            print("\n".join(lines[-20:]), file=sys.stderr)
            raise SystemExit(f"{name} exited with {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    print("\n".join(lines[-20:]), file=sys.stderr)
    raise SystemExit(f"{name} did not start listening on {port}")


def post(port, path, body, headers=None, timeout=120):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body, method="POST",
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read(), dict(resp.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read(), dict(e.headers)


def code_of(body):
    try:
        return json.loads(body).get("code", "allow")
    except (ValueError, AttributeError):
        return "?"


def short(status, code):
    return f"{status} {code.removeprefix('guard.')}"


# ------------------------------------------------------------------------------ signatures, tokens

def signature(body, t=None):
    t = int(time.time()) if t is None else t
    mac = hmac.new(WEBHOOK_KEY.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class PushIdentity:
    """A stand-in for Google's push identity: an RSA key (openssl), its JWKS on loopback, and
    RS256 tokens for the push service account."""

    def __init__(self, workdir):
        self.key = os.path.join(workdir, "push-key.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                        "-out", self.key], check=True, capture_output=True)
        modulus = subprocess.run(["openssl", "rsa", "-in", self.key, "-noout", "-modulus"],
                                 check=True, capture_output=True, text=True).stdout
        n = bytes.fromhex(modulus.strip().split("=", 1)[1])
        jwks = json.dumps({"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": "demo",
                                     "n": b64url(n), "e": b64url((65537).to_bytes(3, "big"))}]}).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(jwks)))
                self.end_headers()
                self.wfile.write(jwks)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/certs"

    def token(self, audience):
        now = int(time.time())
        header = b64url(json.dumps({"alg": "RS256", "kid": "demo", "typ": "JWT"}).encode())
        claims = b64url(json.dumps({"iss": "https://accounts.google.com", "aud": audience,
                                    "sub": "1", "email": PUSH_ACCOUNT, "email_verified": True,
                                    "iat": now, "exp": now + 3600}).encode())
        signing_input = f"{header}.{claims}".encode()
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", self.key], input=signing_input,
                             check=True, capture_output=True).stdout
        return f"{header}.{claims}.{b64url(sig)}"

    def close(self):
        self.server.shutdown()


# ------------------------------------------------------------------------------ the three clouds

def tool(name):
    path = os.path.join(ROOT, ".tools/venv/bin", name)
    return path if os.path.exists(path) else (shutil.which(name) or path)


def moto_secrets():
    """Starts moto_server with the two secrets; returns the AWS function's environment."""
    port = free_port()
    lines = start("moto_server", [tool("moto_server"), "-H", "127.0.0.1", "-p", str(port)], {})
    wait_port(port, "moto_server", lines, timeout=60)
    for name, value in (("orders-api-key", SECRETS["GUARD_SECRET_ORDERS_API_KEY"]),
                        ("orders-webhook-hmac", WEBHOOK_KEY)):
        status, raw, _ = post(port, "/", json.dumps({"Name": name, "SecretString": value}).encode(), {
            "Content-Type": "application/x-amz-json-1.1",
            "X-Amz-Target": "secretsmanager.CreateSecret",
            "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/secretsmanager/"
                             "aws4_request, SignedHeaders=host, Signature=0",
        })
        if status != 200:
            raise SystemExit(f"moto refused CreateSecret {name}: {status} {raw[:200]!r}")
    return {"GUARD_SECRETS_PROVIDER": "aws", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


class Aws:
    name = "AWS (API Gateway v2, SQS)"

    def __init__(self, extra_env, secrets_env):
        self.port = free_port()
        cmd = [tool("cargo-lambda"), "lambda", "watch", "--quiet", "--ignore-changes",
               "--invoke-address", "127.0.0.1", "--invoke-port", str(self.port),
               "-p", "aws-orders", "--bin", "aws-orders"]
        if "GUARD_RATE_BACKEND" in extra_env:
            cmd += ["--features", "redis"]
        for k, v in {**secrets_env, **extra_env}.items():
            cmd += ["--env-var", f"{k}={v}"]
        self.lines = start("cargo lambda watch", cmd, {}, cwd=ROOT)
        wait_port(self.port, "cargo lambda watch", self.lines)

    def invoke(self, event):
        status, body, _ = post(self.port, "/2015-03-31/functions/aws-orders/invocations",
                               json.dumps(event).encode())
        if status != 200:
            return None, body
        return json.loads(body), body

    def http(self, peer, body, sig=None):
        headers = {"content-type": "application/json", "x-forwarded-for": peer}
        if sig:
            headers["x-guard-signature"] = sig
        event = {"version": "2.0", "routeKey": "POST /orders", "rawPath": "/orders",
                 "rawQueryString": "", "headers": headers,
                 "requestContext": {"accountId": "123456789012", "apiId": "demo",
                                    "domainName": "demo.execute-api.us-east-1.amazonaws.com",
                                    "http": {"method": "POST", "path": "/orders", "protocol": "HTTP/1.1",
                                             "sourceIp": peer, "userAgent": "demo"},
                                    "requestId": "demo", "routeKey": "POST /orders", "stage": "$default"},
                 "body": body.decode(), "isBase64Encoded": False}
        out, raw = self.invoke(event)
        if out is None:
            return f"invoke failed: {raw[:80]!r}"
        return short(out.get("statusCode"), code_of(out.get("body", "")))

    def message(self, body, foreign):
        event = {"Records": [{"messageId": "demo-1", "receiptHandle": "h", "body": body.decode(),
                              "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {},
                              "md5OfBody": "", "eventSource": "aws:sqs",
                              "eventSourceARN": FOREIGN_QUEUE_ARN if foreign else QUEUE_ARN,
                              "awsRegion": "us-east-1"}]}
        before = len(decisions(self.lines))
        out, raw = self.invoke(event)
        if out is None:
            return f"invoke failed: {raw[:80]!r}"
        if not out.get("batchItemFailures"):
            return "ack"
        # SQS learns only "failed" (batchItemFailures); why is in the record's security event.
        deadline = time.time() + 5
        while len(decisions(self.lines)) <= before and time.time() < deadline:
            time.sleep(0.05)
        events = decisions(self.lines)[before:]
        return f"nack {short(events[-1]['status'], events[-1]['code'])}" if events else "nack"


class Azure:
    name = "Azure (HTTP, queue)"

    def __init__(self, extra_env, workdir):
        # The app as deployed: the example's functions, plus one bound to another queue.
        app = os.path.join(workdir, "azure-app")
        src = os.path.join(ROOT, "examples/azure-orders")
        os.makedirs(app)
        shutil.copy(os.path.join(src, "host.json"), app)
        for f in ("orders", "orders-queue"):
            shutil.copytree(os.path.join(src, f), os.path.join(app, f))
        os.makedirs(os.path.join(app, "returns-queue"))
        with open(os.path.join(app, "returns-queue/function.json"), "w") as fh:
            json.dump({"bindings": [{"type": "queueTrigger", "direction": "in", "name": "msg",
                                     "queueName": "returns", "connection": "AzureWebJobsStorage"}]}, fh)
        self.port = free_port()
        env = {**SECRETS, **extra_env, "FUNCTIONS_CUSTOMHANDLER_PORT": str(self.port),
               "FUNCTIONS_WORKER_RUNTIME": "custom", "WEBSITE_SITE_NAME": "shop-orders"}
        self.lines = start("azure-orders", [os.path.join(TARGET, "debug/azure-orders")], env, cwd=app)
        wait_port(self.port, "azure-orders", self.lines)

    def http(self, peer, body, sig=None):
        headers = {"Content-Type": ["application/json"], "X-Forwarded-For": [peer]}
        if sig:
            headers["X-Guard-Signature"] = [sig]
        envelope = {"Data": {"req": {"Url": "https://shop-orders.azurewebsites.net/api/orders",
                                     "Method": "POST", "Query": {}, "Headers": headers,
                                     "Params": {}, "Identities": [], "Body": body.decode()}},
                    "Metadata": {}}
        status, raw, _ = post(self.port, "/orders", json.dumps(envelope).encode(),
                              {"Content-Type": "application/json"})
        res = json.loads(raw)["Outputs"]["res"]
        return short(res["statusCode"], code_of(res.get("body", "")))

    def message(self, body, foreign):
        envelope = {"Data": {"msg": body.decode()}, "Metadata": {"Id": "demo-1", "DequeueCount": 1}}
        status, raw, _ = post(self.port, "/returns-queue" if foreign else "/orders-queue",
                              json.dumps(envelope).encode(), {"Content-Type": "application/json"})
        return "ack" if 200 <= status < 300 else f"nack {short(status, code_of(raw))}"


class Gcp:
    name = "Google Cloud (HTTP, Pub/Sub)"

    def __init__(self, extra_env, identity):
        self.identity = identity
        self.port = free_port()
        env = {**SECRETS, **extra_env, "PORT": str(self.port), "K_SERVICE": "gcp-orders",
               "GUARD_GCP_JWKS_URL": identity.url}
        self.lines = start("gcp-orders", [os.path.join(TARGET, "debug/gcp-orders")], env, cwd=ROOT)
        wait_port(self.port, "gcp-orders", self.lines)
        self.token = identity.token("https://orders.example.com/pubsub")

    def http(self, peer, body, sig=None):
        # Google's front end appends the caller's address to X-Forwarded-For.
        headers = {"Content-Type": "application/json", "X-Forwarded-For": peer}
        if sig:
            headers["X-Guard-Signature"] = sig
        status, raw, _ = post(self.port, "/orders", body, headers)
        return short(status, code_of(raw))

    def message(self, body, foreign):
        envelope = {"message": {"data": base64.b64encode(body).decode(), "messageId": "demo-1",
                                "publishTime": "2026-12-01T20:00:00Z"},
                    "subscription": FOREIGN_SUBSCRIPTION if foreign else SUBSCRIPTION,
                    "deliveryAttempt": 1}
        status, raw, _ = post(self.port, "/pubsub", json.dumps(envelope).encode(),
                              {"Content-Type": "application/json",
                               "Authorization": f"Bearer {self.token}",
                               "X-Forwarded-For": "66.249.84.1"})
        return "ack" if status in (102, 200, 201, 202, 204) else f"nack {short(status, code_of(raw))}"


# ------------------------------------------------------------------------------ the scenario

def scenario(cloud):
    rows = []
    rows.append(("good order from a partner address", cloud.http(PARTNER, ORDER)))
    rows.append(("bad order (schema)", cloud.http(PARTNER, BAD_ORDER)))
    rows.append(("forged signature", cloud.http(OUTSIDE, ORDER, "t=%d,v1=%s" % (time.time(), "0" * 64))))
    rows.append(("outside address, unsigned", cloud.http(OUTSIDE, ORDER)))
    signed = signature(ORDER)
    rows.append(("signed call from outside", cloud.http(OUTSIDE, ORDER, signed)))
    rows.append(("the same signed call again (replay)", cloud.http(OUTSIDE, ORDER, signed)))
    burst_peer = "198.51.100.77"
    verdicts = [cloud.http(burst_peer, ORDER) for _ in range(12)]
    rows.append(("burst of 12 from one address (last)", verdicts[-1]))
    rows.append(("message from the orders queue", cloud.message(ORDER, foreign=False)))
    rows.append(("message from a foreign queue", cloud.message(ORDER, foreign=True)))
    return rows


def decisions(lines):
    out = []
    for line in lines:
        try:
            v = json.loads(line)
        except ValueError:
            continue
        if isinstance(v, dict) and v.get("event") == "guard.decision":
            out.append(v)
    return out


def redis_db(env, db):
    """`env` with its Redis URL pointing at database `db` (the three functions share one policy,
    hence one key space: on one server each cloud needs a database of its own)."""
    if "GUARD_RATE_BACKEND" not in env:
        return env
    url = urllib.parse.urlsplit(env["GUARD_RATE_BACKEND"])
    return {**env, "GUARD_RATE_BACKEND": urllib.parse.urlunsplit(url._replace(path=f"/{db}"))}


def main(args):
    extra_env = {}
    redis = os.environ.get("GUARD_RATE_BACKEND")
    if "--redis" in args:
        i = args.index("--redis")
        if i + 1 >= len(args):
            raise SystemExit("--redis needs a URL (redis://127.0.0.1:6379)")
        redis = args[i + 1]
    if redis:
        extra_env["GUARD_RATE_BACKEND"] = redis
    use_moto = "--moto" in args or os.environ.get("GUARD_DEMO_SECRETS") == "moto"
    workdir = tempfile.mkdtemp(prefix="guard-demo-")
    identity = None
    try:
        identity = PushIdentity(workdir)
        aws_secrets = SECRETS
        if use_moto:
            say("starting moto_server: the AWS function reads its secrets from Secrets Manager")
            aws_secrets = moto_secrets()
        if redis:
            say(f"limits are kept in {redis}, databases 1, 2 and 3: one per cloud, as three "
                "separate deployments would each have their own")
        say("starting AWS: aws-orders under `cargo lambda watch`")
        aws = Aws(redis_db(extra_env, 1), aws_secrets)
        say("starting Azure: azure-orders as the Functions host starts it (FUNCTIONS_CUSTOMHANDLER_PORT)")
        azure = Azure(redis_db(extra_env, 2), workdir)
        say("starting Google Cloud: gcp-orders on PORT")
        gcp = Gcp(redis_db(extra_env, 3), identity)
        clouds = [aws, azure, gcp]
        say("sending the scenario to each cloud (the first AWS invocation starts the function)")
        results = [scenario(c) for c in clouds]
        time.sleep(1.0)
        steps = [r[0] for r in results[0]]
        widths = [max(len(s) for s in steps)] + [
            max(len(c.name), *(len(v) for _, v in r)) for c, r in zip(clouds, results)]
        header = ["scenario"] + [c.name for c in clouds]
        print()
        print(" | ".join(h.ljust(w) for h, w in zip(header, widths)))
        print("-+-".join("-" * w for w in widths))
        agree = True
        for i, step in enumerate(steps):
            cells = [r[i][1] for r in results]
            agree &= len(set(cells)) == 1
            print(" | ".join(c.ljust(w) for c, w in zip([step] + cells, widths)))
        print()
        print("one policy (examples/orders/guard.toml), " +
              ("the same verdict on every cloud" if agree else "DIFFERENT VERDICTS: see above"))
        print()
        print("a sample of the security events (one JSON line per decision on each function's stdout):")
        for c in clouds:
            events = decisions(c.lines)
            print(f"  {c.name}: {len(events)} events, e.g.")
            for e in [events[0], events[3]] if len(events) > 3 else events[:2]:
                keys = ("outcome", "code", "status", "layer", "cloud", "trigger", "source_id", "peer", "principal")
                print("    " + json.dumps({k: e.get(k) for k in keys}))
        return 0 if agree else 1
    finally:
        say("stopping everything the demo started")
        stop_all()
        if identity:
            identity.close()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
