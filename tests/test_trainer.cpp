// Tests of the trainer and of what protects a run directory: the Trainer class on a tiny model
// (non-finite steps stopped or skipped, a non-finite checkpoint refused, the run-directory lock),
// the optimizer's before_step hook, checkpoint integrity (CRC-32C, the state.json manifest and
// schema, damaged checkpoints passed over, the rename-to-latest window, stale temp files), checked
// metrics writes and writes that never follow a symlink. Files live under /tmp and are removed.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <filesystem>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>

#include "test_util.h"
#include "util/util.h"
#include "llmtrain/backend.h"
#include "llmtrain/checkpoint.h"
#include "llmtrain/config.h"
#include "llmtrain/error.h"
#include "llmtrain/metrics.h"
#include "llmtrain/model.h"
#include "llmtrain/optim.h"
#include "llmtrain/safetensors.h"
#include "llmtrain/shard.h"
#include "llmtrain/trainer.h"
#include "train/checkpoint_io.h"
#include "train/run_lock.h"

namespace fs = std::filesystem;
using namespace llmtrain;
using test::error_of;
using Catch::Matchers::Contains;
using nlohmann::json;

namespace {

std::string slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void spit(const std::string& p, const std::string& s) { std::ofstream(p, std::ios::binary | std::ios::trunc) << s; }

// The message of any exception f() throws ("<no exception>" otherwise).
template <typename F>
std::string any_error_of(F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    return e.what();
  }
  return "<no exception>";
}

// Two train shards and one val shard of random tokens below 64, and a 2-layer GPT-2 on them.
RunConfig tiny_run(const test::TempDir& d, const std::string& extra_run = "{}") {
  uint64_t s = 12345;
  for (const char* name : {"t_train_000001.bin", "t_train_000002.bin", "t_val_000000.bin"}) {
    ShardWriter w(d.file(name), false);
    std::vector<int32_t> ids(4000);
    for (auto& id : ids) id = (int32_t)(splitmix64(s) % 64);
    ids[0] = 0;
    w.write(ids.data(), ids.size());
    w.close();
  }
  json j = {{"model", {{"n_layer", 2}, {"n_embd", 16}, {"n_head", 2}, {"vocab_size", 64}, {"max_seq_len", 16}}},
            {"data",
             {{"train", d.file("t_train_*.bin")},
              {"val", d.file("t_val_*.bin")},
              {"seq_len", 16},
              {"micro_batch", 2},
              {"delimiter", 0},
              {"tokenizer", "none"}}},
            {"optimizer", {{"adamw", {{"type", "adamw"}, {"lr", 0.01}}}}},
            {"run",
             {{"dir", d.file("run")},
              {"steps", 6},
              {"eval_batches", 1},
              {"sample_tokens", 0},
              {"threads", 1},
              {"log_every", 100}}}};
  j["run"].update(json::parse(extra_run));
  return config_from_json(j, "tiny.json");
}

// Sets one element of the weights to NaN, on whatever backend.
void poison_weight(Trainer& t, const std::string& name) {
  std::vector<float> host(t.model().num_params());
  t.backend().download_params(host.data());
  host[t.model().layout()[t.model().layout().index_of(name)].offset] = std::numeric_limits<float>::quiet_NaN();
  t.backend().upload_params(host.data());
}

// A checkpoint dir by hand: payload files and a state.json whose manifest lists them.
std::string hand_checkpoint(CheckpointManager& m, int64_t step) {
  return m.save(step, [step](const std::string& dir) {
    spit(dir + "/model.bin", "weights at " + std::to_string(step));
    json files = {{"model.bin", file_sum_json(checksum_file(dir + "/model.bin"))}};
    spit(dir + "/state.json", json{{"step", step}, {"files", files}}.dump());
  });
}

}  // namespace

// ---------------------------------------------------------------- integrity

