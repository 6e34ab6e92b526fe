// Every JSON file under configs/ must load: run configs through load_config (the same strict
// validation `llmtrain train` applies), sweep specs by expanding them and validating each run they
// would train (base config plus that run's overrides). The RMNP paper configs are also checked
// against the paper (Deng et al. 2026, arXiv:2603.20527): every preset shape and every optimizer and
// schedule value of every paper config is pinned to the table (or the authors' scripts) it comes
// from, and the learning-rate sweeps to the grids of Tables 10-14.
#include <catch2/catch.hpp>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <fnmatch.h>

#include "llmtrain/config.h"
#include "llmtrain/error.h"
#include "tools/bench_optim.h"
#include "tools/sweep.h"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace llmtrain;

namespace {

const fs::path kSource = LLMTRAIN_SOURCE_DIR;

std::vector<fs::path> json_files(const fs::path& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".json") out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

json read_json(const fs::path& p) {
  std::ifstream f(p);
  return json::parse(f, nullptr, /*allow_exceptions=*/true, /*ignore_comments=*/true);
}

// Loads a config whose path is relative to the source tree (sweep specs name their bases so).
RunConfig load_from_source(const std::string& path, const std::vector<std::string>& overrides = {}) {
  const fs::path p = fs::path(path).is_absolute() ? fs::path(path) : kSource / path;
  return load_config(p.string(), overrides);
}

}  // namespace

// Files other files inherit from ("base") may be fragments that do not validate on their own; those
// that name a run (run.name) are complete run configs as well.
std::set<fs::path> base_files(const std::vector<fs::path>& files) {
  std::set<fs::path> out;
  for (const auto& f : files) {
    const json j = read_json(f);
    if (!j.is_object() || !j.contains("base") || report::is_sweep_spec_json(j)) continue;
    const json b = j["base"].is_array() ? j["base"] : json::array({j["base"]});
    for (const auto& x : b) out.insert(fs::weakly_canonical(f.parent_path() / x.get<std::string>()));
  }
  return out;
}

TEST_CASE("every config and sweep spec under configs/ validates", "[config][paper]") {
  const auto files = json_files(kSource / "configs");
  REQUIRE(files.size() > 30);
  const auto bases = base_files(files);
  int configs = 0, fragments = 0, specs = 0, sweep_runs = 0;
  for (const auto& f : files) {
    INFO("file: " << f.string());
    json j;
    REQUIRE_NOTHROW(j = read_json(f));
    if (report::is_sweep_spec_json(j)) {
      ++specs;
      report::SweepSpec spec;
      REQUIRE_NOTHROW(spec = report::load_sweep_spec(f.string()));
      std::vector<report::SweepRun> runs;
      REQUIRE_NOTHROW(runs = report::expand_sweep(spec));
      CHECK_FALSE(runs.empty());
      for (const auto& r : runs) {
        INFO("sweep run: " << r.name << " (base " << r.base << ")");
        std::vector<std::string> sets;
        for (const auto& [k, v] : r.overrides) sets.push_back(k + "=" + v.dump());
        sets.push_back("run.dir=" + json(r.dir).dump());
        CHECK_NOTHROW(load_from_source(r.base, sets));
        ++sweep_runs;
      }
    } else if (f.parent_path().filename() == "models") {
      json m;
      CHECK(model_preset(f.stem().string(), m));  // presets load through model.preset
    } else if (bases.count(fs::weakly_canonical(f)) &&
               !load_config_json(f.string()).contains("/run/name"_json_pointer)) {
      ++fragments;  // a shared part, loaded through the files that inherit from it
    } else {
      ++configs;
      CHECK_NOTHROW(load_config(f.string()));
    }
  }
  CHECK(configs >= 50);  // 27 paper runs, 15 authors' variants, the timing base, the CPU reproduction
  CHECK(fragments >= 10);
  CHECK(specs >= 11);
  CHECK(sweep_runs > 0);
}

