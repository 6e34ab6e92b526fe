// `llmtrain launch [options] -- train CONFIG ...`: runs N workers of this binary on this node with
// RANK/LOCAL_RANK/WORLD_SIZE/LOCAL_WORLD_SIZE/MASTER_ADDR/MASTER_PORT set (torchrun's contract),
// prefixes their output with "[rank N] ", stops the group when one fails and restarts it (with
// `--resume auto` for train) up to --max-restarts times. With --exec the command is any program
// instead of an llmtrain subcommand. The engine lives in src/dist/launcher.cpp.
#include <algorithm>

#include "cli/commands.h"
#include "dist/launcher.h"
#include "llmtrain/error.h"
#include "tools/process.h"

namespace llmtrain::cli {
namespace {

bool has_flag(const std::vector<std::string>& args, const std::string& flag) {
  for (const auto& a : args) {
    if (a == "--") break;
    if (a == flag || a.rfind(flag + "=", 0) == 0) return true;
  }
  return false;
}

// Later attempts of `train` continue from the latest checkpoint instead of starting over.
std::vector<std::string> restart_args_for(const std::vector<std::string>& args) {
  if (args.empty() || args[0] != "train") return args;
  std::vector<std::string> out;
  for (const auto& a : args)
    if (a != "--overwrite") out.push_back(a);  // would wipe the checkpoints we want to resume from
  if (!has_flag(out, "--resume")) {
    out.push_back("--resume");
    out.push_back("auto");
  }
  return out;
}

}  // namespace

Command add_launch_command(CLI::App& app) {
  struct Opts {
    dist::LaunchSpec spec;
    bool exec = false;
    std::vector<std::string> command;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* sub = app.add_subcommand("launch", "Run N data-parallel workers on this node (like torchrun)");
  sub->footer(
      "The command after -- is an llmtrain subcommand run in each worker (or, with --exec, any program).\n"
      "Each worker gets RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT,\n"
      "LLMTRAIN_STORE and LLMTRAIN_RESTART_COUNT. When a worker fails the others get SIGTERM, then\n"
      "SIGKILL after --grace-period; the group restarts (train gets --resume auto) or the launcher exits\n"
      "with the failed worker's code. See docs/distributed.md.\n"
      "Examples:\n"
      "  llmtrain launch --standalone --nproc-per-node 4 -- train configs/demo-gpt2-tiny.json\n"
      "  llmtrain launch --nproc-per-node 8 --max-restarts 3 -- train cfg.json --set run.steps=5000\n"
      "  # two nodes, run on each (node rank 0 and 1):\n"
      "  llmtrain launch --nnodes 2 --node-rank 0 --master-addr node0 --master-port 29500 \\\n"
      "      --nproc-per-node 8 -- train cfg.json\n"
      "  llmtrain launch --standalone --nproc-per-node 2 --exec -- python3 my_worker.py");
  auto& s = o->spec;
  sub->add_option("--nproc-per-node", s.nproc_per_node, "Workers on this node")->capture_default_str();
  sub->add_option("--nnodes", s.nnodes, "Nodes in the job (run one launcher per node)")->capture_default_str();
  sub->add_option("--node-rank", s.node_rank, "This node's index in [0, nnodes)")->capture_default_str();
  sub->add_option("--master-addr", s.master_addr, "Host of node 0 (its launcher hosts the rendezvous store)")
      ->capture_default_str();
  sub->add_option("--master-port", s.master_port, "Port of the rendezvous store on node 0")->capture_default_str();
  sub->add_flag("--standalone", s.standalone, "One node; pick a free port for the store (no --master-* needed)");
  sub->add_option("--max-restarts", s.max_restarts, "Restart the whole group this many times after a failure")
      ->capture_default_str();
  sub->add_option("--monitor-interval", s.monitor_interval_s, "Seconds between checks of the workers")
      ->capture_default_str();
  sub->add_option("--grace-period", s.grace_period_s, "Seconds between SIGTERM and SIGKILL when stopping workers")
      ->capture_default_str();
  sub->add_flag("--exec", o->exec, "The command is an external program (looked up on PATH), not an llmtrain subcommand");
  sub->add_option("command", o->command, "The worker's command line: an llmtrain subcommand and its arguments");
  // Everything from the first positional on (or after --) is the worker's, options included.
  sub->positionals_at_end();

  return {sub, [o, &app]() {
            const std::vector<std::string>& cmd = o->command;
            if (cmd.empty())
              throw InputError("launch: no worker command; e.g. llmtrain launch --nproc-per-node 2 -- train CONFIG");
            dist::LaunchSpec spec = o->spec;
            if (o->exec) {
              spec.program = report::find_on_path(cmd[0]);
              if (spec.program.empty())
                throw InputError("launch --exec: '" + cmd[0] + "' is not an executable file or a program on PATH");
              spec.args.assign(cmd.begin() + 1, cmd.end());
              spec.restart_args = spec.args;
            } else {
              bool known = false;
              for (const CLI::App* c : app.get_subcommands([](CLI::App*) { return true; }))
                if (c->get_name() == cmd[0]) known = true;
              if (!known || cmd[0] == "launch")
                throw InputError("launch: '" + cmd[0] + "' is not an llmtrain subcommand" +
                                 (cmd[0] == "launch" ? "" : "; add --exec to run an external program"));
              spec.program = report::self_exe();
              spec.args = cmd;
              spec.restart_args = restart_args_for(cmd);
            }
            return dist::run_launcher(spec);
          }};
}

}  // namespace llmtrain::cli
