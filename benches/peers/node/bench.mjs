// Middy peer of the Guard orders perimeter (examples/orders), timed in-process from the payload text to
// the response text: JSON.parse (what the Node runtime does with the invocation payload) + the Middy
// handler + JSON.stringify (what it does with the answer).
//
// Stack, in Middy's `.use()` order (before hooks run top-down, onError/after bottom-up):
//   decision log   one JSON line per invocation (allow or deny) to a null sink
//   error handler  @middy/http-error-handler: thrown http errors -> status responses
//   source IP      requestContext.http.sourceIp must be in 203.0.113.0/24 or 198.51.100.0/24, else 403
//   body parser    @middy/http-json-body-parser: content type check (415) + JSON.parse
//   validator      @middy/validator, order schema under properties.body, compiled once by transpileSchema
// Bare: the same handler function called directly, no Middy at all.
//
// Output contract (see ../README.md): exactly one JSON line on stdout; everything else goes to stderr.
import { readFileSync } from "node:fs";

import middy from "@middy/core";
import httpErrorHandler from "@middy/http-error-handler";
import httpJsonBodyParser from "@middy/http-json-body-parser";
import { createError } from "@middy/util";
import validator from "@middy/validator";
import { transpileSchema } from "@middy/validator/transpile";

const repo = new URL("../../../", import.meta.url);
const readJson = (rel) => JSON.parse(readFileSync(new URL(rel, repo), "utf8"));

const WARMUP = Number(process.env.BENCH_WARMUP ?? 20_000);
const ITERS = Number(process.env.BENCH_ITERS ?? 200_000);
const ROUNDS = 10; // stack and bare alternate in rounds so drift hits both alike

const fail = (msg) => {
	console.error(`middy: sanity check failed: ${msg}`);
	process.exit(1);
};

// ---- inputs shared with every language ----------------------------------------------------------
const orderText = readFileSync(new URL("examples/orders/order.json", repo), "utf8");
const templateText = readFileSync(new URL("benches/peers/fixtures/apigw-v2-orders.json", repo), "utf8");
const template = JSON.parse(templateText);
if (template.body !== orderText.trimEnd()) {
	fail("fixtures/apigw-v2-orders.json body is not examples/orders/order.json");
}

// Middy's validator runs the 2020-12 Ajv, which refuses a `$schema` key naming 2020-12 as a meta-schema
// it does not load by default; drop it and wrap the order under `properties.body` (the validator checks
// the whole event). `format: email` is asserted: the validator registers ajv-formats (full mode).
const { $schema: _draft, ...orderSchema } = readJson("examples/orders/order.schema.json");
const eventSchema = transpileSchema(
	{ type: "object", required: ["body"], properties: { body: orderSchema } },
	{ coerceTypes: false, useDefaults: false },
);

// ---- the source-IP middleware ---------------------------------------------------------------------
const IPV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;
const ipv4ToInt = (s) => {
	const m = typeof s === "string" ? IPV4.exec(s) : null;
	if (m === null) return -1;
	let n = 0;
	for (let i = 1; i <= 4; i++) {
		const octet = Number(m[i]);
		if (octet > 255) return -1;
		n = n * 256 + octet;
	}
	return n;
};
const cidr = (text) => {
	const [base, bits] = text.split("/");
	const size = 2 ** (32 - Number(bits));
	const start = ipv4ToInt(base);
	return [start, start + size];
};
const ALLOWED = ["203.0.113.0/24", "198.51.100.0/24"].map(cidr);
const sourceIpAllowList = () => ({
	before: (request) => {
		const ip = ipv4ToInt(request.event.requestContext?.http?.sourceIp);
		for (const [lo, hi] of ALLOWED) if (ip >= lo && ip < hi) return;
		throw createError(403, "Forbidden");
	},
});

