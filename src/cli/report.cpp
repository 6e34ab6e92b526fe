// `llmtrain report RUN_DIR... [--by ROW,COL] [--md F] [--csv F] [--runs-csv F] [--plot F.png]`:
// tables of final/best validation perplexity laid out like the RMNP paper's, from run directories.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cli/commands.h"
#include "llmtrain/error.h"
#include "tools/process.h"
#include "tools/report.h"

namespace fs = std::filesystem;

namespace llmtrain::cli {
namespace {

void write_text(const std::string& path, const std::string& text) {
  const fs::path parent = fs::path(path).parent_path();
  std::error_code ec;
  if (!parent.empty()) fs::create_directories(parent, ec);
  std::ofstream f(path, std::ios::binary);
  if (!f) throw RuntimeError(path + ": cannot open for writing");
  f << text;
  if (!f) throw RuntimeError(path + ": write failed");
}

// scripts/plot_runs.py: $LLMTRAIN_PLOT_SCRIPT, else the source tree this binary was built from,
// else ./scripts/plot_runs.py.
std::string plot_script() {
  if (const char* env = std::getenv("LLMTRAIN_PLOT_SCRIPT"); env && *env) return env;
  std::vector<std::string> candidates;
#ifdef LLMTRAIN_SOURCE_DIR
  candidates.push_back(std::string(LLMTRAIN_SOURCE_DIR) + "/scripts/plot_runs.py");
#endif
  candidates.push_back("scripts/plot_runs.py");
  for (const auto& c : candidates)
    if (fs::is_regular_file(c)) return c;
  throw RuntimeError("cannot find scripts/plot_runs.py (set LLMTRAIN_PLOT_SCRIPT to its path)");
}

// A Python that can import matplotlib: $LLMTRAIN_PYTHON, else python3 on PATH, else the system
// /usr/bin/python3 (a pyenv or venv python3 earlier on PATH often lacks the Debian package);
// "" when none can.
std::string plot_python() {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("LLMTRAIN_PYTHON"); env && *env) {
    candidates.push_back(env);
  } else {
    candidates.push_back(report::find_on_path("python3"));
    candidates.push_back("/usr/bin/python3");
  }
  for (const auto& c : candidates) {
    if (c.empty() || report::find_on_path(c).empty()) continue;
    if (report::run_process(c, {"-c", "import matplotlib"}, "/dev/null", /*echo=*/false).ok()) return c;
  }
  return "";
}

// Draws the plot. Without matplotlib (or the script) it says so on stderr and returns false: the
// tables are the report's main product, and a missing plotting stack must not cost them.
bool draw_plot(const std::string& out, const std::string& title, const std::vector<std::string>& dirs) {
  const std::string py = plot_python();
  if (py.empty()) {
    std::cerr << "llmtrain report: --plot skipped: it needs python3 with matplotlib, and none was found "
                 "(Debian: apt-get install -y python3-matplotlib; or set LLMTRAIN_PYTHON to a python that has it)\n";
    return false;
  }
  std::string script;
  try {
    script = plot_script();
  } catch (const RuntimeError& e) {
    std::cerr << "llmtrain report: --plot skipped: " << e.what() << "\n";
    return false;
  }
  std::vector<std::string> args = {script, "--out", out};
  if (!title.empty()) {
    args.push_back("--title");
    args.push_back(title);
  }
  args.insert(args.end(), dirs.begin(), dirs.end());
  const report::ProcessResult pr = report::run_process(py, args);
  // The plotting stack is there but the script failed: a real error (the tables are written).
  if (!pr.ok()) throw RuntimeError("--plot: " + script + " failed (" + pr.describe() + "; its message is above)");
  return true;
}

}  // namespace

Command add_report_command(CLI::App& app) {
  struct Opts {
    std::vector<std::string> dirs;
    std::string by = "optimizer,model";
    std::string metric = "final";
    std::string md, csv, runs_csv, plot, title;
    bool quiet = false;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* sub = app.add_subcommand("report", "Tables and plots of finished (or running) training runs");
  sub->footer(
      "Arguments are run directories (config.json + metrics.jsonl), sweep directories (sweep.json)\n"
      "or directories holding run directories. Rows and columns group the runs by --by keys:\n"
      "optimizer, model, dataset, lr, adamw_lr, name, status, any dotted config key\n"
      "(run.seed, optimizer.matrix.momentum), or several joined by '+' (model+optimizer).\n"
      "Each cell is the best run of its group (lowest final validation perplexity), so a\n"
      "learning-rate grid collapses to best-of-grid per optimizer. Crashed runs are listed as\n"
      "incomplete. --plot needs python3 with matplotlib; without it the tables are still\n"
      "written and the plot is skipped with a message.\n"
      "Examples:\n"
      "  llmtrain report runs/paper/gpt2-owt                       # rows optimizer, columns model size\n"
      "  llmtrain report runs/sweep_lr --by optimizer,lr --md lr.md --csv lr.csv\n"
      "  llmtrain report runs/a runs/b --plot curves.png         # loss curves (needs python3-matplotlib)\n"
      "  llmtrain report runs/repro_cpu_small/gpt2 --metric best --runs-csv runs.csv\n"
      "  llmtrain report runs/repro_cpu_small/gpt2 runs/repro_cpu_small/llama --by model+optimizer,lr\n"
      "  llmtrain report runs/paper/timing --by model,optimizer --metric optim_ms   # the timing table");
  sub->add_option("dirs", o->dirs, "Run, sweep or parent directories")->required();
  sub->add_option("--by", o->by, "ROW[,COL] grouping keys (default optimizer,model)");
  sub->add_option("--metric", o->metric,
                  "Cell value: final (validation ppl, default), best (validation ppl), loss (final train loss), "
                  "optim_ms (mean optimizer ms per step)")
      ->check(CLI::IsMember({"final", "best", "loss", "optim_ms"}));
  sub->add_option("--md", o->md, "Write the Markdown report here");
  sub->add_option("--csv", o->csv, "Write the table (rows x columns) as CSV here");
  sub->add_option("--runs-csv", o->runs_csv, "Write one CSV line per run here");
  sub->add_option("--plot", o->plot, "Plot loss curves (and diagonal-dominance ratios) to this PNG via scripts/plot_runs.py");
  sub->add_option("--title", o->title, "Title of the plot");
  sub->add_flag("--quiet", o->quiet, "Do not print the Markdown report to stdout");
  return {sub, [o]() {
            std::string row = o->by, col;
            if (auto comma = o->by.find(','); comma != std::string::npos) {
              row = o->by.substr(0, comma);
              col = o->by.substr(comma + 1);
              if (col.find(',') != std::string::npos) throw InputError("--by: at most two keys (ROW,COL), got " + o->by);
            }
            if (row.empty()) throw InputError("--by: empty row key");
            const auto dirs = report::expand_run_dirs(o->dirs);
            std::vector<report::RunSummary> runs;
            for (const auto& d : dirs) runs.push_back(report::summarize_run(d));
            const report::Table t = report::build_table(runs, row, col, o->metric);
            const std::string md = report::format_markdown(runs, t);
            if (!o->quiet) std::cout << md << std::flush;
            if (!o->md.empty()) write_text(o->md, "# Report\n\n" + md);
            if (!o->csv.empty()) write_text(o->csv, report::format_table_csv(t));
            if (!o->runs_csv.empty()) write_text(o->runs_csv, report::format_runs_csv(runs, t));
            if (!o->plot.empty() && draw_plot(o->plot, o->title, dirs)) std::cerr << "wrote " << o->plot << "\n";
            return 0;
          }};
}

}  // namespace llmtrain::cli
