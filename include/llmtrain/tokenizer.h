// Tokenizers: GPT-2 byte-level BPE (our own implementation, exact GPT-2/tiktoken ids) and
// SentencePiece models (LLaMA, T5, spm_train output) through Debian's libsentencepiece.
// Everything that turns text into ids or ids into text (tokenize, inspect, sampling) goes
// through this interface.
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace llmtrain {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::string name() const = 0;  // "gpt2", "sentencepiece:<model file>"
  // Plain text to ids; special-token text such as "<|endoftext|>" is NOT treated as special
  // unless allow_special is set (then it maps to its id), like tiktoken's encode_ordinary vs encode.
  virtual std::vector<int32_t> encode(std::string_view text, bool allow_special = false) const = 0;
  // Ids to text (bytes: GPT-2 round-trips any input exactly, invalid UTF-8 included). Ids outside
  // the vocabulary (a model's padding rows) come out as "<|unk_N|>" instead of throwing.
  virtual std::string decode(const int32_t* ids, size_t n) const = 0;
  std::string decode(const std::vector<int32_t>& ids) const { return decode(ids.data(), ids.size()); }
  virtual int32_t vocab_size() const = 0;
  // The token that starts every document in a shard (GPT-2: <|endoftext|> 50256; SentencePiece: BOS).
  virtual int32_t doc_delimiter() const = 0;
  // Optional token appended after each document (SentencePiece EOS when configured), -1 if none.
  virtual int32_t doc_end() const { return -1; }
};

// "gpt2" (the bundled vocabulary in <source>/data/gpt2 or $LLMTRAIN_DATA_DIR/gpt2),
// a directory holding a GPT-2 vocabulary (see Gpt2VocabFiles), or a SentencePiece .model file.
// Throws InputError naming the spec when it cannot be loaded.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& spec);

// The two files of a GPT-2 vocabulary: OpenAI's encoder.json + vocab.bpe, or the same contents
// under Hugging Face's names vocab.json + merges.txt.
struct Gpt2VocabFiles {
  std::string encoder, merges;
};
// The GPT-2 vocabulary a tokenizer spec names: "gpt2" (the bundled one; InputError if it cannot be
// found) or a directory holding either pair of files; nullopt for anything else.
std::optional<Gpt2VocabFiles> gpt2_vocab_files(const std::string& spec);

// GPT-2 BPE from its two files.
std::unique_ptr<Tokenizer> make_gpt2_tokenizer(const Gpt2VocabFiles& files);

struct SentencePieceOptions {
  bool add_bos = true;   // documents start with BOS (the delimiter); false: EOS is the delimiter instead
  bool add_eos = false;  // documents also end with EOS (doc_end()), when add_bos
  // A model without a BOS piece (T5's spiece.model) delimits documents with EOS instead of failing
  // when add_bos is asked for; EOS then starts every document and add_eos has no further effect.
  bool eos_without_bos = true;
};
std::unique_ptr<Tokenizer> make_sentencepiece_tokenizer(const std::string& model_path,
                                                        const SentencePieceOptions& opts = {});

}  // namespace llmtrain
