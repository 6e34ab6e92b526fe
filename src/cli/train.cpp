// `llmtrain train CONFIG.json [--set key=value ...] [--resume auto|DIR]`: the trainer's front door.
#include <spdlog/spdlog.h>

#include "cli/commands.h"
#include "llmtrain/comm.h"
#include "llmtrain/config.h"
#include "llmtrain/trainer.h"

namespace llmtrain::cli {

Command add_train_command(CLI::App& app) {
  struct Opts {
    std::string config;
    std::vector<std::string> sets;
    TrainOptions train;
    bool dry_run = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* sub = app.add_subcommand("train", "Train a model from a JSON config");
  sub->footer(
      "Examples:\n"
      "  llmtrain train configs/demo-gpt2-tiny.json\n"
      "  llmtrain train configs/demo-gpt2-tiny.json --set run.steps=50 --set optimizer.matrix.type=muon\n"
      "  llmtrain train configs/demo-gpt2-tiny.json --resume auto      # continue after a crash\n"
      "  llmtrain train configs/demo-gpt2-tiny.json --dry-run          # validate config and data, print the config\n\n"
      "Exit codes: 0 done; 1 runtime failure (a failed write, a non-finite step with run.on_nonfinite=stop);\n"
      "2 input error (config, data, checkpoint, or run.dir locked by another trainer).");
  sub->add_option("config", o->config, "Run config (JSON)")->required()->check(CLI::ExistingFile);
  sub->add_option("--set", o->sets, "Override a config value: key.path=value (repeatable)");
  auto* overwrite = sub->add_flag("--overwrite", o->train.overwrite,
                                  "Start fresh: first remove run.dir's checkpoints and metrics.jsonl");
  sub->add_option("--resume", o->train.resume,
                  "Resume: 'auto' (newest intact checkpoint of run.dir, if any) or a checkpoint dir")
      ->excludes(overwrite);
  sub->add_option("--stop-after", o->train.stop_after, "Stop after N steps of this invocation, with a checkpoint");
  sub->add_flag("--dry-run", o->dry_run,
                "Validate the config, the data globs and shards, and the batch split; print the config resolved");
  return {sub, [o]() {
            RunConfig cfg = load_config(o->config, o->sets);
            if (o->dry_run) {
              // The world size the job would have (WORLD_SIZE etc. when under a launcher).
              const std::string summary = check_run_inputs(cfg, dist_env_from_environment().world);
              std::printf("%s\n", cfg.resolved.dump(2).c_str());
              std::fprintf(stderr, "dry run: ok: %s\n", summary.c_str());
              return 0;
            }
            return train(cfg, o->train);
          }};
}

}  // namespace llmtrain::cli