TEST_CASE("crc32c gives the standard check value and chains", "[trainer][checkpoint]") {
  CHECK(crc32c(0, "123456789", 9) == 0xE3069283u);
  CHECK(crc32c(0, "", 0) == 0u);
  std::string big(100003, '\0');
  uint64_t s = 7;
  for (auto& c : big) c = (char)splitmix64(s);
  const uint32_t whole = crc32c(0, big.data(), big.size());
  for (size_t cut : {size_t(0), size_t(1), size_t(7), size_t(4096), size_t(99999)})
    CHECK(crc32c(crc32c(0, big.data(), cut), big.data() + cut, big.size() - cut) == whole);
  test::TempDir d("crc");
  spit(d.file("f"), big);
  const FileSum fsum = checksum_file(d.file("f"));
  CHECK(fsum.bytes == big.size());
  CHECK(fsum.crc32c == whole);
  CHECK(file_sum_json(FileSum{5, 0xE3069283u}) == json{{"bytes", 5}, {"crc32c", "e3069283"}});
}

TEST_CASE("checkpoint_problem names the missing, truncated or damaged file", "[trainer][checkpoint]") {
  test::TempDir d("ckpt_problem");
  CheckpointManager m(d.path, 0);
  const std::string dir = hand_checkpoint(m, 5);
  CHECK(checkpoint_problem(dir, true) == "");

  SECTION("a flipped byte is found by the checksum only") {
    std::string w = slurp(dir + "/model.bin");
    w[3] ^= 0x10;
    spit(dir + "/model.bin", w);
    CHECK(checkpoint_problem(dir, false) == "");
    CHECK_THAT(checkpoint_problem(dir, true), Contains(dir + "/model.bin: checksum mismatch"));
  }
  SECTION("a truncated file by its size") {
    spit(dir + "/model.bin", "weights");
    CHECK_THAT(checkpoint_problem(dir, false), Contains(dir + "/model.bin: 7 bytes, state.json records 12"));
    CHECK_FALSE(is_complete_checkpoint(dir));
  }
  SECTION("a missing file") {
    fs::remove(dir + "/model.bin");
    CHECK(checkpoint_problem(dir, false) == dir + "/model.bin: missing (listed in state.json)");
  }
  SECTION("a manifest naming a path outside the directory or malformed") {
    spit(dir + "/state.json", R"({"step": 5, "files": {"../x": {"bytes": 1, "crc32c": "00000000"}}})");
    CHECK_THAT(checkpoint_problem(dir, false), Contains("is not a file name in the checkpoint directory"));
    spit(dir + "/state.json", R"({"step": 5, "files": {"model.bin": {"bytes": 13, "crc32c": 5}}})");
    CHECK_THAT(checkpoint_problem(dir, false), Contains("files.model.bin: expected"));
  }
  SECTION("a torn state.json") {
    spit(dir + "/state.json", "{\"step\": 5, \"fi");
    CHECK_THAT(checkpoint_problem(dir, false), Contains("state.json: not valid JSON"));
  }
}

TEST_CASE("find_latest and resolve_resume pass over a damaged newest checkpoint, saying why",
          "[trainer][checkpoint]") {
  test::TempDir d("ckpt_skip");
  CheckpointManager m(d.path, 0);
  const std::string a = hand_checkpoint(m, 4), b = hand_checkpoint(m, 8);
  std::string w = slurp(b + "/model.bin");
  w[0] ^= 1;
  spit(b + "/model.bin", w);
  CHECK(*m.find_latest() == b);  // structurally complete
  std::vector<std::string> skipped;
  CHECK(*m.find_latest(true, &skipped) == a);
  REQUIRE(skipped.size() == 1);
  CHECK_THAT(skipped[0], Contains(b + "/model.bin: checksum mismatch"));
  skipped.clear();
  CHECK(*resolve_resume("auto", d.path, &skipped) == a);
  CHECK(skipped.size() == 1);
  // Asked for by name, a damaged checkpoint is an input error naming the file.
  CHECK_THAT(error_of([&] { resolve_resume(b, d.path); }), Contains(b + "/model.bin: checksum mismatch"));
  // Nothing usable at all: an error, not a fresh start over the old run.
  fs::remove(a + "/model.bin");
  CHECK_THAT(error_of([&] { resolve_resume("auto", d.path); }), Contains("no usable checkpoint"));
  CHECK(m.has_checkpoints());
  CHECK_FALSE(CheckpointManager(d.file("none"), 0).has_checkpoints());
}

