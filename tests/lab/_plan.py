"""What a lab looks like: its network, its hosts and their addresses, the files they get.

Pure functions only (no root, no system calls), so the shape of a lab is unit-tested.

Addressing (one /24 per lab, see docs/development.md): the bridge is ``.1``; LB hosts
``lb1``, ``lb2``, ... take ``.10`` upwards; app hosts ``app1``, ``app2``, ... take ``.11``
upwards when there is one LB host and ``.21`` upwards when there are several (so up to ten LB
hosts never collide with app hosts). ``single`` topology: one host ``app1`` at ``.11`` in both
groups. With a queue host (the workers' Redis), ``queue1`` at ``.9`` in group ``queue``.

Instances (``--instances N``): instance k (from 0) of the app on every app host listens on
``8080 + 2k``, its clone on ``8081 + 2k``.
"""
import ipaddress
import json
import re
import zlib

# Fixed networks for the names the project uses, so their addresses are known in advance.
KNOWN_NETS = {"lab": "10.213.0", "itest": "10.213.1", "molecule": "10.213.2"}
# Other names get a network derived from the name, kept clear of the fixed ones.
DERIVED_FIRST, DERIVED_COUNT = 16, 239
MAX_LB_HOSTS = 10
MAX_APP_HOSTS = 100
# The bridge is "hd-" + name and Linux interface names have at most 15 characters.
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,10}[a-z0-9]$|^[a-z]$")
TOPOLOGIES = ("lb", "single")
# The worker IDs of a lab with a queue host (demo-worker@1 on every app host).
LAB_WORKERS = ["1"]
# The first instance's port and its clone's; each further instance takes the next pair.
FIRST_PORT = 8080
MAX_INSTANCES = 10
SSH_COMMON_ARGS = ("-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                   "-o ControlMaster=auto -o ControlPersist=60s")


class PlanError(ValueError):
    pass


def check_name(name):
    if not NAME_RE.match(name or ""):
        raise PlanError("lab name %r: use 1-12 lower-case letters, digits or inner dashes, "
                        "starting with a letter (the bridge is hd-NAME, at most 15 characters)"
                        % (name,))
    return name


def bridge_name(name):
    return "hd-" + check_name(name)


def lab_net(name, net=None):
    """The lab's /24 as its first three octets, e.g. ``10.213.1``."""
    if net is None:
        if name in KNOWN_NETS:
            return KNOWN_NETS[name]
        return "10.213.%d" % (DERIVED_FIRST + zlib.crc32(name.encode()) % DERIVED_COUNT)
    parts = net.split(".")
    try:
        if len(parts) != 3:
            raise ValueError(net)
        network = ipaddress.ip_network("%s.0/24" % net)
    except ValueError:
        raise PlanError("--net %r: give the first three octets of a /24, e.g. 10.213.7" % (net,))
    if not network.is_private:
        raise PlanError("--net %r: use a private network (10.213.X is the lab's range)" % (net,))
    return ".".join(str(int(p)) for p in parts)


def plan_hosts(net, topology="lb", app_hosts=2, lb_hosts=1, queue_host=False):
    """Ordered list of ``{"name", "address", "groups"}`` for the lab's hosts."""
    if topology not in TOPOLOGIES:
        raise PlanError("--topology %r: one of %s" % (topology, ", ".join(TOPOLOGIES)))
    queue = [{"name": "queue1", "address": "%s.9" % net, "groups": ["queue"]}] if queue_host else []
    if topology == "single":
        return [{"name": "app1", "address": "%s.11" % net, "groups": ["haproxy", "app"]}] + queue
    if not 1 <= lb_hosts <= MAX_LB_HOSTS:
        raise PlanError("--lb-hosts %d: between 1 and %d" % (lb_hosts, MAX_LB_HOSTS))
    if not 1 <= app_hosts <= MAX_APP_HOSTS:
        raise PlanError("--app-hosts %d: between 1 and %d" % (app_hosts, MAX_APP_HOSTS))
    hosts = [{"name": "lb%d" % i, "address": "%s.%d" % (net, 9 + i), "groups": ["haproxy"]}
             for i in range(1, lb_hosts + 1)]
    first_app = 11 if lb_hosts == 1 else 21
    hosts += [{"name": "app%d" % i, "address": "%s.%d" % (net, first_app + i - 1),
               "groups": ["app"]}
              for i in range(1, app_hosts + 1)]
    return hosts + queue


def host_suites(hosts, suite, lb_suite=None):
    """``{host name: Debian suite}``: LB-only hosts boot ``lb_suite`` (default ``suite``), every
    host running the app boots ``suite``. A host in both groups (topology single) cannot be
    both: a different ``lb_suite`` is refused."""
    lb_suite = lb_suite or suite
    suites = {}
    for host in hosts:
        if "app" in host["groups"]:
            if "haproxy" in host["groups"] and lb_suite != suite:
                raise PlanError("--lb-suite %s with --suite %s: host %s runs both HAProxy and "
                                "the app (topology single), so it has one suite"
                                % (lb_suite, suite, host["name"]))
            suites[host["name"]] = suite
        else:
            suites[host["name"]] = lb_suite
    return suites


def lb_url(hosts):
    lb = next(h for h in hosts if "haproxy" in h["groups"])
    return "http://%s:80" % lb["address"]


def groups_of(hosts):
    groups = {"haproxy": [], "app": []}
    for host in hosts:
        for group in host["groups"]:
            groups.setdefault(group, []).append(host["name"])
    return groups


def instance_ports(instances):
    """``(ports, clone ports)`` of ``instances`` instances per app host: 8080, 8082, ... with
    their clones on 8081, 8083, ..."""
    if not 1 <= instances <= MAX_INSTANCES:
        raise PlanError("--instances %d: between 1 and %d" % (instances, MAX_INSTANCES))
    ports = [FIRST_PORT + 2 * k for k in range(instances)]
    return ports, [port + 1 for port in ports]


def _scalar(value):
    # A JSON string is a valid YAML double-quoted scalar: no YAML library needed to write one.
    return json.dumps(value)


def app_vars(groups, instances=1):
    """The ``app`` group's variables, as ``[(name, value)]`` in the inventory's order."""
    variables = []
    if groups.get("queue"):
        # A lab with a queue host runs a background worker beside each app instance, and
        # every deploy (make deploy, make demo) moves it.
        variables += [("lab_workers", LAB_WORKERS), ("rolling_workers", LAB_WORKERS),
                      # The sample worker consumes 2 s after its start (tests/sample_app/worker.py).
                      ("rolling_worker_settle", 3)]
    if instances > 1:
        # site.yml starts and declares an instance per port; every deploy from the inventory
        # then swaps them all. One instance stays as before: no rolling_ports, servers named
        # after their hosts.
        ports, clone_ports = instance_ports(instances)
        variables += [("lab_instance_ports", ports), ("rolling_ports", ports),
                      ("rolling_clone_ports", clone_ports)]
    return variables


def render_inventory(name, hosts, key_path, suites=None, instances=1):
    """The Ansible YAML inventory of a lab; with ``suites`` (:func:`host_suites`), each host
    also gets ``lab_debian_suite``; with ``instances`` above 1, the app group gets the ports of
    that many instances per host (:func:`app_vars`)."""
    lines = [
        "# Written by tests/lab/lab.py for lab %s; rewritten by every 'up'." % name,
        "all:",
        "  vars:",
        "    ansible_user: root",
        "    ansible_ssh_private_key_file: %s" % _scalar(key_path),
        "    ansible_ssh_common_args: %s" % _scalar(SSH_COMMON_ARGS),
        "    ansible_python_interpreter: /usr/bin/python3",
        "    lab_name: %s" % _scalar(name),
        "    lab_lb_url: %s" % _scalar(lb_url(hosts)),
        "  children:",
    ]
    addresses = {h["name"]: h["address"] for h in hosts}
    groups = groups_of(hosts)
    for group, members in groups.items():
        lines.append("    %s:" % group)
        variables = app_vars(groups, instances) if group == "app" else []
        if variables:
            lines.append("      vars:")
            lines += ["        %s: %s" % (var, _scalar(value)) for var, value in variables]
        lines.append("      hosts:")
        for member in members:
            lines += ["        %s:" % member,
                      "          ansible_host: %s" % _scalar(addresses[member])]
            if suites and member in suites:
                lines.append("          lab_debian_suite: %s" % _scalar(suites[member]))
    return "\n".join(lines) + "\n"


def render_etc_hosts(hosts):
    # Every lab host by name: without it fact gathering waits on DNS the guests cannot reach.
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    lines += ["%s\t%s" % (h["address"], h["name"]) for h in hosts]
    return "\n".join(lines) + "\n"


def render_network(address, net):
    # This exact file name overrides the image's /lib/systemd/network/80-container-host0.network,
    # which would otherwise win and leave host0 with a link-local address only.
    return "[Match]\nName=host0\n\n[Network]\nAddress=%s/24\nGateway=%s.1\n" % (address, net)
