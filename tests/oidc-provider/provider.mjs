// A real OpenID provider (panva's oidc-provider) for Cloister's end-to-end
// tests; tests/src/oidc.rs starts it and drives it through /control/*.
//
// One client, `cloister` (client_secret_basic, code flow, PKCE S256 required,
// back-channel logout with `sid`), an RS256 key made at start, the issuer
// http://127.0.0.1:PORT on loopback. There is no login or consent page: the
// interaction route signs in whoever the test chose with
// POST /control/next-login and grants every scope and claim requested.
//
// Settings (environment):
//   OIDC_PORT                    port on 127.0.0.1; 0 (default) picks a free one
//   OIDC_REDIRECT_URI            the client's redirect_uri (required)
//   OIDC_BACKCHANNEL_LOGOUT_URI  the client's backchannel_logout_uri (required)
//   OIDC_CLIENT_SECRET           default `cloister-oidc-test-secret`
//   OIDC_EXIT_ON_STDIN_EOF=1     exit when stdin closes (the test process died)
//
// Once listening it prints `ISSUER http://127.0.0.1:PORT` on stdout; that is
// the only line it prints there. Requests and errors are logged on stderr.
//
// Control API (JSON; the server listens on 127.0.0.1 only):
//   POST /control/next-login {"sub", "claims": {...}}  who signs in from now on
//   POST /control/nonce {"nonce": "x" | null}  replace the nonce of GET /auth
//   POST /control/id-token-ttl {"seconds": N}  TTL of ID tokens issued from now
//   POST /control/rotate-keys                 new signing key, new kid → {"kid"}
//   POST /control/backchannel-logout {"sub"}  logout token to the client for each
//                                             of sub's sessions; ends them
//   GET  /control/sessions?sub=...            sub's sessions and their sid

import * as crypto from 'node:crypto';
import * as http from 'node:http';

import Provider from 'oidc-provider';

const CLIENT_ID = 'cloister';

// oidc-provider prints its notices with console.info; stdout is kept for the
// ISSUER line.
console.log = console.error;
console.info = console.error;

if (typeof URL.parse !== 'function') {
  console.error(`oidc-provider needs Node.js >= 20.18 (URL.parse); this is ${process.version}`);
  process.exit(1);
}

const settings = {
  port: Number(process.env.OIDC_PORT ?? 0),
  redirectUri: required('OIDC_REDIRECT_URI'),
  backchannelLogoutUri: required('OIDC_BACKCHANNEL_LOGOUT_URI'),
  clientSecret: process.env.OIDC_CLIENT_SECRET ?? 'cloister-oidc-test-secret',
};

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`${name} must be set`);
    process.exit(2);
  }
  return value;
}

// Everything the tests set, and the provider's storage: kept here so that a
// new Provider instance (after a key rotation) sees the same accounts,
// sessions and grants.
const state = {
  nextLogin: null, // { sub, claims }
  accounts: new Map(), // sub → claims
  nonce: null,
  idTokenTtl: 3600,
  key: signingKey(),
  // The last back-channel request sent, with the relying party's answer.
  lastDelivery: null,
};

const cookieKeys = [crypto.randomBytes(32).toString('base64url')];

/** A new RS256 private JWK with a fresh `kid`. */
function signingKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return {
    ...privateKey.export({ format: 'jwk' }),
    kid: `test-${crypto.randomBytes(6).toString('hex')}`,
    alg: 'RS256',
    use: 'sig',
  };
}

// --- storage ---------------------------------------------------------------

const store = new Map(); // `${model}:${id}` → { payload, expiresAt }
const uidIndex = new Map(); // session uid → session id

function epochTime() {
  return Math.floor(Date.now() / 1000);
}

/** oidc-provider's adapter interface over `store`, one instance per model. */
class MapAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const key = this.key(id);
    store.set(key, { payload, expiresAt: expiresIn ? Date.now() + expiresIn * 1000 : Infinity });
    if (this.model === 'Session') {
      uidIndex.set(payload.uid, id);
    }
  }

  async find(id) {
    const entry = store.get(this.key(id));
    if (!entry) return undefined;
    if (entry.expiresAt <= Date.now()) {
      store.delete(this.key(id));
      return undefined;
    }
    return entry.payload;
  }

  async findByUid(uid) {
    return this.find(uidIndex.get(uid));
  }

  async findByUserCode() {
    return undefined; // no device flow
  }

  async consume(id) {
    const entry = store.get(this.key(id));
    if (entry) entry.payload.consumed = epochTime();
  }

  async destroy(id) {
    store.delete(this.key(id));
  }

  // Called on each token model in turn: only this model's entries go.
  async revokeByGrantId(grantId) {
    for (const [key, { payload }] of store) {
      if (key.startsWith(`${this.model}:`) && payload.grantId === grantId) store.delete(key);
    }
  }
}

