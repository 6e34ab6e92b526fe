// `llmtrain sweep SPEC.json [--dry-run] [--continue-on-failure]`: trains every run of a grid of
// config overrides, one after another, skipping finished runs and resuming interrupted ones.
#include <iostream>

#include "cli/commands.h"
#include "tools/sweep.h"

namespace llmtrain::cli {

Command add_sweep_command(CLI::App& app) {
  struct Opts {
    std::string spec;
    report::SweepOptions sweep;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* sub = app.add_subcommand("sweep", "Train a grid of config overrides (skips finished runs, resumes the rest)");
  sub->footer(
      "Spec (JSON; see docs/reproducing.md):\n"
      "  {\"base\": \"configs/paper/gpt2-small-owt-rmnp.json\", \"out\": \"runs/sweep_lr\",\n"
      "   \"set\": {\"run.steps\": 2000},\n"
      "   \"grid\": {\"optimizer.matrix.lr\": [0.002, 0.004], \"optimizer.matrix.type\": [\"muon\", \"rmnp\"]},\n"
      "   \"launch\": {\"nproc_per_node\": 2}}\n"
      "Each run trains in OUT/<name> (name from its overrides, e.g. lr=0.002_type=muon) with\n"
      "`llmtrain train BASE --set k=v ... --resume auto`; OUT/sweep.json holds every run's status and\n"
      "OUT/<name>/train.log its output. Running the same command again skips finished runs.\n"
      "Examples:\n"
      "  llmtrain sweep configs/repro/cpu_small_gpt2.json --dry-run   # print the runs and commands\n"
      "  llmtrain sweep configs/repro/cpu_small_gpt2.json\n"
      "  llmtrain sweep configs/paper/sweeps/gpt2-owt.json --nproc-per-node 8 --continue-on-failure\n"
      "  llmtrain report runs/repro_cpu_small/gpt2 --by optimizer,model --md report.md\n"
      "Ctrl-C stops the current run (it resumes from its last checkpoint next time) and exits 130.");
  sub->add_option("spec", o->spec, "Sweep spec (JSON)")->required()->check(CLI::ExistingFile);
  sub->add_flag("--dry-run", o->sweep.dry_run, "Print the runs, what each would do (new/resume/skip) and the commands");
  sub->add_flag("--continue-on-failure", o->sweep.continue_on_failure,
                "Go on with the next run when one fails (default: stop at the first failure)");
  sub->add_option("--nproc-per-node", o->sweep.nproc_per_node,
                  "Train each run under `llmtrain launch` with N processes (overrides the spec's launch; 0: plain train)")
      ->check(CLI::Range(0, 4096));
  return {sub, [o]() {
            report::SweepSpec spec = report::load_sweep_spec(o->spec);
            return report::run_sweep(spec, o->sweep, std::cout);
          }};
}

}  // namespace llmtrain::cli
