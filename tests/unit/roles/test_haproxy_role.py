"""The haproxy role's templates and files: clone slots, the list of configured servers, the
reload drop-in and what it installs on the host (rendered with plain Jinja2, no host)."""
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

import _haproxy_role as role

BACKENDS = [
    {"name": "demo", "clone_port": 8081, "servers": [
        {"name": "app1", "address": "10.0.0.11", "port": 8080},
        {"name": "app2", "address": "10.0.0.12", "port": "8080", "clone_port": 9090},
        {"name": "app3", "address": "10.0.0.13", "port": 8080, "clone_port": 0},
        {"name": "app4", "address": "10.0.0.14", "port": 8080, "clone_port": None},
    ]},
    {"name": "api", "servers": [
        {"name": "app1", "address": "10.0.0.11", "port": 7000},
        {"name": "app2", "address": "10.0.0.12", "port": 7000, "clone_port": 7001},
    ]},
    {"name": "empty"},
]


def backend_servers(cfg):
    """{backend: [server line words]} from a rendered haproxy.cfg."""
    result, current = {}, None
    for line in cfg.splitlines():
        words = line.split()
        if words[:1] == ["backend"]:
            current = result.setdefault(words[1], [])
        elif current is not None and words[:1] == ["server"]:
            current.append(words[1:])
    return result


def test_clone_slots_are_declared_disabled_after_their_server():
    cfg = role.render("haproxy.cfg.j2", haproxy_backends=BACKENDS)
    assert backend_servers(cfg) == {
        "demo": [["app1", "10.0.0.11:8080"], ["app1-clone", "10.0.0.11:8081", "disabled"],
                 ["app2", "10.0.0.12:8080"], ["app2-clone", "10.0.0.12:9090", "disabled"],
                 ["app3", "10.0.0.13:8080"],
                 ["app4", "10.0.0.14:8080"], ["app4-clone", "10.0.0.14:8081", "disabled"]],
        "api": [["app1", "10.0.0.11:7000"], ["app2", "10.0.0.12:7000"],
                ["app2-clone", "10.0.0.12:7001", "disabled"]],
        "empty": [],
    }
    # The slots take their checks from the default-server line, like their servers.
    assert re.search(r"^    default-server check inter 500 rise 2 fall 2$", cfg, re.M)


def test_no_clone_port_no_slot():
    backends = [{"name": "demo", "servers": [{"name": "app1", "address": "10.0.0.11",
                                              "port": 8080}]}]
    cfg = role.render("haproxy.cfg.j2", haproxy_backends=backends)
    assert backend_servers(cfg) == {"demo": [["app1", "10.0.0.11:8080"]]}
    assert "-clone" not in cfg


def test_several_instances_per_host_each_get_their_own_slot():
    # The names hitless.deploy.rolling gives instance PORT of HOST with rolling_ports.
    backends = [{"name": "demo", "servers": [
        {"name": "%s-%d" % (host, port), "address": address, "port": port,
         "clone_port": port + 1}
        for host, address in (("app1", "10.0.0.11"), ("app2", "10.0.0.12"))
        for port in (8080, 8082)]}]
    cfg = role.render("haproxy.cfg.j2", haproxy_backends=backends)
    assert backend_servers(cfg) == {"demo": [
        ["app1-8080", "10.0.0.11:8080"], ["app1-8080-clone", "10.0.0.11:8081", "disabled"],
        ["app1-8082", "10.0.0.11:8082"], ["app1-8082-clone", "10.0.0.11:8083", "disabled"],
        ["app2-8080", "10.0.0.12:8080"], ["app2-8080-clone", "10.0.0.12:8081", "disabled"],
        ["app2-8082", "10.0.0.12:8082"], ["app2-8082-clone", "10.0.0.12:8083", "disabled"]]}
    slots = [(s["server"], s["port"], s["clone_of"])
             for s in role.servers(haproxy_backends=backends) if s["slot"]]
    assert slots == [("app1-8080-clone", 8081, "app1-8080"), ("app1-8082-clone", 8083, "app1-8082"),
                     ("app2-8080-clone", 8081, "app2-8080"), ("app2-8082-clone", 8083, "app2-8082")]


