#!/usr/bin/env node
// Writes the Parquet fixtures of tests/test_parquet.cpp with two writers independent of our reader:
// DuckDB (@duckdb/node-api: data pages v1, PLAIN / PLAIN_DICTIONARY, and with PARQUET_VERSION v2
// DELTA_LENGTH_BYTE_ARRAY / RLE_DICTIONARY) and hyparquet-writer (data pages v2, DELTA_BYTE_ARRAY,
// small pages and row groups). The strings come from this script, not from reading the files back,
// and go into tests/fixtures/parquet/<name>.expected.json: the fixture's row count, leaf column
// names and, per string column, one entry per row (null for a null).
//
// Run (the npm packages go in a scratch directory, never in the repository):
//   mkdir -p /tmp/pqgen && cd /tmp/pqgen && npm init -y && npm install @duckdb/node-api hyparquet-writer
//   NODE_PATH=/tmp/pqgen/node_modules node scripts/make_parquet_fixtures.mjs            # fixtures
//   NODE_PATH=/tmp/pqgen/node_modules node scripts/make_parquet_fixtures.mjs --bench /tmp/bench.parquet
// NODE_PATH does not apply to ES module imports, so the script resolves the packages itself from
// $NODE_PATH (default /tmp/pqgen/node_modules). --bench writes a ~50 MB zstd file of synthetic
// documents for the throughput check (LLMTRAIN_PARQUET_BENCH=/tmp/bench.parquet ./tests "[bench]");
// it is never committed.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { fileURLToPath, pathToFileURL } from 'node:url';

const modulesDir = (process.env.NODE_PATH || '/tmp/pqgen/node_modules').split(':')[0];
const require = createRequire(path.join(modulesDir, 'noop.js'));
const load = async (name) => import(pathToFileURL(require.resolve(name)).href);
const { DuckDBInstance } = await load('@duckdb/node-api');
const { parquetWriteFile } = await load('hyparquet-writer');

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const outDir = path.join(repo, 'tests', 'fixtures', 'parquet');

// Deterministic pseudo-random numbers, so that a rerun writes the same strings.
function rng(seed) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

const UNICODE = [
  'héllo wörld', '日本語のテキスト', '中文文本，标点。', 'emoji 🚀🔥👩‍💻', 'Ελληνικά γράμματα', 'עברית מימין לשמאל',
  'combining e\u0301 and n\u0303', 'Русский текст', '한국어 문장', 'tab\tand\nnewline', 'quotes "double" \'single\' \\slash',
  '', ' ', 'ASCII only', 'mixed ascii 😀 and ñ', '\u{10FFFF} last code point',
];
const WORDS = ['the', 'of', 'and', 'model', 'token', 'learning', 'parquet', 'column', 'data', 'page', 'über', 'café',
  'naïve', '東京', 'ρ', 'graph', 'energy', 'photosynthesis', 'history', 'river', 'mathematics', 'proof', 'lemma'];

// High-cardinality text: varied lengths (up to a few KB) so PLAIN is the writers' choice.
function corpus(n, seed) {
  const r = rng(seed);
  const out = [];
  for (let i = 0; i < n; i++) {
    if (i < UNICODE.length) { out.push(UNICODE[i]); continue; }
    const len = r() < 0.02 ? 300 + Math.floor(r() * 300) : 1 + Math.floor(r() * 12);
    const words = [];
    for (let k = 0; k < len; k++) words.push(WORDS[Math.floor(r() * WORDS.length)]);
    out.push(`doc ${i}: ` + words.join(' '));
  }
  return out;
}

function withNulls(values, every) {
  return values.map((v, i) => (i % every === 3 ? null : v));
}

function lowCardinality(n, seed) {
  const cats = ['news', 'science', 'ciência', '科学', 'sports 🏀', 'history', ''];
  const r = rng(seed);
  return Array.from({ length: n }, () => cats[Math.floor(r() * cats.length)]);
}

