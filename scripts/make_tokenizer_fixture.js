#!/usr/bin/env node
// Writes tests/fixtures/gpt2_tokens/{sample.txt,sample.ids}: a varied UTF-8 text and its ids under
// tiktoken's "gpt2" encoding (encode_ordinary), which tests/test_tokenizer.cpp requires our GPT-2
// tokenizer to reproduce exactly. The text mixes English prose and Markdown (this repository's
// docs), C++ (this repository's sources), hand-written sentences in many scripts, contractions,
// numbers, white-space runs, long unbroken runs (CJK, DNA, punctuation, emoji) that exercise the
// long-piece merge path, and seeded random strings drawn from letters, digits, marks, symbols and
// white space of many scripts. Random characters come only from blocks assigned long ago (Unicode
// <= 13), so that the Unicode version of tiktoken's regex tables and of ours cannot disagree.
//
//   (cd /tmp && npm install tiktoken@1.0.22)
//   NODE_PATH=/tmp/node_modules node scripts/make_tokenizer_fixture.js
'use strict';
const fs = require('fs');
const path = require('path');
const { get_encoding } = require('tiktoken');

const root = path.resolve(__dirname, '..');
const outDir = path.join(root, 'tests', 'fixtures', 'gpt2_tokens');

// mulberry32: a small seeded PRNG, so the fixture is reproducible.
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
const rand = rng(20240520);
const pick = (arr) => arr[Math.floor(rand() * arr.length)];
const between = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));

function readIf(rel, maxBytes) {
  const p = path.join(root, rel);
  if (!fs.existsSync(p)) return '';
  return fs.readFileSync(p, 'utf8').slice(0, maxBytes);
}

const parts = [];

// 1. Prose and Markdown, code.
for (const rel of ['README.md', 'docs/architecture.md', 'docs/configs.md', 'data/demo/README.md']) parts.push(readIf(rel, 30000));
for (const rel of ['src/tokenizer/pretokenize.cpp', 'src/tokenizer/gpt2_bpe.cpp', 'scripts/make_demo_data.sh']) parts.push(readIf(rel, 20000));