def test_servers_file_lists_what_the_template_declares():
    listed = role.servers(haproxy_backends=BACKENDS)
    assert all(set(s) >= {"backend", "server", "address", "port", "slot"} for s in listed)
    assert [s for s in listed if s["slot"]] == [
        {"backend": "demo", "server": "app1-clone", "address": "10.0.0.11", "port": 8081,
         "slot": True, "clone_of": "app1"},
        {"backend": "demo", "server": "app2-clone", "address": "10.0.0.12", "port": 9090,
         "slot": True, "clone_of": "app2"},
        {"backend": "demo", "server": "app4-clone", "address": "10.0.0.14", "port": 8081,
         "slot": True, "clone_of": "app4"},
        {"backend": "api", "server": "app2-clone", "address": "10.0.0.12", "port": 7001,
         "slot": True, "clone_of": "app2"},
    ]
    cfg = backend_servers(role.render("haproxy.cfg.j2", haproxy_backends=BACKENDS))
    declared = sorted((b, words[0], words[1], "disabled" in words)
                      for b, lines in cfg.items() for words in lines)
    assert sorted((s["backend"], s["server"], "%s:%d" % (s["address"], s["port"]), s["slot"])
                  for s in listed) == declared
    # Ports are numbers even when the inventory gives strings; the file is plain JSON.
    assert json.loads(json.dumps({"servers": listed}))["servers"][2]["port"] == 8080


def test_dropin_saves_first_then_runs_debians_reload_lines():
    text = role.render("hitless-save-state.conf.j2")
    values = role.exec_reload(text)
    assert values[0] == "", "the drop-in must reset Debian's ExecReload first"
    save = values[1]
    # Never blocks a reload: failure ignored ("-"), and bounded in time.
    assert save.startswith("-/usr/bin/timeout -k 2 10 /usr/bin/python3 ")
    assert ('"/usr/local/lib/hitless-deploy/haproxy_state.py" save --timeout 3 '
            '"/run/haproxy/admin.sock" "/var/lib/haproxy/server-state" '
            '"/etc/haproxy/hitless-servers.json"') in save
    assert values[2:] == ["/usr/sbin/haproxy -Ws -f $CONFIG -c -q $EXTRAOPTS",
                          "/bin/kill -USR2 $MAINPID"]
    assert text.splitlines()[1:2] and "[Service]" in text


@pytest.mark.skipif(not os.path.exists(role.DEBIAN_UNIT), reason="no Debian haproxy.service")
def test_dropin_repeats_the_installed_debian_unit():
    """The lines after the save are exactly the package's own (read from its unit file)."""
    debian = role.debian_exec_reload()
    assert debian and all(v for v in debian)
    effective = role.effective_exec_reload(role.render("hitless-save-state.conf.j2"))
    assert effective[0].startswith("-/usr/bin/timeout ")
    assert effective[1:] == debian


def test_dropin_escapes_systemd_specifiers_and_sizes_the_timeout():
    text = role.render("hitless-save-state.conf.j2", haproxy_admin_socket="/run/h%i/admin.sock",
                       haproxy_state_save_timeout=2)
    save = role.exec_reload(text)[1]
    assert '"/run/h%%i/admin.sock"' in save
    assert save.startswith("-/usr/bin/timeout -k 2 2 ") and "--timeout 1 " in save