TEST_CASE("the newest checkpoint is the highest complete step, whatever `latest` says", "[trainer][checkpoint]") {
  test::TempDir d("ckpt_window");
  CheckpointManager m(d.path, 0);
  hand_checkpoint(m, 4);
  const std::string b = hand_checkpoint(m, 8);
  // Killed between the rename of step 8 and the update of `latest`: it still names step 4, and the
  // temp file of the update is left behind.
  write_file_atomic(d.path + "/ckpt/latest", "step_00000004\n");
  spit(d.path + "/ckpt/.latest.tmp.99999", "step_00000008\n");
  CHECK(*m.find_latest(true) == b);
  CHECK(*resolve_resume("auto", d.path) == b);
  // The next save cleans the leftover.
  hand_checkpoint(m, 12);
  CHECK_FALSE(fs::exists(d.path + "/ckpt/.latest.tmp.99999"));
  CHECK(slurp(d.path + "/ckpt/latest") == "step_00000012\n");
}

TEST_CASE("a commit removes the checkpoints above it (the abandoned continuation)", "[trainer][checkpoint]") {
  test::TempDir d("ckpt_future");
  CheckpointManager m(d.path, 3);
  for (int64_t s : {4, 8, 12}) hand_checkpoint(m, s);
  hand_checkpoint(m, 6);  // resumed from step 4 and saved again
  CHECK(m.list_complete() == std::vector<std::string>{d.path + "/ckpt/step_00000004", d.path + "/ckpt/step_00000006"});
  CHECK(*m.find_latest() == d.path + "/ckpt/step_00000006");
}

TEST_CASE("write_file_atomic and the metrics writer never write through a symlink", "[trainer][metrics]") {
  test::TempDir d("symlink");
  spit(d.file("outside.txt"), "precious\n");
  fs::create_directories(d.file("run"));
  fs::create_symlink(d.file("outside.txt"), d.file("run/config.json"));
  write_file_atomic(d.file("run/config.json"), "{}\n");
  CHECK(slurp(d.file("outside.txt")) == "precious\n");
  CHECK_FALSE(fs::is_symlink(d.file("run/config.json")));
  CHECK(slurp(d.file("run/config.json")) == "{}\n");

  fs::create_symlink(d.file("outside.txt"), d.file("run/metrics.jsonl"));
  {
    MetricsWriter w(d.file("run"), std::nullopt);
    w.write({{"step", 1}});
    w.close();
  }
  CHECK(slurp(d.file("outside.txt")) == "precious\n");
  CHECK(slurp(d.file("run/metrics.jsonl")) == "{\"step\":1}\n");
}

TEST_CASE("metrics: a resume keeps the lines up to its step; a fresh run starts empty", "[trainer][metrics]") {
  test::TempDir d("metrics");
  {
    MetricsWriter w(d.path, std::nullopt);
    for (int s = 1; s <= 5; ++s) w.write({{"step", s}});
    w.close();
  }
  spit(d.file("metrics.jsonl"), slurp(d.file("metrics.jsonl")) + "{\"step\": 6, \"lo");  // torn by a crash
  {
    MetricsWriter w(d.path, int64_t(3));
    w.write({{"step", 4}});
  }
  CHECK(slurp(d.file("metrics.jsonl")) == "{\"step\":1}\n{\"step\":2}\n{\"step\":3}\n{\"step\":4}\n");
  CHECK_THROWS_AS(MetricsWriter(d.path, int64_t(-3)), RuntimeError);
  CHECK(slurp(d.file("metrics.jsonl")).size() > 0);  // a bad step never truncates first
  { MetricsWriter w(d.path, std::nullopt); }
  CHECK(slurp(d.file("metrics.jsonl")).empty());
}

