#!/bin/bash
# dual.sh - make bench: splitmx and Postfix dual-delivering to two
# smtp-sinks, same harness, same run (../shared/bench/peer-bench.sh), at 20
# and 100 sessions with 4 KiB messages, fsync on. Prints the summary lines.
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
bench_dir=${BENCH_DIR:-$top/../shared/bench}
msgs=${MSGS:-5000}
[ -x "$bench_dir/peer-bench.sh" ] || { echo "dual.sh: no $bench_dir/peer-bench.sh" >&2; exit 2; }
for s in ${SESSIONS_LIST:-20 100}; do
	"$bench_dir/peer-bench.sh" --name splitmx --sessions "$s" --msgs "$msgs" \
	    --size 4096 --relay-cmd "$top/tests/bench/splitmx-relay.sh"
	"$bench_dir/peer-bench.sh" --peer postfix --sessions "$s" --msgs "$msgs" \
	    --size 4096
done
