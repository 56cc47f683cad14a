"""Unit tests of the HAProxy runtime API client and parsers (fake socket, real 2.6 answers)."""
import socket
import time

import pytest

from ansible_collections.hitless.deploy.plugins.module_utils import _haproxy_runtime as rt

# `show stat` header and rows as HAProxy 2.6.12 printed them (Debian 12).
STAT_HEADER = (
    "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,"
    "wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,"
    "lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,"
    "hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,"
    "cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,"
    "ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,"
    "check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,"
    "conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,"
    "srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur,"
    "used_conn_cur,need_conn_est,uweight,agg_server_status,agg_server_check_status,"
    "agg_check_status,-,ssl_sess,ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,"
    "h2_data_rcvd,h2_settings_rcvd,h2_rst_stream_rcvd,h2_goaway_rcvd,"
    "h2_detected_conn_protocol_errors,h2_detected_strm_protocol_errors,h2_rst_stream_resp,"
    "h2_goaway_resp,h2_open_connections,h2_backend_open_streams,h2_total_connections,"
    "h2_backend_total_streams,h1_open_connections,h1_open_streams,h1_total_connections,"
    "h1_total_streams,h1_bytes_in,h1_bytes_out,h1_spliced_bytes_in,h1_spliced_bytes_out,"
)
STAT_S1 = (
    "be,s1,0,0,0,0,,0,0,0,,0,,0,0,0,0,UP,1,1,0,0,0,2,0,,1,3,1,,0,,2,0,,0,L7OK,200,7,0,0,0,0,0,0,"
    ",,,0,0,0,,,,,-1,,,0,0,0,0,,,,Layer7 check passed,,2,2,3,,,,127.0.0.1:18081,,http,,,,,,,,0,0,"
    "0,,,0,,0,0,0,0,0,0,0,0,1,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,"
)
STAT_BACKEND = (
    "be,BACKEND,0,0,0,0,999,0,0,0,0,0,,0,0,0,0,UP,2,2,0,,0,2,0,,1,3,0,,0,,1,0,,0,,,,0,0,0,0,0,0,,,"
    ",0,0,0,0,0,0,0,-1,,,0,0,0,0,,,,,,,,,,,,,,http,roundrobin,,,,,,,0,0,0,0,0,,,0,0,0,0,0,,,,,2,0,"
    "0,0,-,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,8,8,906,192,0,0,"
)
STATE_HEADER = (
    "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight "
    "srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health "
    "srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord "
    "srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port"
)
STATE_S1 = "3 be 1 s1 127.0.0.1 2 0 1 1 2 15 3 3 6 0 0 0 - 18081 - 0 0 - - 0"


def stat_text(*rows):
    """A `show stat` answer with the real header and rows given as {column: value}."""
    header = STAT_HEADER[2:].split(",")
    lines = [STAT_HEADER]
    for row in rows:
        lines.append(",".join(str(row.get(name, "")) for name in header))
    return "\n".join(lines) + "\n\n"


def state_text(*rows):
    header = STATE_HEADER[2:].split()
    lines = ["1", STATE_HEADER]
    for row in rows:
        lines.append(" ".join(str(row.get(name, "0")) for name in header))
    return "\n".join(lines) + "\n\n"


class FakeSocket(object):
    def __init__(self, answer, chunk=7, fail_recv=None):
        self.answer = answer.encode()
        self.sent = b""
        self.closed = False
        self.chunk = chunk
        self.fail_recv = fail_recv

    def sendall(self, data):
        self.sent += data

    def recv(self, size):
        if self.fail_recv:
            raise self.fail_recv
        data, self.answer = self.answer[:self.chunk], self.answer[self.chunk:]
        return data

    def close(self):
        self.closed = True


class Connector(object):
    """Answers each command from a dict; records what was sent."""

    def __init__(self, answers, error=None):
        self.answers = answers
        self.error = error
        self.sockets = []
        self.calls = []

    def __call__(self, kind, address, timeout):
        self.calls.append((kind, address, timeout))
        if self.error:
            raise self.error
        sock = FakeSocket("")
        sock.answers = self.answers
        original = sock.sendall

        def sendall(data):
            original(data)
            sock.answer = self.answers[data.decode().rstrip("\n")].encode()
        sock.sendall = sendall
        self.sockets.append(sock)
        return sock


