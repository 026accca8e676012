#!/usr/bin/env bash
# Build the gateway's container image (Dockerfile) and smoke-test it: it starts, answers /healthz,
# serves a JSON and a streamed chat completion from a fake OpenAI-compatible upstream, bills them,
# answers /metrics with the token (401 without), and logs JSON request lines without the key.
#
# With a working docker (`docker info`) the image itself is built and run (--network host). Without
# one, the Dockerfile's steps run instead: the same sources copied to a temp dir, installed with
# pip (`.[serve]`, torch's CPU build first) into a fresh virtualenv, the image's environment set,
# and `inferbase serve` started from outside the checkout, so only what was installed is used.
# SMOKE_MODE=docker|venv forces one; TORCH_INDEX is the extra index for torch's CPU build (unset
# here: pip's configured index).
#
#   scripts/image_smoke.sh            # make image-smoke
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
WORK=$(mktemp -d -t inferbase-smoke-XXXXXX)
UPSTREAM_PORT=${SMOKE_UPSTREAM_PORT:-18391}
PORT=${SMOKE_PORT:-18392}
TOKEN=smoke-metrics-token-$RANDOM$RANDOM
NAME=inferbase-smoke-$$
MODE=${SMOKE_MODE:-}
if [[ -z $MODE ]]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then MODE=docker; else MODE=venv; fi
fi
PIDS=()

cleanup() {
  local rc=$?
  if [[ $MODE == docker ]]; then
    [[ $rc != 0 ]] && docker logs "$NAME" 2>&1 | tail -50
    docker rm -f "$NAME" >/dev/null 2>&1 || true
  elif [[ $rc != 0 && -f $WORK/gateway.log ]]; then
    tail -50 "$WORK/gateway.log"
  fi
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
  [[ $rc == 0 ]] && echo "image smoke test passed ($MODE)" || echo "image smoke test FAILED ($MODE)"
}
trap cleanup EXIT

wait_for() {  # URL, seconds
  for _ in $(seq "$2"); do
    curl -sf -o /dev/null "$1" && return 0
    sleep 1
  done
  echo "not answering: $1" >&2
  return 1
}

