#!/bin/sh
# run.sh - run the unit tests (build/san/check_*) and the integration tests
# (tests/integration/test_*.py) against the sanitizer build. Called by
# "make check" from the repository root after "make test-build".
#
#   sh tests/run.sh [test_name ...]   e.g. sh tests/run.sh test_protocol
#
# Daemon logs are kept under build/test-logs/<test>/ and scanned for
# sanitizer reports after each test. Exits nonzero if anything failed.

set -u

cd "$(dirname "$0")/.." || exit 2

ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
SPLITMXD=${SPLITMXD:-build/san/splitmxd}
PYTHONDONTWRITEBYTECODE=1
export ASAN_OPTIONS UBSAN_OPTIONS SPLITMXD PYTHONDONTWRITEBYTECODE

PY=/usr/bin/python3
TIMEOUT=${TEST_TIMEOUT:-300}
LOGROOT=build/test-logs

unit_failed=0
unit_run=0
for bin in build/san/check_*; do
	[ -x "$bin" ] || continue
	unit_run=$((unit_run + 1))
	echo "== unit: $bin"
	if ! timeout "$TIMEOUT" "$bin"; then
		echo "FAIL unit $bin"
		unit_failed=$((unit_failed + 1))
	fi
done
echo "unit: $unit_run run, $unit_failed failed"

if [ ! -x "$SPLITMXD" ]; then
	echo "FAIL: $SPLITMXD not built (make test-build)"
	exit 1
fi

passed=0
failed=0
failed_names=""
if [ $# -gt 0 ]; then
	tests=""
	for t in "$@"; do
		tests="$tests tests/integration/${t%.py}.py"
	done
else
	tests=$(ls tests/integration/test_*.py 2>/dev/null)
fi

for t in $tests; do
	name=$(basename "$t" .py)
	logdir="$LOGROOT/$name"
	rm -rf "$logdir"
	mkdir -p "$logdir"
	echo "== integration: $name"
	start=$(date +%s)
	SPLITMX_TEST_LOGDIR="$logdir" timeout -k 10 "$TIMEOUT" "$PY" "$t"
	rc=$?
	end=$(date +%s)
	if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
		echo "FAIL $name: timed out after ${TIMEOUT}s"
	fi
	# Belt and braces: a sanitizer report in any daemon log fails the test,
	# even when the test itself crashed before stopping the daemon.
	if grep -l -e AddressSanitizer -e LeakSanitizer -e 'runtime error' \
	    -e UndefinedBehaviorSanitizer "$logdir"/*.log >/dev/null 2>&1; then
		echo "FAIL $name: sanitizer report in daemon log:"
		grep -n -e AddressSanitizer -e LeakSanitizer -e 'runtime error' \
		    -e UndefinedBehaviorSanitizer "$logdir"/*.log | head -n 10
		rc=1
	fi
	if [ "$rc" -eq 0 ]; then
		passed=$((passed + 1))
		echo "-- $name: ok ($((end - start))s)"
	else
		failed=$((failed + 1))
		failed_names="$failed_names $name"
		echo "-- $name: FAILED (status $rc, $((end - start))s; logs in $logdir)"
	fi
done

echo "integration: $passed passed, $failed failed"
[ -n "$failed_names" ] && echo "failed:$failed_names"
if [ "$failed" -ne 0 ] || [ "$unit_failed" -ne 0 ]; then
	exit 1
fi
exit 0
