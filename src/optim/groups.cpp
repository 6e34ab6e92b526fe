// Optimizer groups: validation of the "optimizer" config section (every key, type and range, with
// errors naming file and dotted key), routing of parameters to groups by role, and the factory
// that builds each group's optimizer. Type-specific options are read by one function per type, used
// both here (config load) and by make_optimizer (so hand-built GroupConfigs get the same checks
// and defaults).
#include <algorithm>
#include <cmath>
#include <cstdio>

#include "config/json_section.h"
#include "llmtrain/error.h"
#include "llmtrain/optim.h"
#include "optim/optimizers.h"

namespace llmtrain {

const std::vector<std::string>& optimizer_types() {
  static const std::vector<std::string> t = {"adamw", "muon", "rmnp", "lowrank_muon", "polargrad", "newton_muon"};
  return t;
}

bool is_matrix_type(const std::string& type) { return type != "adamw"; }

double default_lr(const std::string& type) {
  if (type == "adamw") return 1e-3;
  if (type == "rmnp") return 4e-3;       // the RMNP paper's GPT-2 small (OpenWebText) setting
  if (type == "polargrad") return 1e-3;  // the step is lr * nuclear norm: much smaller than Muon's
  return 0.02;                           // Muon family (Keller Jordan's default)
}

double default_weight_decay(const std::string& type) { return type == "adamw" ? 0.1 : 0.0; }

void read_type_options(const std::string& type, JsonSection& s, nlohmann::json& o) {
  if (type == "adamw") {
    o["beta1"] = get_unit_interval(s, "beta1", 0.9);
    o["beta2"] = get_unit_interval(s, "beta2", 0.95);
    const double eps = s.get_num("eps", 1e-8, 0.0, 1.0);
    if (!(eps > 0)) s.fail("eps", "must be > 0");
    o["eps"] = eps;
    o["eps_mode"] = s.get_enum("eps_mode", "standard", {"standard", "uncorrected"});
    return;
  }
  if (type == "polargrad") {
    read_momentum_options(s, o, false);  // the PolarGrad paper's momentum-first form: plain EMA
    o["polar"] = s.get_enum("polar", "qdwh", {"qdwh", "ns"});
    read_ns_options(s, o, "polar_express8");
    read_diagnostics_option(s, o);
    return;
  }
  read_momentum_options(s, o, true);
  if (type == "rmnp") {
    const double eps = s.get_num("eps", 1e-12, 0.0, 1.0);
    if (!(eps > 0)) s.fail("eps", "must be > 0");
    o["eps"] = eps;
    read_diagnostics_option(s, o);
    return;
  }
  read_ns_options(s, o, "jordan5");
  read_scale_option(s, o);
  read_diagnostics_option(s, o);
  if (type == "muon") {
    o["split_qkv"] = s.get_bool("split_qkv", false);
  } else if (type == "lowrank_muon") {
    o["rank"] = s.get_int("rank", 128, 1, (int64_t)1 << 30);
    o["full_threshold"] = s.get_int("full_threshold", 500, 0, (int64_t)1 << 40);
  } else if (type == "newton_muon") {
    o["split_qkv"] = s.get_bool("split_qkv", false);
    o["refresh_every"] = s.get_int("refresh_every", 32, 1, (int64_t)1 << 40);
    o["beta2"] = get_unit_interval(s, "beta2", 0.95);
    o["damping"] = s.get_num("damping", 0.2, 0.0, 1e6);
    o["block"] = s.get_int("block", 0, 0, (int64_t)1 << 30);
  } else {
    throw RuntimeError("read_type_options: unknown optimizer type '" + type + "'");
  }
}

namespace {

const char* kCommonKeys[] = {"type", "lr", "weight_decay", "roles", "schedule"};

bool is_common_key(const std::string& k) {
  for (const char* c : kCommonKeys)
    if (k == c) return true;
  return false;
}

std::string fmt_num(double x) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g", x);
  return buf;
}

GroupConfig read_group(const std::string& name, const nlohmann::json& j, const Schedule& default_schedule,
                       const std::string& file) {
  JsonSection s(j, "optimizer." + name, file);
  GroupConfig g;
  g.name = name;
  if (!s.has("type") && name != "adamw")
    s.fail("type", "missing: every group but \"adamw\" names its optimizer (one of adamw, muon, rmnp, lowrank_muon, "
                   "polargrad, newton_muon)");
  g.type = s.get_enum("type", "adamw", optimizer_types());
  const double lr = s.get_num("lr", default_lr(g.type), -1e300, 1e300);
  if (!(lr > 0)) s.fail("lr", "must be > 0, got " + fmt_num(lr));
  g.lr = (float)lr;
  g.weight_decay = (float)s.get_num("weight_decay", default_weight_decay(g.type), 0.0, 1e6);
  if (const nlohmann::json* r = s.get_raw("roles")) {
    if (!r->is_array() || r->empty()) s.fail("roles", "expected a non-empty array of role names, got " + json_brief(*r));
    for (const auto& x : *r) {
      if (!x.is_string()) s.fail("roles", "expected role names (strings), got " + json_brief(x));
      const ParamRole role = parse_role(x.get<std::string>(), file + ": " + s.where("roles"));
      if (std::find(g.roles.begin(), g.roles.end(), role) != g.roles.end())
        s.fail("roles", std::string("role ") + role_name(role) + " is listed twice");
      g.roles.push_back(role);
    }
  } else if (name == "matrix") {
    g.roles = {ParamRole::hidden_matrix};
  } else if (name == "adamw") {
    g.catch_all = true;
  } else {
    s.fail("roles", "missing: a group not named \"matrix\" or \"adamw\" must list the roles it takes");
  }
  if (is_matrix_type(g.type))
    for (ParamRole r : g.roles)
      if (r == ParamRole::norm_gain || r == ParamRole::bias)
        s.fail("roles", g.type + " updates 2-D matrices only; role " + role_name(r) + " holds vectors");
  const nlohmann::json* sch = s.get_raw("schedule");
  g.schedule = sch ? parse_schedule_over(*sch, default_schedule, file, s.where("schedule")) : default_schedule;
  read_type_options(g.type, s, g.options);
  s.finish();
  return g;
}

}  // namespace

