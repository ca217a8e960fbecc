// Retains COUNT Buffers of 4 MiB, touched: outside V8's heap (external), inside RSS.
const count = Number(process.argv[2]);
const keep = [];
for (let i = 0; i < count; i++) keep.push(Buffer.alloc(4 * 1024 * 1024, i));
console.log(`kept ${keep.length} buffers`);
