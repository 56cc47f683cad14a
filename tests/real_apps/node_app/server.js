'use strict';
/*
 * A real third-party stack for the deploy tests: express under Debian's Node.js, with its
 * node_modules inside the release.
 *
 * tests/real_apps/build_node_release.py copies this file to the root of each release and sets
 * CODE_RELEASE there ("v1", "v2"); the release's node_modules holds express (pinned in
 * package-lock.json) and the small package `releasemark` packed for that release alone
 * (RELEASE "v1", version 1.0.0). The unit runs `/usr/bin/node /srv/demo/current/server.js`
 * with the release as its working directory.
 *
 * The same HTTP interface as the sample app and the Python real apps: `/` JSON identity,
 * `/health`, `/slow?ms=N`, `/events` (server-sent events). `dependency` is looked up at
 * request time: `releasemark` is required on first use (not at start), and its installed
 * package.json is read from disk on every request; when the module and the package.json
 * disagree, `dependency` says both (`v1 (package 2.0.0)`).
 *
 * Node does not stop gracefully by itself (its default SIGTERM action is to die at once), so
 * on SIGTERM this server stops accepting (server.close()), closes its idle keep-alive
 * connections (server.closeIdleConnections(), Node >= 18.2) and answers what is in flight
 * with `Connection: close`, ends its event streams (the clients reconnect elsewhere), and
 * exits once the last connection is gone, or after STOP_GRACE_MS.
 */
const fs = require('fs');
const os = require('os');
const path = require('path');
const express = require('express');

const CODE_RELEASE = "dev";
const SLOW_MAX_MS = 60000;
// An event stream ends by itself after this long (the client reconnects), as in the Python
// apps: a stopping server must not be held by an endless stream.
const EVENTS_MAX_MS = 5000;
// Below the unit's TimeoutStopSec (app_stop_timeout, 30 s).
const STOP_GRACE_MS = 20000;
const PORT = parseInt(process.env.PORT, 10);
const MARK_PACKAGE = path.join(__dirname, 'node_modules', 'releasemark', 'package.json');

let stopping = false;
const streams = new Set();

function dependency() {
  const releasemark = require('releasemark');
  const pkg = JSON.parse(fs.readFileSync(MARK_PACKAGE, 'utf8'));
  let mark = releasemark.RELEASE;
  const details = {
    module: releasemark.RELEASE, module_version: releasemark.version, dist: pkg.version,
    file: require.resolve('releasemark'),
  };
  if (pkg.version !== releasemark.version) {
    mark = mark + ' (package ' + pkg.version + ')';
  }
  return [mark, details];
}

function identity() {
  const [mark, details] = dependency();
  return {
    version: CODE_RELEASE,
    dependency: mark,
    host: os.hostname(),
    port: PORT,
    pid: process.pid,
    ppid: process.ppid,
    releasemark: details,
    cwd: process.cwd(),
    node: process.version,
  };
}

// An integer query parameter clamped to `high`; null when invalid.
function intParam(req, name, dflt, low, high) {
  const raw = req.query[name];
  if (raw === undefined) {
    return dflt;
  }
  if (typeof raw !== 'string' || !/^-?[0-9]+$/.test(raw)) {
    return null;
  }
  const value = parseInt(raw, 10);
  return value < low ? null : Math.min(value, high);
}

const app = express();
app.disable('x-powered-by');
app.disable('etag');

app.use((req, res, next) => {
  if (stopping) {
    res.set('Connection', 'close');
  }
  next();
});

app.get('/', (req, res) => {
  res.json(identity());
});

app.get('/health', (req, res) => {
  res.type('text/plain').send('ok\n');
});

app.get('/slow', (req, res) => {
  const ms = intParam(req, 'ms', 1000, 0, SLOW_MAX_MS);
  if (ms === null) {
    res.status(400).type('text/plain').send('ms must be an integer >= 0\n');
    return;
  }
  const started = process.hrtime.bigint();
  const elapsed = () => Number((process.hrtime.bigint() - started) / 1000000n);
  // A timer may fire a fraction of a millisecond early by the monotonic clock: sleep on.
  const wake = () => {
    if (elapsed() < ms) {
      setTimeout(wake, ms - elapsed());
      return;
    }
    res.json(Object.assign(identity(), { slept_ms: elapsed() }));
  };
  setTimeout(wake, ms);
});

app.get('/events', (req, res) => {
  const interval = intParam(req, 'interval_ms', 1000, 10, 60000);
  if (interval === null) {
    res.status(400).type('text/plain').send('interval_ms must be an integer >= 10\n');
    return;
  }
  res.writeHead(200, {
    'Content-Type': 'text/event-stream',
    'Cache-Control': 'no-store',
    Connection: stopping ? 'close' : 'keep-alive',
  });
  res.write('retry: 500\n\n');
  const ends = Date.now() + EVENTS_MAX_MS;
  let seq = 0;
  let timer = null;
  const stream = {
    end() {
      clearTimeout(timer);
      streams.delete(stream);
      res.end();
    },
  };
  streams.add(stream);
  res.on('close', () => {
    clearTimeout(timer);
    streams.delete(stream);
  });
  const send = () => {
    seq += 1;
    res.write('id: ' + seq + '\ndata: ' + JSON.stringify(Object.assign(identity(), { seq })) + '\n\n');
    if (stopping || Date.now() + interval > ends) {
      stream.end();
      return;
    }
    timer = setTimeout(send, interval);
  };
  send();
});

const server = require('http').createServer(app);

function stop(signal) {
  if (stopping) {
    return;
  }
  stopping = true;
  console.log('%s: no new connections; finishing the requests in flight', signal);
  server.close(() => {
    console.log('all connections closed; exiting');
    process.exit(0);
  });
  for (const stream of Array.from(streams)) {
    stream.end();
  }
  // A keep-alive connection becomes idle when its last response is sent: close those now and
  // as they come (Node 18 keeps them open after server.close(); 19 and later close them).
  server.closeIdleConnections();
  setInterval(() => server.closeIdleConnections(), 100).unref();
  setTimeout(() => {
    console.log('still busy after %d ms; closing every connection', STOP_GRACE_MS);
    server.closeAllConnections();
    process.exit(1);
  }, STOP_GRACE_MS).unref();
}

process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));

// STARTUP_DELAY (seconds): wait this long before listening, like a slow app (the sample app's
// and the Python apps' setting of the same name).
const delay = Math.min(parseFloat(process.env.STARTUP_DELAY || '0') || 0, 3600);
setTimeout(() => {
  server.listen(PORT, '0.0.0.0', () => {
    console.log('release %s (node %s) listening on port %d', CODE_RELEASE, process.version, PORT);
  });
}, delay * 1000);