// ---- one JSON decision line per invocation, to a null sink ---------------------------------------
const sink = { lines: 0, bytes: 0, write(line) { this.lines++; this.bytes += line.length; } };
const decisionLog = () => {
	const write = (request) => {
		const status = request.response?.statusCode ?? 500;
		sink.write(
			`${JSON.stringify({
				event: "guard.decision",
				outcome: status < 400 ? "allow" : "deny",
				status,
				code: status < 400 ? null : `middy.${status}`,
				function: request.context.functionName,
				request_id: request.context.awsRequestId,
				trace_id: request.event.headers?.["x-amzn-trace-id"] ?? null,
				peer: request.event.requestContext?.http?.sourceIp ?? null,
				latency_us: Math.round((performance.now() - request.startedAt) * 1000),
			})}\n`,
		);
	};
	return {
		before: (request) => {
			request.startedAt = performance.now();
		},
		after: write,
		onError: write,
	};
};

// ---- handler, stack, bare -------------------------------------------------------------------------
// The handler does not read the body, so bare and stack run the same business code and the difference
// is exactly what the perimeter adds.
const handler = async () => ({
	statusCode: 201,
	headers: { "content-type": "application/json" },
	body: '{"accepted":true}',
});

// Middy's early-timeout timer (armed per call when the context has getRemainingTimeInMillis, as on
// Lambda) is switched off with its documented option, so Middy is timed at its leanest;
// MIDDY_TIMEOUT_EARLY=1 keeps Middy's default (5 ms early) to measure the timer's cost.
const withTimer = process.env.MIDDY_TIMEOUT_EARLY === "1";
const stack = middy(handler, withTimer ? {} : { timeoutEarlyInMillis: 0 })
	.use(decisionLog())
	.use(httpErrorHandler({ logger: false }))
	.use(sourceIpAllowList())
	.use(httpJsonBodyParser())
	.use(validator({ eventSchema }));

// A Lambda-like context.
const context = {
	functionName: "shop-orders-prod-intake",
	functionVersion: "$LATEST",
	memoryLimitInMB: "512",
	awsRequestId: "c6af9ac6-7b61-11e6-9a41-93e812345678",
	invokedFunctionArn: "arn:aws:lambda:us-east-1:123456789012:function:shop-orders-prod-intake",
	getRemainingTimeInMillis: () => 30_000,
};

// ---- cold start (benches/peers/cold): serve the Lambda Runtime API loop instead of benchmarking ----
// A minimal runtime client on node:http, as a custom runtime would be: next → JSON.parse → stack →
// JSON.stringify → response. Everything above (module loading, schema compile) is what a cold start pays.
if (process.env.AWS_LAMBDA_RUNTIME_API) {
	const { request } = await import("node:http");
	const base = `http://${process.env.AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation`;
	const call = (url, method, body) =>
		new Promise((resolve, reject) => {
			const headers = body === undefined ? {} : { "content-length": Buffer.byteLength(body) };
			const req = request(url, { method, headers, agent: false }, (res) => {
				let text = "";
				res.setEncoding("utf8");
				res.on("data", (chunk) => { text += chunk; });
				res.on("end", () => resolve({ headers: res.headers, text }));
			});
			req.on("error", reject);
			req.end(body);
		});
	for (;;) {
		const next = await call(`${base}/next`, "GET");
		const id = next.headers["lambda-runtime-aws-request-id"];
		const out = await stack(JSON.parse(next.text), { ...context, awsRequestId: id });
		await call(`${base}/${id}/response`, "POST", JSON.stringify(out));
	}
}

