// Reports and sweeps without training: synthetic run directories (config.json + metrics.jsonl)
// in a temp dir exercise parsing, crash detection, best-of-grid tables and their Markdown/CSV;
// sweep specs exercise validation, expansion order, naming and the skip/resume decisions, and
// a stand-in shell script plays the trainer so the runner's bookkeeping is tested end to end.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include "llmtrain/error.h"
#include "tools/report.h"
#include "tools/sweep.h"

namespace fs = std::filesystem;
using nlohmann::json;
using nlohmann::ordered_json;
using namespace llmtrain;
using namespace llmtrain::report;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    static int counter = 0;
    path = fs::temp_directory_path() /
           ("llmtrain_report_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string str(const std::string& sub = "") const { return sub.empty() ? path.string() : (path / sub).string(); }
};

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream f(p, std::ios::binary);
  f << text;
}

json run_config(const std::string& name, const std::string& preset, int64_t steps, const json& optimizer) {
  json model{{"preset", preset}, {"arch", preset.rfind("llama", 0) == 0 ? "llama" : "gpt2"}};
  if (preset == "gpt2-124m") model.update({{"n_layer", 12}, {"n_embd", 768}, {"vocab_size", 50257}});
  if (preset == "gpt2-355m") model.update({{"n_layer", 24}, {"n_embd", 1024}, {"vocab_size", 50257}});
  return json{{"model", model},
              {"data", {{"train", "data/openwebtext/openwebtext_train_*.bin"}}},
              {"optimizer", optimizer},
              {"run", {{"name", name}, {"steps", steps}}}};
}

json opt_adamw(double lr) { return json{{"adamw", {{"type", "adamw"}, {"lr", lr}}}}; }
json opt_matrix(const std::string& type, double lr) {
  return json{{"matrix", {{"type", type}, {"lr", lr}}}, {"adamw", {{"type", "adamw"}, {"lr", 0.003}}}};
}

// Metrics lines for steps 1..n with a validation point every `every` steps (ppl given per point).
std::string metrics_lines(int n, int every, const std::vector<double>& ppl, double optim_ms = 2.0) {
  std::ostringstream o;
  size_t k = 0;
  for (int s = 1; s <= n; ++s) {
    json r{{"step", s},
           {"loss", 5.0 - 0.01 * s},
           {"lr", {{"adamw", 0.001}}},
           {"grad_norm", 1.0},
           {"tokens", 1024},
           {"tokens_per_s", 1000.0},
           {"step_ms", 10.0},
           {"optim_ms", s == 1 ? 100.0 : optim_ms}};
    if (s % every == 0 && k < ppl.size()) {
      r["val_ppl"] = ppl[k];
      r["val_loss"] = std::log(ppl[k]);
      ++k;
    }
    o << r.dump() << "\n";
  }
  return o.str();
}

// A complete run directory: config + metrics (val every 5 steps) + optionally the final checkpoint.
std::string make_run(const TempDir& t, const std::string& name, const std::string& preset, const json& opt,
                     int steps, int reached, const std::vector<double>& ppl, bool final_ckpt = true) {
  const fs::path d = t.path / name;
  write(d / "config.json", run_config(name, preset, steps, opt).dump(2));
  write(d / "metrics.jsonl", metrics_lines(reached, 5, ppl));
  if (final_ckpt && reached == steps) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "step_%08d", steps);
    write(d / "ckpt" / buf / "state.json", "{\"step\": " + std::to_string(steps) + "}");
  }
  return d.string();
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

ordered_json spec_json(const std::string& text) { return ordered_json::parse(text); }

}  // namespace

// ------------------------------------------------------------------------------------------------
// metrics and run summaries

TEST_CASE("metrics.jsonl: records, resume rewrites and a torn last line", "[report]") {
  TempDir t;
  const std::string p = t.str("metrics.jsonl");
  write(p,
        "{\"step\":1,\"loss\":5.0}\n"
        "{\"step\":2,\"loss\":4.5,\"val_loss\":1.0}\n"
        "{\"step\":3,\"loss\":4.0}\n"
        "\n"
        "{\"step\":3,\"loss\":3.9,\"diagnostics\":{\"matrix\":{\"r_avg\":6.5,\"r_min\":1.5,\"r_max\":20}}}\n"
        "{\"step\":4,\"lo");
  MetricsFile m = read_metrics(p);
  CHECK(m.exists);
  CHECK(m.truncated_tail);
  CHECK(m.bad_lines == 0);
  REQUIRE(m.records.size() == 3);
  CHECK(m.last_step() == 3);
  CHECK(m.records[2].loss == Approx(3.9));  // the resumed run's line replaced the first one
  CHECK(m.records[1].val_ppl == Approx(std::exp(1.0)));  // val_ppl derived from val_loss
  CHECK(m.records[2].diagnostics["matrix"]["r_avg"] == 6.5);

  write(p, "{\"step\":1,\"loss\":5.0}\nnot json\n{\"step\":2,\"loss\":4.0}\n");
  m = read_metrics(p);
  CHECK_FALSE(m.truncated_tail);
  CHECK(m.bad_lines == 1);
  CHECK(m.last_step() == 2);

  CHECK_FALSE(read_metrics(t.str("nothing.jsonl")).exists);
}

