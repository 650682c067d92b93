#!/usr/bin/env bash
# The demo: a real OpenID provider, a real KServe model server, and Envoy with the kserve-auth
# filter in front of it, all on 127.0.0.1. `make demo` installs what it needs and runs this.
# Ctrl-C (or SIGTERM) stops everything it started.
#
# The provider is oidc-provider (it starts in a second), or with IDP=keycloak a real Keycloak
# (`make demo IDP=keycloak`) importing envoy/compose/kserve-realm.json, with Envoy configured by
# envoy/envoy.yaml.
#
# Ports and the state folder (signing keys, logs) can be moved, e.g. for a second copy:
#   DEMO_OP_PORT=9000 DEMO_MODEL_PORT=8080 DEMO_ENVOY_PORT=10000 DEMO_ADMIN_PORT=9901
#   DEMO_STATE_DIR=.demo   (with IDP=keycloak, DEMO_OP_PORT defaults to 8081)
set -euo pipefail
cd "$(dirname "$0")/.."

IDP=${IDP:-oidc-provider}
case $IDP in
  oidc-provider) DEFAULT_OP_PORT=9000 CONFIG=envoy/demo.yaml ;;
  keycloak) DEFAULT_OP_PORT=8081 CONFIG=envoy/envoy.yaml ;;
  *) echo "demo: IDP is oidc-provider or keycloak, not $IDP" >&2; exit 1 ;;
esac
KEYCLOAK_HOME=${KEYCLOAK_HOME:-.venv/keycloak/keycloak-26.7.3}
OP_PORT=${DEMO_OP_PORT:-$DEFAULT_OP_PORT}
MODEL_PORT=${DEMO_MODEL_PORT:-8080}
ENVOY_PORT=${DEMO_ENVOY_PORT:-10000}
ADMIN_PORT=${DEMO_ADMIN_PORT:-9901}
STATE=${DEMO_STATE_DIR:-.demo}
ENVOY=${ENVOY_BIN:-.venv/envoy/bin/envoy}
PYTHON=${KSERVE_PYTHON:-.venv/kserve/bin/python}

declare -A PIDS=()

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

