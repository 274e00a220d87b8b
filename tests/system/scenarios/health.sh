# A holder dies: the health timer frees its port within two periods
# (2 x 15 s) and the journal says why.

health_frees_dead_holder() {
	ensure_user alice
	ct rm -f /home/alice/holder.json
	start_as alice styxy-test-holder \
		'styxy --json allocate -s dev -n holder >holder.json 2>&1; exec sleep infinity'
	wait_until 10 "styxy allocate to answer" ct test -s /home/alice/holder.json
	local answer port pid
	answer=$(ct cat /home/alice/holder.json)
	printf '%s\n' "$answer"
	port=$(jq -r .port <<<"$answer") || fail "allocate failed: $answer"
	pid=$(main_pid styxy-test-holder)

	local since
	since=$(ct date +%s)
	must "kill the holder" ct kill -KILL "$pid"
	local killed_at=$SECONDS

	# Only the journal is watched: a listing would let the allocator reclaim
	# the port itself, and the health pass would have nothing to do.
	local periods=2 period=15 entries=
	while [ $((SECONDS - killed_at)) -le $((periods * period + 2)) ]; do
		entries=$(ct journalctl --no-pager -o verbose --since "@$since" "STYXY_PORT=$port" |
			grep -E 'STYXY_REASON=|_SYSTEMD_UNIT=' || true)
		grep -q 'STYXY_REASON=' <<<"$entries" && break
		sleep 1
	done
	printf '%s\n' "$entries"
	grep -q 'STYXY_REASON=' <<<"$entries" ||
		fail "no journal entry with STYXY_PORT=$port and a STYXY_REASON within $((periods * period)) s of the kill"
	note "port $port freed $((SECONDS - killed_at)) s after its holder was killed: $(grep -m1 'STYXY_REASON=' <<<"$entries" | xargs)"
	ct_as alice styxy list | grep -qw holder && fail "holder is still listed"
	return 0
}
