#!/usr/bin/env python
"""Save HAProxy's runtime server state before a reload, or wait for the reloaded worker.

Installed by the hitless.deploy.haproxy role next to the collection's _haproxy_runtime.py
(the same runtime API client the modules use), and run on the HAProxy host by the systemd
drop-in's ExecReload (save) and by the role's reload handlers (pid, wait).

  haproxy_state.py save [--timeout S] SOCKET STATE_FILE SERVERS_FILE
      Dump `show servers state` into STATE_FILE (atomically), keeping only the lines that the
      configuration about to be loaded can take back: servers that SERVERS_FILE (written by
      the role next to haproxy.cfg: {"servers": [{"backend", "server", "address", "port",
      "slot"}, ...]}) declares with the same address and port - HAProxy applies a saved port
      over the configuration's - and clone slots whatever their address. A missing or
      unreadable SERVERS_FILE saves every line ("filtered": false).
  haproxy_state.py pid [--timeout S] SOCKET
      The pid of the worker answering on SOCKET (null when HAProxy is not running).
  haproxy_state.py wait SOCKET OLD_PID TIMEOUT
      Wait until the worker answering on SOCKET is not OLD_PID any more (a reload, sent as a
      signal, completes asynchronously). OLD_PID "None" or "" waits for any worker.

Prints one JSON object. Exit 0 also when HAProxy is not running (nothing to save); exit 1 on
an unexpected answer, a timeout or an I/O error. Python 3.9+, stdlib only.
"""
import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _atomic as atomic  # noqa: E402  (installed beside this file, as is the client)
import _haproxy_runtime as rt  # noqa: E402

DEFAULT_TIMEOUT = 3.0


def read_servers(path):
    """The configured servers from SERVERS_FILE, or (None, reason) when it cannot be used."""
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        return None, "%s: %s" % (path, exc)
    servers = data.get("servers") if isinstance(data, dict) else data
    if not isinstance(servers, list) or not all(
            isinstance(s, dict) and {"backend", "server", "address", "port"} <= set(s)
            for s in servers):
        return None, "%s: not a list of servers" % path
    return servers, None


def write_atomically(path, text):
    atomic.write_file(path, text, mode=0o640)


def save(client, state_file, servers_file):
    try:
        pid = client.worker_pid()
        text = client.command("show servers state")
    except rt.NotRunningError as exc:
        return {"saved": False, "pid": None, "msg": "HAProxy not running (%s)" % exc}
    servers, problem = read_servers(servers_file)
    if servers is None:
        rt.parse_servers_state(text)  # still refuse to save anything but a state dump
        content, kept, dropped = text.strip() + "\n", None, []
    else:
        content, kept, dropped = rt.filter_servers_state(text, servers)
    write_atomically(state_file, content)
    result = {"saved": True, "pid": pid, "filtered": servers is not None,
              "servers": len(content.splitlines()) - 2, "kept": kept, "dropped": dropped,
              "msg": "state saved to %s" % state_file}
    if problem:
        result["warning"] = "every line saved, unfiltered: %s" % problem
    return result


def pid(client):
    try:
        return {"pid": client.worker_pid()}
    except rt.NotRunningError as exc:
        return {"pid": None, "msg": "HAProxy not running (%s)" % exc}


def wait(client, old_pid, timeout, clock=time.monotonic, sleep=time.sleep):
    deadline = clock() + timeout
    last = "no answer yet"
    while True:
        try:
            current = client.worker_pid()
            if old_pid in ("", "None", "null") or current != int(old_pid):
                return {"pid": current, "msg": "worker %s answers" % current}
            last = "worker %s (the old one) still answers" % current
        except rt.HAProxyRuntimeError as exc:
            last = str(exc)
        if clock() >= deadline:
            raise TimeoutError("HAProxy reload not complete after %ss: %s" % (timeout, last))
        sleep(0.2)


def parse_args(argv):
    summary = __doc__.split("\n", maxsplit=1)[0]
    parser = argparse.ArgumentParser(prog="haproxy_state.py", description=summary)
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("save")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    p.add_argument("socket")
    p.add_argument("state_file")
    p.add_argument("servers_file")
    p = sub.add_parser("pid")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    p.add_argument("socket")
    p = sub.add_parser("wait")
    p.add_argument("socket")
    p.add_argument("old_pid")
    p.add_argument("wait_timeout", type=float)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.action == "wait":
            client = rt.RuntimeClient(args.socket, timeout=DEFAULT_TIMEOUT)
            result = wait(client, args.old_pid, args.wait_timeout)
        else:
            client = rt.RuntimeClient(args.socket, timeout=args.timeout)
            if args.action == "save":
                result = save(client, args.state_file, args.servers_file)
            else:
                result = pid(client)
    except Exception as exc:  # one JSON line for Ansible and the journal, whatever went wrong
        print(json.dumps({"failed": True, "msg": "%s: %s" % (type(exc).__name__, exc)}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