// Each fixture gets <name>.expected.json next to it; both must stay under 100 KB.
let written = 0;
function record(file, numRows, columns, strings) {
  const size = fs.statSync(path.join(outDir, file)).size;
  const json = path.join(outDir, file.replace(/\.parquet$/, '.expected.json'));
  fs.writeFileSync(json, JSON.stringify({ file, num_rows: numRows, columns, strings }) + '\n');
  const jsize = fs.statSync(json).size;
  if (size > 100 * 1024 || jsize > 100 * 1024) throw new Error(`${file}: ${size} + ${jsize} bytes, fixtures must stay under 100 KB`);
  ++written;
  console.log(`${file}: ${numRows} rows, ${size} bytes (+ ${jsize} bytes expected)`);
}

// DuckDB: load the columns through the appender (exact strings, nulls), then COPY ... TO.
async function duckdbWrite(con, file, cols, options) {
  const names = Object.keys(cols);
  const n = cols[names[0]].length;
  await con.run('DROP TABLE IF EXISTS t');
  await con.run(`CREATE TABLE t (id INTEGER, ${names.map((c) => `"${c}" VARCHAR`).join(', ')})`);
  const app = await con.createAppender('t');
  for (let i = 0; i < n; i++) {
    app.appendInteger(i);
    for (const c of names) {
      const v = cols[c][i];
      if (v === null) app.appendNull(); else app.appendVarchar(v);
    }
    app.endRow();
  }
  app.closeSync();
  const target = path.join(outDir, file);
  fs.rmSync(target, { force: true });
  await con.run(`COPY (SELECT ${names.map((c) => `"${c}"`).join(', ')} FROM t ORDER BY id) TO '${target}' (FORMAT parquet, ${options})`);
  record(file, n, names, cols);
}

