#!/bin/sh
# Boots the benchmark system (bench/system.xml) in QEMU, waits for the
# benchmark PD to say it is done (or FAILED), stops QEMU and prints the
# PD's lines. Usage: bench-sel4.sh LOG QEMU-COMMAND...
# The system never halts by itself; the limit is the wall-clock seconds
# BENCH_SECONDS (600 unless set).
log=$1
shift
"$@" </dev/null >"$log" 2>&1 &
qemu=$!
limit=${BENCH_SECONDS:-600}
waited=0
while [ "$waited" -lt "$limit" ] && kill -0 "$qemu" 2>/dev/null; do
	grep -q '^bench: \(done\|FAILED\)' "$log" && break
	sleep 1
	waited=$((waited + 1))
done
kill "$qemu" 2>/dev/null
wait "$qemu" 2>/dev/null
grep '^bench: ' "$log"
grep -q '^bench: done' "$log"
