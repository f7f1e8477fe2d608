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

# ensure_nats: Debian's nats-server (JetStream) for the NATS source's tests, demo and bench.
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

# ensure_postgres: Debian's PostgreSQL 15 server binaries (initdb, postgres); sets PG_BIN
# and PG_USER, the user the server runs as (PostgreSQL refuses to run as root: as root,
# a system user `ssebridge-pg` is created once).
ensure_postgres() {
  if ! [ -x /usr/lib/postgresql/15/bin/postgres ]; then
    log "installing postgresql-15"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null
  fi
  PG_BIN=/usr/lib/postgresql/15/bin
  if [ "$(id -u)" = 0 ]; then
    PG_USER=ssebridge-pg
    id "$PG_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_USER"
  else
    PG_USER="$(id -un)"
  fi
}

# as_pg CMD...: CMD as the PostgreSQL user.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u "$PG_USER" -- "$@"; else "$@"; fi
}

# run_postgres DIR PORT: the server of DIR/data (made by start_postgres) on PORT, logging
# to DIR/server.log; sets PG_PID (tests restart a server of their own with it).
# No fsync (a throwaway server), but synchronous commits: with them off, a commit reaches
# logical decoding only when the WAL writer flushes (every 200 ms), which would measure
# wal_writer_delay rather than the bridge.
run_postgres() {
  local dir="$1" port="$2"
  ensure_postgres
  as_pg "$PG_BIN/postgres" -D "$dir/data" -c listen_addresses=127.0.0.1 -c port="$port" \
    -c unix_socket_directories="$dir" -c wal_level=logical -c max_replication_slots=200 \
    -c max_wal_senders=200 -c max_connections=300 -c fsync=off -c full_page_writes=off \
    >>"$dir/server.log" 2>&1 &
  started postgres "$!" "$port" "$dir/server.log" || return 1
  # The postmaster itself (the job is a shell around runuser around it).
  PG_PID="$(head -1 "$dir/data/postmaster.pid")"
  echo "$PG_PID" >"$dir/pid"
}

# stop_postgres PID DIR: a fast shutdown of the postmaster PID, then DIR removed.
stop_postgres() {
  local pid="$1" dir="$2"
  if [ -n "$pid" ] && kill -INT "$pid" 2>/dev/null; then
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  case "$dir" in /tmp/sse-bridge-*) rm -rf "$dir" ;; esac
}

# start_postgres NAME: a PostgreSQL 15 server with `wal_level = logical` on a free port,
# initdb'd into a fresh temporary directory (1 MB WAL segments, so tests that fill WAL
# stay small), password login (SCRAM) for the superuser `postgres` with password
# `postgres`, database `bridge`; sets PG_URL, PG_DIR (PG_DATA is its `data`) and PG_PID
# (the postmaster). Stop it with `stop_postgres "$PG_PID" "$PG_DIR"`.
start_postgres() {
  local name="${1:-postgres}" port dir
  ensure_postgres
  port="$(free_port)"
  dir="$(mktemp -d "/tmp/sse-bridge-$name.XXXXXX")"
  chmod 755 "$dir"
  chown "$PG_USER" "$dir"
  echo postgres >"$dir/pwfile" && chown "$PG_USER" "$dir/pwfile"
  as_pg "$PG_BIN/initdb" -D "$dir/data" -U postgres --pwfile="$dir/pwfile" \
    --auth=scram-sha-256 --wal-segsize=1 -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
    { cat "$dir/initdb.log" >&2; return 1; }
  run_postgres "$dir" "$port" || return 1
  PG_DIR="$dir"
  PG_DATA="$dir/data"
  local i
  for i in $(seq 50); do
    PGPASSWORD=postgres "$PG_BIN/psql" -qAt -h 127.0.0.1 -p "$port" -U postgres -d postgres \
      -c 'CREATE DATABASE bridge' >/dev/null 2>&1 && break
    sleep 0.2
  done
  PG_URL="postgres://postgres:postgres@127.0.0.1:$port/bridge"
  log "postgres on 127.0.0.1:$port (pid $PG_PID, data $PG_DATA, log $dir/server.log)"
}