/** The live sessions of `sub`: { id, uid, sid, grantId } for our client. */
function sessionsOf(sub) {
  const sessions = [];
  for (const [key, { payload, expiresAt }] of store) {
    if (key.startsWith('Session:') && payload.accountId === sub && expiresAt > Date.now()) {
      const authorization = payload.authorizations?.[CLIENT_ID];
      sessions.push({
        id: key.slice('Session:'.length),
        uid: payload.uid,
        sid: authorization?.sid ?? null,
        grantId: authorization?.grantId ?? null,
      });
    }
  }
  return sessions;
}

// --- the provider ------------------------------------------------------------

/**
 * Outgoing requests (back-channel logout) go through here: without
 * oidc-provider's SSRF guard, which refuses loopback addresses, and
 * remembering what was sent and what the relying party answered.
 */
async function deliver(url, options) {
  delete options.dispatcher;
  const response = await globalThis.fetch(url, options);
  const body = await response.clone().text();
  state.lastDelivery = {
    url: String(url),
    status: response.status,
    body: body.slice(0, 2000),
    logout_token: new URLSearchParams(String(options.body ?? '')).get('logout_token'),
  };
  return response;
}

function newProvider(issuer) {
  const provider = new Provider(issuer, {
    adapter: MapAdapter,
    clients: [
      {
        client_id: CLIENT_ID,
        client_secret: settings.clientSecret,
        redirect_uris: [settings.redirectUri],
        backchannel_logout_uri: settings.backchannelLogoutUri,
        backchannel_logout_session_required: true,
        token_endpoint_auth_method: 'client_secret_basic',
        response_types: ['code'],
        grant_types: ['authorization_code'],
        id_token_signed_response_alg: 'RS256',
      },
    ],
    jwks: { keys: [state.key] },
    cookies: { keys: cookieKeys },
    claims: {
      openid: ['sub'],
      profile: ['preferred_username', 'name'],
      email: ['email', 'email_verified'],
    },
    // The scopes' claims in the ID token too, not only from userinfo.
    conformIdTokenClaims: false,
    features: {
      devInteractions: { enabled: false },
      backchannelLogout: { enabled: true },
    },
    pkce: { required: () => true },
    ttl: {
      AccessToken: 3600,
      AuthorizationCode: 60,
      Grant: 86400,
      IdToken: () => state.idTokenTtl,
      Interaction: 600,
      Session: 86400,
    },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    findAccount: (ctx, sub) => {
      const claims = state.accounts.get(sub);
      return claims && { accountId: sub, claims: () => ({ ...claims, sub }) };
    },
    fetch: deliver,
    renderError: (ctx, out) => {
      ctx.type = 'json';
      ctx.body = out;
    },
  });
  provider.on('server_error', (ctx, error) => console.error('server_error', error));
  provider.on('backchannel.error', (ctx, error) => console.error('backchannel.error', error));
  return provider;
}

// --- the interaction: no pages, the chosen person signs in ---------------------

/** The claim names asked for in the `claims` request parameter. */
function requestedClaims(params) {
  if (!params.claims) return [];
  const { id_token: idToken = {}, userinfo = {} } = JSON.parse(params.claims);
  return [...Object.keys(idToken), ...Object.keys(userinfo)];
}

async function finishInteraction(req, res) {
  const { prompt, params, session, grantId } = await provider.interactionDetails(req, res);
  const result = {};
  let accountId = session?.accountId;
  if (prompt.name === 'login') {
    if (!state.nextLogin) {
      await provider.interactionFinished(req, res, {
        error: 'access_denied',
        error_description: 'nobody to sign in: POST /control/next-login first',
      }, { mergeWithLastSubmission: false });
      return;
    }
    accountId = state.nextLogin.sub;
    result.login = { accountId };
  }
  // A new login gets a new grant; a consent-only interaction widens the
  // session's grant.
  const grant = (!result.login && grantId && await provider.Grant.find(grantId))
    || new provider.Grant({ accountId, clientId: params.client_id });
  grant.addOIDCScope(params.scope);
  const claims = [...requestedClaims(params), ...(prompt.details.missingOIDCClaims ?? [])];
  if (claims.length) grant.addOIDCClaims(claims);
  result.consent = { grantId: await grant.save() };
  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
}

// --- the control API -------------------------------------------------------

