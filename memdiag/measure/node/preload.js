'use strict';
// Runs inside every Node process of a command memdiag measures (NODE_OPTIONS=--require this
// file): the main process, its worker threads and its forked or spawned children.
//
// It records V8's own figures into MEMDIAG_NODE_DIR/<pid>-<thread>.jsonl, one JSON object a
// line, appended (a process that dies keeps every line written before): a "start" line (pid,
// kind, heap limit), then every MEMDIAG_NODE_INTERVAL_MS a sample of heap used / total /
// external / array buffers with the GCs since the previous line (count and pause by kind,
// and the largest heap used seen before any of them: the heap's peak is reached right before
// a collection), and an "end" line at exit. It writes nothing else anywhere and touches
// neither the job's stdout nor its exit code; any failure of its own leaves the job alone.
//
// On the main thread it asks Node for a report on a fatal error (into the same folder), from
// which memdiag tells a death at the heap limit and reads the heap's figures at death.
(function memdiagPreload() {
  const dir = process.env.MEMDIAG_NODE_DIR;
  if (!dir) return;
  let fs, v8, threads;
  try {
    fs = require('fs');
    v8 = require('v8');
    threads = require('worker_threads');
  } catch (_) {
    return;
  }
  const interval = Number(process.env.MEMDIAG_NODE_INTERVAL_MS) || 100;
  const main = threads.isMainThread;
  const kind = !main ? 'worker' : process.env.MEMDIAG_NODE_PARENT ? 'child' : 'main';
  let fd;
  try {
    fd = fs.openSync(`${dir}/${process.pid}-${threads.threadId}.jsonl`, 'a');
  } catch (_) {
    return; // the folder is gone: memdiag is no longer reading
  }
  const write = (record) => {
    try {
      fs.writeSync(fd, JSON.stringify(record) + '\n');
    } catch (_) {
      // a full disk must not end the job
    }
  };
  const now = () => Date.now() / 1000;
  if (main) {
    // Descendants started from here are children; the job sees one variable more.
    process.env.MEMDIAG_NODE_PARENT = String(process.pid);
    try {
      process.report.reportOnFatalError = true;
      process.report.directory = dir;
      process.report.compact = true;
    } catch (_) {
      // an older Node without process.report: the death is told by its signal alone
    }
  }
  write({
    e: 'start',
    t: now(),
    pid: process.pid,
    ppid: process.ppid,
    thread: threads.threadId,
    kind,
    argv: process.argv.slice(1, 3),
    node: process.version,
    heap_limit: v8.getHeapStatistics().heap_size_limit,
  });

  // v8.GCProfiler (Node >= 18.15) reports each GC with the heap before and after it. Its
  // records are taken every interval, so they never pile up in a long-running process.
  const Profiler = v8.GCProfiler;
  let profiler = null;
  const startProfiler = () => {
    if (!Profiler) return;
    profiler = new Profiler();
    profiler.start();
  };
  const gcSince = () => {
    const out = { peak: 0, peak_ext: 0, gc: {} };
    if (!profiler) return out;
    const taken = profiler.stop();
    startProfiler();
    for (const s of (taken && taken.statistics) || []) {
      const before = s.beforeGC.heapStatistics;
      if (before.usedHeapSize > out.peak) out.peak = before.usedHeapSize;
      if (before.externalMemory > out.peak_ext) out.peak_ext = before.externalMemory;
      const entry = out.gc[s.gcType] || (out.gc[s.gcType] = [0, 0]);
      entry[0] += 1;
      entry[1] += s.cost / 1e6; // microseconds -> seconds
    }
    return out;
  };
  const sample = (e) => {
    const m = process.memoryUsage();
    const gc = gcSince();
    write({
      e,
      t: now(),
      used: m.heapUsed,
      total: m.heapTotal,
      ext: m.external,
      ab: m.arrayBuffers,
      rss: m.rss,
      peak: gc.peak,
      peak_ext: gc.peak_ext,
      gc: gc.gc,
    });
  };
  startProfiler();
  const timer = setInterval(() => sample('s'), interval);
  timer.unref();
  process.on('exit', () => {
    clearInterval(timer);
    sample('end');
    try {
      fs.closeSync(fd);
    } catch (_) {
      // already closed
    }
  });
})();
