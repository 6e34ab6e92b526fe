// Sweeps: a JSON spec names a base run config, an output directory and a grid of config
// overrides; the runner expands the grid (cartesian product, stable order), names every run from
// its overrides, and trains the runs one after another as child processes of our own binary
// (`llmtrain train BASE --set k=v ... --set run.dir=OUT/NAME --resume auto`, or the same under
// `llmtrain launch`). Finished runs are skipped and interrupted ones resume from their latest
// checkpoint, so re-running a sweep after a crash or a reboot continues where it stopped.
// OUT/sweep.json records every run's status after each change.
//
// Spec (strict: unknown keys and wrong types are InputError naming the key):
//   {
//     "description": "optional text",
//     "base": "../gpt2-small-owt-rmnp.json",              // or a "base" axis in "grid"
//     "out": "runs/sweep_x",
//     "set":  {"run.steps": 2000},                         // fixed overrides, dotted keys
//     "grid": {"optimizer.matrix.lr": [0.002, 0.004],      // axes, the first varies slowest
//              "optimizer.matrix.type": ["muon", "rmnp"]},
//     "variants": {                                        // optional named branches, each with
//       "adamw": {"set": {...}, "grid": {...}},            // its own fixed overrides and axes
//       "rmnp":  {"base": "other.json", "set": {...}}},    // and optionally its own base config
//     "launch": {"nproc_per_node": 2, "args": ["--max-restarts", "1"]}   // optional
//   }
// Base paths (top level, variants, the base axis) are relative to the spec file, like a run config's
// "base"; each base is read with everything it inherits.
// An axis key may tie several config keys to one value: "optimizer.matrix.lr+optimizer.adamw.lr"
// sets both (the RMNP LLaMA recipe keeps the two learning rates equal); the first names the run.
// Expansion order: top-level axes outermost (in file order), then variants (in file order), then
// the variant's own axes. Overrides apply in the order set, variant set, axis values.
#pragma once
#include <cstdint>
#include <iosfwd>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace llmtrain::report {

using Override = std::pair<std::string, nlohmann::json>;  // dotted key, JSON value

struct SweepAxis {
  std::string key;                    // dotted config key, "key1+key2" (tied), or "base"
  std::vector<nlohmann::json> values;
};

struct SweepVariant {
  std::string name;
  std::string base;  // "" = the spec's base (or base axis)
  std::vector<Override> set;
  std::vector<SweepAxis> grid;
};

struct SweepSpec {
  std::string file;         // where the spec came from (messages)
  std::string description;
  std::string base;         // "" when the grid has a "base" axis or every variant names its base
  std::string out;
  std::vector<Override> set;
  std::vector<SweepAxis> grid;
  std::vector<SweepVariant> variants;
  int nproc_per_node = 0;   // > 0: run each training under `llmtrain launch`
  std::vector<std::string> launch_args;
};

struct SweepRun {
  std::string name;                // unique, filesystem-safe
  std::string base;                // the run config it starts from
  std::string variant;             // "" without variants
  std::vector<Override> overrides; // in application order (excluding run.dir and run.name)
  std::vector<Override> varied;    // the axis values (and variant) that distinguish it, for naming
  std::string dir;                 // out/name
};

// Parses and validates a spec; `j` keeps the file's key order (the grid's order matters).
SweepSpec parse_sweep_spec(const nlohmann::ordered_json& j, const std::string& file);
// Reads a spec file (comments allowed). InputError for a missing file, bad JSON or a bad spec.
SweepSpec load_sweep_spec(const std::string& path);
// Looks like a sweep spec rather than a run config (has "out" and "base" or "grid").
bool is_sweep_spec_json(const nlohmann::json& j);

// Expands the grid. InputError when two runs would get the same name.
std::vector<SweepRun> expand_sweep(const SweepSpec& s);

// Lower-case-preserving, filesystem-safe name: [A-Za-z0-9._=+-] kept, runs of anything else
// become one '-', no leading '.'/'-'; over 120 characters it is cut and an 8-hex hash appended.
std::string sanitize_name(const std::string& s);
// The name part of one override: "<last two key components>=<value>" ("matrix.lr=0.002"; tied
// keys use the first);
// the base axis uses the config file's stem, a string value is written without quotes.
std::string override_label(const std::string& key, const nlohmann::json& value);

// The run's config JSON with its overrides applied (no validation), and the run.steps it implies
// (the documented default 1000 when unset).
nlohmann::json effective_config(const SweepRun& r);
int64_t config_steps(const nlohmann::json& cfg);
// Sets a dotted key like `--set` does (creating objects on the way); InputError through a non-object.
void set_dotted(nlohmann::json& j, const std::string& key, const nlohmann::json& value, const std::string& source);

// What a run directory holds.
struct RunDirState {
  bool finished = false;       // metrics reach `steps` with an intact last line, and the final checkpoint is complete
  int64_t metrics_step = 0;    // last step in metrics.jsonl
  int64_t checkpoint_step = -1;  // newest complete checkpoint, -1 if none
  std::string describe() const;  // "finished", "resume from step 200", "new"
};
RunDirState inspect_run_dir(const std::string& dir, int64_t steps);

// The arguments after the binary for one run: `train BASE --set ... --resume auto`, wrapped in
// `launch --nproc-per-node N --standalone [args] --` when the spec asks for it.
std::vector<std::string> run_command(const SweepSpec& s, const SweepRun& r);

struct SweepOptions {
  bool dry_run = false;
  bool continue_on_failure = false;
  std::string exe;  // the llmtrain binary; "" = this process's own binary
  int nproc_per_node = -1;  // >= 0 replaces the spec's launch.nproc_per_node (0 = plain `train`)
};

// Runs (or, dry, prints) the sweep. Returns 0 when every run is finished, 1 when some failed,
// 130 when interrupted. Progress goes to `out`.
int run_sweep(const SweepSpec& s, const SweepOptions& opts, std::ostream& out);

}  // namespace llmtrain::report
