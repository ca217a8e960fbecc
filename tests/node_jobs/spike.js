// A heap spike between two samples: CHUNKS x 5 MiB built in one synchronous stretch (no
// sample can run), dropped, collected (node --expose-gc), then 300 ms of a small heap.
const chunks = Number(process.argv[2]);
let keep = [];
for (let k = 0; k < chunks; k++) {
  const a = new Array(655360).fill(0);
  for (let i = 0; i < a.length; i++) a[i] = i;
  keep.push(a);
}
keep = null;
global.gc();
setTimeout(() => console.log('done'), 300);
