// Makes a DPoP proof (RFC 9449) for one request, with Node's own crypto and no dependency.
//
//   node demo/dpop-proof.mjs --key FILE METHOD URL [ACCESS_TOKEN]
//
// - FILE holds the client's ES256 private key as a JWK; it is created (mode 0600) when absent,
//   and the same key must sign every proof for tokens bound to it;
// - METHOD and URL are the request's (the URL without query or fragment);
// - ACCESS_TOKEN, when given, is hashed into `ath`: a proof sent to a resource names its token, a
//   proof sent to the token endpoint does not.
//
// It prints the proof on stdout. `--thumbprint` prints the key's RFC 7638 thumbprint instead,
// which is what a bound token carries in `cnf.jkt`.

import { createHash, generateKeyPairSync, randomUUID, sign, createPrivateKey } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values: options, positionals } = parseArgs({
  options: {
    key: { type: 'string' },
    thumbprint: { type: 'boolean', default: false },
  },
  allowPositionals: true,
});

function fail(message) {
  process.stderr.write(`dpop-proof: ${message}\n`);
  process.exit(2);
}

if (!options.key) {
  fail('usage: node demo/dpop-proof.mjs --key FILE METHOD URL [ACCESS_TOKEN]');
}

function loadOrCreateKey(file) {
  if (!existsSync(file)) {
    const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    writeFileSync(file, JSON.stringify(privateKey.export({ format: 'jwk' })), { mode: 0o600 });
  }
  return createPrivateKey({ key: JSON.parse(readFileSync(file, 'utf8')), format: 'jwk' });
}

const base64url = (bytes) => Buffer.from(bytes).toString('base64url');
const privateKey = loadOrCreateKey(options.key);
const { kty, crv, x, y } = privateKey.export({ format: 'jwk' });
const publicJwk = { kty, crv, x, y };

if (options.thumbprint) {
  // RFC 7638: the required members only, in lexicographic order, without whitespace.
  const canonical = JSON.stringify({ crv, kty, x, y });
  process.stdout.write(`${base64url(createHash('sha256').update(canonical).digest())}\n`);
  process.exit(0);
}

const [method, url, accessToken] = positionals;
if (!method || !url) {
  fail('usage: node demo/dpop-proof.mjs --key FILE METHOD URL [ACCESS_TOKEN]');
}
if (url.includes('?') || url.includes('#')) {
  fail('the URL of a proof has no query or fragment (RFC 9449 §4.2)');
}

const header = { typ: 'dpop+jwt', alg: 'ES256', jwk: publicJwk };
const claims = {
  jti: randomUUID(),
  htm: method.toUpperCase(),
  htu: url,
  iat: Math.floor(Date.now() / 1000),
};
if (accessToken) {
  claims.ath = base64url(createHash('sha256').update(accessToken).digest());
}
const signingInput = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
// JOSE wants the raw r || s form, not DER.
const signature = sign('sha256', Buffer.from(signingInput), { key: privateKey, dsaEncoding: 'ieee-p1363' });
process.stdout.write(`${signingInput}.${base64url(signature)}\n`);
