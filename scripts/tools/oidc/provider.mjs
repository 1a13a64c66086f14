// A real OpenID Provider (the `oidc-provider` package) for Guard's identity tests.
//
//   node provider.mjs <cert.pem> <key.pem>
//
// Serves https on a free loopback port with the given certificate, and prints one line
// `READY https://127.0.0.1:<port>` once it answers (that URL is the issuer). Issues
// client-credentials access tokens in JWT format (RS256, audience `https://orders.example`) with
// the scopes asked for, to the clients `writer` (`orders:read orders:write`) and `reader`
// (`orders:read`), secret `secret-<client id>`.
//
// Test-only control endpoints (outside the provider, never requested by Guard):
//   POST /_rotate   a new signing key becomes the first (signing) key; the old one stays published
//   POST /_retire   only the newest key stays published
//   GET  /_stats    how many requests each path received (control endpoints not counted)
// The test stops the process by its PID.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import https from 'node:https';

import Provider from 'oidc-provider';

const [certPath, keyPath] = process.argv.slice(2);
if (!certPath || !keyPath) {
  console.error('usage: node provider.mjs <cert.pem> <key.pem>');
  process.exit(2);
}

const AUDIENCE = 'https://orders.example';
const SCOPES = 'orders:read orders:write';

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
    })),
    scopes: ['openid', 'orders:read', 'orders:write'],
    features: {
      devInteractions: { enabled: false },
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

let issuer;
server.listen(0, '127.0.0.1', () => {
  issuer = `https://127.0.0.1:${server.address().port}`;
  handler = makeProvider(issuer, keys).callback();
  console.log(`READY ${issuer}`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
