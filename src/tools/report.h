// Run reports: reads finished (or crashed) run directories - config.json plus metrics.jsonl - and
// condenses each into a RunSummary (final/best validation perplexity, status, optimizer time),
// then lays the runs out like the RMNP paper's tables: rows = one config key (the optimizer),
// columns = another (model size, learning rate), each cell the best run of its group over the
// rest of the grid. A crashed run (fewer steps than run.steps, or a torn last line) is reported as
// incomplete, never as an error: reports are read while sweeps are still running.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace llmtrain::report {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// One line of metrics.jsonl (the fields a report needs; absent numbers are NaN).
struct MetricRecord {
  int64_t step = 0;
  double loss = kNaN;
  double val_loss = kNaN;
  double val_ppl = kNaN;
  double optim_ms = kNaN;
  double step_ms = kNaN;
  double tokens_per_s = kNaN;
  nlohmann::json diagnostics;  // {group: {r_avg, r_min, r_max, ...}} or null
};

struct MetricsFile {
  bool exists = false;
  std::vector<MetricRecord> records;  // increasing steps (a resumed run's rewritten tail wins)
  bool truncated_tail = false;        // the last non-empty line does not parse: a crash mid-write
  int bad_lines = 0;                  // other unparsable lines (skipped)
  int64_t last_step() const { return records.empty() ? 0 : records.back().step; }
};

// Never throws for a missing or damaged file: that is what `exists` and `truncated_tail` say.
MetricsFile read_metrics(const std::string& path);

struct RunSummary {
  std::string dir;
  std::string name;       // run.name, else the directory name
  nlohmann::json config;  // config.json (the resolved config), null when missing or unreadable
  std::string optimizer;  // the matrix group's type (muon, rmnp, ...) or "adamw"
  std::string model;      // the preset, else "L<n_layer>-C<n_embd>"
  double model_params = 0;  // rough parameter count, only to order model sizes
  std::string dataset;    // the directory (or shard prefix) of data.train
  double lr = kNaN;       // peak lr of the group that names `optimizer`
  double adamw_lr = kNaN; // peak lr of the "adamw" group when there is also a matrix group
  int64_t target_steps = 0;  // run.steps (0 when config.json is missing)
  int64_t last_step = 0;
  bool complete = false;
  std::string status;     // "complete", "incomplete" or "not started"
  std::string note;       // why a run is incomplete
  double final_loss = kNaN;
  double final_val_loss = kNaN, final_val_ppl = kNaN;
  int64_t final_val_step = 0;
  double best_val_ppl = kNaN;
  int64_t best_val_step = 0;
  double mean_optim_ms = kNaN, mean_step_ms = kNaN, mean_tokens_per_s = kNaN;
  nlohmann::json last_diagnostics;  // the last logged diagnostics object, or null
};

RunSummary summarize_run(const std::string& dir);

// Report arguments to run directories: a run directory (config.json or metrics.jsonl) stands for
// itself; a sweep directory stands for the runs its sweep.json lists; any other directory for
// its immediate subdirectories that are run directories (sorted). InputError for a path that is
// none of these.
std::vector<std::string> expand_run_dirs(const std::vector<std::string>& args);

// The value a run has for a grouping key: "optimizer", "model", "dataset", "lr", "adamw_lr",
// "name", "status", or a dotted path into config.json ("optimizer.matrix.momentum", "run.seed").
// Missing values are "-". A composite key joins simple ones with '+' ("model+optimizer" gives
// "gpt2-124m / rmnp"): one table row per combination, ordered part by part.
std::string run_key(const RunSummary& r, const std::string& key);

// The pivot table: rows by one key, columns by another; each cell holds the best run of its
// group by `metric` ("final": final validation perplexity, "best": best one seen during the run,
// "loss": final training loss, "optim_ms": mean optimizer time per step, as the timing table).
// Complete runs win over incomplete ones; a cell filled only by incomplete runs is flagged.
struct Table {
  struct Cell {
    int run = -1;          // index into the runs vector, -1 when empty
    double value = kNaN;
    int candidates = 0;    // runs in this row/column group
    bool from_incomplete = false;
  };
  std::string row_key, col_key, metric;
  std::vector<std::string> rows, cols;
  std::vector<std::vector<Cell>> cells;  // [row][col]
};

Table build_table(const std::vector<RunSummary>& runs, const std::string& row_key, const std::string& col_key,
                  const std::string& metric);

// Markdown: the pivot table (lowest value per column in bold) and a per-run detail table.
std::string format_markdown(const std::vector<RunSummary>& runs, const Table& t);
// CSV of the pivot table: first column the row value, one column per column value.
std::string format_table_csv(const Table& t);
// CSV with one line per run (every summary field, its row/column value, whether it won its cell).
std::string format_runs_csv(const std::vector<RunSummary>& runs, const Table& t);

// Short number formatting shared by the tables ("22.60", "0.002", "-" for NaN).
std::string fmt_num(double v, const char* spec);
std::string csv_field(const std::string& s);

}  // namespace llmtrain::report
