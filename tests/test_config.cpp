// Config loading: presets, inheritance through "base", defaults, --set overrides, strict
// validation messages that name the file and the dotted key; float32 fields printed as shortest
// decimals (json_float), in resolved configs and in metrics.
#include <catch2/catch.hpp>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

#include "llmtrain/config.h"
#include "llmtrain/error.h"
#include "llmtrain/json_float.h"
#include "llmtrain/metrics.h"
#include "test_util.h"

using namespace llmtrain;
using nlohmann::json;
using llmtrain::test::TempDir;

namespace {

json base() {
  return json::parse(R"({
    "model": {"preset": "gpt2-tiny"},
    "data": {"train": "x_train_*.bin", "seq_len": 64, "micro_batch": 2},
    "optimizer": {"adamw": {"type": "adamw", "lr": 0.001}},
    "run": {"steps": 10}
  })");
}

std::string error_of(json j) {
  try {
    config_from_json(std::move(j), "cfg.json");
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("presets fill the model and explicit fields win", "[config]") {
  json j = base();
  j["model"]["n_layer"] = 3;
  RunConfig c = config_from_json(j, "cfg.json");
  CHECK(c.model.arch == "gpt2");
  CHECK(c.model.n_layer == 3);
  CHECK(c.model.n_embd == 128);
  CHECK(c.model.padded_vocab_size == 50304);
  CHECK(c.model.intermediate_size == 512);
  CHECK(c.data.delimiter == 50256);
  CHECK(c.resolved["model"]["n_layer"] == 3);

  json l = base();
  l["model"] = json{{"preset", "llama-130m"}};
  l["data"]["seq_len"] = 256;
  RunConfig cl = config_from_json(l, "cfg.json");
  CHECK(cl.model.is_llama());
  CHECK(cl.model.intermediate_size == 2048);
  CHECK_FALSE(cl.model.tie_embeddings);
  CHECK_FALSE(cl.model.bias);
  CHECK(cl.model.vocab_size == 32000);
}

TEST_CASE("overrides set nested values, parse JSON, and keep bare words as strings", "[config]") {
  json j = base();
  apply_override(j, "run.steps=25", "cfg.json");
  apply_override(j, "optimizer.adamw.type=adamw", "cfg.json");
  apply_override(j, "data.shuffle=false", "cfg.json");
  apply_override(j, "run.name=\"my run\"", "cfg.json");
  RunConfig c = config_from_json(j, "cfg.json");
  CHECK(c.run.steps == 25);
  CHECK_FALSE(c.data.shuffle);
  CHECK(c.run.name == "my run");
  CHECK_THROWS_AS(apply_override(j, "novalue", "cfg.json"), InputError);
  CHECK_THROWS_AS(apply_override(j, "run.steps.x=1", "cfg.json"), InputError);
}

TEST_CASE("validation errors name the file and the key", "[config]") {
  json j = base();
  j["model"]["n_layers"] = 3;
  CHECK_THAT(error_of(j), Catch::Contains("cfg.json: model.n_layers: unknown key"));

  j = base();
  j["run"]["steps"] = "ten";
  CHECK_THAT(error_of(j), Catch::Contains("run.steps: expected an integer"));

  j = base();
  j["run"]["steps"] = 0;
  CHECK_THAT(error_of(j), Catch::Contains("run.steps: must be in [1,"));

  j = base();
  j["model"]["n_head"] = 5;
  CHECK_THAT(error_of(j), Catch::Contains("model.n_head: n_embd (128) must be divisible by n_head (5)"));

  j = base();
  j["data"]["seq_len"] = 4096;
  CHECK_THAT(error_of(j), Catch::Contains("data.seq_len"));

  j = base();
  j["model"]["preset"] = "gpt5";
  CHECK_THAT(error_of(j), Catch::Contains("model.preset: unknown preset \"gpt5\""));

  j = base();
  j["data"]["mode"] = "streaming";
  CHECK_THAT(error_of(j), Catch::Contains("data.mode: unknown value \"streaming\""));

  j = base();
  j.erase("data");
  CHECK_THAT(error_of(j), Catch::Contains("data: missing section"));

  j = base();
  j["extra"] = 1;
  CHECK_THAT(error_of(j), Catch::Contains("cfg.json: extra: unknown key"));

  j = base();
  j["model"]["n_kv_head"] = 2;
  CHECK_THAT(error_of(j), Catch::Contains("model.n_kv_head"));
}

TEST_CASE("run.recompute and run.bf16_rounding: defaults, values, errors", "[config]") {
  RunConfig c = config_from_json(base(), "cfg.json");
  CHECK(c.run.recompute == 0);
  CHECK(c.run.bf16_rounding == "nearest");
  CHECK(c.resolved["run"]["recompute"] == 0);
  CHECK(c.resolved["run"]["bf16_rounding"] == "nearest");
  json j = base();
  j["run"]["recompute"] = 2;
  j["run"]["bf16_rounding"] = "stochastic";
  c = config_from_json(j, "cfg.json");
  CHECK(c.run.recompute == 2);
  CHECK(c.run.bf16_rounding == "stochastic");

  j = base();
  j["run"]["recompute"] = 3;
  CHECK_THAT(error_of(j), Catch::Contains("cfg.json: run.recompute: must be in [0, 2]"));
  j = base();
  j["run"]["recompute"] = true;
  CHECK_THAT(error_of(j), Catch::Contains("run.recompute: expected an integer"));
  j = base();
  j["run"]["bf16_rounding"] = "truncate";
  CHECK_THAT(error_of(j), Catch::Contains("cfg.json: run.bf16_rounding: unknown value \"truncate\""));
}

TEST_CASE("load_config reports unreadable and malformed files", "[config]") {
  CHECK_THROWS_WITH(load_config("/nonexistent/x.json"), Catch::Contains("/nonexistent/x.json: cannot open"));
  std::string p = "/tmp/llmtrain_test_bad_config.json";
  std::ofstream(p) << "{\"model\": ";
  CHECK_THROWS_WITH(load_config(p), Catch::Contains("invalid JSON"));
}

TEST_CASE("the resolved config loads back to the same config, with or without a preset", "[config]") {
  json with_preset = base();
  json explicit_model = base();
  explicit_model["model"] = json::parse(R"({"arch": "llama", "n_layer": 2, "n_embd": 32, "n_head": 4,
                                            "n_kv_head": 2, "vocab_size": 300, "max_seq_len": 64})");
  explicit_model["data"]["delimiter"] = 0;
  for (const json& j : {with_preset, explicit_model}) {
    RunConfig a = config_from_json(j, "cfg.json");
    // Checkpoints store `resolved` in state.json and load it with config_from_json.
    RunConfig b = config_from_json(a.resolved, "state.json");
    CHECK(b.resolved == a.resolved);
    CHECK(b.model.arch == a.model.arch);
    CHECK(b.model.n_kv_head == a.model.n_kv_head);
  }
}

namespace {

void write_file(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream(path) << text;
}

std::string load_error(const std::string& path, const std::vector<std::string>& sets = {}) {
  try {
    load_config(path, sets);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("base: files inherit recursively; objects merge, lists and values replace, null deletes", "[config]") {
  TempDir t("cfg_base");
  write_file(t.file("common.json"), R"(// shared setup
    {"model": {"preset": "gpt2-tiny", "bias": false},
     "data": {"train": "x_train_*.bin", "seq_len": 64, "micro_batch": 2, "shuffle": false},
     "optimizer": {"adamw": {"type": "adamw", "lr": 0.001, "weight_decay": 0.1}},
     "run": {"steps": 10, "name": "common", "log_every": 5}})");
  write_file(t.file("matrix.json"), R"({"optimizer": {"matrix": {"type": "muon", "momentum": 0.9,
                                         "roles": ["hidden_matrix", "embedding"]}}})");
  // Two bases in list order, from a subdirectory: paths are relative to the file naming them.
  write_file(t.file("runs/muon.json"), R"({"base": ["../common.json", "../matrix.json"],
     "optimizer": {"matrix": {"lr": 0.02, "roles": ["hidden_matrix"]}, "adamw": {"weight_decay": null}},
     "data": {"shuffle": null}, "run": {"name": "muon"}})");
  write_file(t.file("runs/deeper.json"), R"({"base": "muon.json", "model": {"n_layer": 2}})");

  RunConfig c = load_config(t.file("runs/deeper.json"));
  CHECK(c.model.n_layer == 2);          // explicit key over the preset, from the last file
  CHECK(c.model.n_embd == 128);         // from the preset named in common.json
  CHECK_FALSE(c.model.bias);
  CHECK(c.data.shuffle);                // null removed common.json's false: the default applies
  CHECK(c.run.steps == 10);
  CHECK(c.run.name == "muon");
  CHECK(c.run.log_every == 5);
  const json& m = c.optimizer["matrix"];
  CHECK(m["type"] == "muon");            // from matrix.json
  CHECK(m["momentum"] == 0.9);
  CHECK(m["lr"] == 0.02);                // added by muon.json
  CHECK(m["roles"] == json::array({"hidden_matrix"}));  // lists replace, they do not merge
  CHECK(c.optimizer["adamw"]["lr"] == 0.001);
  CHECK_FALSE(c.optimizer["adamw"].contains("weight_decay"));
  CHECK_FALSE(c.resolved.contains("base"));  // run.dir/config.json is fully expanded
  CHECK(config_from_json(c.resolved, "state.json").resolved == c.resolved);

  // --set applies after the merge and replaces the value at its key (objects too); null deletes.
  RunConfig o = load_config(t.file("runs/deeper.json"),
                            {"optimizer.matrix={\"type\": \"rmnp\", \"lr\": 0.004}", "run.log_every=null"});
  CHECK(o.optimizer["matrix"] == json::parse(R"({"type": "rmnp", "lr": 0.004})"));
  CHECK(o.run.log_every == 1);
  o = load_config(t.file("runs/deeper.json"), {"optimizer.matrix=null"});
  CHECK_FALSE(o.optimizer.contains("matrix"));

  // A preset file works as a base as well.
  write_file(t.file("preset_base.json"), R"({"base": ")" + std::string(LLMTRAIN_SOURCE_DIR) +
                                             R"(/configs/models/llama-60m.json", "data": {"train": "x"}})");
  RunConfig p = load_config(t.file("preset_base.json"));
  CHECK(p.model.is_llama());
  CHECK(p.model.intermediate_size == 1376);
}

