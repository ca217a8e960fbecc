// A batch job: 30 units of work in batches of --batch N, each batch holding N x 5 MiB on
// V8's heap while it "waits for the database" (150 ms a batch): a larger batch is faster and
// needs more heap.
const batch = Number(process.argv[process.argv.indexOf('--batch') + 1]);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
(async () => {
  for (let done = 0; done < 30; done += batch) {
    const rows = [];
    for (let k = 0; k < batch; k++) {
      const a = new Array(655360).fill(0);
      for (let i = 0; i < a.length; i++) a[i] = i;
      rows.push(a);
    }
    await sleep(150);
  }
  console.log('imported 30');
})();