TEST_CASE("run summaries: labels, final and best perplexity, optimizer time", "[report]") {
  TempDir t;
  const std::string d = make_run(t, "small-rmnp", "gpt2-124m", opt_matrix("rmnp", 0.004), 20, 20, {40, 30, 25, 26});
  RunSummary r = summarize_run(d);
  CHECK(r.status == "complete");
  CHECK(r.complete);
  CHECK(r.name == "small-rmnp");
  CHECK(r.optimizer == "rmnp");
  CHECK(r.model == "gpt2-124m");
  CHECK(r.dataset == "openwebtext");
  CHECK(r.lr == Approx(0.004));
  CHECK(r.adamw_lr == Approx(0.003));
  CHECK(r.target_steps == 20);
  CHECK(r.last_step == 20);
  CHECK(r.final_val_ppl == Approx(26));
  CHECK(r.final_val_step == 20);
  CHECK(r.best_val_ppl == Approx(25));
  CHECK(r.best_val_step == 15);
  CHECK(r.final_loss == Approx(5.0 - 0.2));
  CHECK(r.mean_optim_ms == Approx(2.0));  // the first (warm-up) step's 100 ms is left out
  CHECK(run_key(r, "optimizer") == "rmnp");
  CHECK(run_key(r, "lr") == "0.004");
  CHECK(run_key(r, "run.steps") == "20");
  CHECK(run_key(r, "optimizer.matrix.type") == "rmnp");
  CHECK(run_key(r, "no.such.key") == "-");

  RunSummary a = summarize_run(make_run(t, "small-adamw", "gpt2-124m", opt_adamw(6e-4), 20, 20, {50, 40, 35, 33}));
  CHECK(a.optimizer == "adamw");
  CHECK(a.lr == Approx(6e-4));
  CHECK_FALSE(std::isfinite(a.adamw_lr));
}

TEST_CASE("a crashed run is incomplete, never an error", "[report]") {
  TempDir t;
  // Fewer steps than run.steps and a torn last line.
  const std::string d = make_run(t, "crashed", "gpt2-124m", opt_matrix("muon", 0.02), 20, 12, {40, 30});
  { std::ofstream(t.path / "crashed" / "metrics.jsonl", std::ios::app) << "{\"step\":13,\"loss\":4.8"; }
  RunSummary r = summarize_run(d);
  CHECK(r.status == "incomplete");
  CHECK_FALSE(r.complete);
  CHECK(r.last_step == 12);
  CHECK_THAT(r.note, Catch::Contains("torn"));
  CHECK(r.final_val_ppl == Approx(30));

  // Only short: the note says where it stopped.
  RunSummary s = summarize_run(make_run(t, "short", "gpt2-124m", opt_matrix("muon", 0.02), 20, 7, {40}));
  CHECK(s.status == "incomplete");
  CHECK_THAT(s.note, Catch::Contains("stopped at step 7 of 20"));

  // Nothing written yet.
  write(t.path / "fresh" / "config.json", run_config("fresh", "gpt2-124m", 20, opt_adamw(1e-3)).dump());
  RunSummary f = summarize_run(t.str("fresh"));
  CHECK(f.status == "not started");
  CHECK(f.last_step == 0);

  // No config: steps unknown, so never complete.
  write(t.path / "noconfig" / "metrics.jsonl", metrics_lines(5, 5, {30}));
  RunSummary n = summarize_run(t.str("noconfig"));
  CHECK(n.status == "incomplete");
  CHECK_THAT(n.note, Catch::Contains("no config.json"));
}

TEST_CASE("report arguments expand to run directories", "[report]") {
  TempDir t;
  make_run(t, "sweep/b_run", "gpt2-124m", opt_adamw(1e-3), 5, 5, {30});
  make_run(t, "sweep/a_run", "gpt2-124m", opt_adamw(2e-3), 5, 5, {31});
  fs::create_directories(t.path / "sweep" / "not_a_run");
  auto dirs = expand_run_dirs({t.str("sweep")});
  REQUIRE(dirs.size() == 2);
  CHECK(fs::path(dirs[0]).filename() == "a_run");  // sorted
  CHECK(fs::path(dirs[1]).filename() == "b_run");

  // sweep.json lists runs in grid order, including ones not started yet.
  write(t.path / "sweep" / "sweep.json",
        R"({"runs": [{"name": "b_run"}, {"name": "a_run"}, {"name": "c_run"}]})");
  dirs = expand_run_dirs({t.str("sweep")});
  REQUIRE(dirs.size() == 3);
  CHECK(fs::path(dirs[0]).filename() == "b_run");
  CHECK(fs::path(dirs[2]).filename() == "c_run");
  CHECK(summarize_run(dirs[2]).status == "not started");
  // A run not started yet is listed but makes no row or column of its own.
  std::vector<RunSummary> some;
  for (const auto& d : dirs) some.push_back(summarize_run(d));
  Table tab = build_table(some, "optimizer", "lr", "final");
  CHECK(tab.rows == std::vector<std::string>{"adamw"});
  CHECK(tab.cols == std::vector<std::string>{"0.001", "0.002"});
  CHECK_THAT(format_markdown(some, tab), Catch::Contains("| c_run | not started"));

  // A run directory stands for itself; duplicates collapse.
  dirs = expand_run_dirs({t.str("sweep/a_run"), t.str("sweep/a_run/")});
  CHECK(dirs.size() == 1);
  CHECK_THAT(error_of([&] { expand_run_dirs({t.str("missing")}); }), Catch::Contains("not a directory"));
  CHECK_THAT(error_of([&] { expand_run_dirs({t.str("sweep/not_a_run")}); }), Catch::Contains("no run here"));
}

