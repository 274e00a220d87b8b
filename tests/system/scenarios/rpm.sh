# rpm -e stops and removes everything the package brought. The state and the
# styxy user stay, as Fedora never removes users.

erase_rpm() {
	local files
	files=$(ct rpm -ql styxy)
	must "rpm -e" ct rpm -e --nodeps styxy
	local active
	active=$(ct systemctl list-units --no-legend --plain --state=active,activating,deactivating,reloading 'styxy-*' |
		grep -v '^styxy-test-' || true)
	[ -z "$active" ] || fail "units still active after rpm -e: $active"
	[ -z "$(styxy_processes)" ] || fail "styxy processes still run after rpm -e"
	tcp_listening 9876 && fail "127.0.0.1:9876 still listens after rpm -e"
	local left=() path
	while IFS= read -r path; do
		# Every file, and every directory of our own (shared ones stay).
		if ct test -f "$path" -o -L "$path" || { [[ $path == *styxy* ]] && ct test -e "$path"; }; then
			left+=("$path")
		fi
	done <<<"$files"
	local dir
	for dir in /run/styxy /usr/libexec/styxy /usr/lib/styxy /usr/share/doc/styxy; do
		ct test -e "$dir" && left+=("$dir")
	done
	local links
	links=$(ct sh -c 'ls -d /etc/systemd/system/*/styxy* 2>/dev/null' || true)
	[ -z "$links" ] || left+=($links)
	[ ${#left[@]} -eq 0 ] || fail "left after rpm -e: ${left[*]}"
	return 0
}
