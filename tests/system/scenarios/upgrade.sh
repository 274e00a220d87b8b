# Upgrade from the previous build keeps the state and the live allocations;
# remove stops everything; purge leaves nothing behind.

upgrade_remove_purge() {
	must "install the previous build" ct_sh 'DEBIAN_FRONTEND=noninteractive apt-get install --yes --no-install-recommends /artifacts/old/styxy_*.deb'
	local old_version
	old_version=$(ct dpkg-query -W -f '${Version}' styxy)
	ensure_user alice

	ct rm -f /home/alice/live.json
	start_as alice styxy-test-live \
		'styxy --json allocate -s dev -n live >live.json 2>&1; exec sleep infinity'
	wait_until 10 "styxy allocate to answer" ct test -s /home/alice/live.json
	local live manual
	live=$(ct cat /home/alice/live.json | jq -r .lock_id) || fail "allocate failed: $(ct cat /home/alice/live.json)"
	must "manual allocation" ct_as alice styxy --json allocate -s api -n kept --lease manual
	manual=$(jq -r .lock_id <<<"$LAST_OUTPUT")

	local pid_before
	pid_before=$(main_pid styxy-allocator.service)
	[ "$pid_before" != 0 ] || fail "the allocator is not running before the upgrade"
	must "upgrade" ct_sh 'DEBIAN_FRONTEND=noninteractive apt-get install --yes --no-install-recommends /artifacts/new/styxy_*.deb'
	local new_version
	new_version=$(ct dpkg-query -W -f '${Version}' styxy)
	[ "$new_version" != "$old_version" ] || fail "the version did not change ($old_version)"
	note "upgraded $old_version -> $new_version"
	local unit
	for unit in styxy-allocator.socket styxy-health.timer styxy-recovery.timer; do
		ct systemctl is-active --quiet "$unit" || fail "$unit is not active after the upgrade"
	done
	# It ran, so it runs again, from the new binary.
	local pid_after
	pid_after=$(main_pid styxy-allocator.service)
	[ "$pid_after" != 0 ] && [ "$pid_after" != "$pid_before" ] ||
		fail "the allocator was not restarted by the upgrade (pid $pid_before before, $pid_after after)"
	ct journalctl --no-pager -u styxy-allocator.socket -u styxy-allocator.service --since "-30s"
	must "list after the upgrade" ct_as alice styxy --json list
	local lock
	for lock in "$live" "$manual"; do
		jq -e --arg l "$lock" '.allocations[] | select(.lock_id == $l)' <<<"$LAST_OUTPUT" >/dev/null ||
			fail "allocation $lock is gone after the upgrade"
	done

	local files
	files=$(ct dpkg-query -L styxy)
	must "remove" ct env DEBIAN_FRONTEND=noninteractive apt-get remove --yes styxy
	local active
	active=$(ct systemctl list-units --no-legend --plain --state=active,activating,deactivating,reloading 'styxy-*' |
		grep -v '^styxy-test-' || true)
	[ -z "$active" ] || fail "units still active after remove: $active"
	[ -z "$(styxy_processes)" ] || fail "styxy processes still run after remove"
	ct test -e /run/styxy/api.sock && fail "the socket file is still there after remove"
	tcp_listening 9876 && fail "127.0.0.1:9876 still listens after remove"

	must "purge" ct env DEBIAN_FRONTEND=noninteractive apt-get purge --yes styxy
	local left=()
	while IFS= read -r path; do
		[ -n "$path" ] || continue
		# Every file, and every directory of our own (shared ones stay).
		if ct test -f "$path" -o -L "$path" || { [[ $path == *styxy* ]] && ct test -e "$path"; }; then
			left+=("$path")
		fi
	done <<<"$files"
	local extra
	for extra in /var/lib/styxy /run/styxy /etc/styxy; do
		ct test -e "$extra" && left+=("$extra")
	done
	extra=$(ct sh -c 'ls -d /etc/systemd/system/*/styxy* /etc/systemd/system/styxy* /var/lib/systemd/deb-systemd-helper-enabled/*styxy* /var/lib/systemd/deb-systemd-helper-enabled/*/styxy* /var/lib/systemd/deb-systemd-helper-masked/*styxy* /var/lib/systemd/timers/*styxy* 2>/dev/null' || true)
	[ -z "$extra" ] || left+=($extra)
	[ ${#left[@]} -eq 0 ] || fail "left after purge: ${left[*]}"
	ct getent passwd styxy >/dev/null && fail "the styxy user is still there after purge"
	ct getent group styxy >/dev/null && fail "the styxy group is still there after purge"
	[ -z "$(ct systemctl list-unit-files --no-legend 'styxy-*' | grep -v '^styxy-test-')" ] ||
		fail "unit files still known after purge"
	return 0
}
