// Checkpoint contents: model weights, optimizer state and the small JSON state, written through
// CheckpointManager (atomic directory, per-file checksums) and read back with strict schema, shape,
// config and finiteness checks.
#include "train/checkpoint_io.h"
#include "train/fault.h"

#include <algorithm>
#include <cmath>
#include <deque>
#include <filesystem>
#include <fstream>

#include "llmtrain/error.h"
#include "llmtrain/safetensors.h"
#include "util/util.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace llmtrain {
namespace {

std::string nonfinite_text(float v) { return std::isnan(v) ? "nan" : v > 0 ? "inf" : "-inf"; }

// The schema of state.json, one key at a time (messages "<file>: <key>: ...").
void check_state_schema(const json& st, const std::string& path) {
  auto fail = [&](const std::string& key, const std::string& what) {
    throw InputError(path + ": " + key + ": " + what);
  };
  auto got = [](const json& v) { return std::string(v.type_name()) + " " + v.dump().substr(0, 40); };
  if (!st.is_object()) throw InputError(path + ": expected a JSON object, got " + std::string(st.type_name()));
  static const char* known[] = {"step", "loader", "sample_rng", "optimizers", "zero", "config", "code_version",
                                "files", "nonfinite"};
  for (auto it = st.begin(); it != st.end(); ++it)
    if (std::find(std::begin(known), std::end(known), it.key()) == std::end(known)) fail(it.key(), "unknown key");
  for (const char* k : {"step", "loader", "sample_rng", "optimizers", "config"})
    if (!st.contains(k)) fail(k, "missing");
  const json& step = st["step"];
  if (!step.is_number_integer()) fail("step", "expected an integer, got " + got(step));
  if (step.get<int64_t>() < 0 || step.get<int64_t>() > (int64_t(1) << 40))
    fail("step", "must be in [0, 2^40], got " + step.dump());
  if (!st["loader"].is_object()) fail("loader", "expected an object, got " + got(st["loader"]));
  const json& rng = st["sample_rng"];
  if (!rng.is_string() || rng.get<std::string>().empty() || rng.get<std::string>().size() > 20 ||
      rng.get<std::string>().find_first_not_of("0123456789") != std::string::npos)
    fail("sample_rng", "expected a decimal string (a 64-bit RNG state), got " + got(rng));
  try {
    (void)std::stoull(rng.get<std::string>());
  } catch (const std::exception&) {
    fail("sample_rng", "does not fit 64 bits: " + rng.get<std::string>());
  }
  const json& opts = st["optimizers"];
  if (!opts.is_object()) fail("optimizers", "expected an object, got " + got(opts));
  for (auto it = opts.begin(); it != opts.end(); ++it) {
    const std::string k = "optimizers." + it.key();
    if (!it->is_object()) fail(k, "expected an object, got " + got(*it));
    if (!it->contains("type") || !(*it)["type"].is_string()) fail(k + ".type", "expected a string");
    if (!it->contains("state")) fail(k + ".state", "missing");
  }
  if (st.contains("zero")) {
    const json& z = st["zero"];
    if (!z.is_object()) fail("zero", "expected an object, got " + got(z));
    if (!z.contains("stage") || !z["stage"].is_number_integer() || z["stage"].get<int64_t>() < 0 ||
        z["stage"].get<int64_t>() > 1)
      fail("zero.stage", "expected 0 or 1");
    if (!z.contains("world") || !z["world"].is_number_integer() || z["world"].get<int64_t>() < 1)
      fail("zero.world", "expected an integer >= 1");
  }
  const json& cfg = st["config"];
  if (!cfg.is_object()) fail("config", "expected an object, got " + got(cfg));
  if (!cfg.contains("model") || !cfg["model"].is_object()) fail("config.model", "missing or not an object");
  if (st.contains("code_version") && !st["code_version"].is_string()) fail("code_version", "expected a string");
  if (st.contains("files") && !st["files"].is_object()) fail("files", "expected an object");
  if (st.contains("nonfinite")) {
    const json& n = st["nonfinite"];
    if (!n.is_object()) fail("nonfinite", "expected an object, got " + got(n));
    for (const char* k : {"skipped", "in_a_row"})
      if (!n.contains(k) || !n[k].is_number_integer() || n[k].get<int64_t>() < 0)
        fail(std::string("nonfinite.") + k, "expected an integer >= 0");
  }
}

}  // namespace

