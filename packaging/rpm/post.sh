# %post, written as Fedora's %sysusers_create, %tmpfiles_create and
# %systemd_post behave (cargo-generate-rpm has no macros). $1 is 1 on first
# install, 2 on upgrade.
systemd-sysusers /usr/lib/sysusers.d/styxy.conf || :
if [ -d /run/systemd/system ]; then
	systemd-tmpfiles --create /usr/lib/tmpfiles.d/styxy.conf || :
	systemctl daemon-reload || :
fi
if [ "$1" -eq 1 ]; then
	# Enables what the preset says (the vendor preset in this package: the
	# socket and the timers; an admin's preset wins).
	systemctl --no-reload preset styxy-allocator.socket styxy-health.timer styxy-recovery.timer || :
	# Unlike Fedora's macros, also start what got enabled: nothing runs until
	# a request comes, and a port coordinator that needs a reboot to answer
	# is of no use.
	if [ -d /run/systemd/system ]; then
		for unit in styxy-allocator.socket styxy-health.timer styxy-recovery.timer; do
			if systemctl -q is-enabled "$unit"; then
				systemctl start "$unit" || :
			fi
		done
	fi
fi
