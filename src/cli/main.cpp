// Entry point of the one llmtrain binary: registers every subcommand, parses the command line and
// maps errors to exit codes (DESIGN.md section 9): InputError -> 2, anything else -> 1, each as a
// single line on stderr.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <exception>
#include <vector>

#include "cli/commands.h"
#include "llmtrain/error.h"

int main(int argc, char** argv) {
  using namespace llmtrain;
  CLI::App app{"llmtrain: pretrain GPT-2 and LLaMA models with matrix optimizers (AdamW, Muon, RMNP, ...)"};
  app.set_version_flag("--version", std::string("llmtrain ") + LLMTRAIN_VERSION);
  app.require_subcommand(1);
  app.fallthrough(false);

  std::vector<cli::Command> commands;
  try {
    commands.push_back(cli::add_train_command(app));
    commands.push_back(cli::add_eval_command(app));
    commands.push_back(cli::add_generate_command(app));
    commands.push_back(cli::add_export_command(app));
    commands.push_back(cli::add_bench_command(app));
    commands.push_back(cli::add_tokenize_command(app));
    commands.push_back(cli::add_inspect_command(app));
    commands.push_back(cli::add_launch_command(app));
    commands.push_back(cli::add_sweep_command(app));
    commands.push_back(cli::add_report_command(app));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "llmtrain: internal error while registering commands: %s\n", e.what());
    return kExitRuntime;
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    // One line, like every other input error (CLI11's own format adds a second "Run with --help").
    std::fprintf(stderr, "llmtrain: error: %s (see --help)\n", e.what());
    return kExitInput;
  }

  try {
    for (auto& c : commands)
      if (c.app && c.app->parsed()) return c.run();
  } catch (const InputError& e) {
    std::fprintf(stderr, "llmtrain: error: %s\n", e.what());
    return kExitInput;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "llmtrain: runtime error: %s\n", e.what());
    return kExitRuntime;
  }
  return kExitInput;
}