TEST_CASE("the RMNP paper configs follow the paper's setup", "[config][paper]") {
  // Steps per model (the paper's schedules; 10% warmup everywhere).
  const std::map<std::string, int64_t> steps = {{"gpt2-small", 10000}, {"gpt2-medium", 20000},
                                                {"gpt2-large", 40000}, {"llama-60m", 10000},
                                                {"llama-130m", 20000}, {"llama-350m", 60000}};
  std::map<std::string, std::set<std::string>> optimizers;  // "<model>-<dataset>" -> methods present
  int n = 0;
  for (const auto& f : json_files(kSource / "configs" / "paper")) {
    if (f.parent_path() != kSource / "configs" / "paper") continue;  // sweeps, timing, variants
    INFO("file: " << f.string());
    const std::string stem = f.stem().string();  // e.g. gpt2-small-owt-rmnp
    const auto last = stem.rfind('-');
    const std::string method = stem.substr(last + 1);
    if (method != "adamw" && method != "muon" && method != "rmnp") continue;  // a shared base
    const auto second = stem.rfind('-', last - 1);
    REQUIRE(last != std::string::npos);
    REQUIRE(second != std::string::npos);
    const std::string model = stem.substr(0, second);
    RunConfig c = load_config(f.string());
    ++n;
    REQUIRE(steps.count(model) == 1);
    CHECK(c.run.steps == steps.at(model));
    CHECK(c.run.backend == "cuda");
    CHECK(c.run.name == stem);
    CHECK(c.schedule.value("warmup_frac", -1.0) == Approx(0.1));
    CHECK(c.schedule.value("type", std::string()) == "cosine");
    const json& opt = c.optimizer;
    if (method == "adamw") {
      CHECK_FALSE(opt.contains("matrix"));
      CHECK(opt["adamw"]["type"] == "adamw");
    } else {
      CHECK(opt["matrix"]["type"] == method);
      CHECK(opt["adamw"]["type"] == "adamw");
    }
    optimizers[stem.substr(0, last)].insert(method);
    const int64_t rows = c.data.batch_tokens / c.data.seq_len;
    CHECK(rows * c.data.seq_len == c.data.batch_tokens);
    CHECK(rows % c.data.micro_batch == 0);
    if (c.model.arch == "gpt2") {
      CHECK(c.data.seq_len == 1024);
      CHECK(c.data.batch_tokens == 480 * 1024);
      CHECK(c.data.mode == "packed");
      CHECK_FALSE(c.model.bias);
      CHECK(c.model.scale_attn_by_inverse_layer_idx);  // the authors' nanoGPT scripts default to it
      CHECK(rows % (c.data.micro_batch * 8) == 0);  // also exact on 8 GPUs
      if (method != "adamw") {
        // The authors' GPT-2 runs send every 2-D tensor (embeddings included) to the matrix method.
        CHECK(opt["matrix"]["roles"] == json::array({"hidden_matrix", "embedding", "lm_head"}));
      }
    } else {
      CHECK(c.model.is_llama());
      CHECK(c.data.seq_len == 256);
      CHECK(c.data.batch_tokens == 512 * 256);
      CHECK(c.data.mode == "document");
      CHECK(c.data.tokenizer.size() > 6);
      CHECK(c.data.tokenizer.substr(c.data.tokenizer.size() - 6) == ".model");
      CHECK(c.schedule.value("min_lr_frac", -1.0) == Approx(0.1));
      CHECK(c.model.vocab_size == 32000);
      if (method != "adamw") CHECK_FALSE(opt["matrix"].contains("roles"));  // hidden matrices only
      if (method == "rmnp") CHECK(opt["matrix"]["lr"] == opt["adamw"]["lr"]);
    }
  }
  CHECK(n == 27);  // GPT-2 Small/Medium/Large x 2 datasets and LLaMA 60M/130M/350M, x 3 methods
  for (const auto& [family, methods] : optimizers) {
    INFO("family: " << family);
    CHECK(methods == std::set<std::string>{"adamw", "muon", "rmnp"});
  }
}

namespace {

// Loads every run a sweep spec under the source tree would train (base + overrides).
std::vector<std::pair<report::SweepRun, RunConfig>> sweep_configs(const std::string& spec_path) {
  const report::SweepSpec spec = report::load_sweep_spec((kSource / spec_path).string());
  std::vector<std::pair<report::SweepRun, RunConfig>> out;
  for (const auto& r : report::expand_sweep(spec)) {
    std::vector<std::string> sets;
    for (const auto& [k, v] : r.overrides) sets.push_back(k + "=" + v.dump());
    out.emplace_back(r, load_from_source(r.base, sets));
  }
  return out;
}

}  // namespace

