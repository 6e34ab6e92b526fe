// Sweep spec validation, grid expansion, run naming, skip/resume decisions and the sequential
// runner (see sweep.h).
#include "tools/sweep.h"

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <ostream>
#include <regex>
#include <set>
#include <sstream>

#include "config/json_section.h"
#include "llmtrain/checkpoint.h"
#include "llmtrain/config.h"
#include "llmtrain/error.h"
#include "tools/process.h"
#include "tools/report.h"
#include "util/util.h"

namespace fs = std::filesystem;
using nlohmann::json;
using nlohmann::ordered_json;

namespace llmtrain::report {
namespace {

// The sweep owns these: every run gets its own directory and a name that matches it.
const std::set<std::string> kReservedKeys = {"run.dir", "run.name"};

// "a.b+c.d" (keys tied to one value) -> {"a.b", "c.d"}; a plain key -> {key}.
std::vector<std::string> tied_keys(const std::string& key) {
  std::vector<std::string> out;
  std::stringstream ss(key);
  std::string part;
  while (std::getline(ss, part, '+')) out.push_back(part);
  if (out.empty() || key.back() == '+') out.push_back("");
  return out;
}

std::string brief(const ordered_json& v) { return json_brief(json::parse(v.dump())); }

[[noreturn]] void fail(const std::string& file, const std::string& key, const std::string& what) {
  throw InputError(file + ": " + key + ": " + what);
}

// Base paths are relative to the spec that names them, as a run config's "base" is to its file.
std::string spec_relative(const std::string& spec, const std::string& path) {
  if (path.empty() || fs::path(path).is_absolute()) return path;
  return (fs::path(spec).parent_path() / path).lexically_normal().string();
}

void check_key(const std::string& file, const std::string& where, const std::string& key) {
  static const std::regex re("[A-Za-z0-9_]+(\\.[A-Za-z0-9_]+)*");
  if (!std::regex_match(key, re))
    fail(file, where, "\"" + key + "\" is not a dotted config key (like optimizer.matrix.lr)");
  if (kReservedKeys.count(key))
    fail(file, where, key + " is set by the sweep itself (each run gets out/<name>)");
}

// Keys where one is a prefix of another ("optimizer.matrix" and "optimizer.matrix.lr") would
// depend on the order they are applied in: refuse them within one level.
void check_prefixes(const std::string& file, const std::string& where, const std::vector<std::string>& keys) {
  for (const auto& a : keys)
    for (const auto& b : keys)
      if (a != b && b.size() > a.size() && b.compare(0, a.size(), a) == 0 && b[a.size()] == '.')
        fail(file, where, "\"" + a + "\" and \"" + b + "\" overlap (one contains the other); set the leaf keys");
}

std::vector<Override> parse_set(const ordered_json& j, const std::string& file, const std::string& where) {
  if (!j.is_object()) fail(file, where, "expected an object of dotted keys to values, got " + brief(j));
  std::vector<Override> out;
  std::vector<std::string> keys;
  for (auto it = j.begin(); it != j.end(); ++it) {
    check_key(file, where + "." + it.key(), it.key());
    out.emplace_back(it.key(), json::parse(it.value().dump()));
    keys.push_back(it.key());
  }
  check_prefixes(file, where, keys);
  return out;
}

std::vector<SweepAxis> parse_grid(const ordered_json& j, const std::string& file, const std::string& where,
                                  bool allow_base) {
  if (!j.is_object()) fail(file, where, "expected an object of dotted keys to lists of values, got " + brief(j));
  std::vector<SweepAxis> out;
  std::vector<std::string> keys;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string k = it.key(), w = where + "." + k;
    if (k == "base") {
      if (!allow_base) fail(file, w, "a base axis belongs in the top-level grid");
    } else {
      for (const auto& kk : tied_keys(k)) {
        check_key(file, w, kk);
        keys.push_back(kk);
      }
    }
    const ordered_json& v = it.value();
    if (!v.is_array() || v.empty()) fail(file, w, "expected a non-empty list of values, got " + brief(v));
    SweepAxis ax;
    ax.key = k;
    for (size_t i = 0; i < v.size(); ++i) {
      json x = json::parse(v[i].dump());
      if (k == "base" && (!x.is_string() || x.get<std::string>().empty()))
        fail(file, w, "expected config file paths, got " + json_brief(x));
      if (k == "base") x = spec_relative(file, x.get<std::string>());
      for (const auto& prev : ax.values)
        if (prev == x) fail(file, w, "value " + json_brief(x) + " is listed twice");
      ax.values.push_back(std::move(x));
    }
    out.push_back(std::move(ax));
  }
  check_prefixes(file, where, keys);
  return out;
}

// Fails when a key is both fixed and varied at the same level.
void check_disjoint(const std::string& file, const std::string& where, const std::vector<Override>& set,
                    const std::vector<SweepAxis>& grid) {
  for (const auto& s : set)
    for (const auto& a : grid)
      for (const auto& k : tied_keys(a.key))
        if (s.first == k) fail(file, where + "." + a.key, "is both in \"set\" and in \"grid\"");
}

uint32_t fnv1a(const std::string& s) {
  uint32_t h = 2166136261u;
  for (unsigned char c : s) h = (h ^ c) * 16777619u;
  return h;
}

std::string now_iso() {
  std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

// One run's entry in sweep.json.
struct Entry {
  std::string status;  // pending | skipped | running | complete | incomplete | failed | interrupted | not run
  std::string detail;
  int64_t steps = 0;
  int64_t last_step = 0;
  double seconds = 0;
  std::vector<std::string> command;
};

void write_status(const SweepSpec& s, const std::vector<SweepRun>& runs, const std::vector<Entry>& e) {
  ordered_json j;
  j["spec"] = s.file;
  if (!s.description.empty()) j["description"] = s.description;
  j["out"] = s.out;
  j["updated"] = now_iso();
  j["runs"] = ordered_json::array();
  for (size_t i = 0; i < runs.size(); ++i) {
    ordered_json r;
    r["name"] = runs[i].name;
    r["status"] = e[i].status;
    if (!e[i].detail.empty()) r["detail"] = e[i].detail;
    r["base"] = runs[i].base;
    if (!runs[i].variant.empty()) r["variant"] = runs[i].variant;
    r["overrides"] = ordered_json::object();
    for (const auto& [k, v] : runs[i].overrides) r["overrides"][k] = ordered_json::parse(v.dump());
    r["steps"] = e[i].steps;
    r["last_step"] = e[i].last_step;
    if (e[i].seconds > 0) r["seconds"] = std::round(e[i].seconds * 10) / 10;
    r["command"] = e[i].command;
    j["runs"].push_back(std::move(r));
  }
  write_file_atomic((fs::path(s.out) / "sweep.json").string(), j.dump(2) + "\n");
}

std::string join_command(const std::string& exe, const std::vector<std::string>& args) {
  auto quote = [](const std::string& a) {
    if (!a.empty() && a.find_first_of(" \t\n'\"\\$`*?[]{}()<>|&;#~!") == std::string::npos) return a;
    std::string q = "'";
    for (char c : a) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return q + "'";
  };
  std::string s = quote(exe);
  for (const auto& a : args) s += " " + quote(a);
  return s;
}

}  // namespace

// ---------------------------------------------------------------- spec

bool is_sweep_spec_json(const json& j) {
  return j.is_object() && j.contains("out") && (j.contains("base") || j.contains("grid") || j.contains("variants"));
}

SweepSpec parse_sweep_spec(const ordered_json& j, const std::string& file) {
  // Scalars and unknown keys through the same strict reader the run configs use.
  const json flat = json::parse(j.dump());
  JsonSection top(flat, "", file);
  SweepSpec s;
  s.file = file;
  s.description = top.get_str("description", "");
  s.base = spec_relative(file, top.get_str("base", ""));
  s.out = top.get_str("out", "");
  const json* jl = top.get_raw("launch");
  top.get_raw("set");
  top.get_raw("grid");
  top.get_raw("variants");
  top.finish();
  if (s.out.empty()) fail(file, "out", "missing (the directory that will hold one subdirectory per run)");
  if (j.contains("set") && !j["set"].is_null()) s.set = parse_set(j["set"], file, "set");
  if (j.contains("grid") && !j["grid"].is_null()) s.grid = parse_grid(j["grid"], file, "grid", /*allow_base=*/true);
  check_disjoint(file, "grid", s.set, s.grid);
  bool base_axis = false;
  for (const auto& a : s.grid) base_axis |= a.key == "base";
  if (base_axis && !s.base.empty()) fail(file, "base", "given both as \"base\" and as a grid axis; keep one");

  if (j.contains("variants") && !j["variants"].is_null()) {
    const ordered_json& jv = j["variants"];
    if (!jv.is_object() || jv.empty())
      fail(file, "variants", "expected an object of named variants, got " + brief(jv));
    for (auto it = jv.begin(); it != jv.end(); ++it) {
      const std::string w = "variants." + it.key();
      if (it.key().empty() || sanitize_name(it.key()) != it.key())
        fail(file, w, "variant names may only use letters, digits and . _ = + -");
      const json vflat = json::parse(it.value().dump());
      JsonSection vs(vflat, w, file);
      SweepVariant v;
      v.name = it.key();
      v.base = spec_relative(file, vs.get_str("base", ""));
      vs.get_raw("set");
      vs.get_raw("grid");
      vs.finish();
      if (!v.base.empty() && (base_axis || !s.base.empty()))
        fail(file, w + ".base", "the spec already has a base (or a base axis); a variant's base replaces neither");
      if (it.value().contains("set") && !it.value()["set"].is_null()) v.set = parse_set(it.value()["set"], file, w + ".set");
      if (it.value().contains("grid") && !it.value()["grid"].is_null())
        v.grid = parse_grid(it.value()["grid"], file, w + ".grid", /*allow_base=*/false);
      check_disjoint(file, w + ".grid", v.set, v.grid);
      for (const auto& a : v.grid)
        for (const auto& t : s.grid)
          for (const auto& ka : tied_keys(a.key))
            for (const auto& kt : tied_keys(t.key))
              if (ka == kt) fail(file, w + ".grid." + a.key, "is already an axis of the top-level grid");
      s.variants.push_back(std::move(v));
    }
  }

  if (!base_axis && s.base.empty()) {
    bool all = !s.variants.empty();
    for (const auto& v : s.variants) all &= !v.base.empty();
    if (!all) fail(file, "base", "missing (the run config every run starts from)");
  }

  if (jl) {
    JsonSection ls(*jl, "launch", file);
    s.nproc_per_node = (int)ls.get_int("nproc_per_node", 1, 1, 4096);
    const json* args = ls.get_raw("args");
    ls.finish();
    if (args) {
      if (!args->is_array()) ls.fail("args", "expected a list of strings, got " + json_brief(*args));
      for (const auto& a : *args) {
        if (!a.is_string()) ls.fail("args", "expected a list of strings, got " + json_brief(*args));
        s.launch_args.push_back(a.get<std::string>());
      }
    }
  }
  return s;
}

SweepSpec load_sweep_spec(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw InputError(path + ": cannot open sweep spec");
  ordered_json j;
  try {
    j = ordered_json::parse(f, nullptr, true, /*ignore_comments=*/true);
  } catch (const ordered_json::parse_error& e) {
    throw InputError(path + ": invalid JSON: " + e.what());
  }
  return parse_sweep_spec(j, path);
}

// ---------------------------------------------------------------- naming and expansion

std::string sanitize_name(const std::string& s) {
  std::string out;
  bool dash = false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '=' || c == '+' || c == '-';
    if (ok) {
      out += c;
      dash = false;
    } else if (!dash) {
      out += '-';
      dash = true;
    }
  }
  size_t b = out.find_first_not_of(".-");
  out = b == std::string::npos ? "" : out.substr(b);
  while (!out.empty() && out.back() == '-') out.pop_back();
  if (out.empty()) out = "run";
  if (out.size() > 120) {
    char h[16];
    std::snprintf(h, sizeof h, "-%08x", fnv1a(s));
    out = out.substr(0, 111) + h;
  }
  return out;
}

