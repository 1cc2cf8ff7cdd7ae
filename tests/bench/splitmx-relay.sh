#!/bin/bash
# splitmx-relay.sh - the relay command peer-bench.sh runs for splitmx:
# writes a dual-delivery config into $BENCH_WORKDIR and runs splitmxd in
# the foreground. Both targets are the harness's smtp-sink counters.
set -euo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
: "${BENCH_WORKDIR:?}" "${BENCH_LISTEN_PORT:?}" "${BENCH_LEGACY_PORT:?}" "${BENCH_CLOUD_PORT:?}"
conns=${SPLITMX_BENCH_CONNECTIONS:-20}
cat > "$BENCH_WORKDIR/splitmx.conf" <<CONF
hostname bench.splitmx.test
reverse_lookup no
spool_dir $BENCH_WORKDIR/spool
listen 127.0.0.1:$BENCH_LISTEN_PORT
limits { connections 5000; connections_per_ip 5000 }
log { destination stderr; level warning }
target legacy { type smtp; host 127.0.0.1:$BENCH_LEGACY_PORT; tls none; connections $conns; messages_per_connection 1000 }
target cloud { type smtp; host 127.0.0.1:$BENCH_CLOUD_PORT; tls none; connections $conns; messages_per_connection 1000 }
domain example.test { targets legacy cloud }
CONF
exec "$top/splitmxd" -d -f "$BENCH_WORKDIR/splitmx.conf"