// ------------------------------------------------------------------------------------------------
// tables

TEST_CASE("best-of-grid: one cell per optimizer and model, lowest complete run wins", "[report]") {
  TempDir t;
  std::vector<RunSummary> runs;
  auto add = [&](const std::string& n, const std::string& preset, const json& opt, int reached,
                 std::vector<double> ppl) {
    runs.push_back(summarize_run(make_run(t, n, preset, opt, 10, reached, ppl)));
  };
  // Deliberately shuffled order: rows must come out adamw, muon, rmnp; columns small, medium.
  add("r1", "gpt2-355m", opt_matrix("rmnp", 0.002), 10, {30, 18.0});
  add("m1", "gpt2-124m", opt_matrix("muon", 0.01), 10, {30, 23.0});
  add("m2", "gpt2-124m", opt_matrix("muon", 0.02), 10, {30, 22.86});
  add("a1", "gpt2-124m", opt_adamw(6e-4), 10, {30, 24.19});
  add("a2", "gpt2-124m", opt_adamw(1e-3), 10, {30, 24.50});
  add("r2", "gpt2-124m", opt_matrix("rmnp", 0.004), 10, {30, 22.82});
  add("r3", "gpt2-124m", opt_matrix("rmnp", 0.008), 5, {20.0});  // crashed but lower: must not win
  add("a3", "gpt2-355m", opt_adamw(3e-4), 7, {19.5});             // the only adamw/medium run: incomplete

  Table tab = build_table(runs, "optimizer", "model", "final");
  REQUIRE(tab.rows == std::vector<std::string>{"adamw", "muon", "rmnp"});
  REQUIRE(tab.cols == std::vector<std::string>{"gpt2-124m", "gpt2-355m"});
  CHECK(runs[tab.cells[0][0].run].name == "a1");
  CHECK(tab.cells[0][0].candidates == 2);
  CHECK(runs[tab.cells[1][0].run].name == "m2");
  CHECK(runs[tab.cells[2][0].run].name == "r2");
  CHECK(tab.cells[2][0].value == Approx(22.82));
  CHECK(tab.cells[2][0].candidates == 2);
  CHECK_FALSE(tab.cells[2][0].from_incomplete);
  CHECK(runs[tab.cells[0][1].run].name == "a3");
  CHECK(tab.cells[0][1].from_incomplete);
  CHECK(tab.cells[1][1].run == -1);  // no muon medium run
  CHECK(runs[tab.cells[2][1].run].name == "r1");

  SECTION("markdown") {
    const std::string md = format_markdown(runs, tab);
    CHECK_THAT(md, Catch::Contains("## Final validation perplexity (rows: optimizer, columns: model)"));
    CHECK_THAT(md, Catch::Contains("| optimizer | gpt2-124m | gpt2-355m |\n|---|---:|---:|\n"));
    CHECK_THAT(md, Catch::Contains("| adamw | 24.19 | 19.50† |\n"));
    CHECK_THAT(md, Catch::Contains("| muon | 22.86 | - |\n"));
    CHECK_THAT(md, Catch::Contains("| rmnp | **22.82** | **18.00** |\n"));
    CHECK_THAT(md, Catch::Contains("†: only incomplete runs"));
    CHECK_THAT(md, Catch::Contains("| r3 | incomplete (stopped at step 5 of 10) | rmnp | gpt2-124m | 0.008 | 0.003 | 5/10 |"));
    CHECK_THAT(md, Catch::Contains("| 2.00 | 10.0 | 1000 | yes |"));  // optim ms, step ms, tok/s, winner
  }
  SECTION("table csv") {
    CHECK(format_table_csv(tab) ==
          "optimizer,gpt2-124m,gpt2-355m\n"
          "adamw,24.1900,19.5000 (incomplete)\n"
          "muon,22.8600,\n"
          "rmnp,22.8200,18.0000\n");
  }
  SECTION("runs csv") {
    const std::string csv = format_runs_csv(runs, tab);
    std::istringstream in(csv);
    std::string header, first;
    std::getline(in, header);
    std::getline(in, first);
    CHECK(header.rfind("dir,name,status,note,optimizer,model,dataset,lr,adamw_lr,last_step,target_steps,", 0) == 0);
    CHECK_THAT(first, Catch::Contains(",r1,complete,,rmnp,gpt2-355m,openwebtext,0.002,0.003,10,10,"));
    CHECK_THAT(first, Catch::EndsWith(",rmnp,gpt2-355m,true"));
    CHECK(std::count(csv.begin(), csv.end(), '\n') == 1 + (long)runs.size());
  }
  SECTION("lr sweep layout: rows optimizer, columns lr, numeric order") {
    std::vector<RunSummary> small;
    for (const auto& r : runs)
      if (r.model == "gpt2-124m") small.push_back(r);
    Table lr = build_table(small, "optimizer", "lr", "final");
    CHECK(lr.cols == std::vector<std::string>{"0.0006", "0.001", "0.004", "0.008", "0.01", "0.02"});
    CHECK(lr.cells[0][1].value == Approx(24.50));
    CHECK(lr.cells[2][3].from_incomplete);
  }
  SECTION("best metric and one key") {
    Table b = build_table(runs, "optimizer", "", "best");
    REQUIRE(b.cols.size() == 1);
    CHECK(b.cells[2][0].value == Approx(18.0));
    CHECK_THROWS_AS(build_table(runs, "optimizer", "", "median"), InputError);
  }
}

