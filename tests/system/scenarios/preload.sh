# The preload moves a server whose port is taken to a free one and says so.

preload_moves_port() {
	ensure_user alice
	must "take port 8000" ct systemd-run --quiet --unit=styxy-test-squatter --collect \
		python3 -m http.server 8000 --bind 0.0.0.0
	trap 'ct systemctl stop styxy-test-squatter' EXIT
	wait_until 10 "port 8000 to be taken" tcp_listening 8000

	local out
	out=$(ct_as alice timeout 5 env PYTHONUNBUFFERED=1 styxy run -- python3 -m http.server 8000 2>&1)
	printf '%s\n' "$out"
	local line
	line=$(grep -E '^styxy: port 8000 is in use by .*; listening on [0-9]+ instead' <<<"$out") ||
		fail "no 'styxy: port 8000 is in use by ...; listening on N instead' line"
	local moved
	moved=$(sed -E 's/.*listening on ([0-9]+) instead.*/\1/' <<<"$line")
	grep -qE "Serving HTTP on .* port $moved " <<<"$out" ||
		fail "the server did not serve on port $moved"
	note "$line"
}