std::string override_label(const std::string& key, const json& value) {
  if (key == "base") return fs::path(value.get<std::string>()).stem().string();
  std::string k = tied_keys(key).front();  // tied keys share a value: the first names it
  auto last = k.rfind('.');
  if (last != std::string::npos) {
    auto prev = k.rfind('.', last - 1);
    if (prev != std::string::npos) k = k.substr(prev + 1);
  }
  std::string v = value.is_string() ? value.get<std::string>() : value.dump();
  return k + "=" + v;
}

std::vector<SweepRun> expand_sweep(const SweepSpec& s) {
  std::vector<SweepRun> out;
  // Iterates a list of axes as an odometer whose first axis turns slowest.
  auto cartesian = [](const std::vector<SweepAxis>& axes, const std::function<void(const std::vector<size_t>&)>& f) {
    std::vector<size_t> idx(axes.size(), 0);
    for (;;) {
      f(idx);
      size_t d = axes.size();
      while (d > 0) {
        --d;
        if (++idx[d] < axes[d].values.size()) break;
        idx[d] = 0;
        if (d == 0) return;
      }
      if (axes.empty()) return;
    }
  };
  std::vector<SweepVariant> variants = s.variants;
  if (variants.empty()) variants.push_back(SweepVariant{});
  cartesian(s.grid, [&](const std::vector<size_t>& ti) {
    for (const auto& v : variants) {
      cartesian(v.grid, [&](const std::vector<size_t>& vi) {
        SweepRun r;
        r.base = v.base.empty() ? s.base : v.base;
        r.variant = v.name;
        std::vector<std::string> parts;
        r.overrides = s.set;
        for (size_t a = 0; a < s.grid.size(); ++a) {
          const auto& ax = s.grid[a];
          const json& val = ax.values[ti[a]];
          if (ax.key == "base") r.base = val.get<std::string>();
          r.varied.emplace_back(ax.key, val);
          parts.push_back(override_label(ax.key, val));
        }
        if (!v.name.empty()) parts.push_back(v.name);
        r.overrides.insert(r.overrides.end(), v.set.begin(), v.set.end());
        for (size_t a = 0; a < s.grid.size(); ++a)
          if (s.grid[a].key != "base")
            for (const auto& k : tied_keys(s.grid[a].key)) r.overrides.emplace_back(k, s.grid[a].values[ti[a]]);
        for (size_t a = 0; a < v.grid.size(); ++a) {
          const json& val = v.grid[a].values[vi[a]];
          for (const auto& k : tied_keys(v.grid[a].key)) r.overrides.emplace_back(k, val);
          r.varied.emplace_back(v.grid[a].key, val);
          parts.push_back(override_label(v.grid[a].key, val));
        }
        std::string joined;
        for (const auto& p : parts) joined += (joined.empty() ? "" : "_") + p;
        r.name = sanitize_name(joined.empty() ? fs::path(r.base).stem().string() : joined);
        r.dir = (fs::path(s.out) / r.name).string();
        out.push_back(std::move(r));
      });
    }
  });
  std::map<std::string, size_t> seen;
  for (size_t i = 0; i < out.size(); ++i) {
    auto [it, fresh] = seen.emplace(out[i].name, i);
    if (!fresh)
      throw InputError(s.file + ": runs " + std::to_string(it->second + 1) + " and " + std::to_string(i + 1) +
                       " of the grid would both be named \"" + out[i].name +
                       "\" (values that differ only in characters a directory name cannot hold?)");
  }
  return out;
}

