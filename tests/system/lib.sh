# Helpers for the system tests: containers booting the host's own systemd on
# an overlay of the host's root, and PASS/FAIL bookkeeping. Sourced by `run`.

# ---------------------------------------------------------------- results

PASSED=0
FAILED=0
FAILED_NAMES=()

# fail REASON: ends the current scenario (a subshell) with REASON.
fail() {
	printf '%s\n' "$*" >"$SCENARIO_REASON"
	exit 1
}

# note TEXT: a line for the run's output (figures, observations).
note() {
	printf '  %s\n' "$*" >&4
}

# record_failure NAME REASON: counts a failure and prints its line.
record_failure() {
	FAILED=$((FAILED + 1))
	FAILED_NAMES+=("$1")
	echo "FAIL $1: $2"
}

# scenario NAME FUNCTION [ARGS...]: runs FUNCTION in a subshell and prints
# `PASS NAME` or `FAIL NAME: reason` followed by the end of the scenario's
# log. The log (every command, its output and duration) stays in
# $WORK/logs/; durations also go to $WORK/logs/timings.
scenario() {
	local name=$1
	shift
	local log=$WORK/logs/${name//\//_}.log
	SCENARIO_REASON=$WORK/logs/reason
	: >"$SCENARIO_REASON"
	local started=$SECONDS rc=0
	(
		set -uo pipefail
		"$@"
	) 4>&1 >"$log" 2>&1 || rc=$?
	printf '%s %ss\n' "$name" "$((SECONDS - started))" >>"$WORK/logs/timings"
	if [ "$rc" -eq 0 ]; then
		PASSED=$((PASSED + 1))
		echo "PASS $name"
	else
		local reason
		reason=$(cat "$SCENARIO_REASON")
		record_failure "$name" "${reason:-exit status $rc}"
		tail -n 40 "$log" | sed 's/^/    | /'
	fi
}

# ---------------------------------------------------------------- commands

# ct COMMAND...: runs COMMAND as root inside the current container ($CT),
# with a clean environment. Output and exit status come back.
ct() {
	nsenter -t "$(ct_pid "$CT")" -a \
		env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		LANG=C.UTF-8 TERM=dumb "$@"
}

# ct_as USER COMMAND...: the same as an ordinary user, with a login-like
# environment (HOME, USER) and no session bus. COMMAND runs from a shell of
# USER, as from a terminal: styxy names its parent as the owner, and runuser
# itself runs as root.
ct_as() {
	local user=$1
	shift
	ct runuser -u "$user" -- env HOME="/home/$user" USER="$user" LOGNAME="$user" \
		sh -c '"$@"; status=$?; exit $status' sh "$@"
}

# ct_sh SCRIPT: runs a shell script inside the container as root.
ct_sh() {
	ct sh -ec "$1"
}

# must DESCRIPTION COMMAND...: runs COMMAND (on the host side of ct), logs
# its output, fails the scenario with DESCRIPTION and the output's last line.
must() {
	local what=$1 out rc=0
	shift
	local started=$SECONDS
	out=$("$@" 2>&1) || rc=$?
	printf '$ %s  [%ss]\n%s\n' "$*" "$((SECONDS - started))" "$out"
	if [ "$rc" -ne 0 ]; then
		fail "$what (exit $rc: $(tail -n 1 <<<"$out"))"
	fi
	LAST_OUTPUT=$out
}

# wait_until SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.2 s.
wait_until() {
	local limit=$1 what=$2 deadline
	shift 2
	deadline=$((SECONDS + limit))
	until "$@" >/dev/null 2>&1; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			fail "$what: not within ${limit}s"
		fi
		sleep 0.2
	done
}

# ---------------------------------------------------------------- containers

declare -A CT_NSPAWN_PID=()

# ct_pid NAME: PID (on the host) of the container's systemd.
ct_pid() {
	pgrep -P "${CT_NSPAWN_PID[$1]}" -x systemd
}

# ct_boot NAME: boots a container on a fresh overlay of the host's root with
# $ARTIFACTS read-only at /artifacts, and waits until systemd is up. All its
# mounts live in a private mount namespace that dies with systemd-nspawn.
ct_boot() {
	local name=$1 dir=$WORK/ct/$1
	mkdir -p "$dir/upper" "$dir/work" "$dir/root"
	unshare --mount --propagation private sh -ec '
		dir=$1 artifacts=$2 name=$3
		mount -t overlay overlay -o "lowerdir=/,upperdir=$dir/upper,workdir=$dir/work" "$dir/root"
		# A new machine: its own id, no first-boot questions, and no
		# policy-rc.d (it exits 101 and blocks every start on install).
		rm -f "$dir/root/etc/machine-id" "$dir/root/usr/sbin/policy-rc.d"
		ln -sf /dev/null "$dir/root/etc/systemd/system/systemd-firstboot.service"
		# man-db re-indexes on every package operation: seconds per apt call.
		rm -f "$dir/root/var/lib/man-db/auto-update"
		mkdir -p /run/systemd/nspawn
		mount -t tmpfs tmpfs /run/systemd/nspawn
		exec systemd-nspawn --quiet --register=no --keep-unit --link-journal=no \
			--console=pipe --private-network \
			--tmpfs=/work --tmpfs=/root --tmpfs=/home \
			--bind-ro="$artifacts:/artifacts" \
			-D "$dir/root" -M "$name" -b -- systemd.unit=basic.target
	' ct-boot "$dir" "$ARTIFACTS" "styxy-$name" >"$dir/console.log" 2>&1 &
	CT_NSPAWN_PID[$name]=$!
	local deadline=$((SECONDS + 60)) state=
	while [ "$SECONDS" -lt "$deadline" ]; do
		if ! kill -0 "${CT_NSPAWN_PID[$name]}" 2>/dev/null; then
			echo "container $name exited while booting:" >&2
			tail -n 20 "$dir/console.log" >&2
			return 1
		fi
		if ct_pid "$name" >/dev/null; then
			state=$(CT=$name ct systemctl is-system-running 2>/dev/null || true)
			case $state in
			running) return 0 ;;
			degraded)
				echo "container $name is degraded; failed units:" >&2
				CT=$name ct systemctl --failed --no-legend >&2 || true
				return 0
				;;
			esac
		fi
		sleep 0.2
	done
	echo "container $name did not finish booting (state: ${state:-unknown})" >&2
	return 1
}

