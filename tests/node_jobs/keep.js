// Retains CHUNKS x 5 MiB on V8's heap (arrays of small integers: 8 bytes a slot, filled in
// place, so no garbage on the way), pausing 10 ms between chunks as a batch job awaits its
// database; prints a line and exits with EXIT (default 0).
const chunks = Number(process.argv[2]);
const keep = [];
(async () => {
  for (let k = 0; k < chunks; k++) {
    const a = new Array(655360).fill(0);
    for (let i = 0; i < a.length; i++) a[i] = i;
    keep.push(a);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  console.log(`kept ${keep.length} chunks`);
  process.exitCode = Number(process.argv[3] || 0);
})();