// 2. Hand-written corner cases.
parts.push(`
It's, I'm, you're, we've, they'll, she'd, don't, can't, won't; IT'S, I'M, YOU'RE (upper case is not special).
's 't 're 've 'm 'll 'd ''s '''re x's O'Neil rock'n'roll ’s ‘quoted’ "double" «guillemets» „Gänsefüßchen“
 's  's\t's\n's — leading spaces before contractions.
Numbers: 0 7 42 123 1234 12345 123456789 3.14159 2,718,281 1e-9 0x7FFF 1_000_000 -17 +3 ½ ¾ ² ³ ⁴ ₁₂ Ⅻ ⅷ ١٢٣٤ ४२ 〇一二三 ①②③ 𝟙𝟚𝟛
Whitespace: a  b   c    d\t\te\n\nf\r\ng \u00a0h\u2003i\u3000j\u2028k\u2029l \u0085m   \t \n  \n
Trailing spaces then words   \n   word\n\n\n    indented\n\t\ttabbed
<|endoftext|> is plain text for encode_ordinary: <|endoftext|><|endoftext|> and <|endoftext| >.
English: The quick brown fox jumps over the lazy dog. Sphinx of black quartz, judge my vow!
Deutsch: Falsches Üben von Xylophonmusik quält jeden größeren Zwerg. Straße, Maßstab, Fußgängerübergänge.
Français: Voix ambiguë d'un cœur qui, au zéphyr, préfère les jattes de kiwis. L'œuvre d'art, aujourd'hui.
Español: El pingüino Wenceslao hizo kilómetros bajo exhaustiva lluvia y frío; añoraba a su querido cachorro. ¿Qué? ¡Sí!
Português: À noite, vovô Kowalsky vê o ímã cair no pé do pinguim queixoso e vovó põe açúcar no chá de tâmaras.
Polski: Zażółć gęślą jaźń. Pchnąć w tę łódź jeża lub ośm skrzyń fig.
Türkçe: Pijamalı hasta yağız şoföre çabucak güvendi. İstanbul, ılık, IĞDIR.
Русский: Съешь же ещё этих мягких французских булок, да выпей чаю. Ёлка, ёж.
Ελληνικά: Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. Τάχιστη αλώπηξ βαφής ψημένη γη, δρασκελίζει υπέρ νωθρού κυνός.
עברית: דג סקרן שט בים מאוכזב ולפתע מצא חברה. שָׁלוֹם עֲלֵיכֶם
العربية: نص حكيم له سر قاطع وذو شأن عظيم مكتوب على ثوب أخضر ومغلف بجلد أزرق. ٱلسَّلَامُ عَلَيْكُمْ
فارسی: «الا یا اَیُّهَا السّاقی! اَدِرْ کَأساً و ناوِلْها!» که عشق آسان نمود اول، ولی افتاد مشکل‌ها!
हिन्दी: ऋषियों को सताने वाले दुष्ट राक्षसों के राजा रावण का सर्वनाश करने वाले विष्णुवतार भगवान श्रीराम। १२३ क्षत्रिय
বাংলা: আমি বাংলায় গান গাই। தமிழ்: யாமறிந்த மொழிகளிலே தமிழ்மொழி போல் இனிதாவது எங்கும் காணோம்.
ไทย: เป็นมนุษย์สุดประเสริฐเลิศคุณค่า กว่าบรรดาฝูงสัตว์เดรัจฉาน
日本語: いろはにほへと ちりぬるを わかよたれそ つねならむ。東京都千代田区、2024年5月20日。カタカナ　ﾊﾝｶｸ
中文：我能吞下玻璃而不伤身体。天地玄黄，宇宙洪荒。日月盈昃，辰宿列张。２０２４年，ＡＢＣ。
한국어: 다람쥐 헌 쳇바퀴에 타고파. 키스의 고유조건은 입술끼리 만나야 하고 특별한 기술은 필요치 않다.
Tiếng Việt: Tôi có thể ăn thủy tinh mà không hại gì. Ngữ pháp, dấu thanh: à á ả ã ạ ầ ấ ẩ ẫ ậ.
Combining marks: e\u0301 a\u0308 o\u0302\u0323 n\u0303 Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034d A\u030a\u0301 q\u0307\u0323
Emoji: 😀 😃😄 👍🏽 👩‍💻 👨‍👩‍👧‍👦 🏳️‍🌈 ❤️ ✔︎ 🇫🇷🇯🇵 1️⃣ #️⃣ 🙂🙃 ☕ ⚽️
Symbols: © ® ™ § ¶ † ‡ • … ‰ ′ ″ € £ ¥ ₹ ₿ ∑ ∏ √ ∞ ≈ ≠ ≤ ≥ ∫ ∂ ∇ ⊂ ⊃ ∈ ∉ → ⇒ ↔ ⌘ ⌥ ␣ ♠ ♣ ♥ ♦ ♪ ♫ ★ ☆ ☂ ☃
Math: x² + y² = z²; ∀ε>0 ∃δ>0: |x−a|<δ ⇒ |f(x)−f(a)|<ε. 𝔸𝔹ℂ 𝒜ℬ𝒞 𝐀𝐁𝐂 ℏ ℵ₀
Mixed scripts: abcабвαβγאבג一二三abc123абв456 iPhone15Pro Python3.11 C++17 x86_64 UTF-8 ÀÉÎÕÜàéîõü
URLs & code: https://example.com/path?q=1&r=two#frag user@example.org C:\\Users\\me\\file.txt /usr/local/bin
    def f(x):\n        return {"a": [1, 2, 3], 'b': None}  # comment\n\nif (a && b || !c) { x += y << 2; }
JSON: {"id": 12345, "text": "Hello, world!", "tags": ["a", "b"], "nested": {"k": [true, false, null]}}
`);

// 3. Long unbroken runs (pieces far longer than the short-piece limit).
let dna = '';
for (let i = 0; i < 1500; i++) dna += pick('ACGT');
parts.push(dna + '\n');
parts.push('Pneumonoultramicroscopicsilicovolcanoconiosis'.repeat(7) + '\n');
parts.push('=-'.repeat(300) + '\n' + '-'.repeat(400) + '\n' + '*'.repeat(257) + '\n');
parts.push('😀🎉🚀✨🔥'.repeat(40) + '\n');
parts.push('天地玄黄宇宙洪荒日月盈昃辰宿列张寒来暑往秋收冬藏闰余成岁律吕调阳云腾致雨露结为霜金生丽水玉出昆冈'.repeat(6) + '\n');
parts.push('0123456789'.repeat(50) + '\n');
parts.push(' '.repeat(300) + 'x' + '\n'.repeat(120) + 'y' + '\t'.repeat(50) + ' z\n');
let b64 = '';
const b64chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
for (let i = 0; i < 2000; i++) b64 += b64chars[Math.floor(rand() * 64)];
parts.push(b64 + '==\n');