TEST_CASE("the timing sweep covers Table 4's model shapes with Muon and RMNP (Tables 2-3)", "[config][paper]") {
  const auto runs = sweep_configs("configs/paper/sweeps/timing.json");
  REQUIRE(runs.size() == 16);
  std::map<std::string, std::set<std::string>> methods;  // preset -> methods
  for (const auto& [r, c] : runs) {
    INFO("run: " << r.name);
    CHECK(c.data.seq_len == 1024);
    CHECK(c.data.batch_tokens == 16 * 1024);  // batch 16 (Tables 2-3)
    CHECK(c.run.steps == 110);  // 10 untimed + the paper's 100
    methods[c.model.preset].insert(c.optimizer["matrix"]["type"].get<std::string>());
  }
  CHECK(methods.size() == 8);
  for (const char* p : {"gpt2-60m", "gpt2-124m", "gpt2-200m", "gpt2-355m", "gpt2-500m", "gpt2-774m", "gpt2-1.3b",
                        "gpt2-1.5b"}) {
    INFO("preset: " << p);
    CHECK(methods[p] == std::set<std::string>{"muon", "rmnp"});
  }
  CHECK(expand_bench_models({"timing"}) == expand_bench_models({"table4"}));
  const std::vector<std::string> table4 = {"gpt2-60m",  "gpt2-124m", "gpt2-200m", "gpt2-355m",
                                          "gpt2-500m", "gpt2-774m", "gpt2-1.3b", "gpt2-1.5b"};
  CHECK(expand_bench_models({"timing"}) == table4);
}

TEST_CASE("the CPU reproduction sweeps: 2 models x 3 optimizers x 3 lrs on the demo corpus", "[config][paper]") {
  auto runs = sweep_configs("configs/repro/cpu_small_gpt2.json");
  const auto llama = sweep_configs("configs/repro/cpu_small_llama.json");
  runs.insert(runs.end(), llama.begin(), llama.end());
  REQUIRE(runs.size() == 18);
  std::map<std::string, std::set<double>> lrs;  // "<arch>/<method>" -> lrs
  for (const auto& [r, c] : runs) {
    INFO("run: " << r.name);
    CHECK(c.run.threads == 1);  // the two sweeps run side by side on 2 cores
    CHECK(c.run.backend == "cpu");
    CHECK(c.data.train == "data/demo/demo_train_*.bin");
    CHECK(c.data.batch_tokens == 1024);
    CHECK(c.model.vocab_size == 50257);  // the demo shards hold GPT-2 ids
    CHECK(c.schedule.value("warmup_frac", -1.0) == Approx(0.1));
    const json& opt = c.optimizer;
    const std::string method = opt.contains("matrix") ? opt["matrix"]["type"].get<std::string>() : "adamw";
    const double lr = opt.contains("matrix") ? opt["matrix"]["lr"].get<double>() : opt["adamw"]["lr"].get<double>();
    lrs[c.model.arch + "/" + method].insert(lr);
    if (method == "adamw") continue;
    if (c.model.arch == "gpt2") {
      CHECK(opt["matrix"]["roles"] == json::array({"hidden_matrix", "embedding", "lm_head"}));
      CHECK(opt["matrix"]["momentum_form"] == "sum");
    } else {
      CHECK_FALSE(opt["matrix"].contains("roles"));
      if (method == "rmnp") CHECK(opt["matrix"]["lr"] == opt["adamw"]["lr"]);
    }
  }
  CHECK(lrs.size() == 6);
  for (const auto& [k, v] : lrs) {
    INFO(k);
    CHECK(v.size() == 3);
  }
}

// ---------------------------------------------------------------- values pinned to the paper