TEST_CASE("composite keys give one row per combination; optim_ms makes the timing table", "[report]") {
  TempDir t;
  std::vector<RunSummary> runs;
  auto add = [&](const std::string& n, const std::string& preset, const json& opt, double ppl, double optim_ms) {
    const fs::path d = t.path / n;
    write(d / "config.json", run_config(n, preset, 10, opt).dump(2));
    write(d / "metrics.jsonl", metrics_lines(10, 10, {ppl}, optim_ms));
    runs.push_back(summarize_run(d.string()));
  };
  add("l_rmnp_hi", "gpt2-355m", opt_matrix("rmnp", 0.004), 18.5, 0.4);
  add("s_muon_lo", "gpt2-124m", opt_matrix("muon", 0.01), 23.0, 3.0);
  add("s_rmnp_lo", "gpt2-124m", opt_matrix("rmnp", 0.002), 23.5, 0.2);
  add("s_rmnp_hi", "gpt2-124m", opt_matrix("rmnp", 0.004), 22.8, 0.2);
  add("s_adamw", "gpt2-124m", opt_adamw(6e-4), 24.2, 0.1);

  CHECK(run_key(runs[1], "model+optimizer") == "gpt2-124m / muon");
  CHECK(run_key(runs[4], "optimizer+lr") == "adamw / 0.0006");

  // The learning-rate layout: model, then optimizer in the paper's order; lr columns numeric.
  Table lr = build_table(runs, "model+optimizer", "lr", "final");
  REQUIRE(lr.rows == std::vector<std::string>{"gpt2-124m / adamw", "gpt2-124m / muon", "gpt2-124m / rmnp",
                                              "gpt2-355m / rmnp"});
  REQUIRE(lr.cols == std::vector<std::string>{"0.0006", "0.002", "0.004", "0.01"});
  CHECK(lr.cells[2][1].value == Approx(23.5));
  CHECK(lr.cells[2][2].value == Approx(22.8));
  CHECK(lr.cells[1][3].value == Approx(23.0));
  CHECK(lr.cells[0][1].run == -1);
  const std::string md = format_markdown(runs, lr);
  CHECK_THAT(md, Catch::Contains("| model+optimizer | 0.0006 | 0.002 | 0.004 | 0.01 |"));
  CHECK_THAT(md, Catch::Contains("| gpt2-124m / rmnp | - | 23.50 | **22.80** | - |"));  // its best lr
  CHECK_THAT(md, Catch::Contains("| gpt2-355m / rmnp | - | - | **18.50** | - |"));

  // The timing layout: rows model (by size), columns optimizer, mean optimizer ms per step.
  Table tm = build_table(runs, "model", "optimizer", "optim_ms");
  REQUIRE(tm.rows == std::vector<std::string>{"gpt2-124m", "gpt2-355m"});
  REQUIRE(tm.cols == std::vector<std::string>{"adamw", "muon", "rmnp"});
  CHECK(tm.cells[0][1].value == Approx(3.0));
  CHECK(tm.cells[0][2].value == Approx(0.2));
  CHECK(tm.cells[1][2].value == Approx(0.4));
  const std::string tmd = format_markdown(runs, tm);
  CHECK_THAT(tmd, Catch::Contains("## Mean optimizer time per step (ms) (rows: model, columns: optimizer)"));
  CHECK_THAT(tmd, Catch::Contains("| gpt2-124m | **0.100** | 3.000 | 0.200 |"));  // best of its row
  CHECK_THAT(tmd, Catch::Contains("| gpt2-355m | - | - | **0.400** |"));
  CHECK_THAT(tmd, Catch::Contains("Bold: best in its row."));
  CHECK(format_table_csv(tm) == "model,adamw,muon,rmnp\ngpt2-124m,0.1000,3.0000,0.2000\ngpt2-355m,,,0.4000\n");
}

