#!/usr/bin/env bash
# Load benchmark: evald's benchmark job against a fixed nginx completion endpoint on 127.0.0.1,
# beside wrk (and oha, if installed) on the same endpoint and body, at concurrency 1, 8 and 64.
# evald stores and scores nothing extra here, but does store every request record (redb).
#   bench/load.sh [REQUESTS]      (default 100000 per evald and oha run; wrk runs 10 s)
# then the same fixed rate (RATE, default 5000/s) for oha -q and evald's open loop. evald and
# oha each send REQUESTS + 100 and are timed by the wall clock from their start (evald's 100
# are its warm-up), so both rates carry start-up and the last request's drain alike; wrk has no
# request count, and its rate is its own report over 10 s. A rate that a tool reports of itself
# reads 2.5-6 % above its wall clock over the same requests (docs/benchmark.md).
#   bench/load.sh --ab OLD_BIN [RUNS] [REQUESTS]   (defaults 8 and 200000)
# compares another evald binary with this build instead: RUNS alternating runs of each at
# concurrency 64, with the median requests/s and the CPU per request of evald and of nginx.
#   bench/load.sh --vs-oha [RUNS] [REQUESTS]   (defaults 8 and 200000)
# compares this build with oha the same way: RUNS pairs at concurrency 64, each tool sending
# REQUESTS + 1,000 and timed by the wall clock from its start (evald's 1,000 are its warm-up),
# who goes first alternating, so neither always runs on a machine the other just loaded.
# Needs Debian's nginx-light and wrk (installed if missing); builds evald in release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=""
if [ "${1:-}" = "--ab" ]; then
  OLD=${2:?usage: bench/load.sh --ab OLD_BIN [RUNS] [REQUESTS]}
  RUNS=${3:-8}
  N=${4:-200000}
elif [ "${1:-}" = "--vs-oha" ]; then
  OLD=oha
  command -v oha >/dev/null || { echo "--vs-oha needs oha (cargo install --locked oha)" >&2; exit 1; }
  RUNS=${2:-8}
  N=${3:-200000}
else
  N=${1:-100000}
