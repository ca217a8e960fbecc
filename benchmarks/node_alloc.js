// An allocation-heavy Node job for the preload's cost: ROUNDS rounds that each build 200,000
// small objects and strings, keep a sliding window of the last 400,000 (old-generation work
// too), and yield to the event loop between rounds, as a batch job awaits its database.
const rounds = Number(process.argv[2] || 60);
const windowSize = 400000;
let kept = [];
(async () => {
  let checksum = 0;
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < 200000; i++) {
      const row = { id: r * 200000 + i, name: `row-${i}`, tags: [i % 7, i % 11], score: i * 0.5 };
      kept.push(row);
      checksum += row.tags[0];
    }
    if (kept.length > windowSize) kept = kept.slice(kept.length - windowSize);
    await new Promise((resolve) => setImmediate(resolve));
  }
  console.log(`checksum ${checksum}`);
})();
