// SentencePiece tokenizers (LLaMA-1/2, T5, anything spm_train writes) through Debian's
// libsentencepiece. Documents are delimited by BOS at their start (SentencePieceOptions::add_bos,
// the default; with add_bos off the delimiter is EOS instead) and optionally closed by EOS
// (add_eos). With allow_special, the literal texts of the control pieces (e.g. "<s>", "</s>") map
// to their ids; otherwise they are ordinary text, as with GPT-2's <|endoftext|>.
#include <sentencepiece_processor.h>

#include <algorithm>

#include "llmtrain/error.h"
#include "llmtrain/tokenizer.h"
#include "tokenizer/specials.h"

namespace llmtrain {
namespace {

class SentencePieceTokenizer final : public Tokenizer {
 public:
  SentencePieceTokenizer(const std::string& path, const SentencePieceOptions& opts) : path_(path), opts_(opts) {
    auto st = sp_.Load(path);
    if (!st.ok()) throw InputError(path + ": not a SentencePiece model: " + st.ToString());
    const int bos = sp_.bos_id(), eos = sp_.eos_id();
    if (opts.add_bos && bos < 0 && opts.eos_without_bos && eos >= 0) {
      opts_.add_bos = false;  // T5-style model (no BOS piece): EOS delimits the documents
      opts_.add_eos = false;
      delim_ = eos;
    } else if (opts.add_bos) {
      if (bos < 0) throw InputError(path + ": the model has no BOS piece, needed as the document delimiter (add_bos)");
      delim_ = bos;
    } else {
      if (eos < 0) throw InputError(path + ": the model has no EOS piece to delimit documents with (add_bos is off)");
      delim_ = eos;
    }
    if (opts_.add_eos) {
      if (eos < 0) throw InputError(path + ": the model has no EOS piece (add_eos)");
      if (opts_.add_bos) end_ = eos;  // without BOS, EOS already starts every document
    }
    for (int id = 0; id < sp_.GetPieceSize(); ++id)
      if (sp_.IsControl(id) && !sp_.IdToPiece(id).empty()) controls_.emplace_back(sp_.IdToPiece(id), id);
  }

  std::string name() const override { return "sentencepiece:" + path_; }
  int32_t vocab_size() const override { return sp_.GetPieceSize(); }
  int32_t doc_delimiter() const override { return delim_; }
  int32_t doc_end() const override { return end_; }

  std::vector<int32_t> encode(std::string_view text, bool allow_special) const override {
    std::vector<int32_t> out;
    if (!allow_special || controls_.empty()) {
      encode_plain(text, out);
      return out;
    }
    split_on_specials(
        text, controls_, [&](std::string_view seg) { encode_plain(seg, out); },
        [&](int id) { out.push_back(id); });
    return out;
  }

  std::string decode(const int32_t* ids, size_t n) const override {
    std::string out, part;
    std::vector<int> run;
    const int V = sp_.GetPieceSize();
    auto flush = [&]() {
      if (run.empty()) return;
      auto st = sp_.Decode(run, &part);
      if (!st.ok()) throw RuntimeError(path_ + ": SentencePiece decode failed: " + st.ToString());
      out += part;
      run.clear();
    };
    for (size_t i = 0; i < n; ++i) {
      if (ids[i] >= 0 && ids[i] < V) {
        run.push_back(ids[i]);
      } else {
        flush();  // ids past the vocabulary (padded model rows) have no text
        out += "<|unk_" + std::to_string(ids[i]) + "|>";
      }
    }
    flush();
    return out;
  }

 private:
  void encode_plain(std::string_view text, std::vector<int32_t>& out) const {
    if (text.empty()) return;
    std::vector<int> ids;
    auto st = sp_.Encode(text, &ids);
    if (!st.ok()) throw RuntimeError(path_ + ": SentencePiece encode failed: " + st.ToString());
    out.insert(out.end(), ids.begin(), ids.end());
  }

  std::string path_;
  SentencePieceOptions opts_;
  sentencepiece::SentencePieceProcessor sp_;
  int32_t delim_ = -1, end_ = -1;
  std::vector<std::pair<std::string, int>> controls_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_sentencepiece_tokenizer(const std::string& model_path, const SentencePieceOptions& opts) {
  return std::make_unique<SentencePieceTokenizer>(model_path, opts);
}

}  // namespace llmtrain
