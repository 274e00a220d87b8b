# A holder dies while the allocator is not running (it exited when idle, so
# nothing watches the holder): the health timer frees its port within two
# periods (2 x 15 s) and the journal says why.

HEALTH_PERIOD=15

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

	must "stop the allocator (as an idle exit would)" ct systemctl stop styxy-allocator.service
	local since killed_at killed_us
	since=$(ct date +%s)
	killed_us=$(uptime_us)
	must "kill the holder" ct kill -KILL "$pid"
	killed_at=$SECONDS

	# Only the journal is watched: any request would start the allocator,
	# which would reclaim the port itself.
	local limit=$((2 * HEALTH_PERIOD)) entries=
	while [ $((SECONDS - killed_at)) -le $((limit + 2)) ]; do
		entries=$(ct journalctl --no-pager -o verbose --since "@$since" "STYXY_PORT=$port" |
			grep -E 'STYXY_REASON=|_SYSTEMD_UNIT=|MESSAGE=' || true)
		grep -q 'STYXY_REASON=' <<<"$entries" && break
		sleep 1
	done
	printf '%s\n' "$entries"
	grep -q 'STYXY_REASON=' <<<"$entries" ||
		fail "no journal entry with STYXY_PORT=$port and a STYXY_REASON within $limit s of the kill"
	local health_ran
	health_ran=$(ct systemctl show -P ExecMainStartTimestampMonotonic styxy-health.service)
	[ "${health_ran:-0}" -gt "$killed_us" ] || fail "the port was freed, but styxy-health did not run"
	note "port $port freed $((SECONDS - killed_at)) s after its holder was killed: $(grep -m1 'STYXY_REASON=' <<<"$entries" | xargs)"
	ct_as alice styxy list | grep -qw holder && fail "holder is still listed"
	return 0
}