// ---------------------------------------------------------------- run state

void set_dotted(json& j, const std::string& key, const json& value, const std::string& source) {
  json* cur = &j;
  std::stringstream ss(key);
  std::string part, done;
  std::vector<std::string> parts;
  while (std::getline(ss, part, '.')) parts.push_back(part);
  for (size_t i = 0; i < parts.size(); ++i) {
    if (!cur->is_object()) throw InputError(source + ": " + key + ": " + done + " is not an object");
    if (i + 1 == parts.size()) {
      (*cur)[parts[i]] = value;
    } else {
      if (!cur->contains(parts[i])) (*cur)[parts[i]] = json::object();
      cur = &(*cur)[parts[i]];
    }
    done += (done.empty() ? "" : ".") + parts[i];
  }
}

json effective_config(const SweepRun& r) {
  json j = load_config_json(r.base);  // with everything it inherits, as `llmtrain train` reads it
  for (const auto& [k, v] : r.overrides) set_dotted(j, k, v, r.base);
  return j;
}

int64_t config_steps(const json& cfg) {
  if (cfg.is_object() && cfg.contains("run") && cfg["run"].is_object() && cfg["run"].contains("steps")) {
    const json& s = cfg["run"]["steps"];
    if (s.is_number_integer()) return s.get<int64_t>();
    if (s.is_number()) return (int64_t)s.get<double>();
  }
  return 1000;  // docs/configs.md: run.steps default
}

