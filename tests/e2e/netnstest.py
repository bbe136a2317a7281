"""Network namespaces for the end-to-end tests: create and delete them,
and make connections from inside one without leaving this process (a
helper thread enters the namespace; a socket keeps the namespace it was
created in). Namespaces a test makes are named nlbt-...-PID and deleted at
exit, even after a timeout. Needs root; stdlib only."""

import atexit
import ctypes
import os
import socket
import subprocess
import threading

from nlbtest import Skip

PID = os.getpid()
CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
_created = set()
_at_exit = []


def sh(*args, check=True):
    return subprocess.run(list(args), capture_output=True, text=True,
                          timeout=10, check=check)


def name(role):
    """nlbt-ROLE-PID: unique to this test process."""
    return "nlbt-%s-%d" % (role, PID)


def netns_add(ns):
    """Creates namespace ns with its loopback up (deleting a leftover of
    the same name first); raises Skip when the machine does not let us."""
    netns_del(ns)
    r = sh("ip", "netns", "add", ns, check=False)
    if r.returncode != 0:
        raise Skip("ip netns add %s failed: %s" % (ns, r.stderr.strip()))
    _created.add(ns)
    sh("ip", "-n", ns, "link", "set", "lo", "up")


def netns_del(ns):
    sh("ip", "netns", "del", ns, check=False)
    _created.discard(ns)


def at_exit(fn):
    """Runs fn at exit before the namespaces go (stop what uses them)."""
    _at_exit.append(fn)


def _cleanup():
    for fn in reversed(_at_exit):
        try:
            fn()
        except Exception:
            pass
    for ns in list(_created):
        netns_del(ns)
    if os.path.isdir("/run/netns"):
        for ns in os.listdir("/run/netns"):
            if ns.startswith("nlbt-") and ns.endswith("-%d" % PID):
                netns_del(ns)


atexit.register(_cleanup)


def in_netns(ns, fn):
    """Runs fn() in a helper thread that entered /run/netns/ns (setns);
    a socket keeps the namespace it was created in, so the caller can use
    what fn returns. Exceptions pass through."""
    result = {}

    def body():
        try:
            fd = os.open("/run/netns/" + ns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                if _libc.setns(fd, CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, os.strerror(err))
            finally:
                os.close(fd)
            result["value"] = fn()
        except BaseException as e:  # handed to the caller
            result["error"] = e

    t = threading.Thread(target=body)
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def ns_connect(ns, host, port, source=None, timeout=5):
    """A TCP connection made inside namespace ns, bound to source."""
    def fn():
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            if source:
                s.bind((source, 0))
            s.connect((host, port))
        except BaseException:
            s.close()
            raise
        return s
    return in_netns(ns, fn)


def ns_refused(ns, host, port, source=None):
    try:
        ns_connect(ns, host, port, source).close()
    except ConnectionRefusedError:
        return True
    return False
