#!/usr/bin/env python3
"""Benchmark the filter side by side with Envoy's native jwt_authn, in one Envoy run.

One Envoy (`--concurrency 1`) serves every row on its own loopback listener; all routes answer
with a direct 200, so rows differ only in their HTTP filters. wrk loads each row in turn (a
warm-up, then a measured run) and the results are printed as one table.

Usage: bench/run.py [--smoke]   (normally through `make bench` / `make bench-smoke`)

Settings (environment variables; `make bench` passes its variables of the same name):
  BENCH_DURATION     measured run per row (wrk -d)                   default 10s  (smoke: 1s)
  BENCH_WARMUP       warm-up per row, not measured; 0 to skip        default 2s   (smoke: 0)
  BENCH_CONNECTIONS  wrk connections                                 default 16   (smoke: 4)
  BENCH_THREADS      wrk threads                                     default 1
  BENCH_TOKENS       distinct tokens per algorithm for cold rows     default 5000 (smoke: 500)
  BENCH_PIN          1: Envoy on the last CPU, wrk on the first      default 1 (when >= 2 CPUs)
  BENCH_ROWS         comma-separated row ids to run (default: all; see ROWS)
  ENVOY, WASM, WRK   paths of the Envoy binary, the plugin, wrk
  BENCH_DIR          working folder (tokens, rendered config, logs)  default target/bench

Exit status: 0 when every row that ran answered only 2xx (or the one status its row expects, the
401 rows) with no socket error; 1 otherwise; 2 when the benchmark could not start. A row whose
plugin configuration Envoy's VM refused (for example a field this build does not know yet) is
reported as "not run" without failing.
"""

import base64
import http.client
import json
import os
import re
import shutil
import signal
import string
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ISSUER = "https://issuer.bench.local"
AUDIENCE = "kserve-bench"
# Minted tokens live this long; fresh ones are minted when less than MIN_VALIDITY is left.
TOKEN_HOURS = 12
MIN_VALIDITY_S = 3600
BASELINE = "jwt_authn"
# Keys in the set the kid-less rows verify against.
KEY_SET_SIZE = 20
# Host rules in the host-rule rows' configurations; each row's requests go to the last host.
HOST_RULE_COUNTS = (1, 100, 1000)
# The DPoP row's requests: one bound token, a fresh proof each, for GET http://DPOP_HOST/.
DPOP_HOST = "dpop.bench.local"
# The body rows: the OpenAI-compatible endpoint a model rule covers, and a path whose rule does not
# depend on the body.
BODY_PATH = "/openai/v1/chat/completions"
HEADER_ONLY_PATH = "/header-only/v1/chat/completions"
BODY_MODEL = "llama-bench"


def service_host(index):
    """The public host of the index-th InferenceService in the host-rule configurations."""
    return f"model-team{index}.models.example.com"


@dataclass
class Row:
    """One line of the table: a listener, a path, and which tokens wrk sends."""

    id: str
    label: str
    listener: str
    path: str = "/"
    tokens: str | None = None  # "rs256" / "es256" / "rs256-forged" / ...: the token file wrk cycles
    hot: bool = False  # only the first token, reused on every request
    host: str | None = None  # the Host header sent; None: wrk's default (127.0.0.1:<port>)
    single_use: bool = False  # each line is used by one request only (DPoP proofs)
    body: str | None = None  # a body file (BODIES) sent with POST on every request
    expect: int | None = None  # the status every answer must have; None: any 2xx
    port: int | None = None
    result: dict | None = None
    paced: dict | None = None  # the fixed-rate pass, for the rows in PACED_ROWS
    skipped: str | None = None  # why the row could not run
    failed: str | None = None  # why the row failed (unexpected status, socket errors, wrk error)


