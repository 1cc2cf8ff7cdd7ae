#!/bin/bash
# table.sh - make bench: splitmx and Postfix dual-delivering to two
# smtp-sinks through the same harness (../shared/bench/peer-bench.sh), row
# by row in one run, interleaved, REPS repetitions (median). Prints one
# markdown table: delivered msgs/s of each, the ratio, CPU ms per message,
# disk flushes per message, peak PSS. With OUT=FILE also writes the table
# with the date and the machine to FILE (docs/bench.md), keeping the
# sections (## ...) other benches wrote there.
#
#   bash tests/bench/table.sh            # REPS=1, every row
#   REPS=3 ROWS="s1 s20" OUT=docs/bench.md bash tests/bench/table.sh
#
# A benchmark, not a test: nothing here passes or fails on a number.
set -uo pipefail
top=$(cd "$(dirname "$0")/../.." && pwd)
bench_dir=${BENCH_DIR:-$top/../shared/bench}
reps=${REPS:-1}
rows=${ROWS:-"s1 s20 s100 s20reuse s20big"}
[ -x "$bench_dir/peer-bench.sh" ] || {
	echo "table.sh: no $bench_dir/peer-bench.sh" >&2
	exit 2
}

# row name -> "label|peer-bench arguments"
row_args() {
	case $1 in
	s1) echo "1 session x 2000|--sessions 1 --msgs 2000 --size 4096" ;;
	s20) echo "20 sessions x 5000|--sessions 20 --msgs 5000 --size 4096" ;;
	s100) echo "100 sessions x 5000|--sessions 100 --msgs 5000 --size 4096" ;;
	s20reuse) echo "20 sessions, reused connections|--sessions 20 --msgs 5000 --size 4096 --reuse" ;;
	s20big) echo "20 sessions x 1000 x 100 KiB|--sessions 20 --msgs 1000 --size 102400" ;;
	*) return 1 ;;
	esac
}

field() { # field NAME LINE
	sed -n "s/.*[[:space:]]$1=\([^[:space:]]*\).*/\1/p" <<<" $2"
}

median() { # numbers on stdin
	sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan";
	    else if (NR % 2) print v[(NR + 1) / 2];
	    else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for row in $rows; do
	spec=$(row_args "$row") || { echo "table.sh: unknown row $row" >&2; exit 2; }
	args=${spec#*|}
	for ((r = 1; r <= reps; r++)); do
		for who in splitmx postfix; do
			if [ "$who" = splitmx ]; then
				# shellcheck disable=SC2086
				line=$("$bench_dir/peer-bench.sh" --name splitmx $args \
				    --relay-cmd "$top/tests/bench/splitmx-relay.sh")
			else
				# shellcheck disable=SC2086
				line=$("$bench_dir/peer-bench.sh" --peer postfix $args)
			fi
			echo "$line" >>"$tmp/$row.$who.lines"
			echo "$row $who rep $r: $line" >&2
		done
	done
done

table() {
	echo "| load | splitmx del/s | Postfix del/s | ratio | CPU ms/msg splitmx / Postfix | disk flushes per msg splitmx / Postfix | PSS MB splitmx / Postfix | status |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
	for row in $rows; do
		spec=$(row_args "$row")
		label=${spec%%|*}
		declare -A v=()
		st=""
		for who in splitmx postfix; do
			f=$tmp/$row.$who.lines
			v[$who.rate]=$(while read -r l; do field deliver_rate "$l"; done <"$f" | median)
			v[$who.cpu]=$(while read -r l; do
				c=$(field cpu_s "$l"); m=$(field msgs "$l")
				awk -v c="$c" -v m="$m" 'BEGIN { printf "%.3f\n", 1000 * c / m }'
			done <"$f" | median)
			v[$who.fl]=$(while read -r l; do
				d=$(field disk_flushes "$l"); m=$(field msgs "$l")
				awk -v d="$d" -v m="$m" 'BEGIN { printf "%.2f\n", d / m }'
			done <"$f" | median)
			v[$who.pss]=$(while read -r l; do
				awk -v k="$(field peak_pss_kb "$l")" 'BEGIN { printf "%.1f\n", k / 1024 }'
			done <"$f" | median)
			st="$st$who:$(while read -r l; do field status "$l"; done <"$f" | sort -u | tr '\n' ',' | sed 's/,$//') "
		done
		ratio=$(awk -v a="${v[splitmx.rate]}" -v b="${v[postfix.rate]}" \
		    'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "nan" }')
		printf '| %s | %s | %s | %s | %s / %s | %s / %s | %s / %s | %s|\n' \
		    "$label" "${v[splitmx.rate]}" "${v[postfix.rate]}" "$ratio" \
		    "${v[splitmx.cpu]}" "${v[postfix.cpu]}" "${v[splitmx.fl]}" \
		    "${v[postfix.fl]}" "${v[splitmx.pss]}" "${v[postfix.pss]}" "$st"
		unset v
	done
}

table | tee "$tmp/table.md"
if [ -n "${OUT:-}" ]; then
	{
		echo "# Benchmark results"
		echo
		echo "The latest \`make bench\` table (tests/bench/table.sh): splitmx and"
		echo "Postfix dual-delivering to two smtp-sinks through"
		echo "../shared/bench/peer-bench.sh in the same run, interleaved; medians of"
		echo "$reps repetition(s); 4 KiB messages unless the row says otherwise;"
		echo "fsync on; splitmx on tests/bench/splitmx-relay.sh (SPF/DKIM checks and"
		echo "the duplicate index on). A benchmark, not a test."
		echo
		echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
		echo "- commit: $(git -C "$top" rev-parse --short HEAD)"
		echo "- machine: $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo), $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)"
		echo
		cat "$tmp/table.md"
		# Other benches' sections (## C10k, ...) stay as they were.
		if [ -f "$OUT" ]; then
			awk '/^## / { keep = 1 } keep' "$OUT" | sed '1s/^/\n/'
		fi
	} >"$tmp/out.md"
	mv "$tmp/out.md" "$OUT"
	echo "table.sh: wrote $OUT" >&2
fi