TEST_CASE("base: cycles, missing files and bad values are input errors naming the chain", "[config]") {
  TempDir t("cfg_base_err");
  write_file(t.file("a.json"), R"({"base": "sub/b.json"})");
  write_file(t.file("sub/b.json"), R"({"base": ["c.json"]})");
  write_file(t.file("sub/c.json"), R"({"base": "../a.json"})");
  CHECK_THAT(load_error(t.file("a.json")),
             Catch::Contains("a.json -> " + t.file("sub/b.json") + " -> " + t.file("sub/c.json") + " -> " +
                             t.file("a.json") + ": base: inheritance cycle"));
  write_file(t.file("self.json"), R"({"base": "self.json"})");
  CHECK_THAT(load_error(t.file("self.json")), Catch::Contains("base: inheritance cycle"));

  write_file(t.file("m.json"), R"({"base": "sub/missing.json"})");
  write_file(t.file("top.json"), R"({"base": "m.json"})");
  CHECK_THAT(load_error(t.file("top.json")),
             Catch::Contains(t.file("top.json") + " -> " + t.file("m.json") + ": base: cannot open " +
                             t.file("sub/missing.json")));

  write_file(t.file("num.json"), R"({"base": 3})");
  CHECK_THAT(load_error(t.file("num.json")), Catch::Contains("num.json: base: expected a config path"));
  write_file(t.file("empty.json"), R"({"base": []})");
  CHECK_THAT(load_error(t.file("empty.json")), Catch::Contains("empty.json: base: expected"));
  write_file(t.file("badjson.json"), R"({"model": )");
  write_file(t.file("child.json"), R"({"base": "badjson.json"})");
  CHECK_THAT(load_error(t.file("child.json")),
             Catch::Contains("child.json -> " + t.file("badjson.json") + ": invalid JSON"));
  write_file(t.file("list.json"), R"([1, 2])");
  write_file(t.file("child2.json"), R"({"base": "list.json"})");
  CHECK_THAT(load_error(t.file("child2.json")), Catch::Contains("list.json: expected a JSON object"));

  // Only files inherit: a JSON object handed over directly (a checkpoint's state.json) may not.
  CHECK_THROWS_WITH(config_from_json(json::parse(R"({"base": "x.json"})"), "state.json"),
                    Catch::Contains("state.json: base: inheritance is resolved when a file is loaded"));
}