ROWS = [
    Row("passthrough", "no filter (passthrough)", "passthrough"),
    # The floor carries the hot row's token to a public path: the rows then differ only in the
    # filter's authentication work, not in the ~600 bytes Envoy and V8 move per request.
    Row("wasm_floor", "ours, public path (wasm floor)", "wasm_floor", path="/public",
        tokens="rs256", hot=True),
    Row("wasm_public", "ours, public path, no token", "wasm_floor", path="/public"),
    Row(BASELINE, "jwt_authn, no cache (hot token)", "jwt_authn_hot", tokens="rs256", hot=True),
    Row("jwt_authn_cache", "jwt_authn, cache 10000 (hot token)", "jwt_authn_cached_hot",
        tokens="rs256", hot=True),
    Row("wasm_hot", "ours, hot (one RS256 token)", "wasm_hot", tokens="rs256", hot=True),
    Row("wasm_cold_rs256", "ours, no cache, cold RS256", "wasm_cold_rs256", tokens="rs256"),
    Row("wasm_cold_es256", "ours, no cache, cold ES256", "wasm_cold_es256", tokens="es256"),
    Row("wasm_cache_cold_rs256", "ours, cache 10000, cold RS256", "wasm_cached_cold_rs256",
        tokens="rs256"),
    Row("wasm_cache_cold_es256", "ours, cache 10000, cold ES256", "wasm_cached_cold_es256",
        tokens="es256"),
    Row("jwt_authn_cold_rs256", "jwt_authn, no cache, cold RS256", "jwt_authn_cold_rs256",
        tokens="rs256"),
    Row("jwt_authn_cold_es256", "jwt_authn, no cache, cold ES256", "jwt_authn_cold_es256",
        tokens="es256"),
    Row("jwt_authn_cache_cold_rs256", "jwt_authn, cache 10000, cold RS256",
        "jwt_authn_cached_cold_rs256", tokens="rs256"),
    Row("jwt_authn_cache_cold_es256", "jwt_authn, cache 10000, cold ES256",
        "jwt_authn_cached_cold_es256", tokens="es256"),
    Row("wasm_cold_rs256_no_host_crypto", "ours, no cache, cold RS256, host_crypto false",
        "wasm_cold_rs256_no_host_crypto", tokens="rs256"),
    Row("wasm_cold_es256_no_host_crypto", "ours, no cache, cold ES256, host_crypto false",
        "wasm_cold_es256_no_host_crypto", tokens="es256"),
    # What a flood of bad requests costs, each answered 401 with its challenge: no token at all,
    # and the cold RS256 tokens with one signature character changed (a failed check is never
    # cached, so each one costs a signature check). Both filters as configured by default.
    Row("wasm_no_token", "ours, no token (401)", "wasm_hot", expect=401),
    Row("jwt_authn_no_token", "jwt_authn, no token (401)", "jwt_authn_hot", expect=401),
    Row("wasm_forged_rs256", "ours, forged RS256 (401)", "wasm_hot", tokens="rs256-forged",
        expect=401),
    Row("jwt_authn_forged_rs256", "jwt_authn, forged RS256 (401)", "jwt_authn_hot",
        tokens="rs256-forged", expect=401),
    # Forged RS256 tokens without a `kid` against a key set of KEY_SET_SIZE RSA keys: ours tries
    # at most four fitting keys per token (verify::MAX_SIGNATURE_CHECKS), jwt_authn every one.
    Row("wasm_forged_kidless_20", f"ours, forged kid-less RS256, {KEY_SET_SIZE} keys (401)",
        "wasm_keys20", tokens="rs256-kidless-forged", expect=401),
    Row("jwt_authn_forged_kidless_20",
        f"jwt_authn, forged kid-less RS256, {KEY_SET_SIZE} keys (401)", "jwt_authn_keys20",
        tokens="rs256-kidless-forged", expect=401),
    # A provider as deployments configure it: the payload and two claims (a scalar and an array)
    # forwarded as headers, Authorization removed. Its floor is the same listener's public path
    # with the same token; the `forward` row keeps Authorization, to isolate its removal.
    Row("wasm_identity_floor", "ours, identity headers, public path (its floor)", "wasm_identity",
        path="/public", tokens="rs256", hot=True),
    Row("wasm_identity_hot", "ours, hot, identity headers", "wasm_identity", tokens="rs256",
        hot=True),
    Row("wasm_identity_forward_hot", "ours, hot, identity headers, forward: true",
        "wasm_identity_forward", tokens="rs256", hot=True),
    # The same header changes made by a filter that does nothing else (examples/header_cost.rs):
    # the difference of these two rows is what Envoy charges for the four changes themselves.
    Row("host_floor", "header changes only: none (public path)", "host_cost", path="/public",
        tokens="rs256", hot=True),
    Row("host_identity", "header changes only: the identity row's four", "host_cost",
        tokens="rs256", hot=True),
    # DPoP: the hot RS256 token of wasm_hot, bound to an ES256 key, and a fresh proof per
    # request (its signature checked with the key in its header, then recorded in the replay set).
    Row("wasm_dpop_hot", "ours, hot, DPoP-bound, fresh ES256 proof each", "wasm_dpop",
        tokens="dpop", host=DPOP_HOST, single_use=True),
    # Models named in the body: an OpenAI chat completion to a model rule, with the model first or
    # after the messages, beside the same request to a rule that does not read the body.
    *[Row(f"wasm_body_{size}_{where}", f"ours, hot, {size} chat body, model {where}", "wasm_body",
          path=path, tokens="rs256", hot=True, body=f"chat-{size}-{body_where}")
      for size in ("2k", "256k")
      for where, path, body_where in (("first", BODY_PATH, "first"), ("last", BODY_PATH, "last"),
                                      ("header_only", HEADER_ONLY_PATH, "last"))],
    Row("jwt_authn_identity_hot", "jwt_authn, no cache, hot, identity headers",
        "jwt_authn_identity_hot", tokens="rs256", hot=True),
    # One gateway in front of many InferenceServices: a host rule per service (an exact public
    # host and an in-cluster wildcard each), the hot token sent to the last service's host.
    *[Row(f"wasm_hosts_{count}", f"ours, hot, {count} host rule{'s' * (count > 1)}, last host",
          f"wasm_hosts_{count}", tokens="rs256", hot=True, host=service_host(count - 1))
      for count in HOST_RULE_COUNTS],
]


class SetupError(Exception):
    """The benchmark cannot start (missing tool, Envoy refused its configuration, ...)."""


class PluginRefused(Exception):
    """Envoy did not start because one plugin instance refused its configuration."""

    def __init__(self, plugin, reason):
        super().__init__(f"{plugin}: {reason}")
        self.plugin = plugin
        self.reason = reason


def log(message):
    print(f"bench: {message}", file=sys.stderr, flush=True)


