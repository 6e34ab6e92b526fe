// Strict reader for one JSON object of a config file: typed getters with defaults, range checks,
// and finish() that rejects keys nobody asked for. Every error names the file and the dotted key,
// e.g. "configs/x.json: model.n_layer: expected an integer, got \"twelve\"".
#pragma once
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

namespace llmtrain {

class JsonSection {
 public:
  // `j` must be an object (else InputError); `path` is the dotted prefix ("model", "optimizer.matrix").
  JsonSection(const nlohmann::json& j, std::string path, std::string file);

  bool has(const std::string& key) const;
  int64_t get_int(const std::string& key, int64_t def, int64_t lo, int64_t hi);
  double get_num(const std::string& key, double def, double lo, double hi);
  bool get_bool(const std::string& key, bool def);
  std::string get_str(const std::string& key, const std::string& def);
  std::string get_enum(const std::string& key, const std::string& def, const std::vector<std::string>& allowed);
  // Marks a key as known without reading it (for sub-objects handled elsewhere).
  const nlohmann::json* get_raw(const std::string& key);
  // InputError on any key not read by a getter.
  void finish() const;

  [[noreturn]] void fail(const std::string& key, const std::string& what) const;
  std::string where(const std::string& key) const;

 private:
  const nlohmann::json& j_;
  std::string path_, file_;
  std::set<std::string> seen_;
};

std::string json_brief(const nlohmann::json& v);  // short printable form of a value for messages

}  // namespace llmtrain