namespace {

// Model shapes: preset, layers, heads, width, FFN (0: the arch's default 4C), where it comes from.
struct ShapePin {
  const char* preset;
  int layers, heads, width, ffn;
  const char* source;
};
const ShapePin kShapes[] = {
    {"gpt2-60m", 6, 10, 640, 0, "Table 4"},       {"gpt2-124m", 12, 12, 768, 0, "Tables 4-6"},
    {"gpt2-200m", 16, 14, 896, 0, "Table 4"},     {"gpt2-355m", 24, 16, 1024, 0, "Tables 4-6"},
    {"gpt2-500m", 28, 18, 1152, 0, "Table 4"},    {"gpt2-774m", 36, 20, 1280, 0, "Tables 4-6"},
    {"gpt2-1.3b", 44, 24, 1536, 0, "Table 4"},    {"gpt2-1.5b", 48, 25, 1600, 0, "Table 4"},
    {"llama-60m", 8, 8, 512, 1376, "Table 9"},    {"llama-130m", 12, 12, 768, 2048, "Table 9"},
    {"llama-350m", 24, 16, 1024, 2736, "Table 9"},
};

// A value of the resolved configs matching `configs` (globs over the path under configs/paper without
// .json, '|' between alternatives: "gpt2-*-muon|gpt2-*-rmnp", "authors/llama-350m-*"), at a dotted
// key, with its source.
struct Pin {
  const char* configs;
  const char* key;
  const char* value;  // JSON
  const char* source;
};
const char* const kAuthors = "the authors' scripts; the paper is silent";
const Pin kPins[] = {
    // GPT-2, both datasets.
    {"gpt2-*", "data.seq_len", "1024", "Appendix D.2"},
    {"gpt2-*", "data.batch_tokens", "491520", "Appendix D.2: batch 480 x 1024"},
    {"gpt2-*", "data.mode", "\"packed\"", kAuthors},
    {"gpt2-*", "model.bias", "false", "Section 4.1"},
    {"gpt2-*", "model.scale_attn_by_inverse_layer_idx", "true", kAuthors},
    {"gpt2-*", "schedule.type", "\"cosine\"", "Tables 5-6"},
    {"gpt2-*", "schedule.warmup_frac", "0.1", "Tables 5-6: warm-up 1K/2K/4K of 10K/20K/40K"},
    {"gpt2-*", "schedule.min_lr_frac", "0.1", "unused: every GPT-2 group sets its own"},
    {"gpt2-*", "optimizer.adamw.type", "\"adamw\"", "Section 4.1"},
    {"gpt2-*", "optimizer.adamw.beta1", "0.9", "Section 4.1, Table 7"},
    {"gpt2-*", "optimizer.adamw.beta2", "0.95", "Section 4.1, Table 7"},
    {"gpt2-*", "optimizer.adamw.weight_decay", "0.1", "Section 4.1, Table 7"},
    {"gpt2-small-owt-*", "model.n_layer", "12", "Table 5"},
    {"gpt2-small-owt-*", "run.steps", "10000", "Table 5"},
    {"gpt2-medium-owt-*", "model.n_layer", "24", "Table 5"},
    {"gpt2-medium-owt-*", "run.steps", "20000", "Table 5"},
    {"gpt2-large-owt-*", "model.n_layer", "36", "Table 5"},
    {"gpt2-large-owt-*", "run.steps", "40000", "Table 5"},
    {"gpt2-small-fineweb-*", "model.n_layer", "12", "Table 6"},
    {"gpt2-small-fineweb-*", "run.steps", "10000", "Table 6"},
    {"gpt2-medium-fineweb-*", "model.n_layer", "24", "Table 6"},
    {"gpt2-medium-fineweb-*", "run.steps", "20000", "Table 6"},
    {"gpt2-large-fineweb-*", "model.n_layer", "36", "Table 6"},
    {"gpt2-large-fineweb-*", "run.steps", "40000", "Table 6"},
    {"gpt2-small-*", "model.n_embd", "768", "Tables 5-6"},
    {"gpt2-small-*", "model.n_head", "12", "Tables 5-6"},
    {"gpt2-medium-*", "model.n_embd", "1024", "Tables 5-6"},
    {"gpt2-medium-*", "model.n_head", "16", "Tables 5-6"},
    {"gpt2-large-*", "model.n_embd", "1280", "Tables 5-6"},
    {"gpt2-large-*", "model.n_head", "20", "Tables 5-6"},
    // GPT-2 AdamW baselines: Table 7 (FineWeb-Edu); the paper gives no OpenWebText values.
    {"gpt2-small-fineweb-adamw", "optimizer.adamw.lr", "6e-4", "Table 7"},
    {"gpt2-medium-fineweb-adamw", "optimizer.adamw.lr", "3e-4", "Table 7"},
    {"gpt2-large-fineweb-adamw", "optimizer.adamw.lr", "2e-4", "Table 7"},
    {"gpt2-small-owt-adamw", "optimizer.adamw.lr", "6e-4", kAuthors},
    {"gpt2-medium-owt-adamw", "optimizer.adamw.lr", "3e-4", kAuthors},
    {"gpt2-large-owt-adamw", "optimizer.adamw.lr", "2e-4", kAuthors},
    // GPT-2 Muon and RMNP: lr_AdamW per size, the matrix group.
    {"gpt2-small-*-muon|gpt2-small-*-rmnp", "optimizer.adamw.lr", "3e-3", "Appendix D.1, Tables 7 and 10"},
    {"gpt2-medium-*-muon|gpt2-medium-*-rmnp", "optimizer.adamw.lr", "1.5e-3", "Appendix D.1, Tables 7 and 11"},
    {"gpt2-large-*-muon|gpt2-large-*-rmnp", "optimizer.adamw.lr", "1e-3", "Appendix D.1, Table 7"},
    {"gpt2-*-muon|gpt2-*-rmnp", "optimizer.adamw.eps_mode", "\"uncorrected\"", "the authors' code"},
    {"gpt2-*-muon", "optimizer.matrix.type", "\"muon\"", "Section 4.1"},
    {"gpt2-*-rmnp", "optimizer.matrix.type", "\"rmnp\"", "Section 4.1"},
    {"gpt2-*-muon|gpt2-*-rmnp", "optimizer.matrix.momentum", "0.95", "Appendix D.1"},
    {"gpt2-*-muon|gpt2-*-rmnp", "optimizer.matrix.weight_decay", "0.1", "Appendix D.1, Table 7"},
    {"gpt2-*-muon|gpt2-*-rmnp", "optimizer.matrix.momentum_form", "\"sum\"", "the authors' code: Nesterov"},
    {"gpt2-*-muon|gpt2-*-rmnp", "optimizer.matrix.roles", R"(["hidden_matrix", "embedding", "lm_head"])",
     "the authors' code: every 2-D tensor"},
    {"gpt2-small-owt-muon", "optimizer.matrix.lr", "0.02", "Table 10: best 22.86"},
    {"gpt2-small-owt-rmnp", "optimizer.matrix.lr", "0.004", "Table 10: best 22.82"},
    {"gpt2-medium-owt-muon", "optimizer.matrix.lr", "0.02", "Table 11: best 17.38"},
    {"gpt2-medium-owt-rmnp", "optimizer.matrix.lr", "0.002", "Table 11: best 17.31"},
    {"gpt2-large-owt-muon", "optimizer.matrix.lr", "0.00667", "the authors' scripts; no OpenWebText Large grid"},
    {"gpt2-large-owt-rmnp", "optimizer.matrix.lr", "0.003", "the authors' scripts; no OpenWebText Large grid"},
    {"gpt2-small-fineweb-muon|gpt2-small-fineweb-rmnp", "optimizer.matrix.lr", "0.02", "Table 7"},
    {"gpt2-medium-fineweb-muon|gpt2-medium-fineweb-rmnp", "optimizer.matrix.lr", "0.01", "Table 7"},
    {"gpt2-large-fineweb-muon|gpt2-large-fineweb-rmnp", "optimizer.matrix.lr", "0.00667", "Table 7"},
    // LLaMA on C4.
    {"llama-*", "data.seq_len", "256", "Appendix D.2"},
    {"llama-*", "data.batch_tokens", "131072", "Appendix D.2: batch 512 x 256"},
    {"llama-*", "data.mode", "\"document\"", "the GaLore setup the authors' scripts use"},
    {"llama-*", "model.vocab_size", "32000", "the GaLore setup (T5 tokenizer)"},
    {"llama-*", "schedule.type", "\"cosine\"", "Table 9"},
    {"llama-*", "schedule.warmup_frac", "0.1", "Table 9: warm-up 1K/2K/6K of 10K/20K/60K"},
    {"llama-*", "schedule.min_lr_frac", "0.1", kAuthors},
    {"llama-*", "optimizer.adamw.type", "\"adamw\"", "Section 4.1"},
    {"llama-*", "optimizer.adamw.beta1", "0.9", "Section 4.1"},
    {"llama-*", "optimizer.adamw.beta2", "0.95", "Section 4.1"},
    {"llama-*", "optimizer.adamw.weight_decay", "0.1", "Section 4.1"},
    {"llama-*", "optimizer.adamw.eps", "1e-10", kAuthors},
    {"llama-60m-*", "model.n_layer", "8", "Table 9"},
    {"llama-60m-*", "run.steps", "10000", "Table 9"},
    {"llama-130m-*", "model.n_layer", "12", "Table 9"},
    {"llama-130m-*", "run.steps", "20000", "Table 9"},
    {"llama-350m-*", "model.n_layer", "24", "Table 9"},
    {"llama-350m-*", "model.intermediate_size", "2736", "Table 9"},
    {"llama-350m-*", "run.steps", "60000", "Table 9"},
    {"llama-*-adamw", "optimizer.adamw.lr", "1e-3", kAuthors},
    {"llama-*-muon", "optimizer.adamw.lr", "1e-3", kAuthors},
    {"llama-*-muon|llama-*-rmnp", "optimizer.matrix.momentum", "0.95", "Appendix D.1"},
    {"llama-*-muon|llama-*-rmnp", "optimizer.matrix.weight_decay", "0.1", "Appendix D.1"},
    {"llama-*-muon", "optimizer.matrix.type", "\"muon\"", "Section 4.1"},
    {"llama-*-rmnp", "optimizer.matrix.type", "\"rmnp\"", "Section 4.1"},
    {"llama-*-rmnp", "optimizer.adamw.eps_mode", "\"uncorrected\"", "the authors' code"},
    {"llama-60m-c4-muon", "optimizer.matrix.lr", "0.01", "Table 12: best 29.58"},
    {"llama-60m-c4-rmnp", "optimizer.matrix.lr", "0.005", "Table 12: best 28.95"},
    {"llama-60m-c4-rmnp", "optimizer.adamw.lr", "0.005", "the authors' scripts: lr_AdamW = lr_Matrix"},
    {"llama-130m-c4-muon", "optimizer.matrix.lr", "0.01", "Table 13: best 22.42"},
    {"llama-130m-c4-rmnp", "optimizer.matrix.lr", "0.03", "Table 13: best 22.14"},
    {"llama-130m-c4-rmnp", "optimizer.adamw.lr", "0.03", "the authors' scripts: lr_AdamW = lr_Matrix"},
    {"llama-350m-c4-muon", "optimizer.matrix.lr", "0.004", "Table 14: best 16.87"},
    {"llama-350m-c4-rmnp", "optimizer.matrix.lr", "0.005", "the authors' scripts; Table 14's RMNP row has no values"},
    {"llama-350m-c4-rmnp", "optimizer.adamw.lr", "0.005", "the authors' scripts: lr_AdamW = lr_Matrix"},
    // The authors' variants: their scripts' values where the paper differs (docs/reproducing.md).
    {"authors/gpt2-*", "optimizer.matrix.weight_decay", "0.0", "authors' scripts (paper: 0.1, Appendix D.1)"},
    {"authors/gpt2-medium-owt-muon", "optimizer.matrix.lr", "0.01", "authors' scripts (paper: 0.02, Table 11)"},
    {"authors/gpt2-medium-owt-rmnp", "optimizer.matrix.lr", "0.005", "authors' scripts (paper: 0.002, Table 11)"},
    {"authors/gpt2-small-fineweb-rmnp", "optimizer.matrix.lr", "0.003", "authors' scripts (paper: 0.02, Table 7)"},
    {"authors/gpt2-medium-fineweb-rmnp", "optimizer.matrix.lr", "0.002", "authors' scripts (paper: 0.01, Table 7)"},
    {"authors/gpt2-large-fineweb-rmnp", "optimizer.matrix.lr", "0.003", "authors' scripts (paper: 6.67e-3, Table 7)"},
    {"authors/llama-350m-*", "model.n_layer", "16", "authors' llama_350m.json (paper: 24, Table 9)"},
    {"authors/llama-350m-*", "model.intermediate_size", "2816", "authors' llama_350m.json (paper: 2736, Table 9)"},
    {"authors/llama-350m-*", "model.norm_eps", "1e-5", "authors' llama_350m.json (paper silent)"},
};

// The authors' absolute final lr per GPT-2 size, shared by both groups; the paper gives none.
const std::map<std::string, double> kGpt2MinLr = {{"small", 3e-5}, {"medium", 6e-5}, {"large", 1e-5}};

// `pattern`: shell globs separated by '|', any of which may match.
bool matches(const std::string& pattern, const std::string& name) {
  std::stringstream ss(pattern);
  std::string alt;
  while (std::getline(ss, alt, '|'))
    if (::fnmatch(alt.c_str(), name.c_str(), 0) == 0) return true;
  return false;
}

const json* at_dotted(const json& j, const std::string& key) {
  const json* cur = &j;
  std::stringstream ss(key);
  std::string part;
  while (std::getline(ss, part, '.')) {
    if (!cur->is_object() || !cur->contains(part)) return nullptr;
    cur = &(*cur)[part];
  }
  return cur;
}

void leaves(const json& j, const std::string& prefix, std::vector<std::string>& out) {
  if (!j.is_object()) {
    out.push_back(prefix);
    return;
  }
  for (auto it = j.begin(); it != j.end(); ++it) leaves(it.value(), prefix + "." + it.key(), out);
}

bool same_value(const json& a, const json& b) {
  if (a.is_number() && b.is_number()) return a.get<double>() == Approx(b.get<double>()).epsilon(1e-6);  // fp32 fields
  return a == b;
}

// Every run config under configs/paper (not its bases), keyed by its path under configs/paper.
std::map<std::string, RunConfig> paper_runs() {
  std::map<std::string, RunConfig> out;
  const fs::path root = kSource / "configs" / "paper";
  for (const auto& f : json_files(root)) {
    const std::string rel = fs::relative(f, root).replace_extension("").string();
    if (rel.rfind("sweeps/", 0) == 0 || rel.rfind("timing/", 0) == 0) continue;
    const std::string stem = f.stem().string();
    const std::string method = stem.substr(stem.rfind('-') + 1);
    if (method == "adamw" || method == "muon" || method == "rmnp") out.emplace(rel, load_config(f.string()));
  }
  return out;
}

}  // namespace