TEST_CASE("model presets are the JSON files under configs/models", "[config]") {
  const auto names = model_preset_names();
  for (const char* n : {"gpt2-tiny", "gpt2-124m", "gpt2-1.5b", "llama-tiny", "llama-130m"})
    CHECK(std::find(names.begin(), names.end(), n) != names.end());
  for (const auto& n : names) {
    INFO("preset " << n);
    json m;
    REQUIRE(model_preset(n, m));
    json j = base();
    j["model"] = json{{"preset", n}};
    j["data"]["seq_len"] = 16;
    j["data"].erase("delimiter");
    if (m.value("arch", "") == "llama") j["data"]["delimiter"] = 1;
    CHECK_NOTHROW(config_from_json(j, "cfg.json"));
  }
  json m;
  CHECK_FALSE(model_preset("../models/gpt2-124m", m));  // a name, never a path
  CHECK_FALSE(model_preset("gpt5", m));
}

TEST_CASE("json_float: the shortest decimal that reads back as the same float", "[config]") {
  CHECK(json(json_float(1e-5f)).dump() == "1e-05");
  CHECK(json(json_float(0.02f)).dump() == "0.02");
  CHECK(json(json_float(0.1f)).dump() == "0.1");
  CHECK(json(json_float(3e-4f)).dump() == "0.0003");
  CHECK(json(json_float(1.0f)).dump() == "1.0");
  CHECK(json(json_float(500000.f)).dump() == "500000.0");
  CHECK(json((double)1e-5f).dump() == "9.999999747378752e-06");  // what json_float avoids
  // Any finite float: what is written reads back as the same float.
  std::mt19937 rng(7);
  for (int i = 0; i < 200000; ++i) {
    uint32_t bits = rng();
    float f;
    std::memcpy(&f, &bits, 4);
    if (!std::isfinite(f)) continue;
    const double d = json_float(f);
    REQUIRE((float)d == f);
    REQUIRE((float)json::parse(json(d).dump()).get<double>() == f);
  }
}