std::vector<GroupConfig> parse_optimizer_config(const nlohmann::json& optimizer, const Schedule& default_schedule,
                                                const std::string& file) {
  std::vector<GroupConfig> groups;
  if (optimizer.is_null() || (optimizer.is_object() && optimizer.empty())) {
    groups.push_back(read_group("adamw", nlohmann::json::object(), default_schedule, file));
    return groups;
  }
  if (!optimizer.is_object())
    throw InputError(file + ": optimizer: expected a JSON object of groups, got " + json_brief(optimizer));
  // nlohmann::json objects iterate in key order: a deterministic group order.
  for (auto it = optimizer.begin(); it != optimizer.end(); ++it)
    groups.push_back(read_group(it.key(), it.value(), default_schedule, file));
  for (size_t a = 0; a < groups.size(); ++a)
    for (size_t b = a + 1; b < groups.size(); ++b)
      for (ParamRole r : groups[b].roles)
        if (std::find(groups[a].roles.begin(), groups[a].roles.end(), r) != groups[a].roles.end())
          throw InputError(file + ": optimizer." + groups[b].name + ".roles: role " + role_name(r) +
                           " is already taken by group \"" + groups[a].name + "\"");
  return groups;
}

std::vector<std::vector<ParamRef>> assign_groups(const std::vector<GroupConfig>& groups,
                                                 const std::vector<ParamRef>& all) {
  std::vector<std::vector<ParamRef>> out(groups.size());
  for (const auto& p : all) {
    const ParamRole role = p.info->role;
    int hit = -1;
    for (size_t g = 0; g < groups.size(); ++g) {
      if (std::find(groups[g].roles.begin(), groups[g].roles.end(), role) == groups[g].roles.end()) continue;
      if (hit >= 0)
        throw RuntimeError("parameter " + p.info->name + " (role " + role_name(role) + ") matches optimizer groups \"" +
                           groups[hit].name + "\" and \"" + groups[g].name + "\"");
      hit = (int)g;
    }
    if (hit < 0) {
      for (size_t g = 0; g < groups.size(); ++g) {
        if (!groups[g].catch_all) continue;
        if (hit >= 0)
          throw RuntimeError("parameter " + p.info->name + " matches two catch-all optimizer groups \"" +
                             groups[hit].name + "\" and \"" + groups[g].name + "\"");
        hit = (int)g;
      }
    }
    if (hit < 0)
      throw RuntimeError("parameter " + p.info->name + " (role " + role_name(role) +
                         ") matches no optimizer group; add its role to a group's \"roles\" or add an \"adamw\" group");
    out[(size_t)hit].push_back(p);
  }
  return out;
}

nlohmann::json checked_type_options(const GroupConfig& cfg) {
  // Re-read the options through the same checks (defaults filled in, unknown keys rejected), so a
  // GroupConfig built by hand behaves exactly like one from a config file.
  nlohmann::json opts = nlohmann::json::object();
  nlohmann::json in = cfg.options.is_null() ? nlohmann::json::object() : cfg.options;
  JsonSection s(in, "optimizer." + cfg.name, "optimizer config");
  for (auto it = in.begin(); it != in.end(); ++it)
    if (is_common_key(it.key())) s.get_raw(it.key());  // tolerated: GroupConfig already holds them
  if (std::find(optimizer_types().begin(), optimizer_types().end(), cfg.type) == optimizer_types().end())
    throw InputError("optimizer." + cfg.name + ".type: unknown optimizer type \"" + cfg.type + "\"");
  read_type_options(cfg.type, s, opts);
  s.finish();
  return opts;
}

std::unique_ptr<Optimizer> make_optimizer(const GroupConfig& cfg, const std::vector<ParamRef>& params, uint64_t seed) {
  const nlohmann::json opts = checked_type_options(cfg);
  if (cfg.type == "adamw") return make_adamw(cfg, opts, params);
  if (cfg.type == "muon") return make_muon(cfg, opts, params);
  if (cfg.type == "rmnp") return make_rmnp(cfg, opts, params);
  if (cfg.type == "lowrank_muon") return make_lowrank_muon(cfg, opts, params, seed);
  if (cfg.type == "polargrad") return make_polargrad(cfg, opts, params);
  return make_newton_muon(cfg, opts, params);
}

}  // namespace llmtrain