TEST_CASE("csv fields are quoted when needed and NaN prints as a dash", "[report]") {
  CHECK(csv_field("plain") == "plain");
  CHECK(csv_field("a,b") == "\"a,b\"");
  CHECK(csv_field("say \"hi\"") == "\"say \"\"hi\"\"\"");
  CHECK(fmt_num(kNaN, "%.2f") == "-");
  CHECK(fmt_num(22.8249, "%.2f") == "22.82");
}

// ------------------------------------------------------------------------------------------------
// sweep specs

TEST_CASE("sweep grids expand in a stable order with names from their overrides", "[report]") {
  SweepSpec s = parse_sweep_spec(spec_json(R"({
      "base": "configs/x.json", "out": "runs/sweep_x",
      "set": {"run.steps": 100},
      "grid": {"optimizer.matrix.lr": [0.001, 0.002], "optimizer.matrix.type": ["muon", "rmnp"]}})"),
                                 "spec.json");
  auto runs = expand_sweep(s);
  REQUIRE(runs.size() == 4);
  CHECK(runs[0].name == "matrix.lr=0.001_matrix.type=muon");
  CHECK(runs[1].name == "matrix.lr=0.001_matrix.type=rmnp");
  CHECK(runs[2].name == "matrix.lr=0.002_matrix.type=muon");
  CHECK(runs[3].name == "matrix.lr=0.002_matrix.type=rmnp");
  CHECK(runs[3].dir == (fs::path("runs/sweep_x") / runs[3].name).string());
  REQUIRE(runs[1].overrides.size() == 3);
  CHECK(runs[1].overrides[0].first == "run.steps");
  CHECK(runs[1].overrides[2] == Override{"optimizer.matrix.type", "rmnp"});

  auto cmd = run_command(s, runs[1]);
  const std::vector<std::string> expect = {"train",
                                           "configs/x.json",
                                           "--set",
                                           "run.steps=100",
                                           "--set",
                                           "optimizer.matrix.lr=0.001",
                                           "--set",
                                           "optimizer.matrix.type=\"rmnp\"",
                                           "--set",
                                           "run.name=\"matrix.lr=0.001_matrix.type=rmnp\"",
                                           "--set",
                                           "run.dir=\"" + runs[1].dir + "\"",
                                           "--resume",
                                           "auto"};
  CHECK(cmd == expect);

  s.nproc_per_node = 2;
  s.launch_args = {"--max-restarts", "1"};
  cmd = run_command(s, runs[0]);
  REQUIRE(cmd.size() > 8);
  CHECK(std::vector<std::string>(cmd.begin(), cmd.begin() + 8) ==
        std::vector<std::string>{"launch", "--nproc-per-node", "2", "--standalone", "--max-restarts", "1", "--",
                                 "train"});
}

TEST_CASE("sweep variants and a base axis", "[report]") {
  SweepSpec s = parse_sweep_spec(spec_json(R"({
      "out": "runs/repro",
      "grid": {"base": ["configs/repro/gpt2-small-cpu.json", "configs/repro/llama-small-cpu.json"]},
      "variants": {
        "adamw": {"set": {"optimizer": {"adamw": {"type": "adamw", "lr": 0.003}}},
                  "grid": {"optimizer.adamw.lr": [0.001, 0.003]}},
        "rmnp":  {"set": {"optimizer.matrix.type": "rmnp"}, "grid": {"optimizer.matrix.lr": [0.01]}}}})"),
                                 "spec.json");
  auto runs = expand_sweep(s);
  REQUIRE(runs.size() == 6);
  CHECK(runs[0].name == "gpt2-small-cpu_adamw_adamw.lr=0.001");
  CHECK(runs[0].base == "configs/repro/gpt2-small-cpu.json");
  CHECK(runs[0].variant == "adamw");
  CHECK(runs[2].name == "gpt2-small-cpu_rmnp_matrix.lr=0.01");
  CHECK(runs[3].name == "llama-small-cpu_adamw_adamw.lr=0.001");
  CHECK(runs[5].base == "configs/repro/llama-small-cpu.json");
  // Order of application: variant set first, then the axis value on top of it.
  REQUIRE(runs[1].overrides.size() == 2);
  CHECK(runs[1].overrides[0].first == "optimizer");
  CHECK(runs[1].overrides[1] == Override{"optimizer.adamw.lr", 0.003});
}

TEST_CASE("sweep variants may bring their own base config", "[report]") {
  SweepSpec s = parse_sweep_spec(spec_json(R"({"out": "runs/lr",
      "variants": {"adamw": {"base": "configs/a.json", "grid": {"optimizer.adamw.lr": [0.0003, 0.0006]}},
                   "rmnp":  {"base": "configs/r.json", "grid": {"optimizer.matrix.lr": [0.002]}}}})"),
                                 "spec.json");
  auto runs = expand_sweep(s);
  REQUIRE(runs.size() == 3);
  CHECK(runs[0].name == "adamw_adamw.lr=0.0003");
  CHECK(runs[1].base == "configs/a.json");
  CHECK(runs[2].name == "rmnp_matrix.lr=0.002");
  CHECK(runs[2].base == "configs/r.json");
}