TEST_CASE("resolved configs and metrics print float32 fields as shortest decimals", "[config]") {
  RunConfig cfg = config_from_json(base(), "cfg.json");
  const std::string dump = cfg.resolved.dump();
  CHECK_THAT(dump, Catch::Contains("\"norm_eps\":1e-05") && Catch::Contains("\"init_std\":0.02") &&
                       Catch::Contains("\"grad_clip\":1.0") && Catch::Contains("\"rope_theta\":10000.0"));
  CHECK(dump.find("99999") == std::string::npos);
  // A model section stored with widened floats (as older checkpoints have) still matches.
  json old = cfg.resolved["model"];
  old["norm_eps"] = (double)1e-5f;
  old["init_std"] = (double)0.02f;
  CHECK(old != cfg.resolved["model"]);
  CHECK(same_model_section(old, cfg.resolved["model"]));
  old["norm_eps"] = 1e-6;
  CHECK_FALSE(same_model_section(old, cfg.resolved["model"]));

  llmtrain::test::TempDir d("metrics");
  {
    MetricsWriter w(d.path, std::nullopt);
    w.write({{"step", 1}, {"loss", 2.5}, {"lr", {{"adamw", (double)3e-4f}, {"matrix", (double)0.02f}}}});
  }
  std::ifstream f(d.file("metrics.jsonl"));
  std::string line;
  std::getline(f, line);
  CHECK_THAT(line, Catch::Contains("\"adamw\":0.0003") && Catch::Contains("\"matrix\":0.02") &&
                       Catch::Contains("\"loss\":2.5"));
}
