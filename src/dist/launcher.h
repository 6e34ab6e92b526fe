// The engine behind `llmtrain launch` (torchrun's job, for our binary): starts the local workers
// of one node with their rank variables, prefixes their output with "[rank N] ", watches them,
// and on the first failure stops the rest (SIGTERM, then SIGKILL after a grace period) and either
// restarts every worker or exits naming the failed rank. Node 0's launcher hosts the rendezvous
// store; launchers of a multi-node job tell each other about failures through it, so all nodes
// restart (or give up) together.
#pragma once
#include <string>
#include <vector>

namespace llmtrain::dist {

struct LaunchSpec {
  int nproc_per_node = 1;
  int nnodes = 1;
  int node_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  bool standalone = false;     // one node, a free port picked for the store
  int max_restarts = 0;
  double monitor_interval_s = 0.1;
  double grace_period_s = 5.0;  // SIGTERM -> SIGKILL
  std::string program;          // resolved executable path
  std::vector<std::string> args;          // argv[1..] of the first attempt
  std::vector<std::string> restart_args;  // argv[1..] of later attempts (e.g. + --resume auto)
};

// Runs the job on this node and returns the launcher's exit code: 0 when every worker of every
// node exited 0; the failed worker's code (128+signal when it was killed) when restarts ran out;
// 128+signal when the launcher itself got SIGINT/SIGTERM/SIGHUP; 1 when the store was lost.
// InputError for an inconsistent spec, RuntimeError when the store cannot be hosted/reached.
int run_launcher(const LaunchSpec& spec);

}  // namespace llmtrain::dist
