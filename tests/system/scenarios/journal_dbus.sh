# The allocator logs allocations with structured fields; its D-Bus name
# answers; a call to the observer's name starts the observer.

journal_and_dbus() {
	ensure_user alice
	must "allocate" ct_as alice styxy --json allocate -s api -n journal-probe --lease manual
	local port lock
	port=$(jq -r .port <<<"$LAST_OUTPUT")
	lock=$(jq -r .lock_id <<<"$LAST_OUTPUT")
	[[ $port =~ ^[0-9]+$ ]] || fail "no port in the allocate answer"

	local entries
	entries=$(ct journalctl --no-pager -o verbose -u styxy-allocator.service "STYXY_PORT=$port")
	printf '%s\n' "$entries"
	grep -q "STYXY_LOCK_ID=$lock" <<<"$entries" ||
		fail "journalctl -u styxy-allocator has no entry with STYXY_PORT=$port STYXY_LOCK_ID=$lock"
	must "release" ct_as alice styxy release "$lock"

	must "busctl introspect org.styxy.Allocator1" \
		ct_as alice timeout 10 busctl --system introspect org.styxy.Allocator1 /org/styxy/Allocator1
	grep -q '^org\.styxy\.Allocator1 ' <<<"$LAST_OUTPUT" ||
		fail "/org/styxy/Allocator1 has no org.styxy.Allocator1 interface"

	ct systemctl is-active --quiet styxy-observer.service &&
		must "stop the observer" ct systemctl stop styxy-observer.service
	must "call org.styxy.Observer1 by name" \
		ct_as alice timeout 10 busctl --system introspect org.styxy.Observer1 /org/styxy/Observer1
	grep -q '^org\.styxy\.Observer1 ' <<<"$LAST_OUTPUT" ||
		fail "/org/styxy/Observer1 has no org.styxy.Observer1 interface"
	ct systemctl is-active --quiet styxy-observer.service ||
		fail "the call did not start styxy-observer.service"
}
