# Another user is hostile (system mode, the installed package): mallory
# squats a range, captures a singleton, takes over alice's expired session
# id, floods the allocator with connections; alice keeps her share, her own
# singleton, her port and her speed.

# api_as USER METHOD PATH [BODY]: the HTTP status of a request to the
# system socket as USER (the body is dropped).
api_as() {
	local user=$1 method=$2 path=$3 body=${4:-}
	local args=(-s --max-time 5 -o /dev/stderr -w '%{http_code}' --unix-socket /run/styxy/api.sock -X "$method")
	[ -n "$body" ] && args+=(-H 'content-type: application/json' -d "$body")
	ct_as "$user" curl "${args[@]}" "http://styxy$path" 2>/dev/null
}

threats_between_users() {
	ensure_user alice
	ensure_user mallory

	# Squatting: one user gets at most half of a type's range.
	local held=0
	while ct_as mallory styxy allocate -s dev --lease manual >/dev/null 2>&1; do
		held=$((held + 1))
		[ "$held" -le 100 ] || fail "mallory was never refused"
	done
	[ "$held" -eq 50 ] || fail "mallory held $held of dev's 100 ports, expected 50"
	must "alice allocates dev after mallory's squat" ct_as alice styxy allocate -s dev --lease manual
	note "mallory's squat stopped at $held of dev's 100 ports"

	# Singleton capture with a port outside ai's range.
	must "mallory's ai on 5173" ct_as mallory styxy --json allocate -s ai -p 5173 --lease manual
	local port existing
	must "alice's ai" ct_as alice styxy --json allocate -s ai --lease manual
	port=$(jq -r .port <<<"$LAST_OUTPUT")
	existing=$(jq -r '.existing // false' <<<"$LAST_OUTPUT")
	[ "$existing" = false ] && [ "$port" -ge 11400 ] && [ "$port" -le 11499 ] ||
		fail "alice's ai answered port $port (existing: $existing)"

	# An expired session id re-registered by another user.
	[ "$(api_as alice POST /instance/register '{"instance_id":"alice-s","ttl_secs":1}')" = 200 ] ||
		fail "alice cannot register a session"
	sleep 2
	# The id stays alice's after it expired: mallory is refused, alice may
	# take it up again.
	[ "$(api_as mallory POST /instance/register '{"instance_id":"alice-s","ttl_secs":600}')" = 403 ] ||
		fail "mallory registered alice's expired id"
	[ "$(api_as alice POST /instance/register '{"instance_id":"alice-s","ttl_secs":600}')" = 200 ] ||
		fail "alice cannot register her own expired id again"
	[ "$(api_as alice POST /instance/register '{"instance_id":"alice-t","project_root":"/home/alice/secret","ttl_secs":600}')" = 200 ] ||
		fail "alice cannot register a second session"
	ct_as mallory styxy --json instances | grep -q 'secret' && fail "mallory sees alice's project root"

	# 1,100 connections from mallory (half over TCP without a token).
	ct_sh 'cat >/tmp/flood.py' <<'PY'
import resource, socket, sys, time
# 1,100 sockets: more than a service's soft limit of descriptors.
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
held = []
for i in range(550):
    s = socket.socket(socket.AF_UNIX); s.connect("/run/styxy/api.sock")
    if i % 2: s.send(b"GET /allocations HTTP/1.1\r\nHost: x\r\n")
    held.append(s)
for i in range(550):
    s = socket.create_connection(("127.0.0.1", 9876))
    if i % 2: s.send(b"GET /allocations HTTP/1.1\r\n")
    held.append(s)
open("/tmp/flood.ready", "w").close()
time.sleep(60)
PY
	ct rm -f /tmp/flood.ready
	start_as mallory styxy-test-flood 'exec /usr/bin/python3 /tmp/flood.py 2>/tmp/flood.err'
	wait_until 20 "mallory's flood to connect (its errors: /tmp/flood.err)" ct test -e /tmp/flood.ready
	local started=$SECONDS
	must "alice's styxy list during the flood" ct_as alice timeout 5 styxy list
	must "alice's allocation during the flood" ct_as alice timeout 5 styxy allocate -s api --lease manual
	note "alice's list and allocation took $((SECONDS - started)) s in all during mallory's flood"
	ct systemctl stop styxy-test-flood 2>/dev/null || true
}
