// Where this process sits in a job, from the variables its launcher set: `llmtrain launch` and
// torchrun (RANK, WORLD_SIZE, ...), Slurm's srun (SLURM_PROCID, ...) or Open MPI's mpirun
// (OMPI_COMM_WORLD_*). Checked strictly: a malformed or inconsistent value is an InputError naming
// the variable, because a wrong rank silently trains on the wrong data or hangs the job.
#include <string>

#include "dist/env_util.h"
#include "llmtrain/comm.h"
#include "llmtrain/error.h"

namespace llmtrain {
namespace {

using dist::env_get;
using dist::env_int;
using dist::parse_int_strict;

constexpr long long kMaxRanks = 1 << 20;

// Slurm's compressed per-node task counts, e.g. "4(x2),3" = 4,4,3: the count of node `node`.
int slurm_tasks_on_node(const std::string& spec, int node, const char* name) {
  int index = 0;
  size_t pos = 0;
  while (pos < spec.size()) {
    size_t comma = spec.find(',', pos);
    if (comma == std::string::npos) comma = spec.size();
    std::string item = spec.substr(pos, comma - pos);
    long long count = 0, repeat = 1;
    const size_t paren = item.find("(x");
    if (paren != std::string::npos) {
      if (item.back() != ')') throw InputError(std::string(name) + "=" + spec + ": cannot parse the task counts");
      count = parse_int_strict(item.substr(0, paren), name, 1, kMaxRanks);
      repeat = parse_int_strict(item.substr(paren + 2, item.size() - paren - 3), name, 1, kMaxRanks);
    } else {
      count = parse_int_strict(item, name, 1, kMaxRanks);
    }
    if (node < index + repeat) return (int)count;
    index += (int)repeat;
    pos = comma + 1;
  }
  throw InputError(std::string(name) + "=" + spec + ": lists no tasks for node " + std::to_string(node));
}

// The first host of a Slurm node list: "gpu[03-08,12],cpu1" -> "gpu03"; "a-[1,3]-b[2-3]" -> "a-1-b2".
std::string slurm_first_host(const std::string& list) {
  std::string out;
  int depth = 0;
  bool in_first_of_group = false;
  for (char ch : list) {
    if (depth == 0) {
      if (ch == ',') break;
      if (ch == '[') {
        depth = 1;
        in_first_of_group = true;
        continue;
      }
      out.push_back(ch);
    } else {
      if (ch == ']') {
        depth = 0;
        continue;
      }
      if (ch == ',' || ch == '-') in_first_of_group = false;
      if (in_first_of_group) out.push_back(ch);
    }
  }
  return out;
}

}  // namespace

DistEnv dist_env_from_environment() {
  DistEnv e;
  if (auto f = env_int("LLMTRAIN_FORCE_COMM", 0, 1)) e.force_comm = *f == 1;
  std::string rank_var, world_var, local_var, local_world_var;
  bool multi_node_needs_addr = true;

  if (env_get("WORLD_SIZE") || env_get("RANK")) {
    // llmtrain launch, torchrun, or a user who exported the variables by hand.
    if (!env_get("WORLD_SIZE")) throw InputError("RANK is set but WORLD_SIZE is not; set both (or neither)");
    if (!env_get("RANK")) throw InputError("WORLD_SIZE is set but RANK is not; set both (or neither)");
    rank_var = "RANK", world_var = "WORLD_SIZE", local_var = "LOCAL_RANK", local_world_var = "LOCAL_WORLD_SIZE";
    e.world = (int)*env_int("WORLD_SIZE", 1, kMaxRanks);
    e.rank = (int)*env_int("RANK", 0, kMaxRanks);
    auto lw = env_int("LOCAL_WORLD_SIZE", 1, kMaxRanks);
    auto lr = env_int("LOCAL_RANK", 0, kMaxRanks);
    // Without the local variables assume one node.
    e.local_world = lw ? (int)*lw : e.world;
    e.local_rank = lr ? (int)*lr : (lw ? e.rank % e.local_world : e.rank);
  } else if (env_get("SLURM_PROCID") && env_get("SLURM_STEP_NUM_TASKS")) {
    // A task of `srun` (SLURM_STEP_* exist only inside a job step, not in the batch script itself,
    // where SLURM_NTASKS describes the allocation and no peers are running).
    rank_var = "SLURM_PROCID", world_var = "SLURM_STEP_NUM_TASKS", local_var = "SLURM_LOCALID";
    e.world = (int)*env_int("SLURM_STEP_NUM_TASKS", 1, kMaxRanks);
    e.rank = (int)*env_int("SLURM_PROCID", 0, kMaxRanks);
    e.local_rank = (int)env_int("SLURM_LOCALID", 0, kMaxRanks).value_or(0);
    const int node = (int)env_int("SLURM_NODEID", 0, kMaxRanks).value_or(0);
    if (auto spec = env_get("SLURM_STEP_TASKS_PER_NODE")) {
      local_world_var = "SLURM_STEP_TASKS_PER_NODE";
      e.local_world = slurm_tasks_on_node(*spec, node, "SLURM_STEP_TASKS_PER_NODE");
    } else if (auto n = env_int("SLURM_NTASKS_PER_NODE", 1, kMaxRanks)) {
      local_world_var = "SLURM_NTASKS_PER_NODE";
      e.local_world = (int)*n;
    } else {
      local_world_var = "SLURM_STEP_NUM_TASKS";
      e.local_world = e.world;
    }
    if (!env_get("MASTER_ADDR")) {
      auto nodes = env_get("SLURM_STEP_NODELIST");
      if (!nodes) nodes = env_get("SLURM_JOB_NODELIST");
      if (nodes) e.master_addr = slurm_first_host(*nodes);
      multi_node_needs_addr = !nodes;
    }
    // Concurrent jobs sharing a node must not fight over one port.
    if (!env_get("MASTER_PORT"))
      if (auto job = env_int("SLURM_JOB_ID", 0, (1LL << 62))) e.master_port = 29500 + (int)(*job % 1000);
  } else if (env_get("OMPI_COMM_WORLD_RANK") || env_get("OMPI_COMM_WORLD_SIZE")) {
    rank_var = "OMPI_COMM_WORLD_RANK", world_var = "OMPI_COMM_WORLD_SIZE";
    local_var = "OMPI_COMM_WORLD_LOCAL_RANK", local_world_var = "OMPI_COMM_WORLD_LOCAL_SIZE";
    if (!env_get("OMPI_COMM_WORLD_SIZE") || !env_get("OMPI_COMM_WORLD_RANK"))
      throw InputError("OMPI_COMM_WORLD_RANK and OMPI_COMM_WORLD_SIZE must both be set");
    e.world = (int)*env_int("OMPI_COMM_WORLD_SIZE", 1, kMaxRanks);
    e.rank = (int)*env_int("OMPI_COMM_WORLD_RANK", 0, kMaxRanks);
    e.local_world = (int)env_int("OMPI_COMM_WORLD_LOCAL_SIZE", 1, kMaxRanks).value_or(e.world);
    e.local_rank = (int)env_int("OMPI_COMM_WORLD_LOCAL_RANK", 0, kMaxRanks).value_or(e.rank);
  } else {
    return e;  // a single process
  }

  auto val = [](const std::string& var, int v) { return var + "=" + std::to_string(v); };
  if (e.rank >= e.world) throw InputError(val(rank_var, e.rank) + " is not below " + val(world_var, e.world));
  if (e.local_world > e.world)
    throw InputError(val(local_world_var, e.local_world) + " is larger than " + val(world_var, e.world));
  if (e.local_rank >= e.local_world)
    throw InputError(val(local_var, e.local_rank) + " is not below " + val(local_world_var, e.local_world));

  if (auto a = env_get("MASTER_ADDR")) {
    e.master_addr = *a;
  } else if (e.world > e.local_world && multi_node_needs_addr) {
    throw InputError("MASTER_ADDR is not set, but " + val(world_var, e.world) + " spans more than one node (" +
                     val(local_world_var, e.local_world) + "); export MASTER_ADDR=<host of rank 0>");
  }
  if (auto p = env_int("MASTER_PORT", 1, 65535)) e.master_port = (int)*p;
  return e;
}

}  // namespace llmtrain