std::string RunDirState::describe() const {
  if (finished) return "finished";
  if (checkpoint_step >= 0) return "resume from step " + std::to_string(checkpoint_step);
  if (metrics_step > 0) return "restart (no checkpoint; stopped at step " + std::to_string(metrics_step) + ")";
  return "new";
}

RunDirState inspect_run_dir(const std::string& dir, int64_t steps) {
  RunDirState st;
  const MetricsFile m = read_metrics((fs::path(dir) / "metrics.jsonl").string());
  st.metrics_step = m.last_step();
  CheckpointManager ck(dir, 0);
  const auto complete = ck.list_complete();
  if (!complete.empty()) {
    const std::string last = fs::path(complete.back()).filename().string();
    st.checkpoint_step = std::stoll(last.substr(5));
  }
  const std::string final_ckpt = (fs::path(dir) / "ckpt" / CheckpointManager::step_dir_name(steps)).string();
  st.finished = m.exists && !m.truncated_tail && st.metrics_step == steps && is_complete_checkpoint(final_ckpt);
  return st;
}

std::vector<std::string> run_command(const SweepSpec& s, const SweepRun& r) {
  std::vector<std::string> a;
  if (s.nproc_per_node > 0) {
    a = {"launch", "--nproc-per-node", std::to_string(s.nproc_per_node), "--standalone"};
    a.insert(a.end(), s.launch_args.begin(), s.launch_args.end());
    a.push_back("--");
  }
  a.push_back("train");
  a.push_back(r.base);
  for (const auto& [k, v] : r.overrides) {
    a.push_back("--set");
    a.push_back(k + "=" + v.dump());
  }
  a.push_back("--set");
  a.push_back("run.name=" + json(r.name).dump());
  a.push_back("--set");
  a.push_back("run.dir=" + json(r.dir).dump());
  a.push_back("--resume");
  a.push_back("auto");
  return a;
}