TEST_CASE("tied axis keys set several config keys to one value", "[report]") {
  SweepSpec s = parse_sweep_spec(spec_json(R"({"base": "b.json", "out": "o",
      "grid": {"optimizer.matrix.lr+optimizer.adamw.lr": [0.005, 0.01]}})"),
                                 "spec.json");
  auto runs = expand_sweep(s);
  REQUIRE(runs.size() == 2);
  CHECK(runs[1].name == "matrix.lr=0.01");
  REQUIRE(runs[1].overrides.size() == 2);
  CHECK(runs[1].overrides[0] == Override{"optimizer.matrix.lr", 0.01});
  CHECK(runs[1].overrides[1] == Override{"optimizer.adamw.lr", 0.01});
  auto err = [](const std::string& text) {
    return error_of([&] { parse_sweep_spec(spec_json(text), "spec.json"); });
  };
  CHECK_THAT(err(R"({"base": "b.json", "out": "o", "grid": {"optimizer.matrix.lr+": [1]}})"),
             Catch::Contains("is not a dotted config key"));
  CHECK_THAT(err(R"({"base": "b.json", "out": "o", "set": {"optimizer.adamw.lr": 1},
                     "grid": {"optimizer.matrix.lr+optimizer.adamw.lr": [2]}})"),
             Catch::Contains("is both in \"set\" and in \"grid\""));
  CHECK_THAT(err(R"({"base": "b.json", "out": "o", "grid": {"run.dir+run.seed": [2]}})"),
             Catch::Contains("run.dir is set by the sweep itself"));
}

TEST_CASE("sweep names are sanitised and must be unique", "[report]") {
  CHECK(sanitize_name("lr=0.001_type=muon") == "lr=0.001_type=muon");
  CHECK(sanitize_name("a b/c\"d") == "a-b-c-d");
  CHECK(sanitize_name("../etc") == "etc");
  CHECK(sanitize_name("///") == "run");
  const std::string long_name(300, 'x');
  const std::string cut = sanitize_name(long_name);
  CHECK(cut.size() == 120);
  CHECK(cut != sanitize_name(std::string(299, 'x')));
  CHECK(override_label("optimizer.matrix.lr", 0.002) == "matrix.lr=0.002");
  CHECK(override_label("seed", 3) == "seed=3");
  CHECK(override_label("optimizer.matrix.type", "rmnp") == "matrix.type=rmnp");
  CHECK(override_label("base", "configs/paper/gpt2-small-owt-rmnp.json") == "gpt2-small-owt-rmnp");

  SweepSpec s = parse_sweep_spec(spec_json(R"({"base": "b.json", "out": "o",
      "grid": {"run.sample_prompt": ["a/b", "a b"]}})"),
                                 "spec.json");
  CHECK_THAT(error_of([&] { expand_sweep(s); }), Catch::Contains("would both be named \"run.sample_prompt=a-b\""));
}

