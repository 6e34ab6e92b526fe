#!/usr/bin/env node
// Throughput of tiktoken's "gpt2" encoding (npm `tiktoken`, WebAssembly) on a JSON-lines corpus such
// as the one compare_tiktoken.js writes, with N worker threads (documents split into N parts of equal
// bytes), for comparison with `llmtrain tokenize --threads N` on the same file (docs/data.md, Speed).
// Prints the encode phase's wall time and the process CPU time it used (all threads).
//
//   NODE_PATH=/tmp/tk/node_modules node scripts/data/bench_tiktoken.js /tmp/tkcmp/corpus.jsonl 2
'use strict';
const fs = require('fs');
const { Worker, isMainThread, parentPort, workerData } = require('worker_threads');

if (!isMainThread) {
  const { get_encoding } = require('tiktoken');
  const enc = get_encoding('gpt2');
  parentPort.postMessage('ready');
  parentPort.once('message', () => {
    let n = 0;
    for (const d of workerData.docs) n += enc.encode_ordinary(d).length;
    parentPort.postMessage(n);
  });
  return;
}

const [file, nArg] = process.argv.slice(2);
const N = Number(nArg || 1);
const docs = fs.readFileSync(file, 'utf8').split('\n').filter((l) => l.length).map((l) => JSON.parse(l).text);
const bytes = docs.reduce((a, d) => a + Buffer.byteLength(d), 0);
const parts = Array.from({ length: N }, () => []);
let acc = 0;
for (const d of docs) {
  parts[Math.min(N - 1, Math.floor((acc * N) / bytes))].push(d);
  acc += Buffer.byteLength(d);
}
// Start the workers and load the encoding first, so only encoding is timed.
const workers = parts.map((p) => new Worker(__filename, { workerData: { docs: p } }));
Promise.all(workers.map((w) => new Promise((r) => w.once('message', r)))).then(() => {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  Promise.all(workers.map((w) => new Promise((r) => { w.once('message', r); w.postMessage('go'); }))).then((counts) => {
    const wall = Number(process.hrtime.bigint() - t0) / 1e9;
    const c = process.cpuUsage(c0);
    const cpu = (c.user + c.system) / 1e6;
    const tokens = counts.reduce((a, b) => a + b, 0);
    console.log(`tiktoken ${N} thread(s): ${(bytes / 1e6).toFixed(2)} MB, ${tokens} tokens in ${wall.toFixed(2)} s wall: ` +
      `${(bytes / 1e6 / wall).toFixed(2)} MB/s; ${cpu.toFixed(2)} s CPU: ${(bytes / 1e6 / cpu).toFixed(2)} MB per CPU second`);
    workers.forEach((w) => w.terminate());
  });
});
