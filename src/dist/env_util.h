// Small helpers shared by the distributed code for reading environment variables strictly: a value
// that is set but malformed is the user's mistake and becomes an InputError naming the variable
// and its value, never a silent default.
#pragma once
#include <optional>
#include <string>

namespace llmtrain::dist {

// The variable's value, or nullopt when it is unset or empty.
std::optional<std::string> env_get(const char* name);
// Parses a whole decimal integer in [lo, hi]; InputError "NAME=value: ..." otherwise.
long long parse_int_strict(const std::string& value, const std::string& name, long long lo, long long hi);
// env_get + parse_int_strict.
std::optional<long long> env_int(const char* name, long long lo, long long hi);

}  // namespace llmtrain::dist
