// fork/exec with an optional tee into a log file; see process.h.
#include "tools/process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "llmtrain/error.h"

namespace llmtrain::report {
namespace {

volatile sig_atomic_t g_signal = 0;
volatile pid_t g_child = 0;

void on_signal(int sig) {
  g_signal = sig;
  // Ctrl-C already reaches the child through the terminal's process group; a SIGTERM sent to us
  // alone (a job scheduler) must be passed on so the training run stops too.
  if (sig == SIGTERM && g_child > 0) ::kill(g_child, SIGTERM);
}

// Installs on_signal for SIGINT/SIGTERM (no SA_RESTART, so a blocked read returns EINTR) and
// restores the previous handlers when it goes out of scope.
struct SignalGuard {
  struct sigaction old_int {}, old_term {};
  SignalGuard() {
    g_signal = 0;
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
  }
  ~SignalGuard() {
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);
    g_child = 0;
  }
};

void write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;  // a closed stdout must not stop the run
    p += w;
    n -= (size_t)w;
  }
}

}  // namespace

std::string ProcessResult::describe() const {
  if (signal != 0) {
    const char* name = strsignal(signal);
    return std::string("killed by signal ") + std::to_string(signal) + (name ? std::string(" (") + name + ")" : "");
  }
  return "exit code " + std::to_string(exit_code);
}

std::string self_exe() {
  char buf[4096];
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) throw RuntimeError("cannot read /proc/self/exe to find the llmtrain binary");
  buf[n] = '\0';
  return buf;
}

std::string find_on_path(const std::string& name) {
  if (name.find('/') != std::string::npos) return ::access(name.c_str(), X_OK) == 0 ? name : "";
  const char* path = std::getenv("PATH");
  std::stringstream ss(path ? path : "/usr/local/bin:/usr/bin:/bin");
  std::string dir;
  while (std::getline(ss, dir, ':')) {
    std::string cand = (dir.empty() ? "." : dir) + "/" + name;
    if (::access(cand.c_str(), X_OK) == 0) return cand;
  }
  return "";
}

ProcessResult run_process(const std::string& exe, const std::vector<std::string>& args, const std::string& log_path,
                          bool echo) {
  std::vector<std::string> argv_s;
  argv_s.push_back(exe);
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& s : argv_s) argv.push_back(s.data());
  argv.push_back(nullptr);

  int log_fd = -1, pipe_fd[2] = {-1, -1};
  if (!log_path.empty()) {
    log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) throw RuntimeError(log_path + ": cannot open log file: " + std::strerror(errno));
    if (::pipe2(pipe_fd, O_CLOEXEC) != 0) {
      ::close(log_fd);
      throw RuntimeError(std::string("pipe failed: ") + std::strerror(errno));
    }
  }
  std::fflush(stdout);
  std::fflush(stderr);
  SignalGuard guard;
  pid_t pid = ::fork();
  if (pid < 0) {
    if (log_fd >= 0) {
      ::close(log_fd);
      ::close(pipe_fd[0]);
      ::close(pipe_fd[1]);
    }
    throw RuntimeError(std::string("fork failed: ") + std::strerror(errno));
  }
  if (pid == 0) {
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    if (pipe_fd[1] >= 0) {
      ::dup2(pipe_fd[1], STDOUT_FILENO);
      ::dup2(pipe_fd[1], STDERR_FILENO);
    }
    ::execv(exe.c_str(), argv.data());
    std::string msg = "cannot run " + exe + ": " + std::strerror(errno) + "\n";
    write_all(STDERR_FILENO, msg.data(), msg.size());
    _exit(127);
  }
  g_child = pid;
  if (pipe_fd[0] >= 0) {
    ::close(pipe_fd[1]);
    char buf[8192];
    for (;;) {
      ssize_t n = ::read(pipe_fd[0], buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      write_all(log_fd, buf, (size_t)n);
      if (echo) write_all(STDOUT_FILENO, buf, (size_t)n);
    }
    ::close(pipe_fd[0]);
    ::close(log_fd);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) throw RuntimeError(std::string("waitpid failed: ") + std::strerror(errno));
  }
  ProcessResult r;
  if (WIFEXITED(status)) r.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) r.signal = WTERMSIG(status);
  r.interrupted = g_signal != 0;
  return r;
}

}  // namespace llmtrain::report