stop_all() {
  trap - INT TERM EXIT
  if ((${#PIDS[@]})); then
    say "stopping ${!PIDS[*]}"
    for name in "${!PIDS[@]}"; do kill -TERM "${PIDS[$name]}" 2>/dev/null || true; done
    for _ in $(seq 50); do
      local alive=0
      for name in "${!PIDS[@]}"; do kill -0 "${PIDS[$name]}" 2>/dev/null && alive=1; done
      ((alive)) || break
      sleep 0.1
    done
    for name in "${!PIDS[@]}"; do kill -KILL "${PIDS[$name]}" 2>/dev/null || true; done
    wait 2>/dev/null || true
  fi
  rm -f "$STATE/op.pid"
}
trap 'stop_all; exit 0' INT TERM
trap 'stop_all' EXIT

fail() {
  echo "demo: $*" >&2
  exit 1
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Waits until `curl URL` succeeds; fails with the log tail if the process exits or time runs out
# (`tries` tenths of a second, 60 s unless given).
wait_ready() {
  local name=$1 url=$2 log=$3 tries=${4:-600}
  for _ in $(seq "$tries"); do
    curl -sf -o /dev/null "$url" && return 0
    kill -0 "${PIDS[$name]}" 2>/dev/null || { tail -n 20 "$log" >&2; fail "$name exited; log: $log"; }
    sleep 0.1
  done
  tail -n 20 "$log" >&2
  fail "$name not ready after $((tries / 10)) s; log: $log"
}

command -v curl >/dev/null || fail "curl is needed"
tools=("$ENVOY" "$PYTHON" target/kserve_auth_filter.wasm)
if [[ $IDP == keycloak ]]; then tools+=("$KEYCLOAK_HOME/bin/kc.sh"); else
  tools+=(demo/op/node_modules/oidc-provider/package.json); fi
for tool in "${tools[@]}"; do
  [[ -e $tool ]] || fail "$tool is missing: run \`make demo IDP=$IDP\`, which installs and builds it"
done
for port in "$OP_PORT" "$MODEL_PORT" "$ENVOY_PORT" "$ADMIN_PORT"; do
  port_free "$port" || fail "127.0.0.1:$port is in use (another demo running?)"
done

mkdir -p "$STATE"
if [[ $OP_PORT != "$DEFAULT_OP_PORT" || $MODEL_PORT != 8080 || $ENVOY_PORT != 10000 || $ADMIN_PORT != 9901 ]]; then
  SHIPPED=$CONFIG
  CONFIG=$STATE/envoy-demo.yaml
  sed -e "s#127.0.0.1:$DEFAULT_OP_PORT#127.0.0.1:$OP_PORT#g" \
      -e "s#port_value: $DEFAULT_OP_PORT}#port_value: $OP_PORT}#" \
      -e "s#port_value: 8080}#port_value: $MODEL_PORT}#" \
      -e "s#port_value: 10000}#port_value: $ENVOY_PORT}#" \
      -e "s#\"http://127.0.0.1:10000\"#\"http://127.0.0.1:$ENVOY_PORT\"#" \
      -e "s#port_value: 9901}#port_value: $ADMIN_PORT}#" \
      "$SHIPPED" >"$CONFIG"
fi

if [[ $IDP == keycloak ]]; then
  say "Keycloak on 127.0.0.1:$OP_PORT, realm kserve from envoy/compose/kserve-realm.json (log: $STATE/op.log; about half a minute)"
  mkdir -p "$KEYCLOAK_HOME/data/import"
  cp envoy/compose/kserve-realm.json "$KEYCLOAK_HOME/data/import/"
  KC_BOOTSTRAP_ADMIN_USERNAME=admin KC_BOOTSTRAP_ADMIN_PASSWORD=admin \
    "$KEYCLOAK_HOME/bin/kc.sh" start-dev --http-port="$OP_PORT" --http-host=127.0.0.1 \
    --hostname="http://127.0.0.1:$OP_PORT" --import-realm --db=dev-file \
    --db-url="jdbc:h2:file:$(cd "$STATE" && pwd)/keycloakdb;NON_KEYWORDS=VALUE" >"$STATE/op.log" 2>&1 &
  PIDS[op]=$!
  wait_ready op "http://127.0.0.1:$OP_PORT/realms/kserve/.well-known/openid-configuration" \
    "$STATE/op.log" 1200
else
  say "OpenID provider on 127.0.0.1:$OP_PORT (log: $STATE/op.log; signing keys: $STATE/op-keys.json)"
  node demo/op/server.mjs --port "$OP_PORT" --keys "$STATE/op-keys.json" >"$STATE/op.log" 2>&1 &
  PIDS[op]=$!
  echo "${PIDS[op]}" >"$STATE/op.pid"  # for `kill -HUP` after a key rotation step (README)
  wait_ready op "http://127.0.0.1:$OP_PORT/.well-known/openid-configuration" "$STATE/op.log"
fi

say "KServe model server with demo-model on 127.0.0.1:$MODEL_PORT (log: $STATE/model.log)"
"$PYTHON" demo/model/model.py --http_port "$MODEL_PORT" >"$STATE/model.log" 2>&1 &
PIDS[model]=$!
wait_ready model "http://127.0.0.1:$MODEL_PORT/v2/models/demo-model/ready" "$STATE/model.log"

say "Envoy with the kserve-auth filter on 127.0.0.1:$ENVOY_PORT ($CONFIG; log: $STATE/envoy.log)"
"$ENVOY" -c "$CONFIG" --disable-hot-restart -l info >"$STATE/envoy.log" 2>&1 &
PIDS[envoy]=$!
wait_ready envoy "http://127.0.0.1:$ENVOY_PORT/v2/health/ready" "$STATE/envoy.log"

if [[ $IDP == keycloak ]]; then
  TOKEN_URL="http://127.0.0.1:$OP_PORT/realms/kserve/protocol/openid-connect/token"
  CLIENT=kserve-client:kserve-secret
  # envoy/envoy.yaml publishes no RFC 9728 metadata: name the issuer.
  KSERVE_AUTH="--issuer http://127.0.0.1:$OP_PORT/realms/kserve --client-id kserve-client"
else
  TOKEN_URL="http://127.0.0.1:$OP_PORT/token"
  CLIENT=demo-client:demo-secret
  KSERVE_AUTH="--client-id demo-client"
fi
PREDICT_URL="http://127.0.0.1:$ENVOY_PORT/v1/models/demo-model:predict"
cat <<EOF

The demo is up. In another terminal, try:

# 1. Get an access token from the $IDP (client credentials grant):
TOKEN=\$(curl -s -u $CLIENT -d grant_type=client_credentials $TOKEN_URL | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

# 2. Predict without it: the filter answers 401.
curl -i $PREDICT_URL -H 'content-type: application/json' -d '{"instances": [[1, 2, 3]]}'

# 3. Predict with it: the model answers, and shows who called (never the token).
curl $PREDICT_URL -H "authorization: Bearer \$TOKEN" -H 'content-type: application/json' -d '{"instances": [[1, 2, 3]]}'

# 4. Or let kserve-auth get, cache and send the token (it learns where from the 401):
KSERVE_AUTH_CLIENT_SECRET=${CLIENT#*:} target/release/kserve-auth curl $PREDICT_URL $KSERVE_AUTH -H 'content-type: application/json' -d '{"instances": [[1, 2, 3]]}'

Also: V2 inference at http://127.0.0.1:$ENVOY_PORT/v2/models/demo-model/infer, Envoy's counters at
http://127.0.0.1:$ADMIN_PORT/stats?filter=wasmcustom, logs in $STATE/. Ctrl-C stops everything.
EOF

# Stay until Ctrl-C; if a process dies on its own, stop the others and say which.
while true; do
  wait -n || true
  for name in "${!PIDS[@]}"; do
    if ! kill -0 "${PIDS[$name]}" 2>/dev/null; then
      unset "PIDS[$name]"
      tail -n 20 "$STATE/$name.log" >&2
      fail "$name stopped unexpectedly; log: $STATE/$name.log"
    fi
  done
done