TEST_CASE("sweep spec errors name the key", "[report]") {
  auto err = [](const std::string& text) {
    return error_of([&] { parse_sweep_spec(spec_json(text), "spec.json"); });
  };
  CHECK_THAT(err(R"({"base": "b.json", "out": "o", "gird": {}})"), Catch::Contains("spec.json: gird: unknown key"));
  CHECK_THAT(err(R"({"base": "b.json"})"), Catch::Contains("spec.json: out: missing"));
  CHECK_THAT(err(R"({"out": "o", "grid": {"run.seed": [1]}})"), Catch::Contains("spec.json: base: missing"));
  CHECK_THAT(err(R"({"base": 3, "out": "o"})"), Catch::Contains("spec.json: base: expected a string"));
  CHECK_THAT(err(R"({"base": "b.json", "out": "o", "grid": {"run.seed": 1}})"),
             Catch::Contains("spec.json: grid.run.seed: expected a non-empty list"));
  CHECK_THAT(err(R"({"base": "b.json", "out": "o", "grid": {"run.seed": []}})"),
             Catch::Contains("grid.run.seed: expected a non-empty list"));
  CHECK_THAT(err(R"({"base": "b.json", "out": "o", "grid": {"run.seed": [1, 2, 1]}})"),
             Catch::Contains("grid.run.seed: value 1 is listed twice"));
  CHECK_THAT(err(R"({"base": "b.json", "out": "o", "grid": {"run dir": [1]}})"),
             Catch::Contains("grid.run dir: \"run dir\" is not a dotted config key"));
  CHECK_THAT(err(R"({"base": "b.json", "out": "o", "set": {"run.dir": "x"}})"),
             Catch::Contains("set.run.dir: run.dir is set by the sweep itself"));
  CHECK_THAT(err(R"({"base": "b.json", "out": "o", "set": {"run.seed": 1}, "grid": {"run.seed": [2]}})"),
             Catch::Contains("grid.run.seed: is both in \"set\" and in \"grid\""));
  CHECK_THAT(err(R"({"base": "b.json", "out": "o", "grid": {"optimizer.matrix": [{}], "optimizer.matrix.lr": [1]}})"),
             Catch::Contains("grid: \"optimizer.matrix\" and \"optimizer.matrix.lr\" overlap"));
  CHECK_THAT(err(R"({"base": "b.json", "out": "o", "grid": {"base": ["c.json"]}})"),
             Catch::Contains("base: given both"));
  CHECK_THAT(err(R"({"out": "o", "grid": {"base": [3]}})"), Catch::Contains("grid.base: expected config file paths"));
  CHECK_THAT(err(R"({"base": "b.json", "out": "o", "launch": {"nproc_per_node": 0}})"),
             Catch::Contains("spec.json: launch.nproc_per_node: must be in [1, 4096], got 0"));
  CHECK_THAT(err(R"({"base": "b.json", "out": "o", "launch": {"nprocs": 2}})"),
             Catch::Contains("launch.nprocs: unknown key"));
  CHECK_THAT(err(R"({"base": "b.json", "out": "o", "launch": {"args": "--x"}})"),
             Catch::Contains("launch.args: expected a list of strings"));
  CHECK_THAT(err(R"({"base": "b.json", "out": "o", "variants": {"a b": {}}})"),
             Catch::Contains("variants.a b: variant names may only use"));
  CHECK_THAT(err(R"({"base": "b.json", "out": "o", "variants": {"v": {"sett": {}}}})"),
             Catch::Contains("variants.v.sett: unknown key"));
  CHECK_THAT(err(R"({"base": "b.json", "out": "o", "variants": {"v": {"grid": {"base": ["x.json"]}}}})"),
             Catch::Contains("variants.v.grid.base: a base axis belongs in the top-level grid"));
  CHECK_THAT(err(R"({"base": "b.json", "out": "o", "grid": {"run.seed": [1]}, "variants": {"v": {"grid": {"run.seed": [2]}}}})"),
             Catch::Contains("variants.v.grid.run.seed: is already an axis"));
  CHECK_THAT(err(R"({"base": "b.json", "out": "o", "variants": {"v": {"base": "c.json"}}})"),
             Catch::Contains("variants.v.base: the spec already has a base"));
  CHECK_THAT(err(R"({"out": "o", "variants": {"v": {"base": "c.json"}, "w": {}}})"),
             Catch::Contains("spec.json: base: missing"));
  CHECK(err(R"({"out": "o", "variants": {"v": {"base": "c.json"}, "w": {"base": "d.json"}}})").empty());
  CHECK(err(R"({"description": "ok", "base": "b.json", "out": "o", "launch": {"nproc_per_node": 2, "args": ["--max-restarts", "1"]}})")
            .empty());

  TempDir t;
  write(t.path / "bad.json", "{\"base\": ");
  CHECK_THAT(error_of([&] { load_sweep_spec(t.str("bad.json")); }), Catch::Contains("invalid JSON"));
  CHECK_THAT(error_of([&] { load_sweep_spec(t.str("none.json")); }), Catch::Contains("cannot open sweep spec"));
}

TEST_CASE("skip-finished: metrics at run.steps and a complete final checkpoint", "[report]") {
  TempDir t;
  const fs::path d = t.path / "run";
  CHECK(inspect_run_dir(d.string(), 10).describe() == "new");

  write(d / "metrics.jsonl", metrics_lines(4, 5, {}));
  CHECK(inspect_run_dir(d.string(), 10).describe() == "restart (no checkpoint; stopped at step 4)");

  write(d / "ckpt" / "step_00000004" / "state.json", "{}");
  write(d / "ckpt" / "step_00000006" / "state.json", "{tor");  // torn: not a checkpoint
  RunDirState st = inspect_run_dir(d.string(), 10);
  CHECK_FALSE(st.finished);
  CHECK(st.checkpoint_step == 4);
  CHECK(st.describe() == "resume from step 4");

  // Metrics reached the end but the final checkpoint is missing (crash between the two).
  write(d / "metrics.jsonl", metrics_lines(10, 5, {30, 25}));
  CHECK_FALSE(inspect_run_dir(d.string(), 10).finished);

  write(d / "ckpt" / "step_00000010" / "state.json", "{\"step\": 10}");
  CHECK(inspect_run_dir(d.string(), 10).finished);
  // The spec now asks for more steps: no longer finished, resumes from 10.
  CHECK(inspect_run_dir(d.string(), 20).describe() == "resume from step 10");

  // A torn last line means the run did not finish cleanly.
  { std::ofstream(d / "metrics.jsonl", std::ios::app) << "{\"step\": 11"; }
  CHECK_FALSE(inspect_run_dir(d.string(), 10).finished);

  // run.steps comes from the base config plus overrides (default 1000).
  write(t.path / "base.json", "// comment\n{\"run\": {\"steps\": 50}}");
  SweepRun r;
  r.base = t.str("base.json");
  CHECK(config_steps(effective_config(r)) == 50);
  r.overrides = {{"run.steps", 70}};
  CHECK(config_steps(effective_config(r)) == 70);
  r.overrides = {{"run", json::object()}};
  CHECK(config_steps(effective_config(r)) == 1000);
  json j = json::object();
  set_dotted(j, "a.b.c", 1, "x");
  CHECK(j["a"]["b"]["c"] == 1);
  CHECK_THROWS_AS(set_dotted(j, "a.b.c.d", 1, "x"), InputError);
}