# ct_down NAME: powers the container off (killing it if it does not go),
# then removes its overlay layers.
ct_down() {
	local name=$1 pid=${CT_NSPAWN_PID[$1]:-} init
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
		init=$(ct_pid "$name" || true)
		if [ -n "$init" ]; then
			timeout 10 nsenter -t "$init" -a systemctl poweroff >/dev/null 2>&1 || true
		fi
		local deadline=$((SECONDS + 20))
		while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do
			sleep 0.2
		done
		if kill -0 "$pid" 2>/dev/null; then
			# Killing the init of the container's pid namespace ends every
			# process in it; systemd-nspawn then exits.
			[ -z "$init" ] || kill -KILL "$init" 2>/dev/null || true
			sleep 1
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	fi
	unset 'CT_NSPAWN_PID[$name]'
	rm -rf "$WORK/ct/$name"
}

ct_down_all() {
	local name
	for name in "${!CT_NSPAWN_PID[@]}"; do
		ct_down "$name"
	done
}

# ---------------------------------------------------------------- in the container

# ensure_user NAME: an ordinary user with a home directory.
ensure_user() {
	ct id "$1" >/dev/null 2>&1 || must "create user $1" ct useradd --create-home --shell /bin/sh "$1"
}

# start_as USER UNIT SCRIPT: runs SCRIPT with sh as USER in a transient unit
# (it outlives this call; its main pid is the script's shell).
start_as() {
	local user=$1 unit=$2 script=$3
	must "start $unit as $user" ct systemd-run --quiet --unit="$unit" --collect \
		--uid="$user" --gid="$user" --working-directory="/home/$user" \
		--setenv=HOME="/home/$user" --setenv=USER="$user" \
		sh -c "$script"
}

# main_pid UNIT: the unit's main pid inside the container (0: none).
main_pid() {
	ct systemctl show --property=MainPID --value "$1"
}

# uptime_us: the kernel's monotonic clock in µs, as systemd's *Monotonic
# properties count it.
uptime_us() {
	ct awk '{ printf "%d\n", $1 * 1000000 }' /proc/uptime
}

# tcp_listening PORT: whether something listens on PORT (v4 or v6).
tcp_listening() {
	local hex
	hex=$(printf '%04X' "$1")
	ct awk -v p=":$hex" '$2 ~ p"$" && $4 == "0A" { found = 1 } END { exit !found }' \
		/proc/net/tcp /proc/net/tcp6
}

# styxy_processes: pids of processes running as the styxy user.
styxy_processes() {
	ct pgrep -u styxy || true
}

# with_dropin UNIT NAME CONTENT: installs a runtime drop-in and reloads.
with_dropin() {
	local unit=$1 name=$2 content=$3
	ct mkdir -p "/run/systemd/system/$unit.d"
	printf '%s\n' "$content" | ct tee "/run/systemd/system/$unit.d/$name.conf" >/dev/null
	ct systemctl daemon-reload
}

# without_dropin UNIT NAME: removes it again.
without_dropin() {
	ct rm -f "/run/systemd/system/$1.d/$2.conf"
	ct systemctl daemon-reload
}