TEST_CASE("state.json is checked against its schema, naming file and key", "[trainer][checkpoint]") {
  test::TempDir d("state_schema");
  const std::string dir = d.file("step_00000008");
  fs::create_directories(dir);
  const json good = {{"step", 8},
                     {"loader", json::object()},
                     {"sample_rng", "123"},
                     {"optimizers", {{"adamw", {{"type", "adamw"}, {"state", json::object()}}}}},
                     {"config", {{"model", json::object()}}}};
  auto with = [&](const std::function<void(json&)>& edit) {
    json j = good;
    edit(j);
    spit(dir + "/state.json", j.dump());
    return error_of([&] { read_state_json(dir); });
  };
  const std::string path = dir + "/state.json";
  CHECK(with([](json&) {}) == "<no exception>");
  CHECK(with([](json& j) { j.erase("loader"); }) == path + ": loader: missing");
  CHECK(with([](json& j) { j["step"] = -3; }) == path + ": step: must be in [0, 2^40], got -3");
  CHECK_THAT(with([](json& j) { j["step"] = 1e15; }), Contains(path + ": step: expected an integer"));
  CHECK(with([](json& j) { j["step"] = 9; }) == path + ": step: 9 does not match the directory name step_00000008");
  CHECK_THAT(with([](json& j) { j["sample_rng"] = 5; }), Contains(path + ": sample_rng: expected a decimal string"));
  CHECK_THAT(with([](json& j) { j["sample_rng"] = "99999999999999999999"; }),
             Contains(path + ": sample_rng: does not fit"));
  CHECK(with([](json& j) { j["optimizers"]["adamw"].erase("type"); }) ==
        path + ": optimizers.adamw.type: expected a string");
  CHECK(with([](json& j) { j["zero"] = {{"stage", 2}, {"world", 1}}; }) == path + ": zero.stage: expected 0 or 1");
  CHECK(with([](json& j) { j["config"] = json::object(); }) == path + ": config.model: missing or not an object");
  CHECK(with([](json& j) { j["stepp"] = 1; }) == path + ": stepp: unknown key");
  CHECK(with([](json& j) { j["nonfinite"] = {{"skipped", 1}}; }) ==
        path + ": nonfinite.in_a_row: expected an integer >= 0");
}

TEST_CASE("non-finite weights are never read from a model file", "[trainer][checkpoint]") {
  test::TempDir d("nan_model");
  Model model(test::tiny_model("gpt2"));
  std::vector<float> host(model.num_params(), 0.5f);
  const auto& p = model.layout()[3];
  host[p.offset + 2] = std::numeric_limits<float>::infinity();
  write_model_safetensors(d.file("model.safetensors"), model, host.data(), json::object());
  std::vector<float> back(model.num_params());
  CHECK(error_of([&] { read_model_safetensors(d.file("model.safetensors"), model, back.data()); }) ==
        d.file("model.safetensors") + ": tensor " + p.name +
            " holds non-finite values (element 2 is inf); refusing these weights");
}

// ---------------------------------------------------------------- the optimizer hook

TEST_CASE("before_step hands each matrix's inputs to an optimizer that wants them", "[trainer][optim]") {
  struct Recorder : Optimizer {
    std::vector<std::string> seen;
    std::string type() const override { return "recorder"; }
    void step(const std::vector<ParamRef>&, float, int64_t) override {}
    std::vector<StateTensor> state() override { return {}; }
    bool wants_inputs(int64_t step) const override { return step % 2 == 1; }
    void observe_inputs(const ParamInfo& info, const float* z, int64_t rows, int64_t cols) override {
      seen.push_back(info.name + ":" + std::to_string(rows) + "x" + std::to_string(cols) + "=" + std::to_string(z[0]));
    }
  };
  Model model(test::tiny_model("gpt2"));
  std::vector<ParamRef> params;
  for (const auto& p : model.layout().params())
    if (p.role == ParamRole::hidden_matrix) params.push_back(ParamRef{&p, nullptr, nullptr});
  REQUIRE(params.size() >= 2);
  const float z = 1.5f;
  int asked = 0;
  const InputSource inputs = [&](const ParamInfo& info, int64_t* rows) -> const float* {
    ++asked;
    *rows = 4;
    return info.name == params[0].info->name ? nullptr : &z;  // the first has none
  };
  Recorder r;
  r.before_step(params, inputs, 2);
  CHECK(asked == 0);
  r.before_step(params, inputs, 3);
  CHECK(asked == (int)params.size());
  REQUIRE(r.seen.size() == params.size() - 1);
  CHECK(r.seen[0] == params[1].info->name + ":4x" + std::to_string(params[1].info->cols()) + "=1.500000");
  // Optimizers without statistics ignore the hook.
  auto groups = parse_optimizer_config(json::object(), Schedule{}, "x.json");
  auto adamw = make_optimizer(groups[0], {}, 1);
  adamw->before_step(params, inputs, 1);
  CHECK(asked == (int)params.size());
}

