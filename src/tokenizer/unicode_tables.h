// Unicode character classes for the GPT-2 pre-tokenizer: letters (\p{L}), numbers (\p{N}) and
// White_Space (\s), from Unicode 16.0: the version tiktoken classifies with, so that GPT-2 ids match
// its ids on text with characters added later. The range tables are generated
// (scripts/gen_unicode_tables.js); char_class() answers from a 64K lookup table for the Basic
// Multilingual Plane and by binary search above it.
#pragma once
#include <cstddef>
#include <cstdint>

namespace llmtrain::unicode {

struct CodeRange {
  uint32_t first, last;  // inclusive
};

extern const char kUnicodeVersion[];  // "16.0.0"
extern const CodeRange kLetterRanges[];
extern const size_t kLetterRangeCount;
extern const CodeRange kNumberRanges[];
extern const size_t kNumberRangeCount;
extern const CodeRange kWhiteSpaceRanges[];
extern const size_t kWhiteSpaceRangeCount;

enum CharClass : uint8_t { kOther = 0, kLetter = 1, kNumber = 2, kSpace = 3 };

// Class of code point cp (anything not a letter, number or white space, including unassigned and
// out-of-range values, is kOther).
CharClass char_class(uint32_t cp);

}  // namespace llmtrain::unicode
