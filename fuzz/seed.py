"""Writes the fuzz targets' seed corpora from the project's test fixtures.

Usage: python3 fuzz/seed.py  (from the repository root). Output: fuzz/seeds/<target>/.
"""
import base64
import hashlib
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
SEEDS = ROOT / "fuzz" / "seeds"


def write(target, data):
    folder = SEEDS / target
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)


def unpadded_base64url(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def write_rsa(modulus, signature):
    """An `rsa` target input: (modulus length - 8) / 2, the modulus, a signature as long."""
    n = unpadded_base64url(modulus).lstrip(b"\0")
    try:
        s = unpadded_base64url(signature)
    except ValueError:
        return
    if len(s) == len(n) and len(n) % 2 == 0 and 8 <= len(n) <= 518:
        write("rsa", bytes([(len(n) - 8) // 2]) + n + s)


def main():
    signatures = json.loads((FIXTURES / "wycheproof" / "json_web_signature_test.json").read_text())
    for group in signatures["testGroups"]:
        if "public" in group:
            write("jwks", json.dumps({"keys": [group["public"]]}))
        for test in group["tests"]:
            jws = test["jws"]
            if isinstance(jws, str) and group.get("public", {}).get("kty") == "RSA":
                write_rsa(group["public"]["n"], jws.rsplit(".", 1)[-1])
            if isinstance(jws, str):
                write("token", jws)
                write("request", f"/v1/models/m:predict\nPOST\nauthorization: Bearer {jws}\nhost: kserve.test")
                write("request", f"/v2/models/m/infer?access_token={jws}\nPOST\nhost: kserve.test")
    keys = json.loads((FIXTURES / "wycheproof" / "json_web_key_test.json").read_text())
    for group in keys["testGroups"]:
        for test in group["tests"]:
            for field in ("jwk", "jwks", "private", "public"):
                if field in test:
                    value = test[field]
                    write("jwks", json.dumps(value if "keys" in value else {"keys": [value]}))
    for path in sorted((FIXTURES / "config").glob("*.json")):
        write("config", path.read_text())
    for path in ("/v2/health/ready", "/optional", "/v1/models/m:explain", "//v2/health/../models/x"):
        write("request", f"{path}\nGET\nhost: kserve.test")
    write("request", "/v1/models/m:predict\nPOST\nauthorization: Bearer \nhost: kserve.test")
    for path in ("/v1/models/fraud%3Apredict", "/v2/health/..;/v1/models/x:predict", "/a/%2e%2E/b%25",
                 "/v2/%6dodels/m%3b/infer?x", "/caf%C3%A9/./x/../y"):
        write("path", path)
    # Body scanners: a first byte choosing the piece size, then the body.
    for body in (b'{"model": "llama-a", "messages": [{"role": "user", "content": "hi"}]}',
                 b'{"messages": [{"model": "x"}], "m\\u006fdel": "caf\\u00e9", "n": 1.5e3}',
                 b'\xef\xbb\xbf {"model": "a", "model": "b"}',
                 b'{"tools": [[], {}, "}"], "stream": true, "model": null}'):
        write("json_model", b"\x03" + body)
    infer = b"\x1a\x02id\x0a\x07llama-a\x3a\x03\x01\x02\x03\x20\x2c"
    write("grpc_model", b"\x02\x00" + len(infer).to_bytes(4, "big") + infer)
    write("grpc_model", b"\x05\x00\x00\x00\x00\x04\x0a\x02ab")
    write("signature", b"\x08\x01\x12\x02ok")
    write("signature", bytes(64))
    write("signature", bytes(range(96)))


if __name__ == "__main__":
    main()
