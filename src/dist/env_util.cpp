// Strict environment-variable parsing for the distributed layer; see env_util.h.
#include "dist/env_util.h"

#include <cerrno>
#include <cstdlib>

#include "llmtrain/error.h"

namespace llmtrain::dist {

std::optional<std::string> env_get(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return std::nullopt;
  return std::string(v);
}

long long parse_int_strict(const std::string& value, const std::string& name, long long lo, long long hi) {
  const std::string where = name + "=" + value;
  if (value.empty()) throw InputError(where + ": expected an integer, got an empty value");
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(value.c_str(), &end, 10);
  // strtoll skips leading blanks; reject them too, so " 3" is as wrong as "3x".
  if (end == value.c_str() || *end != '\0' || value[0] == ' ' || value[0] == '\t')
    throw InputError(where + ": expected an integer");
  if (errno == ERANGE || v < lo || v > hi)
    throw InputError(where + ": out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return v;
}

std::optional<long long> env_int(const char* name, long long lo, long long hi) {
  auto v = env_get(name);
  if (!v) return std::nullopt;
  return parse_int_strict(*v, name, lo, hi);
}

}  // namespace llmtrain::dist
