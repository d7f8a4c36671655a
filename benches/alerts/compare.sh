#!/bin/sh
# HTTP ingest of `sealog serve` with and without alert rules, alternating,
# ROUNDS rounds (default 3), each on a fresh store. Prints one line per run:
# the configuration, events/s (the load generator's), and for runs with
# rules the seconds the evaluator took, after the load ended, to reach the
# end of the log (0: it kept up), and the alerts raised.
# Run from the repository root after
#   cargo build --release -p sealog-cli -p sealog-benches
set -eu
BIN=${BIN:-target/release}
S=$BIN/sealog
L=$BIN/load
RULES=$(pwd)/benches/alerts/rules.toml
EVENTS=${EVENTS:-1000000}
ROUNDS=${ROUNDS:-3}
PORT=${PORT:-7817}
URL=http://127.0.0.1:$PORT
run() {
  mode=$1
  d=$(mktemp -d /tmp/sealog-alerts-bench.XXXXXX)
  $S --data-dir "$d" init >/dev/null
  token=$($S --data-dir "$d" token create --name bench --scopes ingest,query | tail -n 1)
  if [ "$mode" = rules ]; then extra="--alerts-rules $RULES"; else extra=""; fi
  # shellcheck disable=SC2086
  $S --data-dir "$d" serve --listen 127.0.0.1:$PORT $extra >"$d.out" 2>"$d.err" &
  pid=$!
  until grep -q listening "$d.out" 2>/dev/null; do sleep 0.1; done
  rate=$(SEALOG_TOKEN=$token $L --http $URL --clients 16 --batch 1000 --events "$EVENTS" \
    --queries 0 --query-clients 0 --json | sed -n 's/.*"events_per_sec": *\([0-9.]*\).*/\1/p' | head -n 1)
  lag=0
  alerts=0
  if [ "$mode" = rules ]; then
    start=$(date +%s.%N)
    records=$(curl -sS "$URL/v1/stats" -H "Authorization: Bearer $token" \
      | sed -n 's/.*"store":{"records":\([0-9]*\).*/\1/p')
    while :; do
      next=$(sed -n 's/.*"next_seq":\([0-9]*\).*/\1/p' "$d/alerts/rules.cursor" 2>/dev/null || echo 0)
      [ "${next:-0}" -ge "$records" ] && break
      sleep 0.05
    done
    lag=$(echo "$(date +%s.%N) - $start" | bc)
    alerts=$(curl -sS "$URL/v1/events?action=alert.raised&count=true" \
      -H "Authorization: Bearer $token" | sed -n 's/.*"count":\([0-9]*\).*/\1/p')
  fi
  kill -TERM $pid
  wait $pid || true
  echo "$mode events_per_sec=$rate catch_up_secs=$lag alerts=$alerts"
  rm -rf "$d" "$d.out" "$d.err"
}
i=0
while [ $i -lt "$ROUNDS" ]; do
  run none
  run rules
  i=$((i + 1))
done
