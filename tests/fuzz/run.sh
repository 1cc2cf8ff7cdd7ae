#!/bin/sh
# run.sh - run libFuzzer harnesses and print one summary line each.
# Called by "make fuzz" and "make fuzz-smoke" from the repository root.
#
#   sh tests/fuzz/run.sh [--smoke] SECONDS build/fuzz/fuzz_NAME ...
#
# Each harness runs for SECONDS on build/fuzz/corpus/NAME, which starts as
# a copy of tests/fuzz/corpus/NAME (the seeds in the repository are never
# written) and keeps what earlier runs found. tests/fuzz/NAME.dict is used
# when present. Crash inputs land in build/fuzz/crashes/NAME/, the whole
# libFuzzer output in build/fuzz/logs/NAME.log. --smoke refuses more than
# 20 s a harness. Exits nonzero when any harness crashed.

set -u

cd "$(dirname "$0")/../.." || exit 2
root=$(pwd)

smoke=0
if [ "${1:-}" = "--smoke" ]; then
	smoke=1
	shift
fi
secs=${1:?usage: run.sh [--smoke] SECONDS HARNESS...}
shift
case $secs in
'' | *[!0-9]*) echo "run.sh: SECONDS must be a number" >&2; exit 2 ;;
esac
if [ "$smoke" -eq 1 ] && [ "$secs" -gt 20 ]; then
	echo "run.sh: fuzz-smoke runs at most 20 s a harness" >&2
	exit 2
fi

# Leaks are bugs too; UBSan findings stop the run (-fno-sanitize-recover).
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export ASAN_OPTIONS UBSAN_OPTIONS

mkdir -p build/fuzz/corpus build/fuzz/crashes build/fuzz/logs
failed=0
printf '%-16s %5s %12s %9s %6s %7s %7s\n' harness secs execs exec/s cov ft crashes
for bin in "$@"; do
	name=$(basename "$bin")
	corpus=$root/build/fuzz/corpus/$name
	crashes=$root/build/fuzz/crashes/$name
	log=$root/build/fuzz/logs/$name.log
	mkdir -p "$corpus" "$crashes"
	if [ -d "tests/fuzz/corpus/$name" ]; then
		cp -p tests/fuzz/corpus/"$name"/* "$corpus"/ 2>/dev/null
	fi
	dict=
	[ -f "tests/fuzz/$name.dict" ] && dict=-dict=$root/tests/fuzz/$name.dict
	before=$(ls "$crashes" | wc -l)
	start=$(date +%s)
	# Paths are absolute: fuzz_conf works from a directory of its own.
	# shellcheck disable=SC2086 # $dict is one word or none
	timeout -k 10 $((secs + 120)) "$root/$bin" -max_total_time="$secs" \
	    -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
	    -artifact_prefix="$crashes/" $dict "$corpus" >"$log" 2>&1
	rc=$?
	end=$(date +%s)
	after=$(ls "$crashes" | wc -l)
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
	last=$(grep -E '^#[0-9]+' "$log" | grep ' cov: ' | tail -n 1)
	cov=$(echo "$last" | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
	ft=$(echo "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
	ncrash=$((after - before))
	if [ "$rc" -ne 0 ] && [ "$ncrash" -eq 0 ]; then
		ncrash=1 # e.g. a timeout or an out-of-memory without artifact
	fi
	printf '%-16s %5s %12s %9s %6s %7s %7s\n' "$name" $((end - start)) \
	    "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "$ncrash"
	if [ "$ncrash" -ne 0 ]; then
		failed=$((failed + 1))
		echo "  $name: exit $rc; log $log; inputs in $crashes/" >&2
		grep -m 3 -E 'ERROR|oracle failed|runtime error' "$log" | sed 's/^/  /' >&2
	fi
done
[ "$failed" -eq 0 ] || { echo "fuzz: $failed harness(es) crashed" >&2; exit 1; }
exit 0
