#!/usr/bin/env bash
# Fuzz the served OpenAPI spec of the Retouch server with schemathesis and fail on any 5xx.
#
# Starts the server (tiny random model, HTTP Basic user:pass, small limits: 64x64, 4 steps, 5 s per job) on a free loopback port, runs schemathesis
# with the not_a_server_error check over every operation (examples, coverage, fuzzing and stateful
# phases, positive and negative data), prints the number of requests sent and the status codes seen,
# and stops the server. Usage: scripts/schemathesis_run.sh [MAX_EXAMPLES_PER_OPERATION (default 100)]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=$(realpath -s "${PY:-.venv/bin/python}")
MAX_EXAMPLES=${1:-100}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
OUT=$(realpath "$OUT")
PORT=$($PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

$PY -m uvicorn _factory:fuzz_app --factory --app-dir tests/server --host 127.0.0.1 --port "$PORT" \
    --log-level warning >"$OUT/server.log" 2>&1 &
SERVER=$!
trap 'kill -INT $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 240); do
    curl -fs -u user:pass "http://127.0.0.1:$PORT/sdapi/v1/progress" >/dev/null 2>&1 && break
    kill -0 $SERVER 2>/dev/null || { cat "$OUT/server.log"; exit 1; }
    sleep 0.5
done

set +e
# run from $OUT so schemathesis' own cache folder (.schemathesis/) lands there, not in the checkout
(cd "$OUT" && $PY -m schemathesis.cli run "http://127.0.0.1:$PORT/openapi.json" --auth user:pass \
    --checks not_a_server_error --max-examples "$MAX_EXAMPLES" --seed 1 --request-timeout 120 \
    --suppress-health-check all --report ndjson --report-ndjson-path "$OUT/events.ndjson")
STATUS=$?
set -e
$PY scripts/schemathesis_count.py "$OUT/events.ndjson" || STATUS=1
exit $STATUS