# --- socket specs -------------------------------------------------------------------------

@pytest.mark.parametrize("spec,expected", [
    ("/run/haproxy/admin.sock", ("unix", "/run/haproxy/admin.sock")),
    ("./admin.sock", ("unix", "./admin.sock")),
    ("127.0.0.1:9999", ("tcp", ("127.0.0.1", 9999))),
    ("lb1.example:9999", ("tcp", ("lb1.example", 9999))),
    ("[::1]:9999", ("tcp", ("::1", 9999))),
])
def test_parse_socket_spec(spec, expected):
    assert rt.parse_socket_spec(spec) == expected


@pytest.mark.parametrize("spec", ["", "admin.sock", "host:0", "host:70000", "host:http", "::1:99"])
def test_parse_socket_spec_rejects(spec):
    with pytest.raises(ValueError):
        rt.parse_socket_spec(spec)


def test_open_client_missing_path_names_socket(tmp_path):
    with pytest.raises(ValueError, match=r"^socket: .*does not exist"):
        rt.open_client(str(tmp_path / "nope.sock"), 5)


def test_open_client_regular_file_names_socket(tmp_path):
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(ValueError, match=r"^socket: .*is not a unix socket"):
        rt.open_client(str(path), 5)


def test_open_client_real_socket_and_bad_timeout(tmp_path):
    path = str(tmp_path / "s.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(path)
        assert rt.open_client(path, 2).address == path
        with pytest.raises(ValueError, match=r"^timeout: "):
            rt.open_client(path, 0)
    finally:
        listener.close()


def test_open_client_bad_host_port_names_socket():
    with pytest.raises(ValueError, match=r"^socket: .*neither"):
        rt.open_client("localhost", 5)


# --- client ---------------------------------------------------------------------------------

def test_command_sends_one_line_and_reads_to_eof():
    conn = Connector({"show info": "Name: HAProxy\nVersion: 2.6.12-1+deb12u4\n\n"})
    client = rt.RuntimeClient("/x/admin.sock", timeout=3, connect=conn)
    assert client.version() == "2.6.12-1+deb12u4"
    assert conn.calls == [("unix", "/x/admin.sock", 3)]
    assert conn.sockets[0].sent == b"show info\n"
    assert conn.sockets[0].closed


def test_command_refuses_a_second_line():
    client = rt.RuntimeClient("/x/admin.sock", connect=Connector({}))
    with pytest.raises(ValueError):
        client.command("show info\nshutdown frontend fe")


def test_run_accepts_empty_and_known_answers_only():
    conn = Connector({
        "set server be/s1 state drain": "\n",
        "add server be/d1 127.0.0.1:1 check": "New server registered.\n\n",
        "set server be/s1 weight 300": "Absolute weight can only be between 0 and 256 inclusive.\n",
        "set server be/s1 state ready": "Something new.\n",
    })
    client = rt.RuntimeClient("127.0.0.1:9999", connect=conn)
    assert client.run("set server be/s1 state drain") == ""
    assert client.run("add server be/d1 127.0.0.1:1 check", ("New server registered.",))
    with pytest.raises(rt.CommandError) as err:
        client.run("set server be/s1 weight 300")
    assert "between 0 and 256" in err.value.answer
    assert err.value.command == "set server be/s1 weight 300"
    # An unknown answer is an error even for a command that usually answers nothing.
    with pytest.raises(rt.CommandError):
        client.run("set server be/s1 state ready")
    assert conn.calls[0][0] == "tcp"


class FakeClock(object):
    """A clock that only moves when the client sleeps."""

    def __init__(self):
        self.now = 100.0
        self.sleeps = []

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds

    def __call__(self):
        return self.now


def test_connect_failure_is_socket_error():
    conn = Connector({}, error=ConnectionRefusedError(111, "Connection refused"))
    clock = FakeClock()
    client = rt.RuntimeClient("/x/admin.sock", connect=conn, sleep=clock.sleep, clock=clock)
    with pytest.raises(rt.SocketError, match="cannot connect .*/x/admin.sock"):
        client.command("show info")


def test_refused_connect_is_tried_again_until_the_timeout_then_named():
    conn = Connector({}, error=ConnectionRefusedError(111, "Connection refused"))
    clock = FakeClock()
    client = rt.RuntimeClient("/x/admin.sock", timeout=1, restart_wait=3, connect=conn,
                              sleep=clock.sleep, clock=clock)
    with pytest.raises(rt.NotRunningError, match=r"/x/admin.sock \(for 3s\): .*refused"):
        client.command("show info")
    assert sum(clock.sleeps) <= 3 and max(clock.sleeps) == 0.5
    assert len(conn.calls) == len(clock.sleeps) + 1 > 5


def test_without_restart_wait_a_refused_connect_fails_at_once():
    conn = Connector({}, error=ConnectionRefusedError(111, "Connection refused"))
    clock = FakeClock()
    client = rt.RuntimeClient("/x/admin.sock", connect=conn, sleep=clock.sleep, clock=clock)
    with pytest.raises(rt.NotRunningError, match=r"admin.sock: .*refused"):
        client.command("show info")
    assert len(conn.calls) == 1 and clock.sleeps == []


def test_other_connect_errors_are_not_tried_again():
    conn = Connector({}, error=PermissionError(13, "Permission denied"))
    clock = FakeClock()
    client = rt.RuntimeClient("/x/admin.sock", connect=conn, restart_wait=5, sleep=clock.sleep,
                              clock=clock)
    with pytest.raises(rt.SocketError, match="Permission denied") as err:
        client.command("show info")
    assert not isinstance(err.value, rt.NotRunningError)
    assert len(conn.calls) == 1 and clock.sleeps == []


def test_a_restarting_haproxy_is_waited_for(tmp_path):
    """A real unix socket that refuses (bound, not yet listening, as while HAProxy restarts),
    then listens: the command waits for it instead of failing the deploy."""
    import threading
    path = str(tmp_path / "admin.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    refused = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with pytest.raises(ConnectionRefusedError):
        refused.connect(path)
    refused.close()

    def serve():
        time.sleep(0.4)
        listener.listen(1)
        conn, _addr = listener.accept()
        conn.recv(100)
        conn.sendall(b"Name: HAProxy\n\n")
        conn.close()
    thread = threading.Thread(target=serve)
    thread.start()
    try:
        started = time.monotonic()
        assert rt.open_client(path, 3).command("show info") == "Name: HAProxy"
        assert 0.3 < time.monotonic() - started < 3
    finally:
        thread.join(5)
        listener.close()


def test_read_timeout_is_socket_error():
    def connect(kind, address, timeout):
        return FakeSocket("", fail_recv=socket.timeout("timed out"))
    client = rt.RuntimeClient("/x/admin.sock", timeout=0.5, connect=connect)
    with pytest.raises(rt.SocketError, match="did not answer 'show info' within 0.5s"):
        client.command("show info")


def test_unknown_backend_is_not_found():
    conn = Connector({"show stat nope 6 -1": "No such proxy.\n\n",
                      "show servers state nope": "Can't find backend.\n\n"})
    client = rt.RuntimeClient("/x/admin.sock", connect=conn)
    with pytest.raises(rt.NotFoundError) as err:
        client.backend("nope")
    assert (err.value.kind, err.value.name) == ("backend", "nope")
    with pytest.raises(rt.NotFoundError):
        client.show_servers_state("nope")


def test_frontend_only_proxy_is_not_a_backend():
    conn = Connector({"show stat fe 6 -1": STAT_HEADER + "\n\n",
                      "show servers state fe": "1\n" + STATE_HEADER + "\n"})
    client = rt.RuntimeClient("/x/admin.sock", connect=conn)
    with pytest.raises(rt.NotFoundError):
        client.backend("fe")


def test_real_socket_round_trip(tmp_path):
    """The default connector against a real unix socket that answers like HAProxy."""
    import threading
    path = str(tmp_path / "admin.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(1)
    got = []

    def serve():
        conn, _addr = listener.accept()
        got.append(conn.recv(100))
        conn.sendall(b"Server deleted.\n")
        conn.close()
    thread = threading.Thread(target=serve)
    thread.start()
    try:
        client = rt.open_client(path, 2)
        assert client.run("del server be/x", ("Server deleted.",)) == "Server deleted."
    finally:
        thread.join(5)
        listener.close()
    assert got == [b"del server be/x\n"]


# --- parsers --------------------------------------------------------------------------------

def test_parse_stat_csv_real_answer_typed_by_name():
    rows = rt.parse_stat_csv(STAT_HEADER + "\n" + STAT_S1 + "\n" + STAT_BACKEND + "\n\n")
    s1, backend = rows
    assert s1["pxname"] == "be" and s1["svname"] == "s1"
    assert s1["status"] == "UP" and s1["check_status"] == "L7OK" and s1["check_code"] == 200
    assert s1["scur"] == 0 and s1["check_rise"] == 2 and s1["check_fall"] == 2
    assert s1["check_health"] == 3 and s1["uweight"] == 1
    assert s1["addr"] == "127.0.0.1:18081" and s1["check_desc"] == "Layer7 check passed"
    assert s1["slim"] is None  # empty field
    assert "-" not in s1
    assert backend["algo"] == "roundrobin"


def test_parse_stat_csv_uses_names_not_positions():
    header = ["pxname", "svname", "check_status", "status", "scur", "check_health", "newfield"]
    text = "# " + ",".join(header) + "\nbe,s1,L4CON,DOWN,4,0,hello\n"
    (row,) = rt.parse_stat_csv(text)
    assert row == {"pxname": "be", "svname": "s1", "check_status": "L4CON", "status": "DOWN",
                   "scur": 4, "check_health": 0, "newfield": "hello"}


def test_parse_stat_csv_quoted_field():
    text = '# pxname,svname,check_desc\nbe,s1,"Layer7 wrong status, 503"\n'
    assert rt.parse_stat_csv(text)[0]["check_desc"] == "Layer7 wrong status, 503"


@pytest.mark.parametrize("text", ["", "Permission denied.\n", "Unknown command.\n"])
def test_parse_stat_csv_rejects_other_answers(text):
    with pytest.raises(rt.HAProxyRuntimeError):
        rt.parse_stat_csv(text)


def test_parse_servers_state_real_answer():
    (row,) = rt.parse_servers_state("1\n" + STATE_HEADER + "\n" + STATE_S1 + "\n\n")
    assert row["be_name"] == "be" and row["srv_name"] == "s1" and row["srv_addr"] == "127.0.0.1"
    assert row["srv_op_state"] == 2 and row["srv_admin_state"] == 0 and row["srv_port"] == 18081
    assert row["srv_check_state"] == 6 and row["srv_fqdn"] is None


@pytest.mark.parametrize("text", ["", "2\n# be_id\n", "1\n", "Unknown command.\n"])
def test_parse_servers_state_rejects_other_answers(text):
    with pytest.raises(rt.HAProxyRuntimeError):
        rt.parse_servers_state(text)


@pytest.mark.parametrize("flags,expected", [
    (0, "ready"), (0x08, "drain"), (0x10, "drain"), (0x01, "maint"), (0x05, "maint"),
    (0x09, "maint"), (0x20, "maint"), (0x40, "ready"),
    # A server declared `disabled` keeps CMAINT after leaving maint (seen on 2.6.12).
    (0x04, "ready"), (0x0C, "drain"),
])
def test_admin_state(flags, expected):
    assert rt.admin_state(flags) == expected


def _view(status, check_status="L7OK", health=3, admin=0, check_state=6, op=2):
    stat = {"pxname": "be", "svname": "s1", "status": status, "check_status": check_status,
            "check_code": 200, "check_health": health, "check_rise": 2, "check_fall": 2,
            "scur": 0, "qcur": 0, "stot": 0}
    state = {"be_name": "be", "srv_name": "s1", "srv_addr": "127.0.0.1", "srv_port": 18081,
             "srv_op_state": op, "srv_admin_state": admin, "srv_uweight": 1,
             "srv_check_state": check_state}
    return rt.server_view(stat, state)


def test_ready_only_when_up_fully_risen_and_passing():
    assert _view("UP")["ready"] is True
    # What HAProxy shows right after leaving MAINT: UP, stale L7OK, counter not at its top.
    assert _view("UP 1/2", health=2)["ready"] is False
    assert _view("DRAIN", admin=0x08)["ready"] is False
    assert _view("UP", check_status="L4CON")["ready"] is False
    assert _view("UP", check_status="", check_state=0, health=None)["ready"] is False
    assert _view("MAINT", admin=0x01, check_state=14)["ready"] is False


def test_check_in_progress_is_stripped():
    view = _view("DRAIN", check_status="* L7OK", admin=0x08)
    assert view["check_status"] == "L7OK" and view["check_in_progress"] is True
    assert view["check_code"] is None and view["check_passing"] is True
    assert view["admin_state"] == "drain" and view["op_state"] == "running"


def test_merge_backends_joins_by_name_and_skips_half_known_servers():
    stats = rt.parse_stat_csv(stat_text(
        {"pxname": "fe", "svname": "FRONTEND", "status": "OPEN"},
        {"pxname": "be", "svname": "s1", "status": "UP", "check_status": "L7OK",
         "check_health": 3, "check_rise": 2, "check_fall": 2, "scur": 5},
        {"pxname": "be", "svname": "gone", "status": "MAINT"},
        {"pxname": "be", "svname": "BACKEND", "status": "UP", "algo": "source"},
    ))
    states = rt.parse_servers_state(state_text(
        {"be_name": "be", "srv_name": "s1", "srv_addr": "10.0.0.1", "srv_port": 80,
         "srv_op_state": 2, "srv_check_state": 6, "srv_uweight": 7},
    ))
    backends = rt.merge_backends(stats, states)
    assert list(backends) == ["be"]
    be = backends["be"]
    assert be["algo"] == "source" and list(be["servers"]) == ["s1"]
    s1 = be["servers"]["s1"]
    assert (s1["address"], s1["port"], s1["weight"], s1["scur"]) == ("10.0.0.1", 80, 7, 5)
    assert s1["ready"] is True


# --- configured or dynamic ------------------------------------------------------------------

@pytest.mark.parametrize("answer,expected", [
    # HAProxy 2.6.12's answers to `set server B/S ssl` (measured).
    ("'set server <srv> ssl' not supported on dynamic servers\n\n", True),
    ("'set server <srv> ssl' cannot be set.  default-server should define ssl settings\n\n",
     False),
    ("'set server <srv> ssl' expects 'on' or 'off'.\n\n", False),
    ("No such server.\n\n", None),
    ("server ssl setting not supported.\n", None),
    ("", None),
])
def test_classify_dynamic_probe(answer, expected):
    assert rt.classify_dynamic_probe(answer) is expected


def test_backends_probe_dynamic_only_when_asked():
    stat = stat_text({"pxname": "be", "svname": "s1", "status": "UP"},
                     {"pxname": "be", "svname": "d1", "status": "MAINT"},
                     {"pxname": "be", "svname": "BACKEND", "algo": "roundrobin"})
    state = state_text({"be_name": "be", "srv_name": "s1", "srv_addr": "127.0.0.1"},
                       {"be_name": "be", "srv_name": "d1", "srv_addr": "127.0.0.1"})
    conn = Connector({
        "show stat be 6 -1": stat, "show servers state be": state,
        "set server be/s1 ssl": "'set server <srv> ssl' cannot be set.  default-server should "
                                "define ssl settings\n\n",
        "set server be/d1 ssl": "'set server <srv> ssl' not supported on dynamic servers\n\n"})
    client = rt.RuntimeClient("/x/admin.sock", connect=conn)
    plain = client.backend("be")["servers"]
    assert plain["s1"]["dynamic"] is None and plain["d1"]["dynamic"] is None
    assert len(conn.sockets) == 2
    probed = client.backend("be", probe_dynamic=True)["servers"]
    assert probed["s1"]["dynamic"] is False and probed["d1"]["dynamic"] is True
    with pytest.raises(ValueError):
        client.is_dynamic("be", "s1; del server be/s1")


def test_missing_or_refusing_socket_is_not_running():
    clock = FakeClock()
    for error in (FileNotFoundError(2, "No such file"), ConnectionRefusedError(111, "refused")):
        client = rt.RuntimeClient("/x/admin.sock", connect=Connector({}, error=error),
                                  sleep=clock.sleep, clock=clock)
        with pytest.raises(rt.NotRunningError):
            client.command("show info")
    client = rt.RuntimeClient("/x/admin.sock",
                              connect=Connector({}, error=socket.timeout("timed out")),
                              sleep=clock.sleep, clock=clock)
    with pytest.raises(rt.SocketError) as err:
        client.command("show info")
    assert not isinstance(err.value, rt.NotRunningError)


def test_info_and_worker_pid():
    conn = Connector({"show info": "Name: HAProxy\nVersion: 2.6.12\nPid: 4242\nUptime: 0d\n\n"})
    client = rt.RuntimeClient("/x/admin.sock", connect=conn)
    assert client.info()["Pid"] == "4242" and client.worker_pid() == 4242
    client = rt.RuntimeClient("/x/admin.sock", connect=Connector({"show info": "Name: x\n"}))
    with pytest.raises(rt.HAProxyRuntimeError):
        client.worker_pid()


# --- saved state filter ---------------------------------------------------------------------

def state_line(backend, server, address, port, admin=0):
    return "2 %s 1 %s %s 2 %d 1 1 5 15 3 3 6 0 0 0 - %d - 0 0 - - 0" % (
        backend, server, address, admin, port)


def test_filter_keeps_same_endpoint_and_slots_drops_the_rest():
    text = "\n".join([
        "1", STATE_HEADER,
        state_line("web", "app1", "10.0.0.1", 8080, admin=8),      # same: kept (DRAIN)
        state_line("web", "app2", "10.0.0.2", 8080),               # port changed: dropped
        state_line("web", "app3", "10.0.0.9", 8080),               # address changed: dropped
        state_line("web", "app1-clone", "10.0.0.1", 9999, admin=4),  # moved slot: kept
        state_line("web", "dyn", "10.0.0.7", 8081),                # dynamic: dropped
        state_line("web", "gone", "10.0.0.8", 8080),               # removed: dropped
        state_line("web", "named", "10.0.0.5", 8080),              # host name: port only
        "", ""])
    servers = [
        {"backend": "web", "server": "app1", "address": "10.0.0.1", "port": 8080, "slot": False},
        {"backend": "web", "server": "app2", "address": "10.0.0.2", "port": 8090, "slot": False},
        {"backend": "web", "server": "app3", "address": "10.0.0.3", "port": 8080, "slot": False},
        {"backend": "web", "server": "app1-clone", "address": "10.0.0.1", "port": 8081,
         "slot": True},
        {"backend": "web", "server": "named", "address": "app5.example", "port": 8080},
        {"backend": "api", "server": "app1", "address": "10.0.0.1", "port": 8080},
    ]
    out, kept, dropped = rt.filter_servers_state(text, servers)
    assert kept == ["web/app1", "web/app1-clone", "web/named"]
    assert dropped == ["web/app2", "web/app3", "web/dyn", "web/gone"]
    lines = out.splitlines()
    assert lines[:2] == ["1", STATE_HEADER] and out.endswith("\n")
    assert lines[2] == state_line("web", "app1", "10.0.0.1", 8080, admin=8)
    assert lines[3] == state_line("web", "app1-clone", "10.0.0.1", 9999, admin=4)
    # What HAProxy itself parses back.
    assert [r["srv_name"] for r in rt.parse_servers_state(out)] == ["app1", "app1-clone", "named"]


def test_filter_ipv6_compares_addresses_not_spellings():
    text = "1\n%s\n%s\n" % (STATE_HEADER, state_line("web", "v6", "::1", 80))
    servers = [{"backend": "web", "server": "v6", "address": "0:0::1", "port": 80}]
    assert rt.filter_servers_state(text, servers)[1] == ["web/v6"]


@pytest.mark.parametrize("text", ["", "No such backend.\n", "2\n# be_id\n", "1\nbe_id x\n"])
def test_filter_rejects_other_answers(text):
    with pytest.raises(rt.HAProxyRuntimeError):
        rt.filter_servers_state(text, [])


@pytest.mark.parametrize("error, option, message", [
    (rt.NotFoundError("backend", "app"), "socket", "backend: backend app does not exist"),
    (rt.NotFoundError("server", "app/web9"), "socket", "server: server app/web9 does not exist"),
    (rt.NotRunningError("connect to /run/haproxy/admin.sock: refused"), "haproxy_socket",
     "haproxy_socket: connect to /run/haproxy/admin.sock: refused"),
    (rt.SocketError("timed out"), "socket", "socket: timed out"),
    (rt.CommandError("add server app/x 10.0.0.1:80", "Unknown keyword"), "socket",
     "HAProxy refused 'add server app/x 10.0.0.1:80': Unknown keyword"),
])
def test_runtime_error_message_names_the_option_at_fault(error, option, message):
    assert rt.runtime_error_message(error, option) == message