int64_t first_nonfinite(const float* x, size_t n) {
  for (size_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i])) return (int64_t)i;
  return -1;
}

void write_model_safetensors(const std::string& path, const Model& model, const float* host, const json& config) {
  std::vector<SafetensorsEntry> ts;
  for (const auto& p : model.layout().params())
    ts.push_back({p.name, DType::F32, p.shape, host + p.offset, p.numel * sizeof(float)});
  write_safetensors(path, ts, {{"format", "llmtrain"}, {"arch", model.config().arch}, {"config", config.dump()}});
}

void read_model_safetensors(const std::string& path, const Model& model, float* host) {
  SafetensorsReader r(path);
  for (const auto& p : model.layout().params()) {
    if (!r.contains(p.name)) throw InputError(path + ": missing tensor " + p.name);
    auto info = r.get(p.name);
    if (info.shape != p.shape) {
      std::string want, got;
      for (auto d : p.shape) want += std::to_string(d) + ",";
      for (auto d : info.shape) got += std::to_string(d) + ",";
      throw InputError(path + ": tensor " + p.name + " has shape [" + got + "] but the model expects [" + want + "]");
    }
    r.read_f32(p.name, host + p.offset, p.numel);
    const int64_t bad = first_nonfinite(host + p.offset, p.numel);
    if (bad >= 0)
      throw InputError(path + ": tensor " + p.name + " holds non-finite values (element " + std::to_string(bad) +
                       " is " + nonfinite_text(host[p.offset + bad]) + "); refusing these weights");
  }
}

json read_state_json(const std::string& dir) {
  const std::string path = (fs::path(dir) / "state.json").string();
  std::ifstream f(path);
  if (!f) throw InputError(path + ": cannot open");
  json st;
  try {
    st = json::parse(f);
  } catch (const json::parse_error& e) {
    throw InputError(path + ": invalid JSON: " + e.what());
  }
  check_state_schema(st, path);
  // A step directory holds the state of its own step.
  const std::string name = fs::path(dir).filename().string();
  if (name.rfind("step_", 0) == 0 && name != CheckpointManager::step_dir_name(st["step"].get<int64_t>()))
    throw InputError(path + ": step: " + st["step"].dump() + " does not match the directory name " + name);
  return st;
}

json read_checkpoint_config(const std::string& dir) { return read_state_json(dir)["config"]; }

