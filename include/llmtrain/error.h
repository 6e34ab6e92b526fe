// Error types shared by every layer. InputError is the user's fault (bad config, bad file, bad flag)
// and maps to exit code 2; RuntimeError is ours or the machine's and maps to exit code 1. Messages
// name the file, field or value involved so that a one-line report is enough to act on.
#pragma once
#include <stdexcept>
#include <string>

namespace llmtrain {

class InputError : public std::runtime_error {
 public:
  explicit InputError(const std::string& msg) : std::runtime_error(msg) {}
};

class RuntimeError : public std::runtime_error {
 public:
  explicit RuntimeError(const std::string& msg) : std::runtime_error(msg) {}
};

// Exit codes of the CLI (DESIGN.md section 9).
constexpr int kExitRuntime = 1;
constexpr int kExitInput = 2;

}  // namespace llmtrain