TEST_CASE("preset shapes are the paper's (Tables 4, 5, 6 and 9)", "[config][paper]") {
  for (const auto& p : kShapes) {
    INFO(p.preset << " (" << p.source << ")");
    json m;
    REQUIRE(model_preset(p.preset, m));
    const RunConfig c = config_from_json(json{{"model", {{"preset", p.preset}}}, {"data", {{"train", "x"}}}}, "t");
    CHECK(c.model.n_layer == p.layers);
    CHECK(c.model.n_head == p.heads);
    CHECK(c.model.n_embd == p.width);
    CHECK(c.model.intermediate_size == (p.ffn ? p.ffn : 4 * p.width));
  }
}

TEST_CASE("every paper config value is the one of the paper table it comes from", "[config][paper]") {
  const auto runs = paper_runs();
  CHECK(runs.size() == 27 + 15);  // the paper's runs and the authors' variants
  std::map<const Pin*, int> used;
  for (const auto& [name, c] : runs) {
    INFO("config: configs/paper/" << name << ".json");
    const bool authors = name.rfind("authors/", 0) == 0;
    const std::string base_name = authors ? name.substr(8) : name;
    std::set<std::string> pinned;
    // An authors' variant must satisfy its own pins and every pin of its main config it does not replace.
    for (const auto& p : kPins) {
      const bool own = matches(p.configs, name), inherited = authors && matches(p.configs, base_name);
      if (!own && !inherited) continue;
      if (!own) {
        bool replaced = false;
        for (const auto& q : kPins) replaced |= matches(q.configs, name) && std::string(q.key) == p.key;
        if (replaced) continue;
      }
      INFO("pin: " << p.key << " = " << p.value << " (" << p.source << ")");
      ++used[&p];
      pinned.insert(p.key);
      const json* v = at_dotted(c.resolved, p.key);
      REQUIRE(v != nullptr);
      CHECK(same_value(*v, json::parse(p.value)));
    }
    // Every optimizer and schedule value is pinned; GPT-2 group min_lr_frac follow the authors'
    // absolute min_lr per size (the paper gives no final lr).
    std::vector<std::string> keys;
    leaves(c.resolved["optimizer"], "optimizer", keys);
    leaves(c.resolved["schedule"], "schedule", keys);
    for (const auto& k : keys) {
      INFO("unpinned value: " << k);
      const bool group_min_lr = k.size() > 20 && k.compare(k.size() - 21, 21, ".schedule.min_lr_frac") == 0;
      if (group_min_lr && c.model.arch == "gpt2") {
        const std::string group = k.substr(10, k.size() - 10 - 21);  // optimizer.<group>.schedule.min_lr_frac
        const std::string size = base_name.substr(5, base_name.find('-', 5) - 5);
        REQUIRE(kGpt2MinLr.count(size) == 1);
        CHECK(c.resolved["optimizer"][group]["lr"].get<double>() * at_dotted(c.resolved, k)->get<double>() ==
              Approx(kGpt2MinLr.at(size)).epsilon(1e-4));
        continue;
      }
      CHECK(pinned.count(k) == 1);
    }
  }
  for (const auto& p : kPins) {
    INFO("pin matches no config: " << p.configs << " " << p.key);
    CHECK(used[&p] > 0);
  }
}

