# Hardening and unit checks, and figures for the run's output.

SERVICES=(styxy-allocator styxy-observer styxy-health styxy-recovery)

# Exposure limits from the issue: the observer holds two capabilities.
declare -A EXPOSURE_LIMIT=([styxy-allocator]=2.0 [styxy-observer]=4.0 [styxy-health]=2.0 [styxy-recovery]=2.0)

hardening() {
	local service score over=()
	for service in "${SERVICES[@]}"; do
		score=$(ct systemd-analyze security --no-pager "$service.service" |
			sed -nE 's/.*Overall exposure level for [^:]*: ([0-9.]+).*/\1/p')
		[ -n "$score" ] || fail "systemd-analyze security gave no score for $service"
		note "exposure $service.service: $score (limit ${EXPOSURE_LIMIT[$service]})"
		awk -v s="$score" -v l="${EXPOSURE_LIMIT[$service]}" 'BEGIN { exit !(s > l) }' &&
			over+=("$service $score > ${EXPOSURE_LIMIT[$service]}")
	done
	[ ${#over[@]} -eq 0 ] || fail "exposure too high: ${over[*]}"
}

units_verify() {
	local out
	out=$(ct sh -c 'systemd-analyze verify --man=no /usr/lib/systemd/system/styxy-*' 2>&1)
	printf '%s\n' "$out"
	[ -z "$out" ] || fail "systemd-analyze verify: $(head -n 1 <<<"$out")"
	note "systemd-analyze verify /usr/lib/systemd/system/styxy-*: no findings"
}

# Cold start through socket activation: connect to the socket of a stopped
# allocator, ask GET /status, time the first byte of the answer.
cold_start_latency() {
	local probe='
import socket, sys, time
started = time.monotonic()
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect("/run/styxy/api.sock")
s.sendall(b"GET /status HTTP/1.1\r\nHost: styxy\r\nConnection: close\r\n\r\n")
first = s.recv(1)
elapsed = (time.monotonic() - started) * 1000
sys.exit("no answer") if not first else print(f"{elapsed:.1f}")
'
	local i samples=()
	for i in $(seq 10); do
		must "stop the allocator" ct systemctl stop styxy-allocator.service
		must "cold request $i" ct python3 -c "$probe"
		samples+=("$LAST_OUTPUT")
	done
	note "cold first answer through activation, ms (10 runs): $(printf '%s\n' "${samples[@]}" | sort -n |
		awk '{ v[NR] = $1 } END { printf "median %.1f, min %.1f, max %.1f", (v[5] + v[6]) / 2, v[1], v[NR] }')"
}
