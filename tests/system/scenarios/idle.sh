# Idle exit: with a short idle timeout nothing of ours keeps running, and
# the next call starts the allocator again.

idle_exit() {
	ensure_user alice
	trap 'without_dropin styxy-allocator.service 50-test-idle' EXIT
	with_dropin styxy-allocator.service 50-test-idle \
		$'[Service]\nExecStart=\nExecStart=/usr/libexec/styxy/styxy-allocator --idle-timeout 2'
	ct systemctl stop styxy-allocator.service
	must "first call" ct_as alice styxy list
	ct systemctl is-active --quiet styxy-allocator.service || fail "the call did not start the allocator"

	wait_until 10 "the allocator to exit when idle" allocator_gone
	[ "$(ct systemctl show -P Result styxy-allocator.service)" = success ] ||
		fail "the idle exit was not clean: Result=$(ct systemctl show -P Result styxy-allocator.service)"
	local others
	others=$(styxy_processes)
	if [ -n "$others" ]; then
		note "styxy processes left besides the allocator: $(ct ps -o args= -p "${others//$'\n'/,}" | xargs)"
	fi

	must "next call" ct_as alice styxy list
	ct systemctl is-active --quiet styxy-allocator.service || fail "the next call did not start the allocator again"
}

allocator_gone() {
	! ct systemctl is-active --quiet styxy-allocator.service &&
		! ct pgrep -x styxy-allocator >/dev/null
}
