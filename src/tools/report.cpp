// Run summaries and paper-style tables (see report.h). Reading is forgiving - a report is often
// taken while runs are still going or after some crashed - and formatting is deterministic, so
// the same run directories always give byte-identical Markdown and CSV.
#include "tools/report.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "llmtrain/error.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace llmtrain::report {
namespace {

double num_field(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return kNaN;
  return it->get<double>();
}

// Reads a whole text file; false when it cannot be opened.
bool slurp(const std::string& path, std::string& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  out = ss.str();
  return true;
}

bool is_run_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p / "config.json", ec) || fs::is_regular_file(p / "metrics.jsonl", ec);
}

std::string dir_label(const std::string& dir) {
  fs::path p = fs::path(dir).lexically_normal();
  std::string name = p.filename().string();
  if (name.empty() || name == ".") name = p.parent_path().filename().string();
  return name.empty() ? dir : name;
}

const json* find_path(const json& j, const std::string& dotted) {
  const json* cur = &j;
  std::stringstream ss(dotted);
  std::string part;
  while (std::getline(ss, part, '.')) {
    if (!cur->is_object()) return nullptr;
    auto it = cur->find(part);
    if (it == cur->end()) return nullptr;
    cur = &*it;
  }
  return cur;
}

std::string json_label(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number()) return fmt_num(v.get<double>(), "%g");
  if (v.is_null()) return "-";
  return v.dump();
}

bool parse_double(const std::string& s, double& out) {
  if (s.empty()) return false;
  char* end = nullptr;
  out = std::strtod(s.c_str(), &end);
  return end && *end == '\0';
}

// Optimizer label and learning rates from the optimizer section: a group named "matrix" names the
// method; otherwise the first non-AdamW group; otherwise it is an AdamW run.
void read_optimizer(const json& opt, RunSummary& r) {
  r.optimizer = "adamw";
  if (!opt.is_object() || opt.empty()) return;
  auto group_lr = [](const json& g) { return g.is_object() ? num_field(g, "lr") : kNaN; };
  auto group_type = [](const json& g) -> std::string {
    if (!g.is_object()) return "";
    auto it = g.find("type");
    return it != g.end() && it->is_string() ? it->get<std::string>() : "";
  };
  const json* method = nullptr;
  if (opt.contains("matrix") && !group_type(opt["matrix"]).empty()) {
    method = &opt["matrix"];
  } else {
    for (auto it = opt.begin(); it != opt.end(); ++it) {
      const std::string t = group_type(it.value());
      if (!t.empty() && t != "adamw") {
        method = &it.value();
        break;
      }
    }
  }
  const json* adamw = opt.contains("adamw") ? &opt["adamw"] : nullptr;
  if (!adamw)
    for (auto it = opt.begin(); it != opt.end(); ++it)
      if (group_type(it.value()) == "adamw" && &it.value() != method) {
        adamw = &it.value();
        break;
      }
  if (method) {
    r.optimizer = group_type(*method);
    r.lr = group_lr(*method);
    if (adamw && adamw != method) r.adamw_lr = group_lr(*adamw);
  } else if (adamw) {
    r.lr = group_lr(*adamw);
  }
}

int optimizer_rank(const std::string& s) {
  static const char* order[] = {"adamw", "muon", "rmnp"};
  for (int i = 0; i < 3; ++i)
    if (s == order[i]) return i;
  return 3;
}

// "model+optimizer" -> {"model", "optimizer"}; a plain key -> {key}.
std::vector<std::string> key_parts(const std::string& key) {
  std::vector<std::string> out;
  size_t start = 0;
  for (;;) {
    const size_t plus = key.find('+', start);
    out.push_back(key.substr(start, plus == std::string::npos ? std::string::npos : plus - start));
    if (plus == std::string::npos) return out;
    start = plus + 1;
  }
}