@dataclass
class Settings:
    smoke: bool
    duration: str
    warmup: str
    connections: int
    threads: int
    tokens: int
    pin: bool
    rows: list
    envoy: Path
    wasm: Path
    wrk: str
    work: Path

    @staticmethod
    def from_env(smoke):
        env = os.environ

        def get(name, default, smoke_default=None):
            value = env.get(name, "")
            if value:
                return value
            return smoke_default if smoke and smoke_default is not None else default

        rows = [r.strip() for r in get("BENCH_ROWS", "").split(",") if r.strip()]
        known = {row.id for row in ROWS}
        unknown = [r for r in rows if r not in known]
        if unknown:
            raise SetupError(f"unknown BENCH_ROWS {unknown}; rows: {', '.join(sorted(known))}")
        return Settings(
            smoke=smoke,
            duration=get("BENCH_DURATION", "10s", "1s"),
            warmup=get("BENCH_WARMUP", "2s", "0"),
            connections=int(get("BENCH_CONNECTIONS", "16", "4")),
            threads=int(get("BENCH_THREADS", "1")),
            tokens=int(get("BENCH_TOKENS", "5000", "500")),
            pin=get("BENCH_PIN", "1") != "0",
            rows=rows,
            envoy=Path(get("ENVOY", str(ROOT / ".venv/envoy/bin/envoy"))).resolve(),
            wasm=Path(get("WASM", str(ROOT / "target/kserve_auth_filter.wasm"))).resolve(),
            wrk=get("WRK", "wrk"),
            work=Path(get("BENCH_DIR", str(ROOT / "target/bench"))).resolve(),
        )


# ---------------------------------------------------------------------------------------------
# Tokens and configuration


def tokens_fresh(work, count):
    """Whether the minted files hold at least `count` tokens for our issuer, valid long enough."""
    try:
        meta = json.loads((work / "meta.json").read_text())
    except (OSError, ValueError):
        return False
    files = [work / "jwks.json", work / "tokens-rs256.txt", work / "tokens-es256.txt"]
    return (
        all(f.exists() for f in files)
        and meta.get("count", 0) >= count
        and meta.get("issuer") == ISSUER
        and meta.get("audience") == AUDIENCE
        and meta.get("realm_roles") is not None
        and meta.get("expires_at", 0) - time.time() > MIN_VALIDITY_S
    )


def mint_tokens(settings):
    if tokens_fresh(settings.work, settings.tokens):
        return
    log(f"minting {settings.tokens} RS256 and ES256 tokens into {settings.work}")
    command = [
        "cargo", "run", "--quiet", "--example", "mint_tokens", "--",
        "--out", str(settings.work), "--count", str(settings.tokens),
        "--issuer", ISSUER, "--audience", AUDIENCE, "--hours", str(TOKEN_HOURS),
    ]
    if subprocess.run(command, cwd=ROOT).returncode != 0:
        raise SetupError("minting tokens failed (cargo run --example mint_tokens)")


HEADER_COST_WASM = ROOT / "target/wasm32-wasip1/release/examples/header_cost.wasm"


def build_header_cost():
    """examples/header_cost.rs, the filter of the host_* rows."""
    command = ["cargo", "build", "--quiet", "--release", "--target", "wasm32-wasip1",
               "--example", "header_cost"]
    if subprocess.run(command, cwd=ROOT).returncode != 0:
        raise SetupError("building examples/header_cost.rs failed")


def write_forged_tokens(work):
    """tokens-rs256-forged.txt: each RS256 token with the middle character of its signature
    changed, so the signature still decodes to the modulus's length but no longer verifies."""
    forged = []
    for token in (work / "tokens-rs256.txt").read_text().splitlines():
        if not token:
            continue
        signing_input, signature = token.rsplit(".", 1)
        middle = len(signature) // 2
        replacement = "B" if signature[middle] == "A" else "A"
        forged.append(f"{signing_input}.{signature[:middle]}{replacement}{signature[middle + 1:]}")
    (work / "tokens-rs256-forged.txt").write_text("\n".join(forged) + "\n")
    # The same forgeries with a header that names no key: a verifier must pick keys itself.
    kidless_header = base64.urlsafe_b64encode(b'{"alg":"RS256","typ":"JWT"}').rstrip(b"=").decode()
    kidless = [kidless_header + token[token.index("."):] for token in forged]
    (work / "tokens-rs256-kidless-forged.txt").write_text("\n".join(kidless) + "\n")


def many_keys_jwks(jwks):
    """A JWKS of KEY_SET_SIZE RSA keys that fit RS256: the bench's RSA key under as many kids
    (none of which signed the forged tokens)."""
    rsa = next(key for key in json.loads(jwks)["keys"] if key["kty"] == "RSA")
    keys = [dict(rsa, kid=f"bench-{index}") for index in range(KEY_SET_SIZE)]
    return json.dumps({"keys": keys})


def yaml_string(text):
    """A YAML double-quoted scalar: JSON's string escapes are all valid YAML escapes."""
    return json.dumps(text)


# The identity a realistic provider forwards (bench/envoy.yaml.in gives jwt_authn the same).
IDENTITY_PAYLOAD_HEADER = "x-jwt-payload"
IDENTITY_CLAIM_HEADERS = [("x-jwt-sub", "sub"), ("x-jwt-roles", "realm_access.roles")]


def plugin_config(jwks, host_crypto=None, cache_size=None, identity=None):
    """The bench provider behind `/public` (public) and `/` (protected). `identity` forwards the
    payload and two claims as headers: "remove" drops Authorization as by default, "forward" keeps
    it."""
    config = {
        "providers": {
            "bench": {
                "issuer": ISSUER,
                "audiences": [AUDIENCE],
                "local_jwks": {"inline_string": jwks},
            }
        },
        "rules": [
            {"match": {"prefix": "/public"}},
            {"match": {"prefix": "/"}, "requires": {"provider_name": "bench"}},
        ],
    }
    if host_crypto is not None:
        config["host_crypto"] = host_crypto
    if cache_size is not None:
        config["providers"]["bench"]["jwt_cache_config"] = {"jwt_cache_size": cache_size}
    if identity is not None:
        config["providers"]["bench"].update({
            "forward_payload_header": IDENTITY_PAYLOAD_HEADER,
            "claim_to_headers": [{"header_name": header, "claim_name": claim}
                                 for header, claim in IDENTITY_CLAIM_HEADERS],
            "forward": identity == "forward",
        })
    return json.dumps(config)


