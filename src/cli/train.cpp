// `llmtrain train CONFIG.json [--set key=value ...] [--resume auto|DIR]`: the trainer's front door.
#include <spdlog/spdlog.h>

#include "cli/commands.h"
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
      "  llmtrain train configs/demo-gpt2-tiny.json --dry-run          # validate and print the resolved config");
  sub->add_option("config", o->config, "Run config (JSON)")->required()->check(CLI::ExistingFile);
  sub->add_option("--set", o->sets, "Override a config value: key.path=value (repeatable)");
  sub->add_option("--resume", o->train.resume, "Resume: 'auto' (latest checkpoint of run.dir, if any) or a checkpoint dir");
  sub->add_flag("--overwrite", o->train.overwrite, "Start fresh even if run.dir already has checkpoints");
  sub->add_option("--stop-after", o->train.stop_after, "Stop after N steps of this invocation, with a checkpoint");
  sub->add_flag("--dry-run", o->dry_run, "Validate the config, print it resolved, and exit");
  return {sub, [o]() {
            RunConfig cfg = load_config(o->config, o->sets);
            if (o->dry_run) {
              std::printf("%s\n", cfg.resolved.dump(2).c_str());
              return 0;
            }
            return train(cfg, o->train);
          }};
}

}  // namespace llmtrain::cli
