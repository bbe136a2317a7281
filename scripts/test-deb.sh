#!/usr/bin/env bash
# The Debian package, end to end, on this machine: builds it
# (scripts/build-deb.sh), installs it with dpkg -i, checks the layout, the
# nlb user, the unit (systemd-analyze verify) and that the installed nlbd
# checks and starts on the installed default config (as the nlb user, the
# way the unit runs it), then purges it again and removes the nlb user if
# this script made it. Needs root; prints SKIP and exits 77 without it or
# when nlb is installed already (it would not be put back as it was).
# Ends with "N passed, N failed, N skipped" like the other tests; about a
# minute on two idle cores.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
passed=0
failed=0

skip() {
  echo "SKIP: $*"
  echo "0 passed, 0 failed, 1 skipped"
  exit 77
}
check() { # check NAME COMMAND...: one line per check
  local name=$1
  shift
  if "$@"; then
    echo "PASS: $name"
    passed=$((passed + 1))
  else
    echo "FAIL: $name"
    failed=$((failed + 1))
  fi
}

[ "$(id -u)" -eq 0 ] || skip "needs root (dpkg -i)"
command -v dpkg-buildpackage >/dev/null || skip "dpkg-dev is not installed"
if dpkg-query -W -f='${Status}' nlb 2>/dev/null | grep -q installed; then
  skip "the nlb package is installed already; not touching it"
fi
user_existed=0
getent passwd nlb >/dev/null && user_existed=1

work=$(mktemp -d /tmp/nlb-test-deb.XXXXXX)
nlbd_pid=
cleanup() {
  [ -n "$nlbd_pid" ] && kill "$nlbd_pid" 2>/dev/null
  if dpkg-query -W -f='${Status}' nlb 2>/dev/null | grep -q installed; then
    timeout 120 dpkg --purge nlb >"$work/purge.log" 2>&1 ||
      cat "$work/purge.log"
  fi
  if [ "$user_existed" = 0 ] && getent passwd nlb >/dev/null; then
    deluser --system --quiet nlb >/dev/null 2>&1 || userdel nlb
    getent group nlb >/dev/null && (delgroup --system --quiet nlb \
      >/dev/null 2>&1 || groupdel nlb)
  fi
  rm -rf "$work"
}
trap cleanup EXIT

deb=$(timeout 600 "$top/scripts/build-deb.sh" "$work/out" | tail -n 1)
check "the package builds" test -f "$deb"
[ -f "$deb" ] || { echo "$passed passed, $failed failed, 0 skipped"; exit 1; }

check "dpkg -i installs it" timeout 120 dpkg -i "$deb"
for f in /usr/sbin/nlbd /usr/bin/nlbctl /etc/nlb/nlb.cfg \
  /lib/systemd/system/nlb.service /lib/systemd/system/nlb-upgrade.service \
  /etc/logrotate.d/nlb \
  /usr/lib/tmpfiles.d/nlb.conf /usr/share/man/man8/nlbd.8.gz \
  /usr/share/man/man5/nlb.cfg.5.gz /usr/share/man/man1/nlbctl.1.gz \
  /usr/share/bash-completion/completions/nlbctl \
  /usr/share/zsh/vendor-completions/_nlbctl; do
  check "installs $f" test -f "$f"
done
check "the nlb user is a system user" \
  sh -c '[ "$(id -u nlb)" -lt 1000 ] && getent group nlb >/dev/null'
for d in /var/lib/nlb /var/log/nlb; do
  check "$d belongs to nlb, mode 750" \
    sh -c "[ \"\$(stat -c '%U:%G %a' $d)\" = 'nlb:nlb 750' ]"
done
check "the config is a conffile" \
  sh -c 'dpkg-query -W -f="\${Conffiles}" nlb | grep -q /etc/nlb/nlb.cfg'
check "nlbd -t passes on the installed config (default path)" \
  sh -c '/usr/sbin/nlbd -t | grep -qx "/etc/nlb/nlb.cfg: ok"'
if command -v systemd-analyze >/dev/null; then
  check "systemd-analyze verify nlb.service says nothing" sh -c \
    'out=$(systemd-analyze verify --man=no /lib/systemd/system/nlb.service 2>&1) && [ -z "$out" ] || { echo "$out"; false; }'
fi

# Where systemd runs, dpkg -i started the unit: it must be up, and a
# reload must go through ExecReload. Elsewhere, start it on the default
# config as the unit does: user nlb, its run directory, a NOTIFY_SOCKET
# that hears READY=1.
port=$(sed -n 's/.*listeners = ( { port = \([0-9]*\);.*/\1/p' /etc/nlb/nlb.cfg)
if [ -d /run/systemd/system ]; then
  check "systemd runs nlb.service" timeout 30 sh -c \
    'until systemctl is-active --quiet nlb; do sleep 0.5; done'
  check "systemctl reload nlb succeeds" timeout 90 systemctl reload nlb
  check "its status says it runs" sh -c \
    'systemctl show -p StatusText nlb | grep -q running'
elif [ -z "$port" ]; then
  check "the default config names a listener port" false
elif ss -Htln "sport = :$port" | grep -q .; then
  echo "note: port $port is taken on this machine; start not checked"
else
  run=$work/run
  chmod 755 "$work" # nlbd (user nlb) reaches the notify socket through it
  install -d -o nlb -g nlb "$run"
  python3 - "$work/notify" "$run" "$port" >"$work/start.log" 2>&1 <<'PY' &