// ---------------------------------------------------------------- the Trainer

TEST_CASE("Trainer: steps, a checkpoint, and a bitwise resume", "[trainer]") {
  test::TempDir d("trainer_resume");
  RunConfig cfg = tiny_run(d);
  std::vector<float> ref, got;
  {
    Trainer t(cfg, {});
    CHECK(t.fit() == 0);
    CHECK(t.step() == 6);
    ref.resize(t.model().num_params());
    t.backend().download_params(ref.data());
  }
  TrainOptions fresh;
  fresh.overwrite = true;
  fresh.stop_after = 4;
  Trainer(cfg, fresh).fit();
  CHECK(CheckpointManager(cfg.run.dir, 0).list_complete().back() == cfg.run.dir + "/ckpt/step_00000004");
  TrainOptions resume;
  resume.resume = "auto";
  Trainer t(cfg, resume);
  CHECK(t.step() == 4);
  StepResult r = t.train_step();
  CHECK(r.step == 5);
  CHECK_FALSE(r.skipped);
  CHECK(std::isfinite(r.loss));
  REQUIRE(r.lr.size() == 1);
  CHECK(r.lr[0].first == "adamw");
  t.fit();
  got.resize(t.model().num_params());
  t.backend().download_params(got.data());
  CHECK(got == ref);
}

TEST_CASE("Trainer: a non-finite step stops the run naming the step and the tensor", "[trainer]") {
  test::TempDir d("trainer_stop");
  Trainer t(tiny_run(d), {});
  t.train_step();
  poison_weight(t, "transformer.h.1.mlp.c_fc.weight");
  const std::string e = any_error_of([&] { t.train_step(); });
  CHECK_THAT(e, Contains("step 2: non-finite loss (nan) and gradient norm (nan)"));
  CHECK_THAT(e, Contains("first non-finite tensor: gradient of "));
  CHECK_THAT(e, Contains("run.on_nonfinite=stop"));
  // A non-finite weight never reaches a checkpoint.
  CHECK_THAT(
      any_error_of([&] { t.save(); }),
      Contains("refusing to write checkpoint step_00000001: weight transformer.h.1.mlp.c_fc.weight holds non-finite"));
  CHECK_FALSE(CheckpointManager(d.file("run"), 0).has_checkpoints());
}

TEST_CASE("Trainer: skip mode skips and counts non-finite steps, and stops after too many in a row", "[trainer]") {
  test::TempDir d("trainer_skip");
  RunConfig cfg = tiny_run(d, R"({"on_nonfinite": "skip", "max_nonfinite_skips": 3, "steps": 10})");
  Trainer t(cfg, {});
  std::vector<float> good(t.model().num_params()), before(good.size()), after(good.size());
  t.train_step();
  t.backend().download_params(good.data());
  poison_weight(t, "transformer.wte.weight");
  t.backend().download_params(before.data());
  StepResult r = t.train_step();
  CHECK(r.skipped);
  CHECK(r.step == 2);
  CHECK(t.step() == 2);
  CHECK(t.nonfinite_skipped() == 1);
  t.backend().download_params(after.data());
  CHECK(std::memcmp(before.data(), after.data(), before.size() * sizeof(float)) == 0);  // no update
  // Finite again: the streak ends, the count stays.
  t.backend().upload_params(good.data());
  CHECK_FALSE(t.train_step().skipped);
  CHECK(t.nonfinite_skipped() == 1);
  poison_weight(t, "transformer.wte.weight");
  for (int i = 0; i < 3; ++i) CHECK(t.train_step().skipped);
  CHECK(t.nonfinite_skipped() == 4);
  const std::string e = any_error_of([&] { t.train_step(); });
  CHECK_THAT(e, Contains("step 7: non-finite loss (nan) and gradient norm (nan); first non-finite tensor: "));
  CHECK_THAT(e, Contains("the 3 step(s) before it were skipped already (run.max_nonfinite_skips), stopping"));
}

