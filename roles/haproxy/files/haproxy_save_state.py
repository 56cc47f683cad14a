#!/usr/bin/python3
"""Save or wait for HAProxy's runtime state around a reload (run on the HAProxy host).

  haproxy_save_state.py save SOCKET STATE_FILE SERVERS_JSON
      Dump `show servers state` into STATE_FILE (atomically), keeping only the lines of servers
      that the new configuration still declares with the same address and port: HAProxy applies
      a saved port over the configuration's, so a stale line would undo a port change made in
      the configuration. SERVERS_JSON is [{"backend", "server", "address", "port"}, ...].
  haproxy_save_state.py wait SOCKET OLD_PID TIMEOUT
      Wait until the worker answering on SOCKET is not OLD_PID any more (the reload, sent by
      `systemctl reload` as a signal, completes asynchronously).

Prints one JSON object. Exit 0 also when HAProxy is not running (nothing to save); exit 1 on
an unexpected answer or an I/O error. Python 3.9+, stdlib only.
"""
import ipaddress
import json
import os
import socket
import sys
import tempfile
import time


class NotRunning(Exception):
    pass


def ask(path, command, timeout=5.0):
    if not os.path.exists(path):
        raise NotRunning("%s does not exist" % path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(path)
        except (ConnectionRefusedError, FileNotFoundError) as exc:
            raise NotRunning("%s: %s" % (path, exc))
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    finally:
        sock.close()
    return b"".join(chunks).decode("utf-8", "replace")


def worker_pid(path):
    for line in ask(path, "show info").splitlines():
        if line.startswith("Pid:"):
            return int(line.split(":", 1)[1])
    raise ValueError("no Pid in 'show info'")


def same_address(configured, saved):
    try:
        return ipaddress.ip_address(configured) == ipaddress.ip_address(saved)
    except ValueError:
        # A host name: HAProxy resolves it itself; only the port can be compared.
        return True


def filter_state(text, servers):
    lines = text.splitlines()
    if len(lines) < 2 or lines[0].strip() != "1" or not lines[1].startswith("# be_id"):
        raise ValueError("unexpected 'show servers state' answer: %r" % text[:200])
    fields = lines[1][2:].split()
    wanted = {(s["backend"], s["server"]): s for s in servers}
    kept, dropped = [lines[0], lines[1]], []
    for line in lines[2:]:
        if not line.strip():
            continue
        row = dict(zip(fields, line.split()))
        want = wanted.get((row.get("be_name"), row.get("srv_name")))
        if (want is not None and str(want["port"]) == row.get("srv_port")
                and same_address(str(want["address"]), row.get("srv_addr", ""))):
            kept.append(line)
        else:
            dropped.append("%s/%s" % (row.get("be_name"), row.get("srv_name")))
    return "\n".join(kept) + "\n", dropped


def write_atomically(path, text):
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".server-state.", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o640)
        os.rename(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save(path, state_file, servers_json):
    servers = json.loads(servers_json)
    try:
        pid = worker_pid(path)
        text = ask(path, "show servers state")
    except NotRunning as exc:
        return {"saved": False, "pid": None, "msg": "HAProxy not running (%s)" % exc}
    content, dropped = filter_state(text, servers)
    write_atomically(state_file, content)
    return {"saved": True, "pid": pid, "servers": len(content.splitlines()) - 2,
            "dropped": dropped, "msg": "state saved to %s" % state_file}


def wait(path, old_pid, timeout):
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while True:
        try:
            pid = worker_pid(path)
            if old_pid in ("", "None") or pid != int(old_pid):
                return {"pid": pid, "msg": "worker %s answers" % pid}
            last = "worker %s (the old one) still answers" % pid
        except (NotRunning, OSError, ValueError) as exc:
            last = str(exc)
        if time.monotonic() >= deadline:
            raise TimeoutError("HAProxy reload not complete after %ss: %s" % (timeout, last))
        time.sleep(0.2)


def main(argv):
    try:
        if len(argv) == 5 and argv[1] == "save":
            result = save(argv[2], argv[3], argv[4])
        elif len(argv) == 5 and argv[1] == "wait":
            result = wait(argv[2], argv[3], float(argv[4]))
        else:
            raise ValueError("usage: save SOCKET STATE_FILE SERVERS_JSON | wait SOCKET OLD_PID TIMEOUT")
    except Exception as exc:  # one JSON line for Ansible, whatever went wrong
        print(json.dumps({"failed": True, "msg": "%s: %s" % (type(exc).__name__, exc)}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