// Orders the distinct values of one simple grouping key: optimizers in the paper's order, models
// by size, numbers numerically, everything else alphabetically; "-" (missing) always last.
std::vector<std::string> ordered_simple_values(const std::vector<RunSummary>& runs, const std::string& key) {
  std::set<std::string> seen;
  std::map<std::string, double> size_of;
  for (const auto& r : runs) {
    std::string v = run_key(r, key);
    seen.insert(v);
    auto it = size_of.find(v);
    if (it == size_of.end() || r.model_params < it->second) size_of[v] = r.model_params;
  }
  std::vector<std::string> vals(seen.begin(), seen.end());
  bool numeric = true;
  double tmp;
  for (const auto& v : vals)
    if (v != "-" && !parse_double(v, tmp)) numeric = false;
  std::stable_sort(vals.begin(), vals.end(), [&](const std::string& a, const std::string& b) {
    if ((a == "-") != (b == "-")) return b == "-";
    if (key == "optimizer" && optimizer_rank(a) != optimizer_rank(b)) return optimizer_rank(a) < optimizer_rank(b);
    if (key == "model" && size_of[a] != size_of[b]) return size_of[a] < size_of[b];
    if (numeric && a != "-" && b != "-") {
      double x = 0, y = 0;
      parse_double(a, x);
      parse_double(b, y);
      if (x != y) return x < y;
    }
    return a < b;
  });
  return vals;
}

// The distinct values of a grouping key in table order. A composite key ("model+optimizer") is
// ordered part by part, each part as its own key would be.
std::vector<std::string> ordered_values(const std::vector<RunSummary>& runs, const std::string& key) {
  const std::vector<std::string> parts = key_parts(key);
  if (parts.size() == 1) return ordered_simple_values(runs, key);
  std::vector<std::map<std::string, size_t>> rank(parts.size());
  for (size_t p = 0; p < parts.size(); ++p) {
    const auto vals = ordered_simple_values(runs, parts[p]);
    for (size_t i = 0; i < vals.size(); ++i) rank[p][vals[i]] = i;
  }
  std::map<std::string, std::vector<size_t>> order;  // composite value -> ranks of its parts
  for (const auto& r : runs) {
    std::vector<size_t> k;
    for (size_t p = 0; p < parts.size(); ++p) k.push_back(rank[p][run_key(r, parts[p])]);
    order.emplace(run_key(r, key), std::move(k));
  }
  std::vector<std::string> vals;
  for (const auto& [v, k] : order) vals.push_back(v);
  std::stable_sort(vals.begin(), vals.end(),
                   [&](const std::string& a, const std::string& b) { return order[a] < order[b]; });
  return vals;
}

double metric_of(const RunSummary& r, const std::string& metric) {
  if (metric == "best") return r.best_val_ppl;
  if (metric == "loss") return r.final_loss;
  if (metric == "optim_ms") return r.mean_optim_ms;
  return r.final_val_ppl;
}

std::string metric_title(const std::string& metric) {
  if (metric == "best") return "best validation perplexity";
  if (metric == "loss") return "final training loss";
  if (metric == "optim_ms") return "mean optimizer time per step (ms)";
  return "final validation perplexity";
}

const char* metric_format(const std::string& metric) {
  if (metric == "loss") return "%.4f";
  if (metric == "optim_ms") return "%.3f";
  return "%.2f";
}

std::string md_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '|') out += "\\|";
    else if (c == '\n') out += ' ';
    else out += c;
  }
  return out;
}

// The group a diagnostics row is read from: "matrix" when logged, else the first one.
const json* diag_group(const json& d) {
  if (!d.is_object() || d.empty()) return nullptr;
  if (d.contains("matrix") && d["matrix"].is_object()) return &d["matrix"];
  for (auto it = d.begin(); it != d.end(); ++it)
    if (it->is_object()) return &*it;
  return nullptr;
}

double diag_value(const RunSummary& r, const char* key) {
  const json* g = diag_group(r.last_diagnostics);
  return g ? num_field(*g, key) : kNaN;
}

}  // namespace

