// Child processes for the sweep runner and the report's plot step: fork + exec with an argument
// vector (never a shell, so paths and override values need no quoting), optionally teeing the
// child's stdout and stderr into a log file. While a child runs, SIGINT/SIGTERM reaching the
// parent are remembered (and SIGTERM is passed on) so the caller can record an interrupted run
// before it exits, instead of dying with the status file half written.
#pragma once
#include <string>
#include <vector>

namespace llmtrain::report {

struct ProcessResult {
  int exit_code = -1;   // the child's exit status when it exited normally, else -1
  int signal = 0;       // the signal that killed it, 0 if none
  bool interrupted = false;  // the parent received SIGINT or SIGTERM while waiting
  bool ok() const { return exit_code == 0 && signal == 0; }
  std::string describe() const;  // "exit code 1", "killed by SIGKILL", ...
};

// Runs `exe` with argv[1..] = args. With a non-empty log_path the child's stdout and stderr go
// through a pipe into that file (appended) and, if echo, to our stdout; otherwise the child
// inherits our stdout/stderr. RuntimeError when the process cannot be started; a missing program
// shows up as exit code 127 with the reason in the log.
ProcessResult run_process(const std::string& exe, const std::vector<std::string>& args,
                          const std::string& log_path = "", bool echo = true);

// The running binary (readlink of /proc/self/exe), for re-invoking our own subcommands.
std::string self_exe();

// Looks `name` up on PATH (a name containing '/' is returned as is when executable); "" if absent.
std::string find_on_path(const std::string& name);

}  // namespace llmtrain::report
