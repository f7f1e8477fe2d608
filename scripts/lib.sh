# Shared helpers of scripts/test, scripts/demo and scripts/bench: install what is
# missing and start/stop the local servers (stopped by PID). Source it; don't run it.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="$ROOT/.work"
NISSHI_VERSION=0.8.1
mkdir -p "$WORK"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

ensure_nisshi() {
  if command -v nisshi >/dev/null 2>&1 && [[ "$(nisshi --version 2>/dev/null)" == *"$NISSHI_VERSION"* ]]; then
    return
  fi
  log "installing nisshi $NISSHI_VERSION (Kafka-protocol broker; ~16 minutes on 2 cores, once)"
  cargo install nisshi --version "$NISSHI_VERSION" --locked --ignore-rust-version \
    --no-default-features --features dynostore,libsql
}

# ensure_build_deps: C libraries the build links that the machine may lack: Cyrus SASL
# (librdkafka's SASL/GSSAPI login, Kerberos), libcurl (its OAUTHBEARER/OIDC login) and
# pkg-config to find them.
ensure_build_deps() {
  if ! pkg-config --exists libsasl2 libcurl 2>/dev/null; then
    log "installing libsasl2-dev, libcurl4-openssl-dev and pkg-config (librdkafka's logins)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libsasl2-dev libcurl4-openssl-dev pkg-config >/dev/null
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# two_free_ports: two different free ports, "A B" (two calls of free_port may return the
# same port, since each releases it).
two_free_ports() {
  python3 -c 'import socket
a=socket.socket(); a.bind(("127.0.0.1",0)); b=socket.socket(); b.bind(("127.0.0.1",0))
print(a.getsockname()[1], b.getsockname()[1])'
}

wait_port() { # host port seconds
  local deadline=$((SECONDS + $3))
  until (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; do
    if ((SECONDS > deadline)); then return 1; fi
    sleep 0.2
  done
}

# started WHAT PID PORT LOG: a server just launched in LOG's directory; records its PID
# there and waits until it listens on PORT, printing LOG if it never does.
started() {
  echo "$2" >"$(dirname "$4")/pid"
  if ! wait_port 127.0.0.1 "$3" 60; then
    echo "$1 did not start; log:" >&2
    cat "$4" >&2
    return 1
  fi
}

# start_nisshi NAME: starts a broker in an empty directory; sets KAFKA_ADDR and NISSHI_PID.
start_nisshi() {
  local name="${1:-nisshi}" port dir
  port="$(free_port)"
  dir="$WORK/$name.$port"
  rm -rf "$dir" && mkdir -p "$dir"
  (cd "$dir" && exec nisshi broker --listener-url "tcp://127.0.0.1:$port" \
      --advertised-listener-url "tcp://127.0.0.1:$port" --storage-engine memory://nisshi/ \
      --group-initial-rebalance-delay 0s >"$dir/broker.log" 2>&1) &
  NISSHI_PID=$!
  started nisshi "$NISSHI_PID" "$port" "$dir/broker.log" || return 1
  KAFKA_ADDR="127.0.0.1:$port"
  log "nisshi $NISSHI_VERSION on $KAFKA_ADDR (pid $NISSHI_PID, log $dir/broker.log)"
}

stop_pid() {
  local pid="$1"
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}

SECANTUS_VERSION=0.7.0b3

# project_venv: the project's Python venv (created when missing); prints its path.
project_venv() {
  local venv="$WORK/venv"
  if [ ! -x "$venv/bin/python" ]; then
    log "creating $venv" >&2
    python3 -m venv "$venv" >&2
  fi
  echo "$venv"
}

# A Python venv holding the MongoDB-protocol server (SecantusDB), pymongo (the demo's
# writer) and confluent-kafka (the JavaScript client's tests write with both); sets PY.
ensure_venv() {
  local venv
  venv="$(project_venv)"
  # The version and the command (an install cut short can leave one without the other).
  if ! "$venv/bin/python" -c "import pymongo, importlib.metadata as m, sys; sys.exit(m.version('SecantusDB') != '$SECANTUS_VERSION')" 2>/dev/null \
      || [ ! -x "$venv/bin/secantusd-py" ]; then
    log "installing SecantusDB==$SECANTUS_VERSION and pymongo into $venv"
    "$venv/bin/pip" install -q --force-reinstall "SecantusDB==$SECANTUS_VERSION" pymongo
  fi
  if ! "$venv/bin/python" -c "import confluent_kafka" 2>/dev/null; then
    log "installing confluent-kafka into $venv"
    "$venv/bin/pip" install -q confluent-kafka
  fi
  PY="$venv/bin/python"
  SECANTUSD="$venv/bin/secantusd-py"
}

# start_secantus NAME: a MongoDB-protocol replica set on a free port (in-memory, idle
# change streams' tokens advance every second); sets MONGO_URI and SECANTUS_PID.
start_secantus() {
  local name="${1:-secantus}" port dir
  ensure_venv
  port="$(free_port)"
  dir="$WORK/$name.$port"
  rm -rf "$dir" && mkdir -p "$dir"
  (cd "$dir" && exec "$SECANTUSD" --host 127.0.0.1 --port "$port" --storage-path :memory: \
      --noop-heartbeat-seconds 1 >"$dir/server.log" 2>&1) &
  SECANTUS_PID=$!
  started SecantusDB "$SECANTUS_PID" "$port" "$dir/server.log" || return 1
  MONGO_URI="mongodb://127.0.0.1:$port/?replicaSet=secantus"
  log "SecantusDB $SECANTUS_VERSION on 127.0.0.1:$port (pid $SECANTUS_PID, log $dir/server.log)"
}

# ensure_nettools: ip, tc (iproute2) and nft (nftables) for the hostile-network tests.
ensure_nettools() {
  if ! command -v nft >/dev/null || ! command -v tc >/dev/null || ! command -v ip >/dev/null; then
    log "installing iproute2 and nftables"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iproute2 nftables >/dev/null
  fi
}

# ensure_js_client: the JavaScript client's build tools (TypeScript, esbuild) from its
# lockfile, installed again when the lockfile changed.
ensure_js_client() {
  local dir="$ROOT/clients/js"
  if [ ! -f "$dir/node_modules/.package-lock.json" ] || ! cmp -s "$dir/package-lock.json" "$dir/node_modules/.sse-bridge-lock"; then
    log "installing the JavaScript client's build tools (npm ci)"
    (cd "$dir" && npm ci --ignore-scripts --no-audit --no-fund >/dev/null && cp package-lock.json node_modules/.sse-bridge-lock)
  fi
}

# ensure_chromium: Debian's chromium and chromium-driver (headless browser tests); sets
# CHROMEDRIVER.
ensure_chromium() {
  if ! command -v chromedriver >/dev/null || ! command -v chromium >/dev/null; then
    log "installing chromium and chromium-driver"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
  fi
  CHROMEDRIVER="$(command -v chromedriver)"
}

# ensure_nats: Debian's nats-server (JetStream) for the NATS source's tests and demo.
ensure_nats() {
  if ! command -v nats-server >/dev/null; then
    log "installing nats-server"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nats-server >/dev/null
  fi
  NATS_SERVER="$(command -v nats-server)"
}

# start_nats NAME: a NATS server with JetStream on a free port, its store in a fresh
# directory; sets NATS_URL and NATS_PID.
start_nats() {
  local name="${1:-nats}" port dir
  ensure_nats
  port="$(free_port)"
  dir="$WORK/$name.$port"
  rm -rf "$dir" && mkdir -p "$dir"
  "$NATS_SERVER" -a 127.0.0.1 -p "$port" -js -sd "$dir/store" >"$dir/server.log" 2>&1 &
  NATS_PID=$!
  started nats-server "$NATS_PID" "$port" "$dir/server.log" || return 1
  NATS_URL="nats://127.0.0.1:$port"
  log "nats-server on 127.0.0.1:$port (pid $NATS_PID, log $dir/server.log)"
}