std::string save_checkpoint(CheckpointManager& mgr, const TrainState& st, const Model& model, Backend& backend,
                            const std::vector<OptimizerView>& opts, const RunConfig& cfg, Communicator& comm) {
  const int rank = comm.rank(), world = comm.world();
  std::vector<float> host(model.num_params());
  backend.download_params(host.data());

  // Host views of every optimizer state tensor (device state copied), checked before any write.
  std::vector<SafetensorsEntry> ts;
  json scalars = json::object();
  std::deque<std::vector<float>> staged;  // host copies of device state, alive until written
  std::string bad;
  for (const auto& o : opts) {
    for (const auto& s : o.opt->state()) {
      const float* data = s.data;
      if (s.on_device) {
        staged.emplace_back(s.numel);
        copy_state_to_host(s, staged.back().data());
        data = staged.back().data();
      }
      const std::string name = o.group + "/" + s.name;
      if (bad.empty() && first_nonfinite(data, s.numel) >= 0) bad = "optimizer state " + name;
      ts.push_back({name, DType::F32, s.shape, data, s.numel * sizeof(float)});
    }
    scalars[o.group] = {{"type", o.opt->type()}, {"state", o.opt->scalar_state()}};
  }
  if (rank == 0 && bad.empty()) {
    for (const auto& p : model.layout().params())
      if (first_nonfinite(host.data() + p.offset, p.numel) >= 0) {
        bad = "weight " + p.name;
        break;
      }
  }
  // Every rank stops together, so no rank waits for a checkpoint that will not come.
  double any_bad = bad.empty() ? 0.0 : 1.0;
  comm.all_reduce_sum(&any_bad, 1);
  if (any_bad > 0)
    throw RuntimeError("refusing to write checkpoint " + CheckpointManager::step_dir_name(st.step) + ": " +
                       (bad.empty() ? "another rank's optimizer state" : bad) +
                       " holds non-finite values; the previous checkpoint stays the newest");

  auto write = [&](const std::string& dir) {
    const std::string model_path = (fs::path(dir) / "model.safetensors").string();
    const std::string opt_name = "optimizer_rank" + std::to_string(rank) + ".safetensors";
    if (rank == 0) write_model_safetensors(model_path, model, host.data(), cfg.resolved);
    write_safetensors((fs::path(dir) / opt_name).string(), ts, {{"format", "llmtrain-optimizer"}});
    // Each rank checksums the file it wrote; the sums meet on rank 0 for the manifest (a CRC-32C
    // and a size below 2^53 are exact in a double).
    std::vector<double> sums(2 * (size_t)world, 0.0);
    const FileSum mine = checksum_file((fs::path(dir) / opt_name).string());
    sums[2 * rank] = (double)mine.bytes;
    sums[2 * rank + 1] = (double)mine.crc32c;
    comm.all_reduce_sum(sums.data(), sums.size());
    if (rank == 0) {
      json files = json::object();
      files["model.safetensors"] = file_sum_json(checksum_file(model_path));
      for (int r = 0; r < world; ++r)
        files["optimizer_rank" + std::to_string(r) + ".safetensors"] =
            file_sum_json(FileSum{(uint64_t)sums[2 * r], (uint32_t)sums[2 * r + 1]});
      json j{{"step", st.step},
             {"loader", st.loader},
             {"sample_rng", std::to_string(st.sample_rng)},
             {"optimizers", scalars},
             {"nonfinite", {{"skipped", st.nonfinite_skipped}, {"in_a_row", st.nonfinite_in_a_row}}},
             {"zero", {{"stage", cfg.run.zero}, {"world", world}}},
             {"config", cfg.resolved},
             {"code_version", LLMTRAIN_VERSION},
             {"files", files}};
      write_file_atomic((fs::path(dir) / "state.json").string(), j.dump(2) + "\n");
    }
    // Crash-safety tests: die with every file written but the checkpoint not yet committed.
    maybe_fault(fault_from_environment(), FaultPoint::in_checkpoint, st.step, rank);
  };
  if (world == 1) return mgr.save(st.step, write);
  // Several ranks fill one temp directory (named from a tag every rank knows), then rank 0 commits
  // it; the barriers make sure no rank's file is missing when `latest` moves.
  const std::string tag = "dp" + std::to_string(st.step);
  std::string tmp;
  if (rank == 0) tmp = mgr.begin(st.step, tag);
  comm.barrier();
  if (rank != 0)
    tmp = (fs::path(mgr.ckpt_dir()) / (".tmp_" + CheckpointManager::step_dir_name(st.step) + "_" + tag)).string();
  write(tmp);
  comm.barrier();
  std::string final_dir;
  if (rank == 0) final_dir = mgr.commit(st.step, tmp);
  comm.barrier();
  return final_dir.empty() ? (fs::path(mgr.ckpt_dir()) / CheckpointManager::step_dir_name(st.step)).string()
                           : final_dir;
}

