# Checks on the package files themselves (on the host, no container).

lintian_deb() {
	local deb out rc=0
	deb=$(ls "$ARTIFACTS"/new/styxy_*.deb)
	out=$(lintian --fail-on error --display-info --no-tag-display-limit "$deb" 2>&1) || rc=$?
	printf '%s\n' "$out"
	local tag
	while IFS= read -r tag; do
		[ -n "$tag" ] && note "lintian: $tag"
	done < <(grep -E '^[WE]: ' <<<"$out" || true)
	[ "$rc" -eq 0 ] || fail "lintian reports errors: $(grep -m1 '^E: ' <<<"$out")"
}

rpmlint_rpm() {
	local rpm out rc=0
	rpm=$(ls "$ARTIFACTS"/new/styxy-*.rpm)
	out=$(rpmlint -c "$root/packaging/rpm/rpmlint.toml" "$rpm" 2>&1) || rc=$?
	printf '%s\n' "$out"
	local line
	while IFS= read -r line; do
		note "rpmlint: $line"
	done < <(grep -E ': [WE]: ' <<<"$out" || true)
	[ "$rc" -eq 0 ] || fail "rpmlint reports errors: $(grep -m1 ': E: ' <<<"$out")"
}

package_sizes() {
	local file
	for file in "$ARTIFACTS"/new/*; do
		note "$(basename "$file"): $(du -k "$file" | cut -f1) KiB; installed $(installed_size "$file") KiB"
	done
}

installed_size() {
	case $1 in
	*.deb) dpkg-deb -f "$1" Installed-Size ;;
	*.rpm) echo $(($(rpm -qp --queryformat '%{SIZE}' "$1" 2>/dev/null) / 1024)) ;;
	esac
}
