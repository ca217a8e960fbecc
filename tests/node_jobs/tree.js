// A main process that retains 10 MiB, a worker thread that retains 60 MiB and a forked child
// that retains 120 MiB (5 MiB chunks, as keep.js); the main waits for both.
const { Worker, isMainThread } = require('worker_threads');
const { fork } = require('child_process');

function retain(chunks) {
  const keep = [];
  for (let k = 0; k < chunks; k++) {
    const a = new Array(655360).fill(0);
    for (let i = 0; i < a.length; i++) a[i] = i;
    keep.push(a);
  }
  return keep;
}

if (process.argv[2] === 'child') {
  retain(24);
} else if (!isMainThread) {
  retain(12);
} else {
  const kept = retain(2);
  const worker = new Worker(__filename);
  worker.on('exit', () => {
    fork(__filename, ['child']).on('exit', (code) => {
      console.log(`main kept ${kept.length}, child exited ${code}`);
    });
  });
}