TEST_CASE("Trainer: a second trainer on the same run.dir stops at once naming the holder", "[trainer]") {
  test::TempDir d("trainer_lock");
  RunConfig cfg = tiny_run(d);
  {
    Trainer first(cfg, {});
    TrainOptions o;
    o.overwrite = true;
    const std::string e = error_of([&] { Trainer second(cfg, o); });
    CHECK_THAT(e,
               Contains("run.dir " + cfg.run.dir + " is in use by another trainer (pid " + std::to_string(::getpid())));
    CHECK_THAT(slurp(cfg.run.dir + "/.lock"), Contains("pid " + std::to_string(::getpid())));
    // The lock alone: a second lock of the same directory fails the same way.
    CHECK_THAT(error_of([&] { RunLock again(cfg.run.dir); }), Contains("is in use by another trainer"));
  }
  RunLock free_again(cfg.run.dir);  // released with the first trainer
}

TEST_CASE("Trainer: --overwrite removes the previous run before the first step", "[trainer]") {
  test::TempDir d("trainer_overwrite");
  RunConfig cfg = tiny_run(d, R"({"checkpoint_every": 2})");
  Trainer(cfg, {}).fit();
  REQUIRE(CheckpointManager(cfg.run.dir, 0).has_checkpoints());
  CHECK_THAT(error_of([&] { Trainer again(cfg, {}); }), Contains("run directory already has checkpoints"));
  TrainOptions o;
  o.overwrite = true;
  {
    Trainer t(cfg, o);
    CHECK_FALSE(fs::exists(cfg.run.dir + "/ckpt"));
    CHECK(slurp(cfg.run.dir + "/metrics.jsonl").empty());
    t.train_step();
  }
  // Nothing of the old run is left to resume.
  TrainOptions r;
  r.resume = "auto";
  CHECK(Trainer(cfg, r).step() == 0);
  TrainOptions both = o;
  both.resume = "auto";
  CHECK(error_of([&] { Trainer t(cfg, both); }) == "--resume and --overwrite exclude each other: continue the run in " +
                                                       cfg.run.dir + " or start it over, not both");
}

TEST_CASE("Trainer: a checkpoint state beyond run.steps is refused before anything is truncated", "[trainer]") {
  test::TempDir d("trainer_beyond");
  RunConfig cfg = tiny_run(d);
  Trainer(cfg, {}).fit();
  const std::string metrics = slurp(cfg.run.dir + "/metrics.jsonl");
  RunConfig shorter = cfg;
  shorter.run.steps = 4;
  TrainOptions r;
  r.resume = "auto";
  CHECK_THAT(error_of([&] { Trainer t(shorter, r); }),
             Contains("ckpt/step_00000006/state.json: step: 6 is beyond run.steps (4 in tiny.json)"));
  CHECK(slurp(cfg.run.dir + "/metrics.jsonl") == metrics);
}

TEST_CASE("check_run_inputs: data globs and batch divisibility", "[trainer]") {
  test::TempDir d("dry_run");
  RunConfig cfg = tiny_run(d);
  CHECK_THAT(check_run_inputs(cfg, 1),
             Contains("2 data.train shard(s), 8000 tokens; 1 data.val shard(s), 4000 tokens"));
  CHECK(grad_accum_steps(cfg, 1) == 1);
  cfg.data.batch_tokens = 80;
  CHECK(error_of([&] { check_run_inputs(cfg, 1); }) ==
        "tiny.json: data.batch_tokens: 80 is not a multiple of micro_batch * seq_len * world = 32");
  cfg.data.batch_tokens = 64;
  CHECK(grad_accum_steps(cfg, 1) == 2);
  CHECK_THAT(error_of([&] { check_run_inputs(cfg, 4); }), Contains("data.batch_tokens: 64 is not a multiple"));
  cfg.data.val = d.file("v_*.bin");
  CHECK_THAT(error_of([&] { check_run_inputs(cfg, 1); }), Contains("data.val: no files match"));
}
