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

	introspect alice org.styxy.Allocator1 /org/styxy/Allocator1

	ct systemctl is-active --quiet styxy-observer.service &&
		must "stop the observer" ct systemctl stop styxy-observer.service
	introspect alice org.styxy.Observer1 /org/styxy/Observer1
	ct systemctl is-active --quiet styxy-observer.service ||
		fail "the call did not start styxy-observer.service"
}

# introspect USER NAME PATH: USER introspects PATH of NAME on the system bus
# (which activates NAME) and finds the interface named NAME there.
introspect() {
	local user=$1 name=$2 path=$3 out rc=0
	out=$(ct_as "$user" timeout 10 busctl --system introspect "$name" "$path" 2>&1) || rc=$?
	printf '$ busctl introspect %s %s (as %s)\n%s\n' "$name" "$path" "$user" "$out"
	case $rc in
	0) ;;
	124) fail "busctl introspect $name $path: no answer within 10 s (nothing took the name $name)" ;;
	*) fail "busctl introspect $name $path: $(tail -n 1 <<<"$out")" ;;
	esac
	grep -q "^${name//./\\.} " <<<"$out" || fail "$path has no $name interface"
}
