// A real OpenID provider (oidc-provider) for the demo and the end-to-end tests.
//
//   node server.mjs [--port 9000] [--issuer http://127.0.0.1:9000] [--keys FILE]
//
// - discovery at /.well-known/openid-configuration, signing keys at /jwks;
// - one confidential client, demo-client / demo-secret, with the client_credentials grant
//   (HTTP Basic client authentication at /token);
// - RS256 JWT access tokens whose `aud` is `demo-client`: what Keycloak's audience mapper adds;
//   a token request carrying a DPoP proof (RFC 9449) gets a token bound to the proof's key
//   (`cnf.jkt`, token_type DPoP), without server nonces;
// - one public client, demo-cli (no secret), for people at a terminal: the device authorization
//   grant (RFC 8628) and refresh tokens. The person opens /device, confirms the code, and signs in
//   and approves on this server's own two pages (/interaction/...): any user name is accepted,
//   this is a demo;
// - signing keys from FILE (created on first start, see keys.mjs); SIGHUP reloads them, so a
//   key rotation needs no restart and drops no connection.
//
// It listens on 127.0.0.1 only and logs one line per token issued (never the token).

import { createServer } from 'node:http';
import { parseArgs } from 'node:util';

import Provider, { errors } from 'oidc-provider';

import { ensureKeys, readKeys } from './keys.mjs';

const CLIENT_ID = 'demo-client';
const CLIENT_SECRET = 'demo-secret';
const CLI_CLIENT_ID = 'demo-cli';
const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
const AUDIENCE = 'demo-client';
// oidc-provider needs a resource indicator to issue JWT access tokens; it must be an absolute
// URI. Clients need not send it: it is the default.
const RESOURCE = 'urn:kserve:inference';
const SCOPE = 'predict';
const ACCESS_TOKEN_SECONDS = 600;

const { values: options } = parseArgs({
  options: {
    port: { type: 'string', default: '9000' },
    issuer: { type: 'string' },
    keys: { type: 'string', default: 'op-keys.json' },
  },
});
const port = Number(options.port);
const issuer = options.issuer ?? `http://127.0.0.1:${port}`;

function log(message) {
  console.log(`${new Date().toISOString()} op: ${message}`);
}

function newProvider(jwks) {
  const provider = new Provider(issuer, {
    clients: [{
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      grant_types: ['client_credentials'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'client_secret_basic',
    }, {
      client_id: CLI_CLIENT_ID,
      client_name: 'kserve-auth (demo)',
      grant_types: [DEVICE_CODE_GRANT, 'refresh_token'],
      response_types: [],
      redirect_uris: [],
      token_endpoint_auth_method: 'none',
    }],
    findAccount: (ctx, accountId) => ({ accountId, claims: () => ({ sub: accountId }) }),
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    // Every client allowed the grant gets a refresh token, without `offline_access`.
    issueRefreshToken: (ctx, client) => client.grantTypeAllowed('refresh_token'),
    jwks,
    scopes: [SCOPE],
    ttl: {
      ClientCredentials: ACCESS_TOKEN_SECONDS,
      AccessToken: ACCESS_TOKEN_SECONDS,
      DeviceCode: 600,
      Interaction: 600,
      Grant: 86400,
      Session: 86400,
      RefreshToken: 86400,
    },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      deviceFlow: { enabled: true },
      dPoP: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => RESOURCE,
        useGrantedResource: () => true,
        getResourceServerInfo: (ctx, resourceIndicator) => {
          if (resourceIndicator !== RESOURCE) {
            throw new errors.InvalidTarget();
          }
          return {
            scope: SCOPE,
            audience: AUDIENCE,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
  });
  provider.on('grant.success', (ctx) => {
    log(`issued an access token to ${ctx.oidc.client?.clientId} (${ctx.oidc.params?.grant_type})`);
  });
  provider.on('grant.error', (ctx, error) => log(`token request refused: ${error.message}`));
  provider.on('server_error', (ctx, error) => log(`server error: ${error.stack}`));
  return provider;
}

function describe(jwks) {
  return `signing kid ${jwks.keys[0].kid}; published: ${jwks.keys.map((key) => key.kid).join(', ')}`;
}

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(title, body) {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>${title}</title></head>`
    + `<body><h1>${title}</h1>${body}</body></html>`;
}

async function formBody(req) {
  let text = '';
  for await (const chunk of req) {
    text += chunk;
    if (text.length > 10000) throw new Error('form too large');
  }
  return new URLSearchParams(text);
}

// The sign-in and approval pages a device-flow sign-in leads to: first a user name (any), then
// the access the client asked for.
async function interaction(provider, req, res) {
  const details = await provider.interactionDetails(req, res);
  const { prompt, params, uid } = details;
  const action = `/interaction/${escape(uid)}`;
  if (req.method === 'GET') {
    res.setHeader('content-type', 'text/html; charset=utf-8');
    if (prompt.name === 'login') {
      res.end(page('Sign in', `<form method="post" action="${action}">`
        + '<label>User name <input type="text" name="login" autofocus></label>'
        + '<button type="submit">Sign in</button></form>'));
    } else {
      res.end(page('Approve', `<p>${escape(params.client_id)} asks for: `
        + `${escape(params.scope || '(no scope)')}</p>`
        + `<form method="post" action="${action}"><input type="hidden" name="approve" value="yes">`
        + '<button type="submit">Approve</button></form>'));
    }
    return;
  }
  const form = await formBody(req);
  if (prompt.name === 'login') {
    const login = (form.get('login') || '').trim();
    if (!login) {
      res.statusCode = 400;
      res.end(page('Sign in', '<p>A user name is required.</p>'));
      return;
    }
    log(`${login} signed in`);
    await provider.interactionFinished(req, res, { login: { accountId: login } }, { mergeWithLastSubmission: false });
    return;
  }
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
  if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
  for (const [indicator, scopes] of Object.entries(prompt.details.missingResourceScopes || {})) {
    grant.addResourceScope(indicator, scopes.join(' '));
  }
  const grantId = await grant.save();
  log(`${details.session.accountId} approved ${params.client_id}`);
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

let provider = newProvider(ensureKeys(options.keys));
let handler = provider.callback();
log(describe(readKeys(options.keys)));

const server = createServer((req, res) => {
  if (req.url.startsWith('/interaction/')) {
    interaction(provider, req, res).catch((error) => {
      log(`interaction failed: ${error.message}`);
      res.statusCode = 400;
      res.setHeader('content-type', 'text/html; charset=utf-8');
      res.end(page('Sign-in failed', `<p>${escape(error.message)}</p>`));
    });
    return;
  }
  handler(req, res);
});
server.listen(port, '127.0.0.1', () => {
  log(`issuer ${issuer} listening on 127.0.0.1:${port}`);
});

process.on('SIGHUP', () => {
  try {
    const jwks = readKeys(options.keys);
    provider = newProvider(jwks);
    handler = provider.callback();
    log(`keys reloaded: ${describe(jwks)}`);
  } catch (error) {
    log(`keys not reloaded, the previous ones stay: ${error.message}`);
  }
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    log(`stopping (${signal})`);
    server.close();
    server.closeAllConnections();
    process.exit(0);
  });
}
