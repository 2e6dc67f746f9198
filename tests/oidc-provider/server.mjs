// panva's oidc-provider with the device flow: the real OpenID Provider the qrauth-oidc tests
// and the device-grant demo log in at. Started by `qrauth_test_support::oidc_provider`.
//
//   node server.mjs [--port N] [--device-ttl SECONDS]
//
// Prints one JSON line `{"issuer": "http://127.0.0.1:PORT"}` on stdout once it listens.
//
// Besides the OP, a few test controls under /__test/ (loopback only, never in a real OP):
//   GET  /__test/counts   requests per endpoint path, and the times (ms) of every /token call
//   POST /__test/config   {"omitComplete": bool, "interval": n|null, "slowDown": n}: drop
//                         verification_uri_complete, advertise `interval`, answer the next n
//                         token requests with `slow_down`
//   POST /__test/rotate   a new signing key (first in the JWKS; the old one stays published)
// The controls sit in front of the provider; nothing of the OP itself is changed or faked.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import http from 'node:http';
import Provider from 'oidc-provider';

const args = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : fallback;
};
const port = Number(arg('--port', '0'));
const deviceTtl = Number(arg('--device-ttl', '600'));

/** The clients of the tests and the demo. */
export const CLIENTS = [
  {
    client_id: 'qrauth-confidential',
    client_secret: 'qrauth-confidential-secret-0123456789',
    client_name: 'qrauth tests',
    grant_types: ['urn:ietf:params:oauth:grant-type:device_code'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
  },
  {
    client_id: 'qrauth-public',
    client_name: 'qrauth tests (public)',
    grant_types: ['urn:ietf:params:oauth:grant-type:device_code'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'none',
  },
];

const controls = { omitComplete: false, interval: null, slowDown: 0 };
const counts = {};
const tokenTimes = [];

function newKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), use: 'sig', alg: 'RS256' };
}

let keys = [newKey()];
let issuer;
let callback;

function build() {
  const provider = new Provider(issuer, {
    clients: CLIENTS,
    jwks: { keys },
    cookies: { keys: ['qrauth-test-cookie-key-0123456789'] },
    features: {
      devInteractions: { enabled: true },
      deviceFlow: { enabled: true },
      revocation: { enabled: true },
    },
    claims: { openid: ['sub'], profile: ['name', 'preferred_username'] },
    ttl: { DeviceCode: () => deviceTtl },
    // In-memory accounts: whoever logs in on the dev interaction pages is that user.
    async findAccount(_ctx, id) {
      return {
        accountId: id,
        async claims() {
          return { sub: id, name: `User ${id}`, preferred_username: id };
        },
      };
    },
  });
  provider.use(async (ctx, next) => {
    counts[ctx.path] = (counts[ctx.path] ?? 0) + 1;
    if (ctx.path === '/token' && ctx.method === 'POST') {
      tokenTimes.push(Date.now());
      if (controls.slowDown > 0) {
        controls.slowDown -= 1;
        ctx.status = 400;
        ctx.body = { error: 'slow_down', error_description: 'polling too fast' };
        return;
      }
    }
    await next();
    if (ctx.path === '/device/auth' && ctx.status === 200 && ctx.body && typeof ctx.body === 'object') {
      if (controls.omitComplete) delete ctx.body.verification_uri_complete;
      if (controls.interval !== null) ctx.body.interval = controls.interval;
    }
  });
  // Loopback, plain HTTP: no proxy in front.
  provider.proxy = false;
  callback = provider.callback();
}

async function body(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : {};
}

function json(res, status, value) {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(value));
}

const server = http.createServer(async (req, res) => {
  const path = (req.url ?? '/').split('?')[0];
  if (!path.startsWith('/__test/')) {
    callback(req, res);
    return;
  }
  try {
    if (path === '/__test/counts' && req.method === 'GET') {
      json(res, 200, { counts, tokenTimes });
    } else if (path === '/__test/config' && req.method === 'POST') {
      const change = await body(req);
      for (const key of Object.keys(controls)) {
        if (key in change) controls[key] = change[key];
      }
      json(res, 200, controls);
    } else if (path === '/__test/rotate' && req.method === 'POST') {
      keys = [newKey(), ...keys];
      build();
      json(res, 200, { kid: keys[0].kid });
    } else {
      json(res, 404, { error: 'unknown test control' });
    }
  } catch (e) {
    json(res, 400, { error: String(e) });
  }
});

server.listen(port, '127.0.0.1', () => {
  issuer = `http://127.0.0.1:${server.address().port}`;
  build();
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

// The test harness kills the process; a closed stdin (the parent died) ends it too.
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
