// JsonSection: strict typed access to one object of a config file.
#include "config/json_section.h"

#include <cmath>

#include "llmtrain/error.h"

namespace llmtrain {

std::string json_brief(const nlohmann::json& v) {
  std::string s = v.dump();
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return s;
}

JsonSection::JsonSection(const nlohmann::json& j, std::string path, std::string file)
    : j_(j), path_(std::move(path)), file_(std::move(file)) {
  if (!j_.is_object())
    throw InputError(file_ + ": " + (path_.empty() ? std::string("<top level>") : path_) +
                     ": expected a JSON object, got " + json_brief(j_));
}

std::string JsonSection::where(const std::string& key) const {
  return path_.empty() ? key : path_ + "." + key;
}

void JsonSection::fail(const std::string& key, const std::string& what) const {
  throw InputError(file_ + ": " + where(key) + ": " + what);
}

bool JsonSection::has(const std::string& key) const { return j_.contains(key) && !j_.at(key).is_null(); }

int64_t JsonSection::get_int(const std::string& key, int64_t def, int64_t lo, int64_t hi) {
  seen_.insert(key);
  if (!has(key)) return def;
  const auto& v = j_.at(key);
  int64_t x = 0;
  if (v.is_number_integer() || v.is_number_unsigned()) {
    x = v.get<int64_t>();
  } else if (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>() &&
             std::fabs(v.get<double>()) < 9e15) {
    x = static_cast<int64_t>(v.get<double>());  // 1e6 style integers are fine
  } else {
    fail(key, "expected an integer, got " + json_brief(v));
  }
  if (x < lo || x > hi)
    fail(key, "must be in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got " + std::to_string(x));
  return x;
}

double JsonSection::get_num(const std::string& key, double def, double lo, double hi) {
  seen_.insert(key);
  if (!has(key)) return def;
  const auto& v = j_.at(key);
  if (!v.is_number()) fail(key, "expected a number, got " + json_brief(v));
  double x = v.get<double>();
  if (!std::isfinite(x) || x < lo || x > hi) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "must be in [%g, %g], got %g", lo, hi, x);
    fail(key, buf);
  }
  return x;
}

bool JsonSection::get_bool(const std::string& key, bool def) {
  seen_.insert(key);
  if (!has(key)) return def;
  const auto& v = j_.at(key);
  if (!v.is_boolean()) fail(key, "expected true or false, got " + json_brief(v));
  return v.get<bool>();
}

std::string JsonSection::get_str(const std::string& key, const std::string& def) {
  seen_.insert(key);
  if (!has(key)) return def;
  const auto& v = j_.at(key);
  if (!v.is_string()) fail(key, "expected a string, got " + json_brief(v));
  return v.get<std::string>();
}

std::string JsonSection::get_enum(const std::string& key, const std::string& def,
                                  const std::vector<std::string>& allowed) {
  std::string s = get_str(key, def);
  for (const auto& a : allowed)
    if (a == s) return s;
  std::string list;
  for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
  fail(key, "unknown value \"" + s + "\" (expected one of: " + list + ")");
}

const nlohmann::json* JsonSection::get_raw(const std::string& key) {
  seen_.insert(key);
  return has(key) ? &j_.at(key) : nullptr;
}

void JsonSection::finish() const {
  for (auto it = j_.begin(); it != j_.end(); ++it)
    if (!seen_.count(it.key())) fail(it.key(), "unknown key");
}

}  // namespace llmtrain