TEST_CASE("the sweep runner skips finished runs and records failures", "[report]") {
  TempDir t;
  // A stand-in trainer: writes metrics and the final checkpoint into run.dir, fails for lr 0.5,
  // and counts its invocations.
  const fs::path fake = t.path / "fake_llmtrain.sh";
  write(fake,
        "#!/bin/sh\n"
        "echo call >> \"" + t.str("calls.txt") + "\"\n"
        "dir=''\n"
        "for a in \"$@\"; do case \"$a\" in run.dir=*) dir=$(echo \"${a#run.dir=}\" | tr -d '\"');; "
        "optimizer.matrix.lr=0.5) echo 'diverged' >&2; exit 3;; esac; done\n"
        "mkdir -p \"$dir/ckpt/step_00000003\"\n"
        "cp \"" + t.str("base.json") + "\" \"$dir/config.json\"\n"
        "echo '{\"step\": 3}' > \"$dir/ckpt/step_00000003/state.json\"\n"
        "printf '{\"step\":1,\"loss\":3}\\n{\"step\":2,\"loss\":2}\\n{\"step\":3,\"loss\":1,\"val_ppl\":2.5}\\n' > "
        "\"$dir/metrics.jsonl\"\n"
        "echo trained \"$dir\"\n");
  ::chmod(fake.c_str(), 0755);
  write(t.path / "base.json", run_config("base", "gpt2-124m", 3, opt_matrix("rmnp", 0.01)).dump());
  const std::string spec_text = "{\"base\": \"" + t.str("base.json") + "\", \"out\": \"" + t.str("out") +
                                "\", \"grid\": {\"optimizer.matrix.lr\": [0.01, 0.5, 0.02]}}";
  SweepSpec s = parse_sweep_spec(spec_json(spec_text), "spec.json");
  auto calls = [&] {
    std::ifstream f(t.path / "calls.txt");
    int n = 0;
    std::string line;
    while (std::getline(f, line)) ++n;
    return n;
  };
  auto statuses = [&] {
    std::ifstream f(t.path / "out" / "sweep.json");
    json j = json::parse(f);
    std::vector<std::string> v;
    for (const auto& r : j["runs"]) v.push_back(r["status"]);
    return v;
  };

  SweepOptions o;
  o.exe = fake.string();
  std::ostringstream log;

  o.dry_run = true;
  CHECK(run_sweep(s, o, log) == 0);
  CHECK_THAT(log.str(), Catch::Contains("[2/3] matrix.lr=0.5  (3 steps, new)"));
  CHECK_THAT(log.str(), Catch::Contains("optimizer.matrix.lr=0.5 --set"));
  CHECK_FALSE(fs::exists(t.path / "out"));  // a dry run writes nothing
  CHECK(calls() == 0);

  o.dry_run = false;
  CHECK(run_sweep(s, o, log) == 1);  // stops at the failure
  CHECK(statuses() == std::vector<std::string>{"complete", "failed", "not run"});
  CHECK(calls() == 2);
  std::ifstream tl(t.path / "out" / "matrix.lr=0.5" / "train.log");
  std::string tlog((std::istreambuf_iterator<char>(tl)), std::istreambuf_iterator<char>());
  CHECK_THAT(tlog, Catch::Contains("diverged"));

  // --nproc-per-node wraps each command in `launch` (shown by a dry run; nothing is started).
  o.dry_run = true;
  o.nproc_per_node = 4;
  std::ostringstream dry;
  CHECK(run_sweep(s, o, dry) == 0);
  CHECK_THAT(dry.str(), Catch::Contains(" launch --nproc-per-node 4 --standalone -- train "));
  CHECK_THAT(dry.str(), Catch::Contains("matrix.lr=0.01  (3 steps, finished)"));
  o.dry_run = false;
  o.nproc_per_node = -1;

  o.continue_on_failure = true;
  CHECK(run_sweep(s, o, log) == 1);  // the first run is skipped, the second fails again, the third runs
  CHECK(statuses() == std::vector<std::string>{"skipped", "failed", "complete"});
  CHECK(calls() == 4);
  CHECK_THAT(log.str(), Catch::Contains("matrix.lr=0.01: already finished, skipped"));

  // The report reads the sweep directory through sweep.json.
  auto dirs = expand_run_dirs({t.str("out")});
  REQUIRE(dirs.size() == 3);
  CHECK(summarize_run(dirs[0]).status == "complete");
  CHECK(summarize_run(dirs[1]).status == "not started");
  CHECK(summarize_run(dirs[2]).final_val_ppl == Approx(2.5));
}
