// Small helpers shared by the unit tests.
#pragma once
#include <stdlib.h>

#include <filesystem>
#include <stdexcept>
#include <string>

#include "llmtrain/config.h"
#include "llmtrain/error.h"

namespace llmtrain::test {

// The message of the InputError that f() throws; "<not an InputError> ..." for any other
// exception and "<no exception>" when it returns, so a CHECK on the text fails visibly.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("<not an InputError> ") + e.what();
  }
  return "<no exception>";
}

// A tiny GPT-2 or LLaMA (C=16, 4 heads, vocabulary 50 padded to 64, T<=8; LLaMA with 2 KV heads and
// an untied head) that finite differences and whole-model checks can afford.
inline ModelConfig tiny_model(const std::string& arch, int n_layer = 2) {
  ModelConfig c;
  c.arch = arch;
  c.n_layer = n_layer;
  c.n_embd = 16;
  c.n_head = 4;
  c.vocab_size = 50;
  c.padded_vocab_size = 64;
  c.max_seq_len = 8;
  if (arch == "llama") {
    c.n_kv_head = 2;
    c.intermediate_size = 24;
    c.bias = false;
    c.tie_embeddings = false;
    c.norm_eps = 1e-6f;
  } else {
    c.intermediate_size = 64;
  }
  return c;
}

// A fresh directory under /tmp (named after `tag`), removed with everything in it at scope exit.
struct TempDir {
  std::string path;
  explicit TempDir(const std::string& tag = "test") {
    std::string tmpl = "/tmp/llmtrain_test_" + tag + "_XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed for " + tmpl);
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return path + "/" + name; }
};

}  // namespace llmtrain::test