fi
command -v nginx >/dev/null || apt-get install -y -qq nginx-light >/dev/null
command -v wrk >/dev/null || apt-get install -y -qq wrk >/dev/null
cargo build --release -q -p evald
BIN=${EVALD_BIN:-target/release/evald}
T=$(mktemp -d)
cleanup() { [ -f "$T/nginx.pid" ] && kill "$(cat "$T/nginx.pid")" 2>/dev/null; rm -rf "$T"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
NP=$(port)
mkdir -p "$T/logs" "$T/tmp" "$T/site/jobs" "$T/site/data"
cat >"$T/nginx.conf" <<NGX
worker_processes auto;
pid $T/nginx.pid;
error_log $T/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $T/tmp/body;
  keepalive_requests 1000000;
  keepalive_timeout 75s;
  client_body_buffer_size 1m;
  server {
    listen 127.0.0.1:$NP reuseport backlog=4096;
    default_type application/json;
    location = /v1/chat/completions {
      return 200 '{"id":"chatcmpl-stub","object":"chat.completion","created":1700000000,"model":"stub-model","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the nginx stub."},"finish_reason":"stop"}],"usage":{"prompt_tokens":10,"completion_tokens":6,"total_tokens":16}}';
    }
    location = /v1/models { return 200 '{"object":"list","data":[{"id":"stub-model"}]}'; }
  }
}
NGX
nginx -p "$T" -c "$T/nginx.conf"
cat >"$T/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"model":"stub-model","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16}'
LUA
cat >"$T/site/evald.toml" <<TOML
listen = "127.0.0.1:$(port)"
data_dir = "data"
[endpoints.stub]
url = "http://127.0.0.1:$NP/v1"
timeout = "10s"
max_retries = 0
TOML
BODY='{"model":"stub-model","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16}'
URL="http://127.0.0.1:$NP/v1/chat/completions"
HAVE_OHA=$(command -v oha >/dev/null && echo 1 || echo "")
[ -n "$HAVE_OHA" ] || echo "oha not installed (cargo install --locked oha): its columns stay empty" >&2
# oha_to FILE ARGS...: runs oha on the stub with the body, its JSON report into FILE
oha_to() {
  local F=$1
  shift
  oha --no-tui -m POST -H 'Content-Type: application/json' -d "$BODY" --output-format json "$@" "$URL" >"$F"
}
# oha_stats FILE [REQUESTS START END]: "req/s p50_ms p99_ms" of oha's report in FILE; the rate is
# oha's own, or REQUESTS over the wall time from START to END when they are given
oha_stats() {
  python3 - "$@" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
p = d["latencyPercentiles"]
rps = int(sys.argv[2]) / (float(sys.argv[4]) - float(sys.argv[3])) if len(sys.argv) > 4 else d["summary"]["requestsPerSec"]
print(round(rps), round(p["p50"] * 1000, 3), round(p["p99"] * 1000, 3))
PY
}
oha_run() { # oha_run ARGS... -> "req/s p50_ms p99_ms", the rate oha's own
  oha_to "$T/oha.json" "$@"
  oha_stats "$T/oha.json"
}
# oha_wall CONCURRENCY REQUESTS: "req/s p50_ms p99_ms" for REQUESTS + 100 sent, the rate timed
# as evald_run times evald's
oha_wall() {
  local S E
  S=$(date +%s.%N)
  oha_to "$T/oha.json" -c "$1" -n $(($2 + 100))
  E=$(date +%s.%N)
  oha_stats "$T/oha.json" "$2" "$S" "$E"
}
# evald_job CONCURRENCY REQUESTS WARMUP [RATE]: writes the benchmark job, empties the store
evald_job() {
  local C=$1 REQ=$2 WARM=$3 RATE=${4:-}
  rm -rf "$T/site/data"; mkdir -p "$T/site/data"
  {
    printf 'kind = "benchmark"\ntargets = ["stub/stub-model"]\nstream = false\n[params]\nmax_tokens = 16\n'
    printf '[[cases]]\nid = "hello"\nprompt = "Say hello."\n[load]\nrequests = %s\nwarmup = %s\n' "$REQ" "$WARM"
    if [ -n "$RATE" ]; then printf 'rate = %s\n' "$RATE"; else printf 'concurrency = %s\n' "$C"; fi
  } >"$T/site/jobs/load.toml"
}
# evald_run CONCURRENCY REQUESTS [RATE]: prints "req/s(wall) p50 p99"
evald_run() {
  local C=$1 REQ=$2 RATE=${3:-}
  evald_job "$C" "$REQ" 100 "$RATE"
  local S E
  S=$(date +%s.%N)
  "$BIN" run load --json --config "$T/site/evald.toml" >"$T/run.json"
  E=$(date +%s.%N)
  python3 -c "
import json; b=json.load(open('$T/run.json'))['summary']['targets'][0]['bench']
print(round($REQ/($E-$S)), round(b['e2e_ms']['p50'],3), round(b['e2e_ms']['p99'],3))"
}
# CPU time of nginx's workers so far, in clock ticks
ngx_ticks() {
  local s=0 p
  for p in $(pgrep -P "$(cat "$T/nginx.pid")"); do s=$((s + $(awk '{print $14+$15}' "/proc/$p/stat"))); done
  echo "$s"
}
# ab_run BIN: one run at c = 64 of N requests and 1,000 more (evald's warm-up; BIN `oha` sends
# them all); prints "req/s client_us nginx_us": N over the wall time from the client's start,
# and the CPU per request of the client (its rusage) and of nginx's workers (/proc/PID/stat)
ab_run() {
  local A Z OUT CMD
  if [ "$1" = oha ]; then
    CMD=(oha --no-tui -c 64 -n $((N + 1000)) -m POST -H 'Content-Type: application/json'
      -d "$BODY" --output-format json "$URL")
  else
    evald_job 64 "$N" 1000
    CMD=("$1" run load --config "$T/site/evald.toml")
  fi
  A=$(ngx_ticks)
  OUT=$(python3 - "$N" "${CMD[@]}" <<'PY'
import resource, subprocess, sys, time
n, cmd = int(sys.argv[1]), sys.argv[2:]
t = time.time()
subprocess.run(cmd, stdout=subprocess.DEVNULL, check=True)
wall = time.time() - t
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{n / wall:.0f} {(ru.ru_utime + ru.ru_stime) / (n + 1000) * 1e6:.1f}")
PY
)
  Z=$(ngx_ticks)
  echo "$OUT $(python3 -c "print(f'{($Z - $A) / $(getconf CLK_TCK) / ($N + 1000) * 1e6:.1f}')")"
}
if [ -n "$OLD" ]; then
  printf '%s runs each, %s requests at concurrency 64, alternating (old = %s)\n' "$RUNS" "$N" "$OLD"
  : >"$T/ab.txt"
  for r in $(seq "$RUNS"); do
    # Who goes first alternates: on this kind of machine a run straight after another can be
    # slower than one after rest, and a fixed order would put that on one side.
    ORDER=$([ $((r % 2)) = 1 ] && echo "old new" || echo "new old")
    for who in $ORDER; do
      B=$([ "$who" = old ] && echo "$OLD" || echo "$BIN")
      echo "$r $who $(ab_run "$B")" | tee -a "$T/ab.txt"
    done
  done
  python3 - "$T/ab.txt" "$OLD" <<'PY'