async function makeFixtures() {
  fs.mkdirSync(outDir, { recursive: true });
  const db = await DuckDBInstance.create(':memory:');
  const con = await db.connect();
  await con.run('SET threads TO 1');  // one writer thread keeps row order and row groups deterministic

  const text = corpus(200, 1);
  for (const codec of ['zstd', 'snappy', 'gzip', 'uncompressed']) {
    await duckdbWrite(con, `duckdb_${codec}.parquet`, { text }, `COMPRESSION ${codec}`);
  }
  await duckdbWrite(con, 'duckdb_dictionary.parquet', { category: lowCardinality(2000, 2) }, 'COMPRESSION zstd');
  await duckdbWrite(con, 'duckdb_nulls.parquet',
    { text: withNulls(corpus(200, 3), 5), category: withNulls(lowCardinality(200, 4), 7) }, 'COMPRESSION snappy');
  // DuckDB cuts row groups at multiples of its 2048-row vectors.
  const many = Array.from({ length: 4500 }, (_, i) => (i % 50 ? `rg ${i}` : `rg ${i} ${UNICODE[(i / 50) % UNICODE.length]}`));
  await duckdbWrite(con, 'duckdb_row_groups.parquet', { text: many }, 'COMPRESSION zstd, ROW_GROUP_SIZE 2048');
  await duckdbWrite(con, 'duckdb_v2.parquet',
    { text: withNulls(corpus(250, 5), 6), category: withNulls(lowCardinality(250, 6), 4) },
    'COMPRESSION zstd, PARQUET_VERSION v2');

  // Nested and non-string columns: leaf names, a struct member, and the errors for INT64 and lists.
  {
    const file = 'duckdb_nested.parquet';
    const target = path.join(outDir, file);
    fs.rmSync(target, { force: true });
    await con.run(`COPY (SELECT 'doc ' || i::VARCHAR AS text,
                          {'url': 'https://example.org/' || i::VARCHAR, 'lang': CASE WHEN i % 3 = 0 THEN NULL ELSE 'en' END} AS meta,
                          i::BIGINT AS n, ['a', 'b' || i::VARCHAR] AS tags
                        FROM range(20) r(i) ORDER BY i) TO '${target}' (FORMAT parquet, COMPRESSION snappy)`);
    const idx = Array.from({ length: 20 }, (_, i) => i);
    record(file, 20, ['text', 'meta.url', 'meta.lang', 'n', 'tags.list.element'], {
      text: idx.map((i) => `doc ${i}`),
      'meta.url': idx.map((i) => `https://example.org/${i}`),
      'meta.lang': idx.map((i) => (i % 3 === 0 ? null : 'en')),
    });
  }
  con.closeSync();
  db.closeSync();

  // hyparquet-writer: every data page is DATA_PAGE_V2; small pages and row groups exercise the
  // page and row-group loops.
  const gzip = { GZIP: (bytes) => new Uint8Array(zlib.gzipSync(bytes)) };
  function hyWrite(file, columnData, opts) {
    const target = path.join(outDir, file);
    fs.rmSync(target, { force: true });
    parquetWriteFile({ filename: target, columnData, statistics: false, ...opts });
    const strings = {};
    for (const c of columnData) strings[c.name] = c.data;
    record(file, columnData[0].data.length, columnData.map((c) => c.name), strings);
  }
  hyWrite('hyparquet_v2_dict_snappy.parquet', [
    { name: 'category', data: withNulls(lowCardinality(500, 7), 9), type: 'STRING' },
    { name: 'text', data: withNulls(corpus(500, 8), 4), type: 'STRING' },
  ], { codec: 'SNAPPY', rowGroupSize: 200, pageSize: 1024 });
  hyWrite('hyparquet_v2_delta_gzip.parquet', [
    { name: 'prefixed', data: Array.from({ length: 400 }, (_, i) => `https://example.org/path/${Math.floor(i / 3)}/${UNICODE[i % UNICODE.length]}`), type: 'STRING', encoding: 'DELTA_BYTE_ARRAY' },
    { name: 'lengths', data: withNulls(corpus(400, 9), 5), type: 'STRING', encoding: 'DELTA_LENGTH_BYTE_ARRAY' },
  ], { codec: 'GZIP', compressors: gzip, rowGroupSize: 150, pageSize: 1024 });
  hyWrite('hyparquet_v2_plain_uncompressed.parquet', [
    { name: 'text', data: withNulls(['embedded\u0000nul', ...corpus(150, 10)], 8), type: 'STRING', encoding: 'PLAIN' },
  ], { codec: 'UNCOMPRESSED' });

  console.log(`wrote ${written} fixtures to ${outDir}`);
}

// ~50 MB of zstd-compressed synthetic documents (a 4096-word vocabulary, ~600 words each).
async function makeBench(target) {
  const r = rng(42);
  const vocab = Array.from({ length: 4096 }, () => {
    const n = 2 + Math.floor(r() * 9);
    let w = '';
    for (let k = 0; k < n; k++) w += String.fromCharCode(97 + Math.floor(r() * 26));
    return w;
  });
  const db = await DuckDBInstance.create(':memory:');
  const con = await db.connect();
  const list = `[${vocab.map((w) => `'${w}'`).join(',')}]`;
  fs.rmSync(target, { force: true });
  await con.run(`COPY (SELECT array_to_string(list_transform(range(400 + (hash(i) % 400)::INTEGER),
                         x -> (${list})[1 + (hash(i * 1000 + x) % 4096)::INTEGER]), ' ') AS text
                       FROM range(60000) r(i)) TO '${target}' (FORMAT parquet, COMPRESSION zstd)`);
  const res = await con.runAndReadAll(`SELECT sum(strlen(text))::BIGINT AS bytes, count(*) AS n FROM '${target}'`);
  console.log(`${target}: ${fs.statSync(target).size} bytes on disk, rows/string bytes:`, res.getRows()[0]);
  con.closeSync();
  db.closeSync();
}

const benchAt = process.argv.indexOf('--bench');
if (benchAt >= 0) await makeBench(process.argv[benchAt + 1] || path.join(os.tmpdir(), 'llmtrain_bench.parquet'));
else await makeFixtures();
