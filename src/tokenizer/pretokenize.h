// The GPT-2 pre-tokenizer: splits text into the pieces that BPE encodes one at a time, exactly as
// GPT-2's regex  's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// does (tiktoken's "gpt2" pattern), but as a hand-written scanner over UTF-8 bytes. Bytes that are
// not valid UTF-8 count one by one as "other" characters (neither letter, number nor space), as
// the regex would see them after Python's surrogateescape decoding, so any byte string splits
// losslessly.
#pragma once
#include <cstddef>
#include <string_view>
#include <vector>

namespace llmtrain {

// End offset of the piece that starts at `pos` (pos < text.size()); always > pos.
size_t gpt2_next_piece(std::string_view text, size_t pos);

// All pieces of `text`, in order; they concatenate back to `text`.
std::vector<std::string_view> gpt2_pretokenize(std::string_view text);

}  // namespace llmtrain
