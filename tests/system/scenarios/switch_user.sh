# `styxy allocate` where no process of the user runs above it (issue 17):
# root switching to the user (runuser, su -c, sudo -u) and a system service
# with User=. Each gets a port held as a hand-off; the user's listener on it
# becomes its holder (named by the observer service, adopted on a health
# pass); the port is freed when that holder is gone.

HANDOFF_UNIT=styxy-test-handoff

# allocation_of USER NAME: the USER's allocation named NAME, as JSON.
allocation_of() {
	ct_as "$1" styxy --json list | jq -c --arg name "$2" '.allocations[] | select(.service_name == $name)'
}

# holder_is USER NAME PID: whether `styxy list` names PID as NAME's holder.
holder_is() {
	[ "$(allocation_of "$1" "$2" | jq -r .owner.pid)" = "$3" ] &&
		ct_as "$1" styxy list | grep -w "$2" | grep -qw "$3"
}

# is_free USER NAME: whether NAME is gone from USER's `styxy list`.
is_free() {
	[ -z "$(allocation_of "$1" "$2")" ]
}

# listen_as USER UNIT PORT: a web server of USER on PORT in a transient unit.
listen_as() {
	start_as "$1" "$2" "exec /usr/bin/python3 -m http.server --bind 127.0.0.1 $3"
	wait_until 10 "$2 to listen on $3" tcp_listening "$3"
}

allocate_switching_user() {
	ensure_user alice
	local how name port pid ports=() names=(via-runuser via-su via-sudo)
	for how in runuser su sudo; do
		name=via-$how
		case $how in
		runuser) must "runuser -u alice -- styxy allocate" ct runuser -u alice -- styxy allocate -s dev -n "$name" ;;
		su) must "su alice -c styxy allocate" ct su alice -c "styxy allocate -s dev -n $name" ;;
		sudo) must "sudo -u alice styxy allocate" ct sudo -u alice styxy allocate -s dev -n "$name" ;;
		esac
		grep -q 'held for 30 s for the first of your processes that listens on it' <<<"$LAST_OUTPUT" ||
			fail "$how: styxy allocate does not say the port awaits a listener: $LAST_OUTPUT"
		port=$(sed -nE 's/^Port ([0-9]+) allocated.*/\1/p' <<<"$LAST_OUTPUT")
		[ -n "$port" ] || fail "$how: no port in: $LAST_OUTPUT"
		ports+=("$port")
	done

	local i started=$SECONDS
	for i in 0 1 2; do
		listen_as alice "styxy-test-${names[i]}" "${ports[i]}"
	done
	# Adopted on the next health pass (every 15 s); held until then, even
	# past the 30 s grace, because alice listens on them.
	for i in 0 1 2; do
		pid=$(main_pid "styxy-test-${names[i]}")
		wait_until 40 "styxy list to name ${names[i]}'s listener (pid $pid) as its holder" \
			holder_is alice "${names[i]}" "$pid"
	done
	note "the listeners of runuser, su and sudo hand-offs were named holders within $((SECONDS - started)) s"
	must "styxy list" ct_as alice styxy list

	for i in 0 1 2; do
		must "stop ${names[i]}'s listener" ct systemctl stop "styxy-test-${names[i]}"
		wait_until 5 "${names[i]} (port ${ports[i]}) to be freed once its holder is gone" is_free alice "${names[i]}"
	done
}

# A system service with User=alice: ExecStartPre= allocates (PID 1 is its
# parent), ExecStart= listens on the port.
handoff_service() {
	ensure_user alice
	ct tee "/run/systemd/system/$HANDOFF_UNIT.service" >/dev/null <<-'EOF'
		[Service]
		User=alice
		RuntimeDirectory=styxy-test-handoff
		ExecStartPre=/bin/sh -c 'styxy --json allocate -s dev -n service >"$$RUNTIME_DIRECTORY/allocation.json"'
		ExecStart=/bin/sh -c 'exec /usr/bin/python3 -m http.server --bind 127.0.0.1 "$$(jq -r .port "$$RUNTIME_DIRECTORY/allocation.json")"'
	EOF
	must "daemon-reload" ct systemctl daemon-reload
	must "start $HANDOFF_UNIT" ct systemctl start "$HANDOFF_UNIT"
	local answer port pid
	answer=$(ct cat "/run/styxy-test-handoff/allocation.json")
	printf '%s\n' "$answer"
	port=$(jq -r .port <<<"$answer") || fail "allocate in ExecStartPre= failed: $answer"
	[ "$(jq -r .handoff_grace_secs <<<"$answer")" = 30 ] || fail "the service's allocation is no hand-off: $answer"
	wait_until 10 "the service to listen on $port" tcp_listening "$port"
	pid=$(main_pid "$HANDOFF_UNIT")
	wait_until 40 "styxy list to name the service (pid $pid) as the holder of $port" holder_is alice service "$pid"
	must "styxy list" ct_as alice styxy list

	must "stop $HANDOFF_UNIT" ct systemctl stop "$HANDOFF_UNIT"
	wait_until 5 "port $port to be freed once the service stopped" is_free alice service
	ct rm -f "/run/systemd/system/$HANDOFF_UNIT.service"
	ct systemctl daemon-reload
}
