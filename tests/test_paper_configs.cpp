// Every JSON file under configs/ must load: run configs through load_config (the same strict
// validation `llmtrain train` applies), sweep specs by expanding them and validating each run they
// would train (base config plus that run's overrides). The RMNP paper configs are also checked
// against the paper's setup, so an accidental edit to a batch size or a step count shows up here.
#include <catch2/catch.hpp>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "llmtrain/config.h"
#include "llmtrain/error.h"
#include "report/sweep.h"

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

// Files other files inherit from ("base") may be fragments that do not validate on their own.
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
    } else if (bases.count(fs::weakly_canonical(f))) {
      ++fragments;  // loaded through the files that inherit from it
      CHECK_NOTHROW(load_config_json(f.string()));
    } else {
      ++configs;
      CHECK_NOTHROW(load_config(f.string()));
    }
  }
  CHECK(configs >= 36);  // 33 paper runs, the timing base, the CPU reproduction runs
  CHECK(fragments >= 10);
  CHECK(specs >= 11);
  CHECK(sweep_runs > 0);
}

TEST_CASE("the RMNP paper configs follow the paper's setup", "[config][paper]") {
  // Steps per model (the paper's schedules; 10% warmup everywhere).
  const std::map<std::string, int64_t> steps = {{"gpt2-small", 10000}, {"gpt2-medium", 20000}, {"gpt2-large", 40000},
                                                {"gpt2-xl", 50000},    {"llama-60m", 10000},   {"llama-130m", 20000},
                                                {"llama-350m", 60000}, {"llama-1b", 90000}};
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
        CHECK(opt["matrix"]["weight_decay"] == 0.0);
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
  CHECK(n == 33);
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

TEST_CASE("the timing sweep covers Table 4's model sizes with Muon and RMNP", "[config][paper]") {
  const auto runs = sweep_configs("configs/paper/sweeps/timing.json");
  REQUIRE(runs.size() == 16);
  std::map<std::string, std::set<std::string>> methods;  // preset -> methods
  for (const auto& [r, c] : runs) {
    INFO("run: " << r.name);
    CHECK(c.data.seq_len == 1024);
    CHECK(c.data.batch_tokens == 16 * 1024);
    CHECK(c.run.steps == 110);  // 10 untimed + the paper's 100
    methods[c.model.preset].insert(c.optimizer["matrix"]["type"].get<std::string>());
  }
  CHECK(methods.size() == 8);
  for (const char* p : {"gpt2-60m", "gpt2-124m", "gpt2-200m", "gpt2-355m", "gpt2-500m", "gpt2-774m", "gpt2-1.3b",
                        "gpt2-1.5b"}) {
    INFO("preset: " << p);
    CHECK(methods[p] == std::set<std::string>{"muon", "rmnp"});
  }
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
