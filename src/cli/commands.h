// Subcommand registration. Each subcommand lives in src/cli/<name>.cpp and exposes one
// add_<name>_command() that declares its options on the CLI11 app and returns the function to
// run when the user picked it. main.cpp owns parsing and error-to-exit-code mapping, so commands
// just throw InputError (exit 2) or RuntimeError (exit 1).
#pragma once
#include <CLI/CLI.hpp>
#include <functional>

namespace llmtrain::cli {

struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;  // returns the process exit code
};

Command add_train_command(CLI::App& app);
Command add_eval_command(CLI::App& app);
Command add_generate_command(CLI::App& app);
Command add_export_command(CLI::App& app);
Command add_bench_command(CLI::App& app);
Command add_tokenize_command(CLI::App& app);
Command add_inspect_command(CLI::App& app);
Command add_sweep_command(CLI::App& app);
Command add_report_command(CLI::App& app);
Command add_launch_command(CLI::App& app);

}  // namespace llmtrain::cli
