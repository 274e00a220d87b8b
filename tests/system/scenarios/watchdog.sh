# An allocator that stops pinging the watchdog is killed and restarted by
# systemd; allocations survive; recovery runs before the restart.

watchdog_restart() {
	ensure_user alice
	must "allocate" ct_as alice styxy --json allocate -s api -n survivor --lease manual
	local lock
	lock=$(jq -r .lock_id <<<"$LAST_OUTPUT")

	trap 'without_dropin styxy-allocator.service 50-test-watchdog' EXIT
	with_dropin styxy-allocator.service 50-test-watchdog \
		$'[Service]\nEnvironment=STYXY_DEBUG_STOP_WATCHDOG_AFTER=1\nWatchdogSec=2s'
	local t0
	t0=$(uptime_us)
	must "restart the allocator with the drop-in" ct systemctl restart styxy-allocator.service
	local first_pid
	first_pid=$(main_pid styxy-allocator.service)

	wait_until 15 "the watchdog to kill the allocator" allocator_restarted
	# Later starts must ping again.
	without_dropin styxy-allocator.service 50-test-watchdog
	trap - EXIT

	ct journalctl --no-pager -u styxy-allocator.service --since "-30s" | tail -n 20
	ct journalctl --no-pager -u styxy-allocator.service --since "-30s" | grep -q 'Watchdog timeout' ||
		fail "the journal shows no watchdog timeout"
	wait_until 20 "the allocator to run again" ct systemctl is-active --quiet styxy-allocator.service
	[ "$(main_pid styxy-allocator.service)" != "$first_pid" ] || fail "the allocator was not restarted"

	must "list after the restart" ct_as alice styxy --json list
	jq -e --arg l "$lock" '.allocations[] | select(.lock_id == $l)' <<<"$LAST_OUTPUT" >/dev/null ||
		fail "allocation $lock did not survive the restart"
	must "release" ct_as alice styxy release "$lock"

	local recovery_start
	recovery_start=$(ct systemctl show -P ExecMainStartTimestampMonotonic styxy-recovery.service)
	ct journalctl --no-pager -u styxy-recovery.service --since "-30s"
	[ "${recovery_start:-0}" -gt "$t0" ] || fail "styxy-recovery did not run after the watchdog kill"
	[ "$(ct systemctl show -P Result styxy-recovery.service)" = success ] ||
		fail "styxy-recovery ran after the watchdog kill but failed: $(ct systemctl show \
			-p Result -p ExecMainStatus styxy-recovery.service | xargs)"
}

# Automatic restarts since the last manual start.
allocator_restarted() {
	[ "$(ct systemctl show -P NRestarts styxy-allocator.service)" -ge 1 ]
}