// 4. Seeded random strings from many classes of characters.
const ranges = {
  latin: [[0x41, 0x5a], [0x61, 0x7a], [0xc0, 0xff], [0x100, 0x17f], [0x180, 0x24f]],
  greekCyrillic: [[0x391, 0x3a9], [0x3b1, 0x3c9], [0x410, 0x44f], [0x450, 0x45f]],
  rtl: [[0x5d0, 0x5ea], [0x621, 0x64a], [0x660, 0x669], [0x6f0, 0x6f9]],
  indic: [[0x905, 0x939], [0x93e, 0x94d], [0x966, 0x96f], [0x985, 0x9b9], [0xb95, 0xbb9]],
  thai: [[0xe01, 0xe30], [0xe31, 0xe3a], [0xe50, 0xe59]],
  cjk: [[0x3041, 0x3096], [0x30a1, 0x30fa], [0x4e00, 0x9fa5], [0xac00, 0xd7a3], [0xff10, 0xff19], [0xff21, 0xff3a]],
  marks: [[0x300, 0x36f], [0x483, 0x487], [0x591, 0x5bd], [0x64b, 0x65f], [0x900, 0x903], [0x20d0, 0x20f0]],
  numbers: [[0x30, 0x39], [0xb2, 0xb3], [0xbc, 0xbe], [0x2160, 0x2188], [0x2460, 0x249b], [0x2070, 0x2079], [0x1d7ce, 0x1d7ff]],
  symbols: [[0x21, 0x2f], [0x3a, 0x40], [0x5b, 0x60], [0x7b, 0x7e], [0xa1, 0xbf], [0x2010, 0x2027], [0x2190, 0x21ff],
            [0x2200, 0x22ff], [0x2500, 0x257f], [0x25a0, 0x25ff], [0x2600, 0x26ff], [0x3000, 0x3003], [0xff01, 0xff0f]],
  emoji: [[0x1f300, 0x1f5ff], [0x1f600, 0x1f64f], [0x1f680, 0x1f6c5], [0x1f900, 0x1f9ff]],
  space: [[0x20, 0x20], [0x20, 0x20], [0x20, 0x20], [0x9, 0xd], [0xa0, 0xa0], [0x2000, 0x200a], [0x3000, 0x3000], [0x2028, 0x2029]],
  quote: [[0x27, 0x27], [0x27, 0x27], [0x2019, 0x2019]],
  contraction: [[0x73, 0x74], [0x6d, 0x6d], [0x64, 0x64], [0x6c, 0x6c], [0x72, 0x72], [0x76, 0x76], [0x65, 0x65]],
};
const classNames = Object.keys(ranges);
function randomChar(cls) {
  const rs = ranges[cls];
  const [lo, hi] = pick(rs);
  return String.fromCodePoint(between(lo, hi));
}
let random = '';
for (let line = 0; line < 150; line++) {
  let s = '';
  const n = between(5, 80);
  // Each line favours a few classes, so runs of one class (words) form as well as mixtures.
  const favoured = [pick(classNames), pick(classNames), 'space', 'latin'];
  for (let i = 0; i < n; i++) {
    const cls = rand() < 0.8 ? pick(favoured) : pick(classNames);
    const run = between(1, 6);
    for (let k = 0; k < run; k++) s += randomChar(cls);
  }
  random += s + pick(['\n', '\n', '\n\n', ' \n', '\r\n', '\t\n', '  \n\n']);
}
parts.push(random);
parts.push('\nThe end.   \n\n  ');  // ends with a white-space run

const text = parts.join('\n');
const enc = get_encoding('gpt2');
const ids = enc.encode_ordinary(text);
enc.free();

fs.mkdirSync(outDir, { recursive: true });
fs.writeFileSync(path.join(outDir, 'sample.txt'), text, 'utf8');
let out = '';
for (let i = 0; i < ids.length; i += 20) out += Array.from(ids.slice(i, i + 20)).join(' ') + '\n';
fs.writeFileSync(path.join(outDir, 'sample.ids'), out);
console.log(`wrote ${Buffer.byteLength(text, 'utf8')} bytes of text and ${ids.length} ids to ${path.relative(root, outDir)}`);