// ---- sanity: never time a stack that does not do the work -----------------------------------------
const freshEvent = () => structuredClone(template);
const withBody = (mutate) => {
	const e = freshEvent();
	const order = JSON.parse(e.body);
	mutate(order);
	e.body = JSON.stringify(order);
	return e;
};
const cases = [
	["valid order", freshEvent(), 201],
	["qty 0", withBody((o) => { o.items[0].qty = 0; }), 400],
	["invalid email", withBody((o) => { o.customer_email = "not-an-email"; }), 400],
	["unknown property", withBody((o) => { o.coupon = "FREE"; }), 400],
	["string total (no coercion)", withBody((o) => { o.total_cents = "4599"; }), 400],
	["malformed JSON", Object.assign(freshEvent(), { body: '{"order_id":' }), 415],
	["text/plain", (() => { const e = freshEvent(); e.headers["content-type"] = "text/plain"; return e; })(), 415],
	["source 192.0.2.1", (() => { const e = freshEvent(); e.requestContext.http.sourceIp = "192.0.2.1"; return e; })(), 403],
	["source 203.0.114.1", (() => { const e = freshEvent(); e.requestContext.http.sourceIp = "203.0.114.1"; return e; })(), 403],
	["source 198.51.100.255", (() => { const e = freshEvent(); e.requestContext.http.sourceIp = "198.51.100.255"; return e; })(), 201],
];
for (const [name, event, want] of cases) {
	const linesBefore = sink.lines;
	let got;
	try {
		got = (await stack(event, context)).statusCode;
	} catch (err) {
		fail(`${name}: threw ${err}`);
	}
	if (got !== want) fail(`${name}: status ${got}, want ${want}`);
	if (sink.lines !== linesBefore + 1) fail(`${name}: ${sink.lines - linesBefore} log lines, want 1`);
}
if ((await handler(freshEvent(), context)).statusCode !== 201) fail("bare handler: not 201");

// ---- timing -----------------------------------------------------------------------------------------
// Bytes to bytes: the runtime's JSON.parse of the payload and JSON.stringify of the answer are timed too.
const measure = async (fn, n, out, offset) => {
	let bad = 0;
	let bytes = 0;
	for (let i = 0; i < n; i++) {
		const t0 = process.hrtime.bigint();
		const res = await fn(JSON.parse(templateText), context);
		const answer = JSON.stringify(res);
		const t1 = process.hrtime.bigint();
		if (out !== null) out[offset + i] = Number(t1 - t0);
		bytes += answer.length;
		if (res.statusCode !== 201) bad++;
	}
	if (bad !== 0) fail(`${bad} timed invocations were not 201`);
	return bytes;
};

await measure(stack, WARMUP, null, 0);
await measure(handler, WARMUP, null, 0);
const per = Math.ceil(ITERS / ROUNDS);
const stackNs = new Float64Array(per * ROUNDS);
const bareNs = new Float64Array(per * ROUNDS);
const linesBefore = sink.lines;
for (let r = 0; r < ROUNDS; r++) {
	await measure(stack, per, stackNs, r * per);
	await measure(handler, per, bareNs, r * per);
}
if (sink.lines - linesBefore !== per * ROUNDS) fail("not one log line per timed invocation");

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
const us = (ns) => Math.round(ns) / 1000;
stackNs.sort();
bareNs.sort();

// Read the installed manifests directly (package `exports` maps hide `<name>/package.json`).
const pkgVersion = (name) => JSON.parse(readFileSync(new URL(`node_modules/${name}/package.json`, import.meta.url), "utf8")).version;
console.log(
	JSON.stringify({
		name: "middy",
		median_us: us(pct(stackNs, 50)),
		p99_us: us(pct(stackNs, 99)),
		bare_median_us: us(pct(bareNs, 50)),
		bare_p99_us: us(pct(bareNs, 99)),
		samples: stackNs.length,
		runtime: `node ${process.version}`,
		versions: Object.fromEntries(
			["@middy/core", "@middy/validator", "@middy/http-json-body-parser", "@middy/http-error-handler", "ajv", "ajv-formats"].map(
				(n) => [n, pkgVersion(n)],
			),
		),
		note: withTimer ? "Middy default timeoutEarly timer armed per call" : "timeoutEarlyInMillis: 0 (no per-call timer)",
	}),
);
