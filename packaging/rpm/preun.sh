# %preun as Fedora's %systemd_preun: on erase ($1 = 0) disable and stop
# everything; on upgrade ($1 = 1) keep it running.
if [ "$1" -eq 0 ]; then
	systemctl --no-reload disable --now styxy-allocator.socket styxy-allocator.service styxy-observer.service styxy-health.timer styxy-health.service styxy-recovery.timer styxy-recovery.service || :
fi