# Proofs are minted right before the row and must still be fresh at its end.
DPOP_PROOF_MAX_AGE = "300s"


def dpop_config(jwks):
    """The bench provider with DPoP required: every request carries a proof that is checked
    (signature with the proof's own ES256 key, htm, htu, iat, ath, cnf.jkt) and recorded in the
    replay set, on top of the hot token."""
    config = json.loads(plugin_config(jwks))
    config["providers"]["bench"]["dpop"] = {
        "mode": "required", "max_age": DPOP_PROOF_MAX_AGE, "replay_cache_size": 262144}
    return json.dumps(config)


def mint_dpop(settings, row):
    """tokens-dpop.txt: the bound token, then one proof per request the row sends (preflight,
    warm-up, measured run), fresh for this run."""
    command = [
        "cargo", "run", "--quiet", "--example", "mint_dpop", "--",
        "--out", str(settings.work), "--count", str(sum(dpop_proofs(settings))),
        "--url", f"http://{row.host}{row.path}", "--issuer", ISSUER, "--audience", AUDIENCE,
    ]
    if subprocess.run(command, cwd=ROOT).returncode != 0:
        raise SetupError("minting DPoP proofs failed (cargo run --example mint_dpop)")


# More DPoP requests per second than one Envoy worker verifies (about 10,000 ES256 checks): each
# wrk run gets this many proofs per second of its duration, so it never runs out.
DPOP_PROOFS_PER_SECOND = 15000


def dpop_proofs(settings):
    """Proofs for the preflight, the warm-up and the measured run of the DPoP row."""
    def seconds(duration):
        return float(duration.rstrip("s") or 0)
    warmup = int(seconds(settings.warmup) * DPOP_PROOFS_PER_SECOND)
    return 1, warmup, int(seconds(settings.duration) * DPOP_PROOFS_PER_SECOND)


def body_config(jwks):
    """The bench provider with a model rule for BODY_MODEL: chat completions under /openai/v1/
    are held until their body names the model; the same request under /header-only/ is not."""
    config = json.loads(plugin_config(jwks))
    config["rules"][1:1] = [{"match": {"model": BODY_MODEL},
                             "requires": {"provider_name": "bench"}}]
    config["openai_prefixes"] = ["/openai/v1/"]
    config["model_header"] = "x-kserve-model"
    return json.dumps(config)


def write_bodies(work):
    """chat-<size>-<first|last>.json: an OpenAI chat completion of about 2 KiB or 256 KiB whose
    top-level model comes before or after its messages."""
    for size, target in (("2k", 2 * 1024), ("256k", 256 * 1024)):
        messages = []
        while len(json.dumps(messages)) < target - 100:
            messages.append({"role": "user", "content": "lorem ipsum dolor sit amet " * 4})
        for where in ("first", "last"):
            members = [("model", BODY_MODEL), ("messages", messages)]
            if where == "last":
                members.reverse()
            (work / f"chat-{size}-{where}.json").write_text(json.dumps(dict(members)))


def host_rules_config(jwks, count):
    """The bench provider behind `count` host rules, one per InferenceService: its public host
    and its namespace's in-cluster wildcard."""
    config = json.loads(plugin_config(jwks))
    services = [
        {"match": {"prefix": "/", "hosts": [service_host(index),
                                            f"*.team{index}.svc.cluster.local"]},
         "requires": {"provider_name": "bench"}}
        for index in range(count)
    ]
    config["rules"][1:1] = services
    return json.dumps(config)


def without_listener(config, name):
    """The rendered configuration minus one listener (blocks start with `  - name: <listener>`)."""
    pattern = re.compile(rf"^  - name: {re.escape(name)}\n.*?(?=^  - name: |\Z)", re.M | re.S)
    return pattern.sub("", config, count=1)


def render_config(settings, dropped=()):
    jwks = (settings.work / "jwks.json").read_text().strip()
    template = string.Template((ROOT / "bench/envoy.yaml.in").read_text())
    rendered = template.substitute(
        WASM=yaml_string(str(settings.wasm)),
        HEADER_COST_WASM=yaml_string(str(HEADER_COST_WASM)),
        JWKS=yaml_string(jwks),
        ISSUER=yaml_string(ISSUER),
        AUDIENCE=yaml_string(AUDIENCE),
        PLUGIN_CONFIG=yaml_string(plugin_config(jwks)),
        # Cold rows turn the verified-token cache off, so every request pays for a signature
        # check, as jwt_authn without a cache does.
        PLUGIN_CONFIG_COLD=yaml_string(plugin_config(jwks, cache_size=0)),
        PLUGIN_CONFIG_NO_HOST_CRYPTO=yaml_string(plugin_config(jwks, host_crypto=False, cache_size=0)),
        JWKS_20=yaml_string(many_keys_jwks(jwks)),
        PLUGIN_CONFIG_20=yaml_string(plugin_config(many_keys_jwks(jwks))),
        PLUGIN_CONFIG_IDENTITY=yaml_string(plugin_config(jwks, identity="remove")),
        PLUGIN_CONFIG_IDENTITY_FORWARD=yaml_string(plugin_config(jwks, identity="forward")),
        PLUGIN_CONFIG_DPOP=yaml_string(dpop_config(jwks)),
        PLUGIN_CONFIG_BODY=yaml_string(body_config(jwks)),

        **{f"PLUGIN_CONFIG_HOSTS_{count}": yaml_string(host_rules_config(jwks, count))
           for count in HOST_RULE_COUNTS},
    )
    for name in dropped:
        rendered = without_listener(rendered, name)
    path = settings.work / "envoy.yaml"
    path.write_text(rendered)
    return path