import statistics as st, sys
rows = [l.split() for l in open(sys.argv[1])]
side = {"old": sys.argv[2], "new": "this build"}
by = {}
for who in ("old", "new"):
    r = [list(map(float, x[2:])) for x in rows if x[1] == who]
    rps, cpu, ngx = zip(*r)
    by[who] = dict((int(x[0]), float(x[2])) for x in rows if x[1] == who)
    print(f"{who} ({side[who]}): median {st.median(rps):,.0f} req/s ({min(rps):,.0f}-{max(rps):,.0f}), "
          f"client {st.median(cpu):.1f} us and nginx {st.median(ngx):.1f} us CPU per request")
ratios = sorted(by["new"][k] / by["old"][k] for k in by["new"] if k in by["old"])
wins = sum(x >= 1 for x in ratios)
print(f"new / old per round: median {st.median(ratios):.3f} ({ratios[0]:.3f}-{ratios[-1]:.3f}), "
      f"new ahead in {wins} of {len(ratios)}")
PY
  exit 0
fi
printf '| concurrency | wrk req/s (own report) | oha req/s (wall, incl. start) | evald req/s (wall, incl. start and store) | evald ÷ oha | wrk p50 | oha p50 | evald p50 | oha p99 | evald p99 |\n'
printf '| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n'
for C in 1 8 64; do
  TH=$(( C < 2 ? 1 : 2 ))
  W=$(wrk -t$TH -c$C -d10s --latency -s "$T/post.lua" "$URL")
  WR=$(awk '/Requests\/sec/{print $2}' <<<"$W")
  W50=$(awk '$1=="50%"{print $2}' <<<"$W")
  read -r OR O50 O99 <<<"$([ -n "$HAVE_OHA" ] && oha_wall "$C" "$N" || echo "- - -")"
  read -r ER E50 E99 <<<"$(evald_run "$C" "$N")"
  RATIO=$([ -n "$HAVE_OHA" ] && python3 -c "print(round($ER/$OR,3))" || echo -)
  printf '| %s | %s | %s | %s | %s | %s | %s ms | %s ms | %s ms | %s ms |\n' \
    "$C" "$WR" "$OR" "$ER" "$RATIO" "$W50" "$O50" "$E50" "$O99" "$E99"
done
# The same fixed rate: latency without the client's queueing (oha -q; evald's open loop).
RATE=${RATE:-5000}
if [ -n "$HAVE_OHA" ]; then
  read -r _ O50 O99 <<<"$(oha_run -c 64 -q "$RATE" -n $((RATE * 10)))"
  read -r _ E50 E99 <<<"$(evald_run 0 $((RATE * 10)) "$RATE")"
  printf '\nAt a fixed %s req/s: oha p50 %s ms, p99 %s ms; evald p50 %s ms, p99 %s ms (p50 difference %s ms)\n' \
    "$RATE" "$O50" "$O99" "$E50" "$E99" "$(python3 -c "print(round($E50-$O50,3))")"
fi