std::string fmt_num(double v, const char* spec) {
  if (!std::isfinite(v)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, spec, v);
  return buf;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"') out += "\"\"";
    else out += c;
  }
  return out + "\"";
}

MetricsFile read_metrics(const std::string& path) {
  MetricsFile m;
  std::string text;
  if (!slurp(path, text)) return m;
  m.exists = true;
  std::vector<std::string> lines;
  std::stringstream ss(text);
  std::string line;
  while (std::getline(ss, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.find_first_not_of(" \t") != std::string::npos) lines.push_back(line);
  }
  for (size_t i = 0; i < lines.size(); ++i) {
    json j = json::parse(lines[i], nullptr, /*allow_exceptions=*/false);
    const bool ok = j.is_object() && j.contains("step") && j["step"].is_number_integer();
    if (!ok) {
      if (i + 1 == lines.size()) m.truncated_tail = true;
      else ++m.bad_lines;
      continue;
    }
    MetricRecord r;
    r.step = j["step"].get<int64_t>();
    r.loss = num_field(j, "loss");
    r.val_loss = num_field(j, "val_loss");
    r.val_ppl = num_field(j, "val_ppl");
    if (!std::isfinite(r.val_ppl) && std::isfinite(r.val_loss)) r.val_ppl = std::exp(r.val_loss);
    r.optim_ms = num_field(j, "optim_ms");
    r.step_ms = num_field(j, "step_ms");
    r.tokens_per_s = num_field(j, "tokens_per_s");
    if (j.contains("diagnostics") && j["diagnostics"].is_object()) r.diagnostics = j["diagnostics"];
    // A resumed run rewrites the steps after its checkpoint: the later lines win.
    while (!m.records.empty() && m.records.back().step >= r.step) m.records.pop_back();
    m.records.push_back(std::move(r));
  }
  return m;
}