# ---------------------------------------------------------------------------------------------
# Envoy


def cpu_sets(settings):
    """(envoy CPUs, wrk CPUs) for pinning, or (None, None)."""
    if not settings.pin or not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return {cpus[-1]}, set(cpus[:-1])


def pinned(cpus):
    if cpus is None:
        return None
    return lambda: os.sched_setaffinity(0, cpus)


class Envoy:
    def __init__(self, settings, config, cpus):
        self.settings = settings
        self.admin_file = settings.work / "envoy-admin.txt"
        self.log_path = settings.work / "envoy.log"
        self.admin_file.unlink(missing_ok=True)
        self.log_file = open(self.log_path, "w")
        command = [
            str(settings.envoy), "-c", str(config), "--concurrency", "1",
            "--disable-hot-restart", "--admin-address-path", str(self.admin_file),
            "--log-level", "warning",
        ]
        self.process = subprocess.Popen(
            command, stdout=self.log_file, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=pinned(cpus),
        )
        self.admin = None

    def cpu_seconds(self):
        """User plus system CPU time Envoy has used so far (all its threads), in seconds."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        # After the command name: state is field 3, utime 14 and stime 15 (proc(5)).
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_tail(self, lines=30):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, listeners, timeout=60):
        """Waits until the admin endpoint is LIVE and every listener is bound; returns ports."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.raise_refused_plugin()
                raise SetupError(
                    f"Envoy exited with status {self.process.returncode}:\n{self.log_tail()}")
            if self.admin is None and self.admin_file.exists():
                text = self.admin_file.read_text().strip()
                if text:
                    host, _, port = text.rpartition(":")
                    self.admin = (host, int(port))
            if self.admin is not None:
                try:
                    status, body = self.get("/ready")
                    if status == 200:
                        ports = self.listener_ports()
                        if all(name in ports for name in listeners):
                            return ports
                except OSError:
                    pass
            time.sleep(0.1)
        raise SetupError(f"Envoy not ready after {timeout} s:\n{self.log_tail()}")

    def raise_refused_plugin(self):
        """Raises PluginRefused when Envoy's log says a plugin could not be created."""
        text = self.log_path.read_text(errors="replace")
        match = re.search(r"Unable to create Wasm plugin (\S+?)`", text)
        if not match:
            return
        plugin = match.group(1)
        said = re.search(rf"wasm log {re.escape(plugin)}: (.*)", text)
        raise PluginRefused(plugin, said.group(1).strip() if said else "failed to load")

    def get(self, path):
        connection = http.client.HTTPConnection(*self.admin, timeout=5)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, response.read().decode(errors="replace")
        finally:
            connection.close()

    def listener_ports(self):
        status, body = self.get("/listeners?format=json")
        if status != 200:
            return {}
        ports = {}
        for listener in json.loads(body).get("listener_statuses", []):
            address = listener.get("local_address", {}).get("socket_address", {})
            if address.get("port_value"):
                ports[listener["name"]] = address["port_value"]
        return ports

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_file.close()


