-- wrk script of benchmarks/fleet_benchmark.py: every request's start time, latency and status.
--
--   WRK_TIMELINE_OUT=FILE wrk -t8 -c8 -d120s -s benchmarks/wrk/timeline.lua http://LB:80/
--
-- Run with as many threads as connections (-t N -c N): each thread then has one connection and
-- one request in flight at a time, so request() and response() of a thread pair up and the
-- latency of each request is known here (wrk itself only reports it over the whole run). A
-- request() while the thread's previous request never got a response means wrk dropped that
-- connection (read/write error, closed by the peer): that request is recorded as failed with
-- status 0 at the time it was sent, so socket errors show up in the timeline too.
--
-- done() collects every thread's records (thread:get) and writes FILE, one line a request:
--   <thread> <start epoch s> <latency s> <status>        (status 0: no response)
-- after a first line "# summary requests=N connect=N read=N write=N status=N timeout=N
-- duration_us=N" with wrk's own counters.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_usec; } hd_timeval;
int gettimeofday(hd_timeval *tv, void *tz);
]]
local tv = ffi.new("hd_timeval")

local function now()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) + tonumber(tv.tv_usec) / 1e6
end

-- Main state: the threads, for done().
local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

-- Thread state. Globals, so thread:get() can read them.
n = 0
starts, lats, codes = {}, {}, {}
local pending = nil
local req = nil
-- wrk calls request() of its first thread once before the run, to check the script
-- (script_verify_request): that call sends nothing and must not count.
local verify_call = false

local function record(start, latency, status)
  n = n + 1
  starts[n], lats[n], codes[n] = start, latency, status
end

-- args[1]: the pause of this connection between a response and its next request, in ms.
local think = 0

function init(args)
  req = wrk.format("GET", wrk.path)
  verify_call = (id == 1)
  think = tonumber(args[1]) or 0
end

function delay()
  return think
end

function request()
  if verify_call then
    verify_call = false
    return req
  end
  local t = now()
  if pending ~= nil then
    record(pending, t - pending, 0)
  end
  pending = t
  return req
end

function response(status, headers, body)
  local t = now()
  local start = pending or t
  pending = nil
  record(start, t - start, status)
end

function done(summary, latency, requests)
  local path = os.getenv("WRK_TIMELINE_OUT")
  if path == nil or path == "" then
    io.stderr:write("timeline.lua: WRK_TIMELINE_OUT is not set, nothing written\n")
    return
  end
  local out = assert(io.open(path, "w"))
  local e = summary.errors
  out:write(string.format(
    "# summary requests=%d connect=%d read=%d write=%d status=%d timeout=%d duration_us=%d\n",
    summary.requests, e.connect, e.read, e.write, e.status, e.timeout, summary.duration))
  for _, thread in ipairs(threads) do
    local id = thread:get("id")
    local count = thread:get("n")
    local ts, ls, cs = thread:get("starts"), thread:get("lats"), thread:get("codes")
    local chunk = {}
    for i = 1, count do
      chunk[#chunk + 1] = string.format("%d %.6f %.6f %d\n", id, ts[i], ls[i], cs[i])
      if #chunk >= 4096 then
        out:write(table.concat(chunk))
        chunk = {}
      end
    end
    out:write(table.concat(chunk))
  end
  out:close()
end