TrainState load_checkpoint(const std::string& dir, const Model& model, Backend& backend,
                           const std::vector<OptimizerView>& opts, const RunConfig& cfg, int rank, int world) {
  const std::string state_path = (fs::path(dir) / "state.json").string();
  const json st = read_state_json(dir);
  const int64_t step = st["step"].get<int64_t>();
  if (step > cfg.run.steps)
    throw InputError(state_path + ": step: " + std::to_string(step) + " is beyond run.steps (" +
                     std::to_string(cfg.run.steps) + " in " + cfg.source + "); raise run.steps to train further");
  // The model must be the same; everything else (steps, lr, eval cadence) may change on resume.
  if (st.contains("config") && st["config"].contains("model") && !same_model_section(st["config"]["model"], cfg.resolved["model"]))
    throw InputError(state_path + ": checkpoint model config differs from " + cfg.source + " (model section)");
  // ZeRO-1 optimizer state is split by a plan that depends on the world size: it resumes only as it was written.
  {
    const json z = st.value("zero", json::object());
    const int was_stage = z.value("stage", 0), was_world = z.value("world", 1);
    const bool was_sharded = was_stage == 1 && was_world > 1, sharded = cfg.run.zero == 1 && world > 1;
    if ((was_sharded || sharded) && !(was_sharded && sharded && was_world == world))
      throw InputError(state_path + ": the optimizer state was written with run.zero=" + std::to_string(was_stage) +
                       " by " + std::to_string(was_world) + " rank(s); this run has run.zero=" +
                       std::to_string(cfg.run.zero) + " and " + std::to_string(world) +
                       " rank(s). Sharded (ZeRO-1) state resumes only with the same run.zero and number of ranks "
                       "(see docs/distributed.md)");
  }

  std::vector<float> host(model.num_params());
  read_model_safetensors((fs::path(dir) / "model.safetensors").string(), model, host.data());
  backend.upload_params(host.data());

  std::string opt_path = (fs::path(dir) / ("optimizer_rank" + std::to_string(rank) + ".safetensors")).string();
  SafetensorsReader r(opt_path);
  const json& scal = st["optimizers"];
  for (const auto& o : opts) {
    if (!scal.contains(o.group))
      throw InputError(state_path + ": optimizers: no group \"" + o.group + "\" in the checkpoint");
    if (scal[o.group]["type"].get<std::string>() != o.opt->type())
      throw InputError(state_path + ": optimizers." + o.group + ".type: the group was " +
                       scal[o.group]["type"].get<std::string>() + " in the checkpoint but is " + o.opt->type() +
                       " now");
    for (const auto& s : o.opt->state()) {
      std::string name = o.group + "/" + s.name;
      if (!r.contains(name)) throw InputError(opt_path + ": missing optimizer tensor " + name);
      std::vector<float> staged;
      float* dst = s.data;
      if (s.on_device) {
        staged.resize(s.numel);
        dst = staged.data();
      }
      r.read_f32(name, dst, s.numel);
      if (first_nonfinite(dst, s.numel) >= 0)
        throw InputError(opt_path + ": optimizer tensor " + name + " holds non-finite values; refusing to resume");
      if (s.on_device) copy_state_from_host(s, staged.data());
    }
    try {
      o.opt->load_scalar_state(scal[o.group]["state"]);
    } catch (const std::exception& e) {
      throw InputError(state_path + ": optimizers." + o.group + ".state: " + e.what());
    }
  }
  TrainState t;
  t.step = step;
  t.loader = st["loader"];
  t.sample_rng = std::stoull(st["sample_rng"].get<std::string>());
  if (st.contains("nonfinite")) {
    t.nonfinite_skipped = st["nonfinite"]["skipped"].get<int64_t>();
    t.nonfinite_in_a_row = st["nonfinite"]["in_a_row"].get<int64_t>();
  }
  return t;
}

}  // namespace llmtrain
