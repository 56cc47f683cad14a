#!/usr/bin/env python
"""Show which release and host answer behind a lab's load balancer.

    show.py --name NAME [--requests 6]

Reads ``lab_lb_url`` from ``.lab/NAME/inventory.yml``, sends a few ``GET /`` through it and
prints who answered each; the last line is ``LB_URL=<url>``. Exits non-zero when the load
balancer does not answer every request. Standard library only.
"""
import argparse
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def lb_url_from_inventory(path):
    # The lab writes this one line itself (see _plan.render_inventory), so no YAML parser needed.
    with open(path) as handle:
        for line in handle:
            match = re.match(r'^\s+lab_lb_url:\s*"?([^"\s]+)"?\s*$', line)
            if match:
                return match.group(1)
    raise SystemExit("show.py: no lab_lb_url in %s" % path)


def ask(url, timeout):
    started = time.monotonic()
    with urllib.request.urlopen(url + "/", timeout=timeout) as response:
        body = response.read().decode("utf-8", "replace")
        status = response.status
    took = (time.monotonic() - started) * 1000
    try:
        data = json.loads(body)
        who = "version %s from %s:%s (pid %s)" % (data.get("version"), data.get("host"),
                                                  data.get("port"), data.get("pid"))
    except ValueError:
        who = body.strip()[:80]
    return "HTTP %d in %4.0f ms: %s" % (status, took, who)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--name", default="lab")
    parser.add_argument("--requests", type=int, default=6)
    parser.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    inventory = os.path.join(REPO, ".lab", args.name, "inventory.yml")
    if not os.path.exists(inventory):
        print("show.py: lab %s is not up (no %s)" % (args.name, inventory))
        return 2
    url = lb_url_from_inventory(inventory)
    failures = 0
    for i in range(1, args.requests + 1):
        try:
            line = ask(url, args.timeout)
        except (urllib.error.URLError, OSError) as exc:
            failures += 1
            line = "no answer: %s" % (getattr(exc, "reason", None) or exc)
        print("GET %s/ #%d  %s" % (url, i, line), flush=True)
    print("LB_URL=%s" % url)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
