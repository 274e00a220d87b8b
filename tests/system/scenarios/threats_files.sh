# Files and durability in system mode (docs/design.md, "Threats": files,
# sockets and durability), with the installed package under systemd.

THREATS_STATE_DIR=/var/lib/styxy

# state_json_set EXPR: rewrites state.json through jq EXPR, as styxy.
state_json_set() {
	ct_sh "jq '$1' $THREATS_STATE_DIR/state.json >/tmp/state.json.new &&
		chown styxy:styxy /tmp/state.json.new && chmod 0600 /tmp/state.json.new &&
		mv /tmp/state.json.new $THREATS_STATE_DIR/state.json"
}

# A downgrade: state.json from a newer schema. The allocator must refuse to
# serve (a port the newer state holds could be handed out twice) and leave
# the files as they are; once the state is readable again it serves.
newer_schema_state_fails_closed() {
	ensure_user alice
	must "allocate" ct_as alice styxy --json allocate -s api -n schema-held --lease manual
	local port
	port=$(jq -r .port <<<"$LAST_OUTPUT")
	must "stop the allocator" ct systemctl stop styxy-allocator.service
	must "save the state" ct cp -a "$THREATS_STATE_DIR/state.json" /tmp/state.json.good
	state_json_set '.schema = 999'
	local before
	before=$(ct sha256sum "$THREATS_STATE_DIR/state.json")

	local out rc=0
	out=$(ct_as alice styxy list 2>&1) || rc=$?
	printf '$ styxy list (newer schema)\n%s\n' "$out"
	[ "$rc" -ne 0 ] || fail "styxy list answered from a state of a newer schema: $out"
	wait_until 10 "the journal to say why the allocator refused" \
		ct sh -c "journalctl --no-pager -u styxy-allocator.service --since -60s | grep -q 'newer than the supported'"
	[ "$(ct sha256sum "$THREATS_STATE_DIR/state.json")" = "$before" ] || fail "the newer state.json was changed"
	ct sh -c "ls $THREATS_STATE_DIR/*.corrupt-* 2>/dev/null" && fail "a file was set aside for a newer schema"

	must "put the readable state back" ct cp -a /tmp/state.json.good "$THREATS_STATE_DIR/state.json"
	ct systemctl reset-failed styxy-allocator.service styxy-allocator.socket styxy-recovery.service || true
	ct systemctl restart styxy-allocator.socket
	must "styxy list after the state is readable again" ct_as alice styxy --json list
	jq -e --argjson port "$port" '.allocations[] | select(.port == $port)' <<<"$LAST_OUTPUT" >/dev/null ||
		fail "port $port is no longer held after the state came back"
}

# One acknowledged record damaged on disk after a kill -9: set aside and
# logged, the records that check out kept (it used to be dropped as a torn
# write).
damaged_log_record_is_set_aside() {
	ensure_user alice
	must "allocate" ct_as alice styxy --json allocate -s api -n wal-kept --lease manual
	local kept
	kept=$(jq -r .port <<<"$LAST_OUTPUT")
	must "allocate" ct_as alice styxy --json allocate -s api -n wal-damaged --lease manual
	# Killed, not stopped (a clean stop folds the log into the snapshot),
	# and not restarted before the damage is done.
	ct mkdir -p /run/systemd/system/styxy-allocator.service.d
	printf '[Service]\nRestart=no\n' | ct tee /run/systemd/system/styxy-allocator.service.d/threats-no-restart.conf
	must "daemon-reload" ct systemctl daemon-reload
	must "kill -9 the allocator" ct systemctl kill -s KILL styxy-allocator.service
	wait_until 10 "the allocator to die" sh -c "! ct systemctl -q is-active styxy-allocator.service"
	ct rm -f /run/systemd/system/styxy-allocator.service.d/threats-no-restart.conf
	must "daemon-reload" ct systemctl daemon-reload
	ct tail -c 400 "$THREATS_STATE_DIR/state.wal"
	# Change one character of the record's name: still JSON, still a
	# whole line, no longer what was acknowledged.
	must "damage the record" ct sed -i 's/wal-damaged/wal-dAmaged/' "$THREATS_STATE_DIR/state.wal"
	ct systemctl reset-failed styxy-allocator.service || true
	must "styxy list after the damage" ct_as alice styxy --json list
	jq -e --argjson port "$kept" '.allocations[] | select(.port == $port)' <<<"$LAST_OUTPUT" >/dev/null ||
		fail "the undamaged allocation on $kept was lost"
	ct sh -c "ls $THREATS_STATE_DIR/state.wal.corrupt-*" || fail "the damaged log was not set aside"
	ct journalctl --no-pager -u styxy-allocator.service --since -60s | grep -q 'state log is damaged' ||
		fail "the damage was not logged"
}
