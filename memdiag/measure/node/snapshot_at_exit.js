// Runs inside the node job `memdiag snapshot -- node job.js` starts (through NODE_OPTIONS
// --require): V8 heap snapshots written where memdiag says, by the first node process only
// (the variables are removed before the job can start others).
//
// MEMDIAG_HEAPSNAPSHOT: a snapshot at the job's end. 'exit' comes after the event loop
// drained, after process.exit() and after an uncaught exception alike;
// v8.writeHeapSnapshot is synchronous, so it may run there. With --at-peak, beside it
// PATH.json: the heap used right after (the snapshot collects first: what is live).
//
// MEMDIAG_HEAPSNAPSHOT_PEAK (with --at-peak): a snapshot near the heap's high-water mark.
// The heap used is read after every garbage collection (a PerformanceObserver) and every
// PEAK_POLL_MS (an unref'd timer), both on the event loop's turns: when it is PEAK_STEP times
// what the last peak snapshot found live, a new one replaces it. A snapshot's cost is paid
// again only after twice its own time has passed, so the job runs at least two thirds of the
// time. Beside it, PATH.json: the heap live in it (used right after: the snapshot collects).
'use strict';
const PEAK_STEP = 1.2;
const PEAK_FLOOR = 8 * 1024 * 1024;
const PEAK_POLL_MS = 50;

function write(v8, fs, target) {
  const part = target + '.part';
  v8.writeHeapSnapshot(part);
  fs.renameSync(part, target);
}

const target = process.env.MEMDIAG_HEAPSNAPSHOT;
const peak = process.env.MEMDIAG_HEAPSNAPSHOT_PEAK;
delete process.env.MEMDIAG_HEAPSNAPSHOT;
delete process.env.MEMDIAG_HEAPSNAPSHOT_PEAK;
if (target) {
  process.on('exit', () => {
    try {
      const v8 = require('v8');
      write(v8, require('fs'), target);
      if (peak) {
        const live = v8.getHeapStatistics().used_heap_size;
        require('fs').writeFileSync(target + '.json', JSON.stringify({ heap_live_bytes: live }));
      }
    } catch (error) {
      process.stderr.write(`memdiag: the heap snapshot at exit failed: ${error.message}\n`);
    }
  });
}
if (peak) {
  const v8 = require('v8');
  const fs = require('fs');
  const { PerformanceObserver, performance } = require('perf_hooks');
  let held = 0; // the heap live in the peak snapshot kept (used right after: it collects)
  let after = 0; // when its cost is paid off
  let writing = false;
  const check = () => {
    if (writing) return;
    const used = v8.getHeapStatistics().used_heap_size;
    if (used < PEAK_FLOOR || used < PEAK_STEP * held) return;
    const now = performance.now();
    if (now < after) return;
    writing = true;
    try {
      const next = peak + '.next';
      v8.writeHeapSnapshot(next);
      const took = performance.now() - now;
      const live = v8.getHeapStatistics().used_heap_size;
      after = performance.now() + 2 * took;
      if (live > held) {
        // it holds more than the last one kept (garbage may have made the heap look larger)
        fs.renameSync(next, peak);
        fs.writeFileSync(peak + '.json', JSON.stringify({ heap_live_bytes: live, ms: took }));
        held = live;
      } else {
        fs.unlinkSync(next);
      }
    } catch (error) {
      process.stderr.write(`memdiag: the heap snapshot at the peak failed: ${error.message}\n`);
    } finally {
      writing = false;
    }
  };
  new PerformanceObserver(check).observe({ entryTypes: ['gc'] });
  setInterval(check, PEAK_POLL_MS).unref();
}
