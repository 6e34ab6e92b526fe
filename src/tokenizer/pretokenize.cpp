// GPT-2 pre-tokenizer as a scanner (see pretokenize.h for the regex it reproduces). Each
// alternative of the regex becomes a branch on the class of the first one or two characters; the
// greedy `\s+(?!\S)` backtracking reduces to "a white-space run not at the end of the text gives
// back its last character" when the run is longer than one character.
#include "tokenizer/pretokenize.h"

#include <algorithm>
#include <array>
#include <vector>

#include "tokenizer/unicode_tables.h"

namespace llmtrain {
namespace unicode {
namespace {

bool in_ranges(const CodeRange* r, size_t n, uint32_t cp) {
  const CodeRange* end = r + n;
  const CodeRange* it = std::upper_bound(r, end, cp, [](uint32_t v, const CodeRange& x) { return v < x.first; });
  return it != r && cp <= (it - 1)->last;
}

CharClass slow_class(uint32_t cp) {
  if (in_ranges(kLetterRanges, kLetterRangeCount, cp)) return kLetter;
  if (in_ranges(kNumberRanges, kNumberRangeCount, cp)) return kNumber;
  if (in_ranges(kWhiteSpaceRanges, kWhiteSpaceRangeCount, cp)) return kSpace;
  return kOther;
}

// The Basic Multilingual Plane holds nearly all text; a byte per code point answers it directly.
struct BmpTable {
  std::vector<uint8_t> cls;
  BmpTable() : cls(0x10000) {
    for (uint32_t cp = 0; cp < 0x10000; ++cp) cls[cp] = slow_class(cp);
  }
};

const BmpTable& bmp() {
  static const BmpTable t;
  return t;
}

}  // namespace

CharClass char_class(uint32_t cp) {
  if (cp < 0x10000) return static_cast<CharClass>(bmp().cls[cp]);
  return slow_class(cp);
}

}  // namespace unicode

namespace {

using unicode::CharClass;
constexpr uint32_t kInvalid = 0xFFFFFFFFu;  // a byte that is not part of valid UTF-8

// Decodes the character at s[i] (i < n) into cp and its byte length; a byte that does not start a
// well-formed sequence (Unicode Table 3-7: no overlongs, surrogates or values above U+10FFFF) is
// one kInvalid character of length 1.
inline uint32_t decode_utf8(const unsigned char* s, size_t n, size_t i, size_t* len) {
  unsigned c = s[i];
  *len = 1;
  if (c < 0x80) return c;
  auto cont = [&](size_t k, unsigned lo, unsigned hi) { return i + k < n && s[i + k] >= lo && s[i + k] <= hi; };
  if (c >= 0xC2 && c <= 0xDF) {
    if (!cont(1, 0x80, 0xBF)) return kInvalid;
    *len = 2;
    return ((c & 0x1F) << 6) | (s[i + 1] & 0x3F);
  }
  if (c >= 0xE0 && c <= 0xEF) {
    unsigned lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    if (!cont(1, lo, hi) || !cont(2, 0x80, 0xBF)) return kInvalid;
    *len = 3;
    return ((c & 0x0F) << 12) | ((s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F);
  }
  if (c >= 0xF0 && c <= 0xF4) {
    unsigned lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    if (!cont(1, lo, hi) || !cont(2, 0x80, 0xBF) || !cont(3, 0x80, 0xBF)) return kInvalid;
    *len = 4;
    return ((c & 0x07) << 18) | ((s[i + 1] & 0x3F) << 12) | ((s[i + 2] & 0x3F) << 6) | (s[i + 3] & 0x3F);
  }
  return kInvalid;
}

struct AsciiClasses {
  std::array<uint8_t, 128> cls{};
  AsciiClasses() {
    for (unsigned c = 0; c < 128; ++c) cls[c] = unicode::char_class(c);
  }
};
const AsciiClasses kAscii;

// Class and byte length of the character at s[i].
inline CharClass class_at(const unsigned char* s, size_t n, size_t i, size_t* len) {
  if (s[i] < 0x80) {
    *len = 1;
    return static_cast<CharClass>(kAscii.cls[s[i]]);
  }
  uint32_t cp = decode_utf8(s, n, i, len);
  return cp == kInvalid ? unicode::kOther : unicode::char_class(cp);
}

// End of the run of characters of class `cls` that starts at i.
inline size_t run_end(const unsigned char* s, size_t n, size_t i, CharClass cls) {
  while (i < n) {
    if (s[i] < 0x80) {
      if (kAscii.cls[s[i]] != cls) break;
      ++i;
      continue;
    }
    size_t len;
    if (class_at(s, n, i, &len) != cls) break;
    i += len;
  }
  return i;
}

}  // namespace

size_t gpt2_next_piece(std::string_view text, size_t pos) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  const unsigned char c0 = s[pos];

  // 's|'t|'re|'ve|'m|'ll|'d  (ASCII apostrophe, lower case only, as in GPT-2)
  if (c0 == '\'' && pos + 1 < n) {
    const unsigned char c1 = s[pos + 1];
    if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') return pos + 2;
    if (pos + 2 < n) {
      const unsigned char c2 = s[pos + 2];
      if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) return pos + 3;
    }
  }

  size_t len0;
  CharClass cls0 = class_at(s, n, pos, &len0);
  // ` ?\p{L}+`, ` ?\p{N}+`, ` ?[^\s\p{L}\p{N}]+`: one U+0020 may lead a run of any other class.
  if (c0 == ' ' && pos + 1 < n) {
    size_t len1;
    CharClass cls1 = class_at(s, n, pos + 1, &len1);
    if (cls1 != unicode::kSpace) return run_end(s, n, pos + 1 + len1, cls1);
  }
  if (cls0 != unicode::kSpace) return run_end(s, n, pos + len0, cls0);

  // `\s+(?!\S)` then `\s+`: the white-space run; if text follows, its last character (when the
  // run has more than one) is left to lead the next piece.
  size_t last = pos, i = pos + len0;
  while (i < n) {
    size_t len;
    if (class_at(s, n, i, &len) != unicode::kSpace) break;
    last = i;
    i += len;
  }
  if (i == n || last == pos) return i;
  return last;
}

std::vector<std::string_view> gpt2_pretokenize(std::string_view text) {
  std::vector<std::string_view> out;
  for (size_t pos = 0; pos < text.size();) {
    size_t end = gpt2_next_piece(text, pos);
    out.push_back(text.substr(pos, end - pos));
    pos = end;
  }
  return out;
}

}  // namespace llmtrain
