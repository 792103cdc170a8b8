#!/bin/sh
# Usage (from the repository root): crates/bench/dashboard-first-load.sh http://127.0.0.1:4000
# The dashboard's first load: page, script, style sheet and the initial stats query, one after the other.
H=${1:-http://127.0.0.1:4000}
Q=$(python3 -c 'import re,json,sys; s=open(sys.argv[1]).read(); q=re.search(r"const STATS_QUERY = `(.*?)`;", s, re.S).group(1); print(json.dumps({"query": q, "variables": {"filter": {}}}))' ${2:-crates/dashboard/assets/dashboard.js})
total=0; gz=0; t=0
for p in /dashboard /dashboard/dashboard.js /dashboard/dashboard.css; do
  out=$(curl -s -o /tmp/dash.part -w '%{time_total}' "$H$p"); b=$(wc -c < /tmp/dash.part); z=$(gzip -9c /tmp/dash.part | wc -c)
  echo "$p $b bytes, $z gzipped, ${out}s"; total=$((total+b)); gz=$((gz+z)); t=$(echo "$t + $out" | bc)
done
out=$(curl -s -o /tmp/dash.part -w '%{time_total}' -H 'content-type: application/json' -d "$Q" "$H/graphql"); b=$(wc -c < /tmp/dash.part); z=$(gzip -9c /tmp/dash.part | wc -c)
echo "stats query $b bytes, $z gzipped, ${out}s"; total=$((total+b)); gz=$((gz+z)); t=$(echo "$t + $out" | bc)
echo "first load: $total bytes, $gz gzipped, ${t}s sequential"
