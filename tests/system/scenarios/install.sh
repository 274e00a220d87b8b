# Installing a package: units in place and enabled, the socket listening,
# nothing of ours running until somebody asks.

UNIT_FILES=(styxy-allocator.socket styxy-allocator.service styxy-observer.service
	styxy-health.service styxy-health.timer styxy-recovery.service styxy-recovery.timer)
ENABLED_UNITS=(styxy-allocator.socket styxy-health.timer styxy-recovery.timer)

install_deb() {
	must "apt install" ct_sh 'DEBIAN_FRONTEND=noninteractive apt-get install --yes --no-install-recommends /artifacts/new/styxy_*.deb'
	check_installed
}

install_rpm() {
	must "rpm -i" ct sh -c 'rpm -i --nodeps /artifacts/new/styxy-*.rpm'
	check_installed
}

check_installed() {
	local unit
	for unit in "${UNIT_FILES[@]}"; do
		ct systemctl cat "$unit" >/dev/null 2>&1 || fail "unit $unit is not installed"
	done
	for unit in "${ENABLED_UNITS[@]}"; do
		[ "$(ct systemctl is-enabled "$unit")" = enabled ] || fail "$unit is not enabled"
		[ "$(ct systemctl is-active "$unit")" = active ] || fail "$unit is not active"
	done
	local path
	for path in /usr/bin/styxy /usr/lib/styxy/libstyxy_preload.so \
		/usr/share/dbus-1/system-services/org.styxy.Allocator1.service \
		/usr/share/dbus-1/system-services/org.styxy.Observer1.service \
		/usr/share/dbus-1/system.d/org.styxy.conf; do
		ct test -e "$path" || fail "$path is missing"
	done
	ct getent passwd styxy >/dev/null || fail "no styxy user"
	[ "$(ct stat -c '%F %a' /run/styxy/api.sock)" = "socket 666" ] ||
		fail "/run/styxy/api.sock is not a 0666 socket: $(ct stat -c '%F %a' /run/styxy/api.sock 2>&1)"
	tcp_listening 9876 || fail "nothing listens on 127.0.0.1:9876"
	local procs
	procs=$(styxy_processes)
	[ -z "$procs" ] || fail "styxy processes run before any request: $(ct ps -o pid=,args= -p "${procs//$'\n'/,}")"
}
