#!/usr/bin/env bash
# fuzz.sh TIME PKG:TARGET... — runs each fuzz target for TIME.
#
# A target fails when it writes a failing input (testdata/fuzz/<target>/) or
# fails in any way but one: Go's fuzzing coordinator sometimes ends a
# -fuzztime run with a bare "context deadline exceeded" and no input, a race
# at its own shutdown on busy CPUs (not a finding). That case is said out
# loud, and the target's corpus is replayed as plain tests, which must pass.
set -euo pipefail
time=$1
shift
for t in "$@"; do
	pkg=${t%%:*} target=${t##*:}
	dir=$pkg/testdata/fuzz/$target
	echo "fuzz: $target in $pkg for $time"
	before=$(ls "$dir" 2>/dev/null | sort || true)
	log=$(mktemp)
	if go test -run '^$' -fuzz "^$target\$" -fuzztime "$time" "$pkg" 2>&1 | tee "$log"; then
		rm -f "$log"
		continue
	fi
	after=$(ls "$dir" 2>/dev/null | sort || true)
	if [ "$before" != "$after" ] || ! grep -q '^    context deadline exceeded$' "$log"; then
		rm -f "$log"
		echo "fuzz: $target failed" >&2
		exit 1
	fi
	rm -f "$log"
	echo "fuzz: $target ended with Go's fuzztime shutdown race (\"context deadline exceeded\", no failing input written); replaying its corpus as tests"
	go test -count=1 -run "^$target\$" "$pkg"
done
