// A real OpenID Provider (the `oidc-provider` package) for Guard's identity tests.
//
//   node provider.mjs <cert.pem> <key.pem>
//
// Serves https on a free loopback port with the given certificate, and prints one line
// `READY https://127.0.0.1:<port>` once it answers (that URL is the issuer). Issues
// client-credentials access tokens in JWT format (RS256, audience `https://orders.example`) with
// the scopes asked for, to the clients `writer` (`orders:read orders:write`) and `reader`
// (`orders:read`), secret `secret-<client id>`; and ID tokens (audience `web`) to the client `web`
// through the authorization code flow with the provider's development login.
//
// Test-only control endpoints (outside the provider, never requested by Guard):
//   POST /_rotate   a new signing key becomes the first (signing) key; the old one stays published
//   POST /_retire   only the newest key stays published
//   GET  /_stats    how many requests each path received (control endpoints not counted)
//   GET  /_id_token?login=<name>   runs the authorization code flow for `web` as <name> against
//                   this provider (log in, consent, code for tokens) and answers {id_token}
// The test stops the process by its PID.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { URLSearchParams } from 'node:url';

import Provider from 'oidc-provider';

// stdout carries the READY line only (the test stops reading it then): the provider's own notices
// go to stderr.
console.log = console.error;
console.info = console.error;

const [certPath, keyPath] = process.argv.slice(2);
if (!certPath || !keyPath) {
  console.error('usage: node provider.mjs <cert.pem> <key.pem>');
  process.exit(2);
}

const AUDIENCE = 'https://orders.example';
const SCOPES = 'orders:read orders:write';
const REDIRECT = 'https://client.example/cb';

function signingKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'RS256', use: 'sig' };
}

function makeProvider(issuer, keys) {
  const provider = new Provider(issuer, {
    jwks: { keys },
    clients: [
      ['writer', SCOPES],
      ['reader', 'orders:read'],
    ].map(([id, scope]) => ({
      client_id: id,
      client_secret: `secret-${id}`,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      scope,
    })).concat([{
      client_id: 'web',
      client_secret: 'secret-web',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: [REDIRECT],
      scope: 'openid',
    }]),
    scopes: ['openid', 'orders:read', 'orders:write'],
    features: {
      devInteractions: { enabled: true },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => AUDIENCE,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: SCOPES,
          audience: AUDIENCE,
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        }),
      },
    },
  });
  provider.on('server_error', (_ctx, err) => console.error('server_error', err));
  return provider;
}

const counts = {};
let keys = [signingKey()];
let handler = () => {};
const server = https.createServer(
  { cert: readFileSync(certPath), key: readFileSync(keyPath) },
  (req, res) => {
    const path = req.url.split('?')[0];
    if (path === '/_stats') {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify(counts));
      return;
    }
    if (path === '/_id_token') {
      const login = new URL(req.url, issuer).searchParams.get('login') || 'alice';
      idToken(login).then(
        (token) => {
          res.setHeader('content-type', 'application/json');
          res.end(JSON.stringify({ id_token: token }));
        },
        (err) => {
          res.statusCode = 500;
          res.end(String(err));
        },
      );
      return;
    }
    if (path === '/_rotate' || path === '/_retire') {
      keys = path === '/_rotate' ? [signingKey(), ...keys] : keys.slice(0, 1);
      handler = makeProvider(issuer, keys).callback();
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ kid: keys[0].kid }));
      return;
    }
    counts[path] = (counts[path] || 0) + 1;
    handler(req, res);
  },
);

/// One request to this provider itself (its certificate is the test's own: not checked here).
function self(method, path, { cookies, form, auth } = {}) {
  const body = form ? new URLSearchParams(form).toString() : undefined;
  const headers = { cookie: [...cookies].map(([k, v]) => `${k}=${v}`).join('; ') };
  if (body) headers['content-type'] = 'application/x-www-form-urlencoded';
  if (auth) headers.authorization = auth;
  return new Promise((resolve, reject) => {
    const url = new URL(path, issuer);
    const r = https.request(url, { method, headers, rejectUnauthorized: false }, (resp) => {
      let data = '';
      resp.on('data', (c) => { data += c; });
      resp.on('end', () => {
        for (const c of resp.headers['set-cookie'] || []) {
          const [pair] = c.split(';');
          const i = pair.indexOf('=');
          cookies.set(pair.slice(0, i), pair.slice(i + 1));
        }
        resolve({ status: resp.statusCode, location: resp.headers.location, data });
      });
    });
    r.on('error', reject);
    if (body) r.write(body);
    r.end();
  });
}

/// The authorization code flow for the client `web` as `login`: the development login and
/// consent prompts answered, the code exchanged for tokens.
async function idToken(login) {
  const cookies = new Map();
  const auth = new URLSearchParams({
    client_id: 'web', response_type: 'code', scope: 'openid', redirect_uri: REDIRECT,
    state: 'state-1', nonce: 'nonce-1',
  });
  let step = await self('GET', `/auth?${auth}`, { cookies });
  for (let i = 0; i < 8; i += 1) {
    if (!step.location) throw new Error(`no redirect at step ${i}: ${step.status} ${step.data}`);
    const next = new URL(step.location, issuer);
    if (next.href.startsWith(REDIRECT)) {
      const code = next.searchParams.get('code');
      if (!code) throw new Error(`no code: ${next.href}`);
      const basic = Buffer.from('web:secret-web').toString('base64');
      const tokens = await self('POST', '/token', {
        cookies: new Map(),
        auth: `Basic ${basic}`,
        form: { grant_type: 'authorization_code', code, redirect_uri: REDIRECT },
      });
      const { id_token: idt } = JSON.parse(tokens.data);
      if (!idt) throw new Error(`no id_token: ${tokens.data}`);
      return idt;
    }
    if (next.pathname.startsWith('/interaction/')) {
      const page = await self('GET', next.pathname, { cookies });
      const form = page.data.includes('name="login"')
        ? { prompt: 'login', login, password: 'any' }
        : { prompt: 'consent' };
      step = await self('POST', next.pathname, { cookies, form });
    } else {
      step = await self('GET', next.pathname + next.search, { cookies });
    }
  }
  throw new Error('the authorization code flow did not end');
}

let issuer;
server.listen(0, '127.0.0.1', () => {
  issuer = `https://127.0.0.1:${server.address().port}`;
  handler = makeProvider(issuer, keys).callback();
  process.stdout.write(`READY ${issuer}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
