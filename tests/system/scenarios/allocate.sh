# An ordinary user allocates through socket activation; another user may
# not release it.

allocate_as_user() {
	ensure_user alice
	ensure_user bob
	ct systemctl is-active --quiet styxy-allocator.service &&
		must "stop the allocator" ct systemctl stop styxy-allocator.service

	# The owner is the process that ran styxy: a shell that lives on.
	ct rm -f /home/alice/web.out /home/alice/web.rc
	start_as alice styxy-test-web \
		'styxy allocate -s dev -n web >web.out 2>&1; echo $? >web.rc; exec sleep infinity'
	wait_until 10 "styxy allocate to finish" ct test -s /home/alice/web.rc
	cat_file /home/alice/web.out
	[ "$(ct cat /home/alice/web.rc)" = 0 ] ||
		fail "styxy allocate -s dev -n web failed: $(ct tail -n 1 /home/alice/web.out)"
	ct systemctl is-active --quiet styxy-allocator.service ||
		fail "the allocator is not running after the request"

	must "styxy list as alice" ct_as alice styxy list
	grep -E 'web' <<<"$LAST_OUTPUT" | grep -q alice ||
		fail "styxy list does not show web owned by alice"

	local lock
	lock=$(ct_as alice styxy --json list |
		jq -r '.allocations[] | select(.service_name == "web") | .lock_id')
	[ -n "$lock" ] || fail "no lock id for web in styxy --json list"

	local out rc=0
	out=$(ct_as bob styxy release "$lock" 2>&1) || rc=$?
	printf '$ styxy release %s (as bob)\n%s\n' "$lock" "$out"
	[ "$rc" -eq 1 ] || fail "bob releasing alice's lock: exit $rc, expected 1"
	grep -qiE 'forbidden|not yours|belongs to' <<<"$out" ||
		fail "bob releasing alice's lock: no forbidden message: $out"
	ct_as alice styxy list | grep -q web || fail "web is gone after bob's refused release"

	# The allocator keeps the port map beside the socket, for everyone.
	ct_as bob test -r /run/styxy/ports.map || fail "/run/styxy/ports.map is missing or not readable"

	# Loopback TCP with the user's token (IPAddressAllow=localhost lets it in).
	must "styxy token" ct_as alice styxy token
	local token=$LAST_OUTPUT
	must "GET /allocations over TCP" ct curl --silent --show-error --fail --max-time 5 \
		--header "Authorization: Bearer $token" http://127.0.0.1:9876/allocations
	jq -e '.allocations[] | select(.service_name == "web")' <<<"$LAST_OUTPUT" >/dev/null ||
		fail "GET /allocations over 127.0.0.1:9876 does not show web"
}

cat_file() {
	printf '== %s\n' "$1"
	ct cat "$1"
}
