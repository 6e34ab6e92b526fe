// Checkpoint contents: model weights, optimizer state and the small JSON state, written through
// CheckpointManager (atomic directory) and read back with strict shape and config checks.
#include "train/checkpoint_io.h"
#include "train/fault.h"

#include <deque>
#include <filesystem>
#include <fstream>

#include "llmtrain/error.h"
#include "llmtrain/safetensors.h"
#include "util/util.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace llmtrain {

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
  }
}

json read_checkpoint_config(const std::string& dir) {
  std::string path = (fs::path(dir) / "state.json").string();
  std::ifstream f(path);
  if (!f) throw InputError(path + ": cannot open");
  json st;
  try {
    st = json::parse(f);
  } catch (const json::parse_error& e) {
    throw InputError(path + ": invalid JSON: " + e.what());
  }
  if (!st.contains("config")) throw InputError(path + ": no \"config\" entry");
  return st["config"];
}

std::string save_checkpoint(CheckpointManager& mgr, const TrainState& st, const Model& model, Backend& backend,
                            const std::vector<OptimizerView>& opts, const RunConfig& cfg, Communicator& comm) {
  const int rank = comm.rank();
  std::vector<float> host(model.num_params());
  backend.download_params(host.data());
  auto write = [&](const std::string& dir) {
    if (rank == 0) write_model_safetensors((fs::path(dir) / "model.safetensors").string(), model, host.data(), cfg.resolved);
    std::vector<SafetensorsEntry> ts;
    json scalars = json::object();
    std::deque<std::vector<float>> staged;  // host copies of device state, alive until written
    for (const auto& o : opts) {
      for (const auto& s : o.opt->state()) {
        const float* data = s.data;
        if (s.on_device) {
          staged.emplace_back(s.numel);
          copy_state_to_host(s, staged.back().data());
          data = staged.back().data();
        }
        ts.push_back({o.group + "/" + s.name, DType::F32, s.shape, data, s.numel * sizeof(float)});
      }
      scalars[o.group] = {{"type", o.opt->type()}, {"state", o.opt->scalar_state()}};
    }
    write_safetensors((fs::path(dir) / ("optimizer_rank" + std::to_string(rank) + ".safetensors")).string(), ts,
                      {{"format", "llmtrain-optimizer"}});
    if (rank == 0) {
      json j{{"step", st.step},
             {"loader", st.loader},
             {"sample_rng", std::to_string(st.sample_rng)},
             {"optimizers", scalars},
             {"zero", {{"stage", cfg.run.zero}, {"world", comm.world()}}},
             {"config", cfg.resolved},
             {"code_version", LLMTRAIN_VERSION}};
      write_file_atomic((fs::path(dir) / "state.json").string(), j.dump(2) + "\n");
    }
    // Crash-safety tests: die with every file written but the checkpoint not yet committed.
    maybe_fault(fault_from_environment(), FaultPoint::in_checkpoint, st.step, rank);
  };
  if (comm.world() == 1) return mgr.save(st.step, write);
  // Several ranks fill one temp directory (named from a tag every rank knows), then rank 0 commits
  // it; the barriers make sure no rank's file is missing when `latest` moves.
  const std::string tag = "dp" + std::to_string(st.step);
  std::string tmp;
  if (rank == 0) tmp = mgr.begin(st.step, tag);
  comm.barrier();
  if (rank != 0) tmp = (fs::path(mgr.ckpt_dir()) / (".tmp_" + CheckpointManager::step_dir_name(st.step) + "_" + tag)).string();
  write(tmp);
  comm.barrier();
  std::string final_dir;
  if (rank == 0) final_dir = mgr.commit(st.step, tmp);
  comm.barrier();
  return final_dir.empty() ? (fs::path(mgr.ckpt_dir()) / CheckpointManager::step_dir_name(st.step)).string() : final_dir;
}

TrainState load_checkpoint(const std::string& dir, const Model& model, Backend& backend,
                           const std::vector<OptimizerView>& opts, const RunConfig& cfg, int rank, int world) {
  std::string state_path = (fs::path(dir) / "state.json").string();
  json st;
  {
    std::ifstream f(state_path);
    if (!f) throw InputError(state_path + ": cannot open");
    try {
      st = json::parse(f);
    } catch (const json::parse_error& e) {
      throw InputError(state_path + ": invalid JSON: " + e.what());
    }
  }
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
  const json& scal = st.at("optimizers");
  for (const auto& o : opts) {
    if (!scal.contains(o.group))
      throw InputError(state_path + ": no optimizer group \"" + o.group + "\" in the checkpoint");
    if (scal[o.group].value("type", "") != o.opt->type())
      throw InputError(state_path + ": optimizer group \"" + o.group + "\" was " + scal[o.group].value("type", "?") +
                       " in the checkpoint but is " + o.opt->type() + " now");
    for (const auto& s : o.opt->state()) {
      std::string name = o.group + "/" + s.name;
      if (!r.contains(name)) throw InputError(opt_path + ": missing optimizer tensor " + name);
      if (s.on_device) {
        std::vector<float> staged(s.numel);
        r.read_f32(name, staged.data(), s.numel);
        copy_state_from_host(s, staged.data());
      } else {
        r.read_f32(name, s.data, s.numel);
      }
    }
    o.opt->load_scalar_state(scal[o.group]["state"]);
  }
  TrainState t;
  t.step = st.at("step").get<int64_t>();
  t.loader = st.at("loader");
  t.sample_rng = std::stoull(st.at("sample_rng").get<std::string>());
  return t;
}

}  // namespace llmtrain
