// The demo provider's signing keys: a JWKS file with private RSA keys, generated once and kept,
// so tokens and cached public keys stay valid across restarts of the provider.
//
// oidc-provider signs with the first key of the set that fits the algorithm and publishes every
// key, so a rotation is three steps, each followed by `kill -HUP <provider pid>`:
//   node keys.mjs add FILE       a new key is published at the end (not used for signing yet)
//   node keys.mjs promote FILE   the newest key moves to the front: it signs from now on
//   node keys.mjs retire FILE    every key but the signing one is removed
// `node keys.mjs init FILE` creates the file with one key unless it exists.

import { createHash, generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { pathToFileURL } from 'node:url';

/** A new RSA 2048 signing key as a private JWK, its kid the RFC 7638 thumbprint. */
export function newSigningKey() {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  const thumbprintInput = JSON.stringify({ e: jwk.e, kty: jwk.kty, n: jwk.n });
  const kid = createHash('sha256').update(thumbprintInput).digest('base64url');
  return { ...jwk, kid, alg: 'RS256', use: 'sig' };
}

/** The private JWKS in `file`. */
export function readKeys(file) {
  const jwks = JSON.parse(readFileSync(file, 'utf8'));
  if (!Array.isArray(jwks.keys) || jwks.keys.length === 0) {
    throw new Error(`${file}: no keys`);
  }
  return jwks;
}

/** Writes the set atomically and readable by its owner only (it holds private keys). */
export function writeKeys(file, jwks) {
  mkdirSync(dirname(file), { recursive: true });
  const temporary = `${file}.tmp-${process.pid}`;
  writeFileSync(temporary, `${JSON.stringify(jwks, null, 2)}\n`, { mode: 0o600 });
  renameSync(temporary, file);
}

/** Creates `file` with one key unless it already exists; returns the set. */
export function ensureKeys(file) {
  if (!existsSync(file)) {
    writeKeys(file, { keys: [newSigningKey()] });
  }
  return readKeys(file);
}

const steps = {
  init(file) {
    ensureKeys(file);
  },
  add(file) {
    const jwks = readKeys(file);
    jwks.keys.push(newSigningKey());
    writeKeys(file, jwks);
  },
  promote(file) {
    const jwks = readKeys(file);
    jwks.keys.unshift(jwks.keys.pop());
    writeKeys(file, jwks);
  },
  retire(file) {
    const jwks = readKeys(file);
    writeKeys(file, { keys: jwks.keys.slice(0, 1) });
  },
};

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [step, file] = process.argv.slice(2);
  if (!steps[step] || !file) {
    console.error('usage: node keys.mjs init|add|promote|retire FILE');
    process.exit(2);
  }
  steps[step](file);
  // Only public information: which kid signs and which are published.
  const kids = readKeys(file).keys.map((key) => key.kid);
  console.log(`signing kid ${kids[0]}; published: ${kids.join(', ')}`);
}
