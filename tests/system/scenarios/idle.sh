# Idle exit: with a short idle timeout nothing of ours keeps running, and
# the next call starts the allocator again.

idle_exit() {
	ensure_user alice
	trap 'without_dropin styxy-allocator.service 50-test-idle' EXIT
	with_dropin styxy-allocator.service 50-test-idle \
		$'[Service]\nExecStart=\nExecStart=/usr/libexec/styxy/styxy-allocator --idle-timeout 2'
	# What earlier calls started (the observer exits on its own idle timer).
	ct systemctl stop styxy-allocator.service styxy-observer.service
	must "first call" ct_as alice styxy list
	ct systemctl is-active --quiet styxy-allocator.service || fail "the call did not start the allocator"

	wait_until 10 "the allocator to exit when idle" allocator_gone
	[ "$(ct systemctl show -P Result styxy-allocator.service)" = success ] ||
		fail "the idle exit was not clean: Result=$(ct systemctl show -P Result styxy-allocator.service)"
	# The health timer's oneshot may be between runs or in one.
	if ! wait_until_quiet 5; then
		local left
		left=$(styxy_processes)
		fail "styxy processes remain: $(ct ps -o args= -p "${left//$'\n'/,}" | xargs)"
	fi

	must "next call" ct_as alice styxy list
	ct systemctl is-active --quiet styxy-allocator.service || fail "the next call did not start the allocator again"
}

allocator_gone() {
	! ct systemctl is-active --quiet styxy-allocator.service &&
		! ct pgrep -x styxy-allocator >/dev/null
}

# wait_until_quiet SECONDS: whether, within SECONDS, no process of the styxy
# user runs.
wait_until_quiet() {
	local deadline=$((SECONDS + $1))
	while [ -n "$(styxy_processes)" ]; do
		[ "$SECONDS" -lt "$deadline" ] || return 1
		sleep 0.2
	done
}