TEST_CASE("an authors' variant differs from its paper config only where the authors' scripts do", "[config][paper]") {
  const auto runs = paper_runs();
  int n = 0;
  for (const auto& [name, c] : runs) {
    if (name.rfind("authors/", 0) != 0) continue;
    INFO("config: configs/paper/" << name << ".json");
    const std::string main = name.substr(8);
    REQUIRE(runs.count(main) == 1);
    ++n;
    std::vector<std::string> keys, main_keys;
    leaves(c.resolved, "", keys);
    leaves(runs.at(main).resolved, "", main_keys);
    CHECK(std::set<std::string>(keys.begin(), keys.end()) == std::set<std::string>(main_keys.begin(), main_keys.end()));
    for (const auto& k0 : keys) {
      const std::string k = k0.substr(1);
      if (k == "run.name" || k == "run.dir" || *at_dotted(c.resolved, k) == *at_dotted(runs.at(main).resolved, k))
        continue;
      INFO("differs: " << k);
      bool pinned = k.size() > 21 && k.compare(k.size() - 21, 21, ".schedule.min_lr_frac") == 0;  // follows the lr
      for (const auto& p : kPins) pinned |= matches(p.configs, name) && p.key == k;
      CHECK(pinned);
    }
  }
  CHECK(n == 15);
}