RunSummary summarize_run(const std::string& dir) {
  RunSummary r;
  r.dir = dir;
  r.name = dir_label(dir);
  std::string text;
  const std::string cfg_path = (fs::path(dir) / "config.json").string();
  if (slurp(cfg_path, text)) {
    json c = json::parse(text, nullptr, /*allow_exceptions=*/false, /*ignore_comments=*/true);
    if (c.is_object()) r.config = std::move(c);
  }
  std::string missing_config;
  if (r.config.is_object()) {
    const json& c = r.config;
    if (const json* n = find_path(c, "run.name"); n && n->is_string() && !n->get<std::string>().empty())
      r.name = n->get<std::string>();
    if (const json* s = find_path(c, "run.steps"); s && s->is_number_integer()) r.target_steps = s->get<int64_t>();
    read_optimizer(c.value("optimizer", json::object()), r);
    const json m = c.value("model", json::object());
    const std::string preset = m.value("preset", std::string());
    const double L = num_field(m, "n_layer"), C = num_field(m, "n_embd"), V = num_field(m, "vocab_size");
    if (!preset.empty()) r.model = preset;
    else if (std::isfinite(L) && std::isfinite(C))
      r.model = m.value("arch", std::string("gpt2")) + "-L" + fmt_num(L, "%.0f") + "-C" + fmt_num(C, "%.0f");
    else r.model = "-";
    if (std::isfinite(L) && std::isfinite(C)) r.model_params = 12.0 * L * C * C + (std::isfinite(V) ? V * C : 0.0);
    if (const json* t = find_path(c, "data.train"); t && t->is_string()) {
      fs::path p(t->get<std::string>());
      std::string d = p.parent_path().filename().string();
      if (d.empty() || d == ".") {
        d = p.filename().string();
        auto cut = d.find("_train");
        if (cut != std::string::npos) d = d.substr(0, cut);
      }
      r.dataset = d;
    }
  } else {
    missing_config = fs::exists(cfg_path) ? "config.json does not parse" : "no config.json";
    r.optimizer = "-";
    r.model = "-";
  }

  const MetricsFile mf = read_metrics((fs::path(dir) / "metrics.jsonl").string());
  r.last_step = mf.last_step();
  const auto& rec = mf.records;
  for (const auto& x : rec) {
    if (std::isfinite(x.val_ppl)) {
      r.final_val_ppl = x.val_ppl;
      r.final_val_loss = std::isfinite(x.val_loss) ? x.val_loss : std::log(x.val_ppl);
      r.final_val_step = x.step;
      if (!std::isfinite(r.best_val_ppl) || x.val_ppl < r.best_val_ppl) {
        r.best_val_ppl = x.val_ppl;
        r.best_val_step = x.step;
      }
    }
    if (!x.diagnostics.is_null()) r.last_diagnostics = x.diagnostics;
  }
  if (!rec.empty()) r.final_loss = rec.back().loss;
  // Means skip the first steps, which pay for allocation and warm-up.
  const size_t n = rec.size();
  const size_t skip = n >= 20 ? std::min<size_t>(10, n / 10) : (n > 1 ? 1 : 0);
  auto mean = [&](double MetricRecord::*f) {
    double s = 0;
    size_t k = 0;
    for (size_t i = skip; i < n; ++i)
      if (std::isfinite(rec[i].*f)) {
        s += rec[i].*f;
        ++k;
      }
    return k ? s / (double)k : kNaN;
  };
  r.mean_optim_ms = mean(&MetricRecord::optim_ms);
  r.mean_step_ms = mean(&MetricRecord::step_ms);
  r.mean_tokens_per_s = mean(&MetricRecord::tokens_per_s);

  if (!mf.exists || rec.empty()) {
    r.status = "not started";
    r.note = mf.exists ? "metrics.jsonl has no complete line" : "no metrics.jsonl";
    if (!missing_config.empty()) r.note = missing_config + ", " + r.note;
  } else if (mf.truncated_tail) {
    r.status = "incomplete";
    r.note = "metrics.jsonl ends in a torn line after step " + std::to_string(r.last_step) + ": crashed while writing";
  } else if (!missing_config.empty()) {
    r.status = "incomplete";
    r.note = missing_config + ": run.steps unknown";
  } else if (r.last_step < r.target_steps) {
    r.status = "incomplete";
    r.note = "stopped at step " + std::to_string(r.last_step) + " of " + std::to_string(r.target_steps);
  } else {
    r.status = "complete";
    r.complete = true;
  }
  if (mf.bad_lines > 0) {
    r.note += std::string(r.note.empty() ? "" : "; ") + std::to_string(mf.bad_lines) + " unreadable line(s) skipped";
  }
  return r;
}

std::vector<std::string> expand_run_dirs(const std::vector<std::string>& args) {
  std::vector<std::string> out;
  std::set<std::string> seen;
  auto add = [&](const std::string& d) {
    fs::path norm = fs::path(d).lexically_normal();
    if (norm.filename().empty()) norm = norm.parent_path();  // "runs/a/" and "runs/a" are one run
    std::string key = norm.string();
    if (seen.insert(key).second) out.push_back(d);
  };
  for (const auto& a : args) {
    std::error_code ec;
    const fs::path p(a);
    if (!fs::is_directory(p, ec)) throw InputError(a + ": not a directory (expected a run or sweep directory)");
    if (is_run_dir(p)) {
      add(a);
      continue;
    }
    std::string text;
    if (slurp((p / "sweep.json").string(), text)) {
      json s = json::parse(text, nullptr, false);
      if (!s.is_object() || !s.contains("runs") || !s["runs"].is_array())
        throw InputError((p / "sweep.json").string() + ": not a sweep status file (no \"runs\" list)");
      for (const auto& run : s["runs"])
        if (run.is_object() && run.contains("name") && run["name"].is_string())
          add((p / run["name"].get<std::string>()).string());
      continue;
    }
    std::vector<std::string> subs;
    for (const auto& e : fs::directory_iterator(p, ec))
      if (e.is_directory() && is_run_dir(e.path())) subs.push_back(e.path().string());
    if (subs.empty())
      throw InputError(a + ": no run here (no config.json or metrics.jsonl, no sweep.json, no run subdirectories)");
    std::sort(subs.begin(), subs.end());
    for (const auto& s : subs) add(s);
  }
  return out;
}