// ---------------------------------------------------------------- runner

int run_sweep(const SweepSpec& spec, const SweepOptions& opts, std::ostream& out) {
  SweepSpec s = spec;
  if (opts.nproc_per_node >= 0) s.nproc_per_node = opts.nproc_per_node;
  const std::vector<SweepRun> runs = expand_sweep(s);
  const std::string exe = opts.exe.empty() ? self_exe() : opts.exe;
  std::vector<Entry> e(runs.size());
  std::vector<RunDirState> states(runs.size());
  for (size_t i = 0; i < runs.size(); ++i) {
    // Reading every base now fails fast on a typo before the first run starts.
    e[i].steps = config_steps(effective_config(runs[i]));
    states[i] = inspect_run_dir(runs[i].dir, e[i].steps);
    e[i].last_step = states[i].metrics_step;
    e[i].command = run_command(s, runs[i]);
    e[i].status = states[i].finished ? "skipped" : "pending";
    if (states[i].finished) e[i].detail = "already finished";
  }

  out << "sweep " << s.file << ": " << runs.size() << " run" << (runs.size() == 1 ? "" : "s") << " into " << s.out
      << "\n";
  for (size_t i = 0; i < runs.size(); ++i) {
    out << "  [" << (i + 1) << "/" << runs.size() << "] " << runs[i].name << "  (" << e[i].steps << " steps, "
        << states[i].describe() << ")\n";
    if (opts.dry_run) out << "      " << join_command(exe, e[i].command) << "\n";
  }
  out.flush();
  if (opts.dry_run) return 0;

  std::error_code ec;
  fs::create_directories(s.out, ec);
  if (ec) throw RuntimeError(s.out + ": cannot create the sweep directory: " + ec.message());
  write_status(s, runs, e);

  bool failed = false;
  for (size_t i = 0; i < runs.size(); ++i) {
    if (e[i].status == "skipped") {
      out << "[" << (i + 1) << "/" << runs.size() << "] " << runs[i].name << ": already finished, skipped\n";
      continue;
    }
    if (failed && !opts.continue_on_failure) {
      e[i].status = "not run";
      continue;
    }
    fs::create_directories(runs[i].dir, ec);
    if (ec) throw RuntimeError(runs[i].dir + ": cannot create the run directory: " + ec.message());
    const std::string log = (fs::path(runs[i].dir) / "train.log").string();
    {
      std::ofstream lf(log, std::ios::app);
      lf << "=== llmtrain sweep " << s.file << " run " << runs[i].name << " at " << now_iso() << " ("
         << states[i].describe() << ")\n" << join_command(exe, e[i].command) << "\n";
    }
    out << "[" << (i + 1) << "/" << runs.size() << "] " << runs[i].name << ": " << states[i].describe() << " (log "
        << log << ")\n";
    out.flush();
    e[i].status = "running";
    write_status(s, runs, e);
    const auto t0 = std::chrono::steady_clock::now();
    const ProcessResult pr = run_process(exe, e[i].command, log, /*echo=*/true);
    e[i].seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const RunDirState after = inspect_run_dir(runs[i].dir, e[i].steps);
    e[i].last_step = after.metrics_step;
    if (pr.interrupted || (pr.signal == SIGINT)) {
      // The signal may have arrived after the run's last checkpoint: then the run is done.
      e[i].status = after.finished ? "complete" : "interrupted";
      e[i].detail = after.finished ? "" : pr.describe();
      for (size_t k = i + 1; k < runs.size(); ++k)
        if (e[k].status == "pending") e[k].status = "not run";
      write_status(s, runs, e);
      out << "sweep interrupted during " << runs[i].name << "; run the same command again to resume\n";
      return 130;
    }
    if (pr.ok() && after.finished) {
      e[i].status = "complete";
      e[i].detail.clear();
    } else {
      e[i].status = pr.ok() ? "incomplete" : "failed";
      e[i].detail = pr.ok() ? "exited 0 but the run is not finished (" + after.describe() + ")" : pr.describe();
      failed = true;
      out << "[" << (i + 1) << "/" << runs.size() << "] " << runs[i].name << ": " << e[i].status << " ("
          << e[i].detail << "); see " << log << "\n";
    }
    write_status(s, runs, e);
  }
  write_status(s, runs, e);

  std::map<std::string, int> count;
  for (const auto& x : e) ++count[x.status];
  out << "sweep done:";
  for (const auto& [k, n] : count) out << " " << n << " " << k;
  out << " (status in " << (fs::path(s.out) / "sweep.json").string() << ")\n";
  return failed ? 1 : 0;
}

}  // namespace llmtrain::report
