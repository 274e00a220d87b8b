# The state file is corrupted while the allocator is stopped: recovery sets
# it aside, restores a backup, and the next CLI call works.

STATE_DIR=/var/lib/styxy

corrupt_state_recovery() {
	ensure_user alice
	# Some writes, so that there is a generation to back up.
	local i lock
	for i in 1 2 3; do
		must "allocate" ct_as alice styxy --json allocate -s api -n "recovery-$i" --lease manual
		lock=$(jq -r .lock_id <<<"$LAST_OUTPUT")
		[ "$i" = 3 ] || must "release" ct_as alice styxy release "$lock"
	done
	must "stop the allocator" ct systemctl stop styxy-allocator.service
	ct ls -la "$STATE_DIR" "$STATE_DIR/backups" || true
	ct sh -c "ls $STATE_DIR/backups/state.json.* >/dev/null 2>&1" ||
		fail "no backup in $STATE_DIR/backups after several writes"

	local garbage="corrupted by the system test $(date +%s%N)"
	printf '%s\n' "$garbage" | ct runuser -u styxy -- tee "$STATE_DIR/state.json" >/dev/null
	local t0
	t0=$(uptime_us)
	must "run recovery" ct systemctl start styxy-recovery.service
	ct journalctl --no-pager -u styxy-recovery.service --since "-20s"

	ct grep -qF "$garbage" "$STATE_DIR/state.json" && fail "recovery left the corrupt state.json in place"
	ct sh -c "grep -rlF '$garbage' $STATE_DIR | grep -v '^$STATE_DIR/state.json\$'" ||
		fail "the corrupt state file was not kept aside in $STATE_DIR"
	ct python3 -m json.tool "$STATE_DIR/state.json" >/dev/null ||
		fail "state.json is not valid JSON after recovery"
	ct journalctl --no-pager -u styxy-recovery.service --since "-20s" -p warning | grep -q . ||
		fail "recovery logged no warning about the corrupt state"

	must "styxy list after recovery" ct_as alice styxy list
	[ "$(ct systemctl show -P ExecMainStartTimestampMonotonic styxy-allocator.service)" -gt "$t0" ] ||
		fail "the allocator did not start again"
}