std::string run_key(const RunSummary& r, const std::string& key) {
  if (key.find('+') != std::string::npos) {
    std::string out;
    for (const auto& part : key_parts(key)) out += (out.empty() ? "" : " / ") + run_key(r, part);
    return out;
  }
  auto or_dash = [](const std::string& s) { return s.empty() ? std::string("-") : s; };
  if (key == "optimizer") return or_dash(r.optimizer);
  if (key == "model") return or_dash(r.model);
  if (key == "dataset") return or_dash(r.dataset);
  if (key == "lr") return fmt_num(r.lr, "%g");
  if (key == "adamw_lr") return fmt_num(r.adamw_lr, "%g");
  if (key == "name") return or_dash(r.name);
  if (key == "status") return or_dash(r.status);
  if (key.empty() || !r.config.is_object()) return "-";
  const json* v = find_path(r.config, key);
  return v ? json_label(*v) : "-";
}

Table build_table(const std::vector<RunSummary>& runs, const std::string& row_key, const std::string& col_key,
                  const std::string& metric) {
  if (metric != "final" && metric != "best" && metric != "loss" && metric != "optim_ms")
    throw InputError("--metric: unknown value \"" + metric + "\" (expected final, best, loss or optim_ms)");
  Table t;
  t.row_key = row_key;
  t.col_key = col_key;
  t.metric = metric;
  // Runs that have not started yet (a sweep's later runs) are listed per run but get no row or
  // column of their own: they have no optimizer, model or lr to group by.
  std::vector<RunSummary> started;
  for (const auto& r : runs)
    if (r.status != "not started") started.push_back(r);
  t.rows = ordered_values(started, row_key);
  t.cols = col_key.empty() ? std::vector<std::string>{""} : ordered_values(started, col_key);
  t.cells.assign(t.rows.size(), std::vector<Table::Cell>(t.cols.size()));
  auto index_of = [](const std::vector<std::string>& v, const std::string& s) {
    return (size_t)(std::find(v.begin(), v.end(), s) - v.begin());
  };
  for (size_t i = 0; i < runs.size(); ++i) {
    const RunSummary& r = runs[i];
    if (r.status == "not started") continue;
    Table::Cell& c = t.cells[index_of(t.rows, run_key(r, row_key))]
                            [col_key.empty() ? 0 : index_of(t.cols, run_key(r, col_key))];
    ++c.candidates;
    const double v = metric_of(r, metric);
    if (!std::isfinite(v)) continue;
    const bool inc = !r.complete;
    // A complete run always beats an incomplete one; within a kind the lower value wins, and on a
    // tie the earlier run (stable).
    const bool better = c.run < 0 || (c.from_incomplete && !inc) || (c.from_incomplete == inc && v < c.value);
    if (better) {
      c.run = (int)i;
      c.value = v;
      c.from_incomplete = inc;
    }
  }
  return t;
}