def envoy_version(envoy):
    try:
        out = subprocess.run([str(envoy), "--version"], capture_output=True, text=True,
                             timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    match = re.search(r"version:\s*\S+?/([^/\s]+)/\S*?/(\S+)/(\S+)", out)
    return f"{match.group(1)} ({match.group(2)}, {match.group(3)})" if match else out.strip()


# ---------------------------------------------------------------------------------------------
# Rows


def token_file(settings, row):
    return settings.work / f"tokens-{row.tokens}.txt" if row.tokens else None


def first_and_last_token(settings, row):
    path = token_file(settings, row)
    if path is None:
        return [None]
    if row.single_use:
        # The first proof is the preflight's; the runs use the proofs after it.
        with path.open() as lines:
            token = lines.readline().strip().removeprefix("dpop-token ")
            return [f"{token}\t{lines.readline().strip()}"]
    tokens = [line for line in path.read_text().splitlines() if line]
    used = tokens[:1] if row.hot else tokens[: settings.tokens]
    return [used[0], used[-1]] if len(used) > 1 else used


def probe(port, path, token, host=None, body=None):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {}
        if token and "\t" in token:
            token, proof = token.split("\t", 1)
            headers = {"Authorization": f"DPoP {token}", "DPoP": proof}
        elif token:
            headers = {"Authorization": f"Bearer {token}"}
        if host:
            headers["Host"] = host
        if body is not None:
            headers["Content-Type"] = "application/json"
        connection.request("POST" if body is not None else "GET", path, body=body,
                           headers=headers)
        response = connection.getresponse()
        body = response.read(300).decode(errors="replace").strip()
        return response.status, body
    finally:
        connection.close()


def preflight(settings, row):
    """Checks that the row answers its requests with 200 (or the status it expects) and, when a
    filter is in place, 401 to a request without a token (so a filter that is silently absent
    cannot pass for a fast one)."""
    expectations = [(row.path, token, row.expect or 200)
                    for token in first_and_last_token(settings, row)]
    if row.id != "passthrough":
        expectations.append(("/", None, 401))
    for path, token, expected in expectations:
        try:
            body_bytes = (settings.work / f"{row.body}.json").read_bytes() if row.body else None
            status, body = probe(row.port, path, token, row.host, body_bytes)
        except OSError as error:
            row.failed = f"probe failed: {error}"
            return
        if status != expected:
            what = "with a token" if token else "without a token"
            row.failed = f"GET {path} {what} answered {status}, expected {expected}: {body}"
            return


def run_wrk(settings, row, duration, cpus, connections=None, first=0, count=None):
    """One wrk run of `row`; with `connections`, paced (bench/wrk/paced.lua) instead of flat out.
    A single-use row sends `count` of its lines from `first` on, each once at most."""
    script = ROOT / ("bench/wrk/paced.lua" if connections else "bench/wrk/requests.lua")
    tokens = token_file(settings, row)
    limit = 1 if row.hot else count if row.single_use else settings.tokens
    command = [
        settings.wrk, "-t", str(settings.threads),
        "-c", str(connections or settings.connections),
        "-d", duration, "--latency", "-s", str(script), f"http://127.0.0.1:{row.port}",
    ]
    if row.host:
        # wrk.format falls back to this Host for requests built with their own headers.
        command += ["-H", f"Host: {row.host}"]
    command += [
        "--", row.path, str(tokens) if tokens else "-", str(limit),
    ]
    if connections:
        command += ["0", "-", str(row.expect or ""), str(PACED_PAUSE_MS)]
    elif row.single_use:
        # Stop with a connection's worth of lines to spare: requests in flight when the thread
        # stops would otherwise start the lines again, and a proof sent twice is a replay.
        stop_after = max(1, count - settings.connections)
        command += [str(first), str(stop_after), str(row.expect or "")]
    elif row.expect:
        command += ["0", "-", str(row.expect)]
    elif row.body:
        command += ["0", "-", "", str(settings.work / f"{row.body}.json")]
    completed = subprocess.run(command, capture_output=True, text=True, preexec_fn=pinned(cpus))
    match = re.search(r"^wrk-result (\{.*\})$", completed.stdout, re.MULTILINE)
    if completed.returncode != 0 or not match:
        raise RuntimeError(
            f"wrk exited with {completed.returncode}: {completed.stderr.strip()[-500:]}")
    return json.loads(match.group(1))


def measure(settings, row, envoy, wrk_cpus):
    try:
        # A single-use row's warm-up and measured run each have their own lines after the
        # preflight's.
        preflight_count, warmup_count, measured_count = (
            dpop_proofs(settings) if row.single_use else (0, None, None))
        if settings.warmup not in ("", "0", "0s"):
            run_wrk(settings, row, settings.warmup, wrk_cpus, first=preflight_count,
                    count=warmup_count)
        cpu_before = envoy.cpu_seconds()
        result = run_wrk(settings, row, settings.duration, wrk_cpus,
                         first=preflight_count + (warmup_count or 0), count=measured_count)
        cpu_used = envoy.cpu_seconds() - cpu_before
    except RuntimeError as error:
        row.failed = str(error)
        return
    result["rps"] = result["requests"] / max(result["duration_us"], 1) * 1e6
    # Envoy's own CPU time per request: unlike requests/s, barely moved by other work competing
    # for the machine, so small differences between rows stay visible on a busy host.
    result["cpu_us"] = cpu_used / max(result["requests"], 1) * 1e6
    row.result = result
    errors = {k: result[k] for k in ("connect_errors", "read_errors", "write_errors", "timeouts")}
    if result["requests"] == 0:
        row.failed = "no request completed"
    elif row.single_use and result["requests"] >= measured_count - settings.connections:
        # wrk's rate divides by the whole -d even when the thread stopped early.
        row.failed = "ran out of proofs before the end of the run; raise DPOP_PROOFS_PER_SECOND"
    elif result["unexpected"] or (result["status_errors"] and not row.expect):
        row.failed = f"{result['unexpected']} responses were not {row.expect or '2xx'}"
    elif any(errors.values()):
        row.failed = "socket errors: " + ", ".join(f"{k} {v}" for k, v in errors.items() if v)


def measure_paced(settings, rows, wrk_cpus):
    """The fixed-rate pass over PACED_ROWS, all at one rate: PACED_SHARE of the first one's
    closed-loop requests/s."""
    paced = [row for row in rows if row.id in PACED_ROWS and row.result and not row.failed]
    if not paced:
        return
    rate = paced[0].result["rps"] * PACED_SHARE
    # Each connection sends about 1000 / (pause + latency) requests/s; the closed-loop median
    # stands in for the latency.
    cycle_ms = PACED_PAUSE_MS + paced[0].result["p50_us"] / 1000
    connections = max(1, round(rate * cycle_ms / 1000))
    for row in paced:
        log(f"{row.id}: paced, {connections} connections, {settings.duration}")
        try:
            row.paced = run_wrk(settings, row, settings.duration, wrk_cpus, connections)
            row.paced["rps"] = row.paced["requests"] / max(row.paced["duration_us"], 1) * 1e6
        except RuntimeError as error:
            row.failed = f"paced run: {error}"
            continue
        if row.paced["unexpected"] or row.paced["requests"] == 0:
            row.failed = f"paced run: {row.paced['unexpected']} responses were not 2xx"


# ---------------------------------------------------------------------------------------------
# Report


def machine():
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return model, os.cpu_count()


def milliseconds(us):
    return f"{us / 1000:.2f} ms"


def print_report(settings, rows, envoy_cpus, wrk_cpus, load):
    model, cores = machine()
    wasm_size = settings.wasm.stat().st_size
    print()
    print(f"machine : {model}, {cores} cores; load average (1/5/15 min) before the run "
          f"{' '.join(f'{x:.2f}' for x in load)}, after {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
          f" (other work on the machine skews the figures)")
    print(f"envoy   : {envoy_version(settings.envoy)}, --concurrency 1"
          + (f", pinned to CPU {sorted(envoy_cpus)}" if envoy_cpus else ", not pinned"))
    print(f"wrk     : {settings.threads} thread(s), {settings.connections} connections, "
          f"{settings.warmup} warm-up + {settings.duration} per row"
          + (f", pinned to CPU {sorted(wrk_cpus)}" if wrk_cpus else ", not pinned"))
    print(f"wasm    : {settings.wasm.relative_to(ROOT) if settings.wasm.is_relative_to(ROOT) else settings.wasm}"
          f" {wasm_size} bytes ({wasm_size / 1024:.0f} KiB)")
    print(f"tokens  : {settings.tokens} distinct per algorithm in cold rows, cycled in order "
          f"(a token comes back every {settings.tokens} requests, so a verified-token cache "
          f"holding {settings.tokens} entries serves all but the first pass)")
    print()
    baseline = next((r for r in rows if r.id == BASELINE and r.result), None)
    header = (f"{'row':<38} {'req/s':>9} {'p50':>9} {'p99':>9} {'CPU/req':>9} {'unexpected':>10} "
              f"{'vs jwt_authn':>12}  status")
    print(header)
    print("-" * len(header))
    for row in rows:
        if row.result:
            r = row.result
            ratio = f"{r['rps'] / baseline.result['rps']:.2f}x" if baseline else "-"
            status = f"FAIL: {row.failed}" if row.failed else "ok"
            print(f"{row.label:<38} {r['rps']:>9.0f} {milliseconds(r['p50_us']):>9} "
                  f"{milliseconds(r['p99_us']):>9} {r['cpu_us']:>6.1f} µs {r['unexpected']:>10} "
                  f"{ratio:>12}  {status}")
        else:
            status = f"NOT RUN: {row.skipped}" if row.skipped else f"FAIL: {row.failed}"
            print(f"{row.label:<38} {'-':>9} {'-':>9} {'-':>9} {'-':>9} {'-':>10} {'-':>12}  {status}")
    print()
    paced = [row for row in rows if row.paced]
    if paced:
        print(f"fixed rate: aiming at {PACED_SHARE:.0%} of the closed-loop req/s of "
              f"\"{paced[0].label}\", each connection pausing {PACED_PAUSE_MS - 1} to "
              f"{PACED_PAUSE_MS + 1} ms between requests")
        header = f"{'row':<38} {'req/s':>9} {'p50':>9} {'p99':>9} {'p99.9':>9}"
        print(header)
        print("-" * len(header))
        for row in paced:
            r = row.paced
            print(f"{row.label:<38} {r['rps']:>9.0f} {milliseconds(r['p50_us']):>9} "
                  f"{milliseconds(r['p99_us']):>9} {milliseconds(r['p999_us']):>9}")
        print()
    print_targets(rows, wasm_size)


# Rows measured a second time at a fixed request rate, PACED_SHARE of the first row's closed-loop
# rate: a server short of saturation, where latency percentiles mean what a caller sees. Each
# connection pauses PACED_PAUSE_MS after an answer, so the connection count sets the rate.
PACED_ROWS = ["wasm_floor", "wasm_hot", "wasm_identity_floor", "wasm_identity_hot"]
PACED_SHARE = 0.7
PACED_PAUSE_MS = 2
# Latency goals at the fixed rate: (row, its floor, most p99 may be over the floor's p99).
LATENCY_TARGETS = [("wasm_hot", "wasm_floor", 1.2),
                   ("wasm_identity_hot", "wasm_identity_floor", 1.2)]

# Goals for the filter: (numerator row, denominator row, minimum ratio of requests/s, what the
# comparison means). Cold rows are compared twice: with the filter's default token cache against
# jwt_authn's default (no cache), and with both verifying every request.
TARGETS = [
    ("wasm_hot", BASELINE, 1.5, ""),
    ("wasm_hot", "wasm_floor", 0.95, ""),
    ("wasm_identity_hot", "wasm_identity_floor", 0.9, "forwarding identity headers"),
    ("wasm_identity_hot", "jwt_authn_identity_hot", 1.5, "both forwarding identity headers"),
    ("wasm_cache_cold_rs256", "jwt_authn_cold_rs256", 1.0, "both as configured by default"),
    ("wasm_cache_cold_es256", "jwt_authn_cold_es256", 1.0, "both as configured by default"),
    ("wasm_cold_rs256", "jwt_authn_cold_rs256", 1.0, "both verifying every request"),
    ("wasm_cold_es256", "jwt_authn_cold_es256", 1.0, "both verifying every request"),
    ("wasm_hosts_1000", "wasm_hosts_1", 0.97, "1,000 host rules cost what one does"),
    ("wasm_dpop_hot", "wasm_cold_es256", 0.9,
     "a DPoP proof costs about one ES256 signature check"),
    ("wasm_body_2k_last", "wasm_body_2k_header_only", 0.9, "the model read from a 2 KiB body"),
]
# The plugin module's size goal, in bytes.
MAX_WASM_BYTES = 512 * 1024


def print_targets(rows, wasm_size):
    """Prints each goal as met or not (informational: goals do not change the exit status)."""
    by_id = {row.id: row for row in rows}
    verdict = "met" if wasm_size <= MAX_WASM_BYTES else "not met"
    lines = [f"  wasm size: {wasm_size / 1024:.0f} KiB "
             f"(goal <= {MAX_WASM_BYTES // 1024} KiB) {verdict}"]
    for numerator, denominator, minimum, meaning in TARGETS:
        a, b = by_id.get(numerator), by_id.get(denominator)
        if not (a and b and a.result and b.result):
            continue
        ratio = a.result["rps"] / b.result["rps"]
        verdict = "met" if ratio >= minimum else "not met"
        lines.append(f"  {numerator} / {denominator}: {ratio:.2f}x "
                     f"(goal >= {minimum:g}x) {verdict}" + (f"; {meaning}" if meaning else ""))
    for row_id, floor_id, maximum in LATENCY_TARGETS:
        a, b = by_id.get(row_id), by_id.get(floor_id)
        if not (a and b and a.paced and b.paced):
            continue
        ratio = a.paced["p99_us"] / max(b.paced["p99_us"], 1)
        verdict = "met" if ratio <= maximum else "not met"
        lines.append(f"  p99 {row_id} / {floor_id} at a fixed rate: {ratio:.2f}x "
                     f"(goal <= {maximum:g}x) {verdict}")
    print("goals (requests/s ratios, and the module's size):")
    print("\n".join(lines))
    print()
    print_host_share(by_id)


def print_host_share(by_id):
    """How much of the identity row's gap to its floor Envoy charges for the header changes
    alone: the host_* rows make the same four changes with no other work."""
    ids = ("wasm_identity_hot", "wasm_identity_floor", "host_identity", "host_floor")
    hot, floor, host, host_floor = (by_id.get(i) for i in ids)
    if not all(row and row.result for row in (hot, floor, host, host_floor)):
        return
    gap = hot.result["cpu_us"] - floor.result["cpu_us"]
    host_gap = host.result["cpu_us"] - host_floor.result["cpu_us"]
    budget = floor.result["cpu_us"] * (1 / 0.9 - 1)
    print("the identity row's CPU per request over its floor:")
    print(f"  this filter: {gap:.1f} µs (wasm_identity_hot - wasm_identity_floor)")
    print(f"  the same four header changes and nothing else: {host_gap:.1f} µs "
          f"(host_identity - host_floor)")
    print(f"  allowed by the 0.9x goal at this floor: {budget:.1f} µs")
    print()


# ---------------------------------------------------------------------------------------------


def check_tools(settings):
    if not settings.envoy.exists():
        raise SetupError(f"no Envoy at {settings.envoy} (make envoy)")
    if not settings.wasm.exists():
        raise SetupError(f"no plugin at {settings.wasm} (make build)")
    if shutil.which(settings.wrk) is None:
        raise SetupError(f"no wrk ({settings.wrk}); apt-get install -y wrk")


def start_envoy(settings, rows, cpus):
    """Starts Envoy with every row's listener. When a plugin instance refuses its configuration,
    Envoy does not start at all; its listener is then dropped and Envoy started again, and the
    row is reported as not run (rows whose configuration is expected to be refused by older
    builds) or failed (any other row)."""
    dropped = []
    while True:
        config = render_config(settings, dropped)
        envoy = Envoy(settings, config, cpus)
        try:
            wanted = {row.listener for row in rows if row.listener not in dropped}
            return envoy, envoy.wait_ready(wanted)
        except PluginRefused as refused:
            envoy.stop()
            owners = [row for row in rows if row.listener == refused.plugin]
            if refused.plugin in dropped:
                raise SetupError(f"Envoy refused plugin {refused}:\n{envoy.log_tail()}")
            dropped.append(refused.plugin)
            for row in owners:
                message = f"plugin configuration refused: {refused.reason}"
                if row.listener.endswith("_no_host_crypto"):
                    row.skipped = message
                else:
                    row.failed = message
        except BaseException:
            envoy.stop()
            raise


def raise_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)