def test_tasks_install_the_runtime_client_from_the_collection():
    tasks = yaml.safe_load(open(os.path.join(role.ROLE, "tasks", "main.yml")))
    copies = [t["ansible.builtin.copy"] for t in tasks if "ansible.builtin.copy" in t]
    src = [c["src"] for c in copies if "src" in c]
    assert "{{ role_path }}/../../plugins/module_utils/{{ item }}" in src
    (shipped,) = [t["loop"] for t in tasks if t.get("ansible.builtin.copy", {}).get("src", "").endswith("{{ item }}")]
    assert shipped == ["_haproxy_runtime.py", "_atomic.py"]
    assert "haproxy_state.py" in src
    # role_path/../.. is the collection root, in the repository as once installed.
    assert os.path.samefile(os.path.join(role.ROLE, "..", "..", "plugins", "module_utils",
                                         "_haproxy_runtime.py"), role.RUNTIME)
    dests = [c["dest"] for c in copies]
    assert "{{ _haproxy_servers_file }}" in dests
    names = [t["name"] for t in tasks]
    # The servers list is written after the configuration (a failed validation keeps both).
    assert names.index("Write the HAProxy configuration") < names.index(
        "Write the list of configured servers for the state saver")
    handlers = yaml.safe_load(open(os.path.join(role.ROLE, "handlers", "main.yml")))
    order = [h["name"] for h in handlers]
    assert order.index("Reload the systemd units for the HAProxy drop-in") < order.index(
        "Reload HAProxy")
    assert not any("Save" in name for name in order), "the drop-in saves, not a handler"


def test_shipped_files_need_nothing_but_the_stdlib(tmp_path):
    """The CLI and the client run alone, isolated from site-packages (no Ansible)."""
    cli = role.install_tools(str(tmp_path / "lib"))
    proc = subprocess.run([sys.executable, "-I", "-S", cli, "pid", str(tmp_path / "none.sock")],
                          capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["pid"] is None
    source = open(role.RUNTIME).read()
    imports = set(re.findall(r"^(?:from|import) (\w+)", source, re.M))
    assert imports <= {"__future__", "csv", "errno", "ipaddress", "os", "re", "socket", "stat",
                       "time"}
    atomic = open(os.path.join(os.path.dirname(role.RUNTIME), "_atomic.py")).read()
    atomic_imports = set(re.findall(r"^(?:from|import) (\w+)", atomic, re.M))
    assert atomic_imports <= {"__future__", "json", "os", "tempfile"}


def test_argument_specs_document_the_new_variables():
    spec = yaml.safe_load(open(os.path.join(role.ROLE, "meta", "argument_specs.yml")))
    options = spec["argument_specs"]["main"]["options"]
    backend = options["haproxy_backends"]["options"]
    assert backend["clone_port"]["type"] == "int"
    assert backend["servers"]["options"]["clone_port"]["type"] == "int"
    assert options["haproxy_state_save_timeout"]["default"] == role.variables()[
        "haproxy_state_save_timeout"] == 10
    defaults = yaml.safe_load(open(os.path.join(role.ROLE, "defaults", "main.yml")))
    assert set(defaults) == set(options)


def test_dropin_saves_the_state_on_stop_too():
    """A restart (a package upgrade's) stops first: ExecStop= saves while HAProxy still
    answers, with the very command of the reload, never failing the stop."""
    text = role.render("hitless-save-state.conf.j2")
    stop = role.exec_reload(text, "ExecStop")
    assert stop == ["", role.exec_reload(text)[1]]
    assert stop[1].startswith("-/usr/bin/timeout -k 2 10 /usr/bin/python3 ")


def test_idle_close_on_response_only_where_haproxy_has_it():
    assert "\n    option idle-close-on-response\n" in role.render("haproxy.cfg.j2")
    assert "\n    option idle-close-on-response\n" in role.render(
        "haproxy.cfg.j2", _haproxy_idle_close_on_response=True, haproxy_installed_version="3.0.11")
    old = role.render("haproxy.cfg.j2", _haproxy_idle_close_on_response=False,
                      haproxy_installed_version="2.2.9")
    assert "option idle-close-on-response" not in old.replace('"option idle-close-on-response"', "")
    assert "HAProxy 2.2.9 has no" in old