std::string format_markdown(const std::vector<RunSummary>& runs, const Table& t) {
  std::ostringstream o;
  const std::string title = metric_title(t.metric);
  o << "## " << char(std::toupper(title[0])) << title.substr(1);
  o << (t.col_key.empty() ? "" : " (rows: " + t.row_key + ", columns: " + t.col_key + ")") << "\n\n";
  // Bold marks the lowest complete value down each column (rows = optimizers, columns = model
  // sizes: the paper's layout), or along each row when the columns are the optimizers (the timing
  // table) or the rows are combinations (model+optimizer by lr: the best lr of each row).
  const bool per_row = (t.col_key == "optimizer" && t.row_key != "optimizer") ||
                       (t.row_key.find('+') != std::string::npos && t.col_key.find("optimizer") == std::string::npos);
  const size_t n_lines = per_row ? t.rows.size() : t.cols.size();
  std::vector<double> best(n_lines, kNaN);
  for (size_t c = 0; c < t.cols.size(); ++c)
    for (size_t r = 0; r < t.rows.size(); ++r) {
      const auto& cell = t.cells[r][c];
      double& b = best[per_row ? r : c];
      if (cell.run >= 0 && !cell.from_incomplete && (!std::isfinite(b) || cell.value < b)) b = cell.value;
    }
  const size_t rivals = per_row ? t.cols.size() : t.rows.size();
  const char* spec = metric_format(t.metric);
  o << "| " << md_escape(t.row_key) << " |";
  for (const auto& c : t.cols) o << " " << md_escape(c.empty() ? title : c) << " |";
  o << "\n|---|";
  for (size_t c = 0; c < t.cols.size(); ++c) o << "---:|";
  o << "\n";
  bool any_incomplete = false, any_multi = false;
  for (size_t r = 0; r < t.rows.size(); ++r) {
    o << "| " << md_escape(t.rows[r]) << " |";
    for (size_t c = 0; c < t.cols.size(); ++c) {
      const auto& cell = t.cells[r][c];
      any_multi |= cell.candidates > 1;
      std::string s = cell.run < 0 ? "-" : fmt_num(cell.value, spec);
      if (cell.run >= 0 && cell.from_incomplete) {
        s += "†";
        any_incomplete = true;
      } else if (cell.run >= 0 && cell.value == best[per_row ? r : c] && rivals > 1) {
        s = "**" + s + "**";
      }
      o << " " << s << " |";
    }
    o << "\n";
  }
  o << "\n";
  if (any_multi)
    o << "Each cell is the best (lowest) run of its group over the rest of the grid; complete runs win over "
         "incomplete ones. ";
  o << (per_row ? "Bold: best in its row." : "Bold: best in its column.");
  if (any_incomplete) o << " †: only incomplete runs in this cell (value from the last step reached).";
  o << "\n\n";

  // Per-run detail.
  bool any_diag = false;
  for (const auto& r : runs) any_diag |= std::isfinite(diag_value(r, "r_avg"));
  std::vector<bool> winner(runs.size(), false);
  for (const auto& row : t.cells)
    for (const auto& cell : row)
      if (cell.run >= 0) winner[cell.run] = true;
  o << "## Runs\n\n";
  o << "| run | status | optimizer | model | lr | adamw lr | steps | train loss | val ppl | best val ppl (step) | "
       "optim ms | step ms | tok/s |"
    << (any_diag ? " r_avg / r_min / r_max |" : "") << " cell best |\n";
  o << "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|" << (any_diag ? "---:|" : "") << "---|\n";
  for (size_t i = 0; i < runs.size(); ++i) {
    const RunSummary& r = runs[i];
    std::string status = r.status + (r.note.empty() ? "" : " (" + r.note + ")");
    std::string best = std::isfinite(r.best_val_ppl)
                           ? fmt_num(r.best_val_ppl, "%.2f") + " (" + std::to_string(r.best_val_step) + ")"
                           : "-";
    o << "| " << md_escape(r.name) << " | " << md_escape(status) << " | " << md_escape(r.optimizer) << " | "
      << md_escape(r.model) << " | " << fmt_num(r.lr, "%g") << " | " << fmt_num(r.adamw_lr, "%g") << " | "
      << r.last_step << "/" << (r.target_steps > 0 ? std::to_string(r.target_steps) : "?") << " | "
      << fmt_num(r.final_loss, "%.4f") << " | " << fmt_num(r.final_val_ppl, "%.2f") << " | " << best << " | "
      << fmt_num(r.mean_optim_ms, r.mean_optim_ms < 10 ? "%.2f" : "%.1f") << " | "
      << fmt_num(r.mean_step_ms, "%.1f") << " | " << fmt_num(r.mean_tokens_per_s, "%.0f") << " |";
    if (any_diag)
      o << " " << fmt_num(diag_value(r, "r_avg"), "%.2f") << " / " << fmt_num(diag_value(r, "r_min"), "%.2f")
        << " / " << fmt_num(diag_value(r, "r_max"), "%.2f") << " |";
    o << " " << (winner[i] ? "yes" : "") << " |\n";
  }
  o << "\nlr: peak lr of the matrix group (AdamW runs: of the AdamW group); optim ms, step ms, tok/s: means "
       "over the logged steps after warm-up";
  if (any_diag) o << "; r_*: last logged diagonal-dominance ratios of the matrix group";
  o << ".\n";
  return o.str();
}