import os, pwd, signal, socket, subprocess, sys, time
sock_path, run, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.bind(sock_path)
os.chmod(sock_path, 0o666)
sock.settimeout(20)
user = pwd.getpwnam("nlb")
env = dict(os.environ, NOTIFY_SOCKET=sock_path, RUNTIME_DIRECTORY=run)
def drop():
    os.setgroups([])
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)
proc = subprocess.Popen(["/usr/sbin/nlbd"], env=env, preexec_fn=drop,
                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
try:
    msg = sock.recv(4096).decode()
    print("notify:", msg.replace("\n", " "))
    assert "READY=1" in msg, msg
    # The default targets do not exist: nlbd resets the flow, sometimes
    # before connect() returns; a reset still means it accepted.
    try:
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except ConnectionResetError:
        pass
    assert int(open(run + "/nlbd.pid").read()) == proc.pid
    print("started and accepting on", port)
finally:
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(40)
    print("stderr:", proc.stderr.read().decode())
    print("exit", rc)
    sys.exit(0 if rc == 0 else 1)
PY
  nlbd_pid=$!
  wait "$nlbd_pid" # the helper bounds its own waits (20 s, 40 s)
  started=$?
  nlbd_pid=
  check "the installed nlbd starts on the default config as nlb" \
    sh -c "[ $started -eq 0 ] && grep -q '^started' '$work/start.log'"
  if [ "$started" -eq 0 ]; then
    grep -E '^(notify|started|exit)' "$work/start.log" | sed 's/^/  /'
  else
    sed 's/^/  /' "$work/start.log"
  fi
  check "it opened its access log in /var/log/nlb as nlb" \
    sh -c '[ "$(stat -c %U /var/log/nlb/access.log)" = nlb ]'
fi

# An upgrade of the package over a running nlbd: the postinst has it hand
# its sockets to the new binary (nlbd -s upgrade) instead of a restart. The
# second version is the first one repacked with a higher version number
# (building the tree twice would double this script's time); a probe
# connects every 10 ms throughout and must never be refused. Where systemd
# runs, nlb.service is the running nlbd; elsewhere one is started as the
# unit would (user nlb, run directory /run/nlb).
upgrade_probe() { # upgrade_probe PORT DEB: prints the figures, 0 if none refused
  python3 - "$@" <<'PY'
import socket, subprocess, sys, threading, time
port, deb = int(sys.argv[1]), sys.argv[2]
counts = {"attempted": 0, "refused": 0}
running = True
def probe():
    while running:
        counts["attempted"] += 1
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        except ConnectionRefusedError:
            counts["refused"] += 1
        except OSError:
            pass  # accepted, then reset: the default targets do not exist
        time.sleep(0.01)
t = threading.Thread(target=probe)
t.start()
time.sleep(0.5)
r = subprocess.run(["timeout", "120", "dpkg", "-i", deb], capture_output=True,
                   text=True)
time.sleep(0.5)
running = False
t.join()
print("  dpkg -i exit %d; probe: %d connects attempted, %d refused"
      % (r.returncode, counts["attempted"], counts["refused"]))
if r.returncode != 0 or counts["refused"]:
    print(r.stdout + r.stderr)
sys.exit(0 if r.returncode == 0 and counts["refused"] == 0 else 1)
PY
}
if [ -n "$port" ] && ! ss -Htln "sport = :$port" | grep -q . ||
  [ -d /run/systemd/system ]; then
  repack=$work/repack
  dpkg-deb -R "$deb" "$repack"
  version=$(sed -n 's/^Version: //p' "$repack/DEBIAN/control")
  sed -i "s/^Version: .*/Version: $version+upgradetest/" \
    "$repack/DEBIAN/control"
  deb2=$work/nlb_upgradetest.deb
  dpkg-deb -b "$repack" "$deb2" >/dev/null
  manual=
  if [ ! -d /run/systemd/system ]; then
    install -d -o nlb -g nlb -m 755 /run/nlb
    runuser -u nlb -- env RUNTIME_DIRECTORY=/run/nlb /usr/sbin/nlbd \
      >/dev/null 2>"$work/upgrade-stderr.log" &
    nlbd_pid=$!
    manual=1
    timeout 20 sh -c "until ss -Htln 'sport = :$port' | grep -q .; do sleep 0.1; done"
  fi
  before=$(cat /run/nlb/nlbd.pid 2>/dev/null)
  check "dpkg -i of a newer version over a running nlbd refuses no connection" \
    upgrade_probe "$port" "$deb2"
  after=$(cat /run/nlb/nlbd.pid 2>/dev/null)
  check "the new binary serves (nlbd.pid $before -> $after)" \
    sh -c "[ -n '$after' ] && [ '$after' != '$before' ] && kill -0 '$after'"
  if [ -n "$manual" ]; then
    # The old one drains and exits; the new one is not our child.
    [ -n "$after" ] && kill "$after" 2>/dev/null
    timeout 40 sh -c "while kill -0 '$after' 2>/dev/null; do sleep 0.2; done"
    wait "$nlbd_pid" 2>/dev/null
    nlbd_pid=
    rm -rf /run/nlb
  fi
fi

check "dpkg --purge removes it" timeout 120 dpkg --purge nlb
for f in /usr/sbin/nlbd /usr/bin/nlbctl /etc/nlb /var/lib/nlb /var/log/nlb \
  /lib/systemd/system/nlb.service; do
  check "purge leaves no $f" test ! -e "$f"
done
echo "$passed passed, $failed failed, 0 skipped"
[ "$failed" -eq 0 ]