def main(argv):
    smoke = "--smoke" in argv[1:]
    signal.signal(signal.SIGTERM, raise_on_sigterm)
    try:
        settings = Settings.from_env(smoke)
        check_tools(settings)
        settings.work.mkdir(parents=True, exist_ok=True)
        mint_tokens(settings)
        build_header_cost()
        write_forged_tokens(settings.work)
        write_bodies(settings.work)
        config = render_config(settings)
    except SetupError as error:
        log(str(error))
        return 2

    rows = [row for row in ROWS if not settings.rows or row.id in settings.rows]
    load = os.getloadavg()
    envoy_cpus, wrk_cpus = cpu_sets(settings)
    envoy = None
    try:
        envoy, ports = start_envoy(settings, rows, envoy_cpus)
        for row in rows:
            if row.skipped or row.failed:
                log(f"{row.id}: {row.skipped or row.failed}")
                continue
            row.port = ports[row.listener]
            if row.single_use:
                mint_dpop(settings, row)
            preflight(settings, row)
            if row.failed:
                log(f"{row.id}: {row.failed}")
                continue
            log(f"{row.id}: port {row.port}, {settings.duration}")
            measure(settings, row, envoy, wrk_cpus)
            if row.failed:
                log(f"{row.id}: {row.failed}")
        measure_paced(settings, rows, wrk_cpus)
    except SetupError as error:
        log(str(error))
        return 2
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        if envoy is not None:
            envoy.stop()

    print_report(settings, rows, envoy_cpus, wrk_cpus, load)
    failed = [row for row in rows if row.failed]
    skipped = [row for row in rows if row.skipped]
    for row in skipped:
        log(f"not run: {row.id} ({row.skipped})")
    if failed:
        log("FAILED: " + ", ".join(row.id for row in failed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
