#!/bin/bash
# receive.sh - how fast splitmxd accepts mail (fsync on), beside Postfix.
#
# splitmxd on 127.0.0.1 with a spool under /var/tmp receives MSGS messages
# of SIZE octets from smtp-source over SESSIONS parallel sessions (a new
# connection per message, as peer-bench.sh does). Then, unless --no-peer,
# ../shared/bench/peer-bench.sh runs Postfix on the same load and prints
# its summary line (its accept_rate is the comparable figure).
# Everything stays on loopback; every process started here is stopped by PID.
set -euo pipefail

# EXTRA_CONF: more config lines, e.g. "auth_checks no" to time the
# receiving path without the SPF/DKIM step.
SESSIONS=${SESSIONS:-50}
MSGS=${MSGS:-5000}
SIZE=${SIZE:-4096}
PEER=1
[ "${1:-}" = "--no-peer" ] && PEER=0

top=$(cd "$(dirname "$0")/../.." && pwd)
bench_dir=${BENCH_DIR:-$top/../shared/bench}
work=$(mktemp -d /var/tmp/splitmx-bench.XXXXXX)
pid=""
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/splitmx.conf" <<CONF
hostname bench.splitmx.test
reverse_lookup no
spool_dir $work/spool
listen 127.0.0.1:$port
limits { connections 2000; connections_per_ip 2000 }
log { destination stderr; level warning }
domain example.test
${EXTRA_CONF:-}
CONF

"$top/splitmxd" -d -f "$work/splitmx.conf" 2>"$work/splitmxd.log" &
pid=$!
for _ in $(seq 100); do
	(exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
	sleep 0.1
done

cpu0=$(awk '{print $14+$15}' /proc/$pid/stat)
start=$(date +%s.%N)
timeout 600 smtp-source -4 -s "$SESSIONS" -m "$MSGS" -l "$SIZE" -M src.test \
    -f sender@src.test -t user@example.test "127.0.0.1:$port"
end=$(date +%s.%N)
cpu1=$(awk '{print $14+$15}' /proc/$pid/stat)
rss=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
queued=$(ls "$work/spool/queue" | wc -l)
tck=$(getconf CLK_TCK)
awk -v s="$start" -v e="$end" -v m="$MSGS" -v q="$queued" -v c0="$cpu0" \
    -v c1="$cpu1" -v t="$tck" -v ses="$SESSIONS" -v sz="$SIZE" -v rss="$rss" \
    'BEGIN { d = e - s; printf "relay=splitmx sessions=%d msgs=%d size=%d accept_s=%.3f accept_rate=%.1f cpu_s=%.2f cpu_ms_per_msg=%.3f peak_rss_kb=%d queued=%d\n", ses, m, sz, d, m / d, (c1 - c0) / t, (c1 - c0) / t * 1000 / m, rss, q }'
[ "$queued" -eq "$MSGS" ] || { echo "receive.sh: only $queued of $MSGS queued" >&2; exit 1; }
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""

if [ "$PEER" = 1 ]; then
	if [ -x "$bench_dir/peer-bench.sh" ]; then
		"$bench_dir/peer-bench.sh" --peer postfix --sessions "$SESSIONS" \
		    --msgs "$MSGS" --size "$SIZE" || true
	else
		echo "receive.sh: $bench_dir/peer-bench.sh not found; no Postfix line" >&2
	fi
fi
