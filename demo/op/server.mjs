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
    }],
    jwks,
    scopes: [SCOPE],
    ttl: { ClientCredentials: ACCESS_TOKEN_SECONDS },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
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
    log(`issued an access token to ${ctx.oidc.client?.clientId}`);
  });
  provider.on('grant.error', (ctx, error) => log(`token request refused: ${error.message}`));
  provider.on('server_error', (ctx, error) => log(`server error: ${error.stack}`));
  return provider;
}

function describe(jwks) {
  return `signing kid ${jwks.keys[0].kid}; published: ${jwks.keys.map((key) => key.kid).join(', ')}`;
}

let handler = newProvider(ensureKeys(options.keys)).callback();
log(describe(readKeys(options.keys)));

const server = createServer((req, res) => handler(req, res));
server.listen(port, '127.0.0.1', () => {
  log(`issuer ${issuer} listening on 127.0.0.1:${port}`);
});

process.on('SIGHUP', () => {
  try {
    const jwks = readKeys(options.keys);
    handler = newProvider(jwks).callback();
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