echo "== mode: $MODE (work dir $WORK)"
"$PY" "$ROOT/benchmarks/fake_upstream.py" --port "$UPSTREAM_PORT" >"$WORK/upstream.log" 2>&1 &
PIDS+=($!)
wait_for "http://127.0.0.1:$UPSTREAM_PORT/health" 30
mkdir -p "$WORK/etc"
cat >"$WORK/etc/catalog.yaml" <<EOF
models:
  - id: bench/upstream
    price_usd_per_mtok: {input: 0.10, output: 0.40}
    context_length: 8192
    replicas: [http://127.0.0.1:$UPSTREAM_PORT]
EOF

if [[ $MODE == docker ]]; then
  docker build -t inferbase:smoke "$ROOT"
  docker run -d --name "$NAME" --network host -v "$WORK/etc:/smoke:ro" \
    -e INFERBASE_CATALOG=/smoke/catalog.yaml -e INFERBASE_METRICS_TOKEN="$TOKEN" \
    inferbase:smoke serve --host 127.0.0.1 --port "$PORT" --workers 2
  inferbase() { docker exec "$NAME" inferbase "$@"; }
  logs() { docker logs "$NAME" 2>&1; }
else
  # the Dockerfile's build stage
  mkdir -p "$WORK/src"
  cp -r "$ROOT/pyproject.toml" "$ROOT/README.md" "$ROOT/inferroute" "$ROOT/serving" "$ROOT/evals" \
    "$WORK/src/"
  find "$WORK/src" -name __pycache__ -prune -exec rm -rf {} +
  VENV=${SMOKE_VENV:-$WORK/venv}  # SMOKE_VENV: keep the virtualenv between runs (not in CI)
  [[ -x $VENV/bin/python ]] || "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q -U pip wheel
  "$VENV/bin/pip" install -q "torch==2.13.0" ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"}
  "$VENV/bin/pip" install -q --force-reinstall --no-deps "$WORK/src"
  "$VENV/bin/pip" install -q "$WORK/src[serve]"
  # the final stage's environment, run from outside the checkout
  mkdir -p "$WORK/home"
  export PATH="$VENV/bin:$PATH" PYTHONUNBUFFERED=1 INFERBASE_HOME="$WORK/home" \
    INFERBASE_CATALOG="$WORK/etc/catalog.yaml" INFERBASE_LOG_FORMAT=json \
    PROMETHEUS_MULTIPROC_DIR="$WORK/metrics" MLFLOW_TRACKING_URI="sqlite:///$WORK/home/mlflow.db" \
    MLFLOW_DISABLE_TELEMETRY=true HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false INFERBASE_METRICS_TOKEN="$TOKEN"
  unset PYTHONPATH INFERBASE_DATABASE_URL INFERBASE_REDIS_URL
  cd "$WORK/home"
  "$VENV/bin/inferbase" serve --host 127.0.0.1 --port "$PORT" --workers 2 \
    >"$WORK/gateway.log" 2>&1 &
  PIDS+=($!)
  inferbase() { "$VENV/bin/inferbase" "$@"; }
  logs() { cat "$WORK/gateway.log"; }
fi

BASE="http://127.0.0.1:$PORT"
wait_for "$BASE/healthz" 120
inferbase accounts create smoke@example.com --credits 10 >/dev/null
KEY=$(inferbase keys create --account smoke@example.com --name smoke | tail -1)
[[ $KEY == inf_* ]] || { echo "no API key: $KEY" >&2; exit 1; }

echo "== chat completion (JSON)"
curl -sf "$BASE/api/v1/inference/chat/completions" -H "Authorization: Bearer $KEY" \
  -H 'Content-Type: application/json' \
  -d '{"model": "bench/upstream", "messages": [{"role": "user", "content": "smoke prompt"}], "max_tokens": 8}' \
  >"$WORK/chat.json"
"$PY" - "$WORK/chat.json" <<'EOF'
import json, sys
out = json.load(open(sys.argv[1]))
assert out["model"] == "bench/upstream" and out["choices"][0]["message"]["content"], out
assert out["usage"]["completion_tokens"] > 0, out
EOF

echo "== chat completion (stream)"
curl -sfN "$BASE/api/v1/inference/chat/completions" -H "Authorization: Bearer $KEY" \
  -H 'Content-Type: application/json' \
  -d '{"model": "bench/upstream", "messages": [{"role": "user", "content": "smoke prompt"}], "stream": true}' \
  >"$WORK/stream.txt"
grep -q '^data: \[DONE\]' "$WORK/stream.txt"

echo "== usage billed"
curl -sf "$BASE/api/v1/inference/usage" -H "Authorization: Bearer $KEY" >"$WORK/usage.json"
"$PY" - "$WORK/usage.json" <<'EOF'
import json, sys
rows = json.load(open(sys.argv[1]))["data"]
assert len(rows) == 2 and all(r["status"] == "success" and r["cost_micros"] > 0 for r in rows), rows
EOF

echo "== /metrics"
code=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/metrics")
[[ $code == 401 ]] || { echo "/metrics without the token answered $code" >&2; exit 1; }
curl -sf "$BASE/metrics" -H "Authorization: Bearer $TOKEN" >"$WORK/metrics.txt"
grep -q 'inferbase_http_requests_total{method="POST",route="/api/v1/inference/chat/completions",status="200"} 2.0' \
  "$WORK/metrics.txt"
grep -q 'inferbase_engine_up{model="bench/upstream"} 1.0' "$WORK/metrics.txt"

echo "== logs"
logs >"$WORK/all.log"
if grep -qF "$KEY" "$WORK/all.log" || grep -q "smoke prompt" "$WORK/all.log"; then
  echo "the raw key or the prompt is in the logs" >&2
  exit 1
fi
"$PY" - "$WORK/all.log" <<'EOF'
import json, sys
lines = [json.loads(x) for x in open(sys.argv[1]) if x.startswith("{")]
chat = [x for x in lines if x.get("route") == "/api/v1/inference/chat/completions"]
assert len(chat) == 2, chat
assert all(x["status"] == 200 and x["key_id"] and x["cost_micros"] > 0 for x in chat), chat
EOF