TEST_CASE("the learning-rate sweeps are the grids of Tables 10-14", "[config][paper]") {
  struct Grid {
    const char* spec;
    const char* table;
    std::set<double> muon, rmnp;
    double adamw_muon, adamw_rmnp;  // lr_AdamW, fixed over the grid (Appendix D)
  };
  const Grid grids[] = {
      {"gpt2-small-owt-lr", "Table 10", {0.01, 0.015, 0.02, 0.025}, {0.002, 0.003, 0.004, 0.005}, 3e-3, 3e-3},
      {"gpt2-medium-owt-lr", "Table 11", {0.005, 0.01, 0.02, 0.03}, {0.001, 0.002, 0.003, 0.005}, 1.5e-3, 1.5e-3},
      {"llama-60m-c4-lr", "Table 12", {0.005, 0.01, 0.02, 0.03, 0.04}, {0.001, 0.004, 0.005, 0.01, 0.02}, 1e-3, 5e-3},
      {"llama-130m-c4-lr", "Table 13", {0.005, 0.01, 0.02, 0.03}, {0.01, 0.02, 0.03, 0.04}, 1e-3, 3e-2},
      {"llama-350m-c4-lr", "Table 14", {0.003, 0.004, 0.005}, {0.003, 0.004, 0.005}, 1e-3, 5e-3},
  };
  for (const auto& g : grids) {
    INFO(g.spec << " (" << g.table << ")");
    std::map<std::string, std::set<double>> lrs, adamw;
    for (const auto& [r, c] : sweep_configs(std::string("configs/paper/sweeps/") + g.spec + ".json")) {
      const std::string m = c.optimizer["matrix"]["type"].get<std::string>();
      lrs[m].insert(c.optimizer["matrix"]["lr"].get<double>());
      adamw[m].insert(c.optimizer["adamw"]["lr"].get<double>());
    }
    CHECK(lrs["muon"] == g.muon);
    CHECK(lrs["rmnp"] == g.rmnp);
    CHECK(adamw["muon"] == std::set<double>{g.adamw_muon});
    CHECK(adamw["rmnp"] == std::set<double>{g.adamw_rmnp});
    CHECK(lrs.size() == 2);
  }
}
