# %postun as Fedora's %systemd_postun_with_restart: reload, then on upgrade
# ($1 >= 1) restart what runs so it picks up the new binaries. The state
# (/var/lib/styxy) and the styxy user stay, as Fedora keeps users and data.
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || :
fi
if [ "$1" -ge 1 ]; then
	systemctl try-restart styxy-allocator.socket styxy-allocator.service styxy-observer.service styxy-health.timer styxy-recovery.timer || :
else
	rm -rf /run/styxy
	# The package cannot own its directories (cargo-generate-rpm 0.21 fails
	# on `dir = true` assets), so remove them once empty.
	rmdir /usr/libexec/styxy /usr/lib/styxy /usr/share/doc/styxy 2>/dev/null || :
fi