async function readJson(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const text = Buffer.concat(chunks).toString('utf8');
  return text ? JSON.parse(text) : {};
}

function sendJson(res, status, value) {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** Ends a session at the OP: it, its grant and the grant's tokens are gone. */
async function endSession({ id, grantId }) {
  await new MapAdapter('Session').destroy(id);
  if (grantId) {
    for (const model of ['AccessToken', 'AuthorizationCode']) {
      await new MapAdapter(model).revokeByGrantId(grantId);
    }
    await new MapAdapter('Grant').destroy(grantId);
  }
}

/** Sends a logout token for each of `sub`'s sessions, then ends them. */
async function backchannelLogout(sub) {
  const client = await provider.Client.find(CLIENT_ID);
  const deliveries = [];
  const sessions = sessionsOf(sub);
  for (const session of sessions) {
    if (session.sid) {
      state.lastDelivery = null;
      let error = null;
      try {
        await client.backchannelLogout(sub, session.sid);
      } catch (e) {
        error = e.message;
      }
      deliveries.push({ sid: session.sid, ...state.lastDelivery, error });
    }
    await endSession(session);
  }
  return {
    sent: deliveries.length,
    statuses: deliveries.map((d) => d.status ?? null),
    deliveries,
    sessions_ended: sessions.length,
  };
}

const control = {
  'POST /control/next-login': async ({ sub, claims = {} }) => {
    if (typeof sub !== 'string' || !sub) throw new Error('"sub" must be a non-empty string');
    const account = { ...claims };
    if (account.email !== undefined && account.email_verified === undefined) {
      account.email_verified = true;
    }
    state.accounts.set(sub, account);
    state.nextLogin = { sub };
    return { sub, claims: account };
  },
  'POST /control/nonce': async ({ nonce = null }) => {
    if (nonce !== null && typeof nonce !== 'string') throw new Error('"nonce" must be a string or null');
    state.nonce = nonce;
    return { nonce };
  },
  'POST /control/id-token-ttl': async ({ seconds }) => {
    if (!Number.isSafeInteger(seconds) || seconds < 1) throw new Error('"seconds" must be an integer >= 1');
    state.idTokenTtl = seconds;
    return { seconds };
  },
  'POST /control/rotate-keys': async () => {
    // oidc-provider has no public way to change its keys: a new Provider
    // takes over the same port, with the same storage, cookies and state.
    state.key = signingKey();
    provider = newProvider(issuer);
    handle = provider.callback();
    return { kid: state.key.kid };
  },
  'POST /control/backchannel-logout': async ({ sub }) => backchannelLogout(sub),
  'GET /control/sessions': async (body, url) => {
    const sub = url.searchParams.get('sub');
    return { sessions: sessionsOf(sub).map(({ sid, uid }) => ({ sid, uid })) };
  },
};

async function controlRequest(req, res, url) {
  const action = control[`${req.method} ${url.pathname}`];
  if (!action) {
    sendJson(res, 404, { error: `no control route ${req.method} ${url.pathname}` });
    return;
  }
  let result;
  try {
    result = await action(req.method === 'POST' ? await readJson(req) : {}, url);
  } catch (error) {
    sendJson(res, 400, { error: error.message });
    return;
  }
  sendJson(res, 200, result);
}

// --- the server --------------------------------------------------------------

/** The tests' nonce, in place of the relying party's, before the OP sees it. */
function overrideNonce(req, url) {
  if (state.nonce !== null && req.method === 'GET' && url.pathname === '/auth') {
    url.searchParams.set('nonce', state.nonce);
    req.url = url.pathname + url.search;
  }
}

async function route(req, res) {
  const url = new URL(req.url, issuer);
  try {
    if (url.pathname.startsWith('/control/')) {
      await controlRequest(req, res, url);
    } else if (req.method === 'GET' && /^\/interaction\/[^/]+$/.test(url.pathname)) {
      await finishInteraction(req, res);
    } else {
      overrideNonce(req, url);
      handle(req, res);
    }
  } catch (error) {
    console.error(`${req.method} ${req.url}:`, error);
    if (!res.headersSent) sendJson(res, 500, { error: String(error.message ?? error) });
  }
}

const server = http.createServer((req, res) => {
  res.on('finish', () => console.error(`${req.method} ${req.url} → ${res.statusCode}`));
  route(req, res);
});

await new Promise((resolve) => server.listen(settings.port, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;
let provider = newProvider(issuer);
let handle = provider.callback();

if (process.env.OIDC_EXIT_ON_STDIN_EOF === '1') {
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
}
process.stdout.write(`ISSUER ${issuer}\n`);