std::string format_table_csv(const Table& t) {
  std::ostringstream o;
  o << csv_field(t.row_key.empty() ? "row" : t.row_key);
  for (const auto& c : t.cols) o << "," << csv_field(c.empty() ? t.metric : c);
  o << "\n";
  for (size_t r = 0; r < t.rows.size(); ++r) {
    o << csv_field(t.rows[r]);
    for (size_t c = 0; c < t.cols.size(); ++c) {
      const auto& cell = t.cells[r][c];
      o << ",";
      if (cell.run >= 0) o << fmt_num(cell.value, "%.4f") << (cell.from_incomplete ? " (incomplete)" : "");
    }
    o << "\n";
  }
  return o.str();
}

std::string format_runs_csv(const std::vector<RunSummary>& runs, const Table& t) {
  std::vector<bool> winner(runs.size(), false);
  for (const auto& row : t.cells)
    for (const auto& cell : row)
      if (cell.run >= 0) winner[cell.run] = true;
  std::ostringstream o;
  o << "dir,name,status,note,optimizer,model,dataset,lr,adamw_lr,last_step,target_steps,final_train_loss,"
       "final_val_loss,final_val_ppl,final_val_step,best_val_ppl,best_val_step,mean_optim_ms,mean_step_ms,"
       "mean_tokens_per_s,r_avg,r_min,r_max,row,col,best_in_cell\n";
  for (size_t i = 0; i < runs.size(); ++i) {
    const RunSummary& r = runs[i];
    auto n = [](double v, const char* spec) { return std::isfinite(v) ? fmt_num(v, spec) : std::string(); };
    o << csv_field(r.dir) << "," << csv_field(r.name) << "," << r.status << "," << csv_field(r.note) << ","
      << csv_field(r.optimizer) << "," << csv_field(r.model) << "," << csv_field(r.dataset) << ","
      << n(r.lr, "%g") << "," << n(r.adamw_lr, "%g") << "," << r.last_step << "," << r.target_steps << ","
      << n(r.final_loss, "%.6f") << "," << n(r.final_val_loss, "%.6f") << "," << n(r.final_val_ppl, "%.4f") << ","
      << (std::isfinite(r.final_val_ppl) ? std::to_string(r.final_val_step) : "") << ","
      << n(r.best_val_ppl, "%.4f") << "," << (std::isfinite(r.best_val_ppl) ? std::to_string(r.best_val_step) : "")
      << "," << n(r.mean_optim_ms, "%.4f") << "," << n(r.mean_step_ms, "%.3f") << ","
      << n(r.mean_tokens_per_s, "%.1f") << "," << n(diag_value(r, "r_avg"), "%.4f") << ","
      << n(diag_value(r, "r_min"), "%.4f") << "," << n(diag_value(r, "r_max"), "%.4f") << ","
      << csv_field(run_key(r, t.row_key)) << "," << csv_field(t.col_key.empty() ? "" : run_key(r, t.col_key)) << ","
      << (winner[i] ? "true" : "false") << "\n";
  }
  return o.str();
}

}  // namespace llmtrain::report
