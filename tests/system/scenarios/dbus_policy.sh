# The D-Bus policy, checked against stand-ins that own the names: only the
# styxy user may own them; everyone may call the read methods and the
# allocator's Allocate/Release (the allocator checks the caller itself);
# nothing else gets through.

# Owns NAME on the system bus and serves nothing: calls that pass the
# policy come back as UnknownMethod from here, the others as AccessDenied
# from the bus.
STAND_IN='
import sys
from gi.repository import Gio, GLib
bus = Gio.bus_get_sync(Gio.BusType.SYSTEM)
reply = bus.call_sync("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
    "RequestName", GLib.Variant("(su)", (sys.argv[1], 4)), None, 0, -1, None)
print("owner" if reply.unpack()[0] == 1 else "taken", flush=True)
GLib.MainLoop().run()
'

dbus_policy() {
	ensure_user alice
	must "stop what could take the names" ct systemctl stop styxy-allocator.socket \
		styxy-allocator.service styxy-observer.service
	trap 'ct systemctl stop styxy-test-owner-allocator1 styxy-test-owner-observer1; ct systemctl start styxy-allocator.socket' EXIT

	local out rc=0
	out=$(ct_as alice timeout 10 python3 -c "$STAND_IN" org.styxy.Allocator1 2>&1) || rc=$?
	printf '$ own org.styxy.Allocator1 as alice\n%s\n' "$out"
	grep -q AccessDenied <<<"$out" || fail "alice may own org.styxy.Allocator1 (exit $rc: $(tail -n 1 <<<"$out"))"

	local name
	for name in Allocator1 Observer1; do
		must "own org.styxy.$name as styxy" ct systemd-run --quiet --collect \
			--unit="styxy-test-owner-${name,,}" --uid=styxy --gid=styxy \
			python3 -c "$STAND_IN" "org.styxy.$name"
	done
	wait_until 10 "the stand-ins to own the names" names_owned

	local call
	for call in "Allocator1 org.styxy.Allocator1 List" \
		"Allocator1 org.styxy.Allocator1 Allocate" \
		"Allocator1 org.styxy.Allocator1 Release" \
		"Allocator1 org.freedesktop.DBus.Introspectable Introspect" \
		"Allocator1 org.freedesktop.DBus.Properties GetAll" \
		"Observer1 org.styxy.Observer1 Observe" \
		"Observer1 org.styxy.Observer1 Listeners" \
		"Observer1 org.styxy.Observer1 Suggest" \
		"Observer1 org.freedesktop.DBus.Introspectable Introspect"; do
		# shellcheck disable=SC2086
		call_as_alice $call
		grep -q 'Access denied' <<<"$LAST_CALL" && fail "policy refuses alice: $call"
	done
	for call in "Allocator1 org.styxy.Allocator1 Shutdown" \
		"Allocator1 org.freedesktop.DBus.Properties Set" \
		"Observer1 org.styxy.Observer1 Release" \
		"Observer1 org.freedesktop.DBus.Properties Set"; do
		# shellcheck disable=SC2086
		call_as_alice $call
		grep -q 'Access denied' <<<"$LAST_CALL" || fail "policy lets alice call: $call"
	done
	return 0
}

names_owned() {
	ct busctl --system status org.styxy.Allocator1 >/dev/null 2>&1 &&
		ct busctl --system status org.styxy.Observer1 >/dev/null 2>&1
}

# call_as_alice OBJECT INTERFACE METHOD: the answer in LAST_CALL (busctl says
# "Access denied" when the bus refused the call).
call_as_alice() {
	LAST_CALL=$(ct_as alice timeout 10 busctl --system call "org.styxy.$1" "/org/styxy/$1" "$2" "$3" 2>&1 || true)
	printf '$ busctl call org.styxy.%s %s.%s (as alice)\n%s\n' "$1" "$2" "$3" "$LAST_CALL"
}
