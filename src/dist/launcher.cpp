// `llmtrain launch` engine; see launcher.h. Workers are forked from the main thread, each in its
// own process group (so a signal reaches a worker's children too, and the terminal's Ctrl-C
// reaches only the launcher, which forwards it) with PR_SET_PDEATHSIG so they die with a killed
// launcher. Their stdout/stderr come back through pipes that one pump thread per attempt reads
// with poll(), writing whole "[rank N] ..." lines to our stdout/stderr.
#include "dist/launcher.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "dist/tcp_store.h"
#include "llmtrain/error.h"

extern char** environ;

namespace llmtrain::dist {
namespace {

using Clock = std::chrono::steady_clock;

// ---------------------------------------------------------------- signals

volatile sig_atomic_t g_signal = 0;        // the first SIGINT/SIGTERM/SIGHUP received
volatile sig_atomic_t g_signal_count = 0;  // a second one means "stop now"

void on_signal(int sig) {
  if (g_signal == 0) g_signal = sig;
  g_signal_count = g_signal_count + 1;
}

// Installs the handlers (no SA_RESTART: sleeps wake up at once) and ignores SIGPIPE (a closed
// stdout must not kill the launcher while workers run); restores everything on exit.
struct SignalScope {
  struct sigaction old_int {}, old_term {}, old_hup {}, old_pipe {};
  SignalScope() {
    g_signal = 0;
    g_signal_count = 0;
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGHUP, &sa, &old_hup);
    struct sigaction ign {};
    ign.sa_handler = SIG_IGN;
    sigemptyset(&ign.sa_mask);
    sigaction(SIGPIPE, &ign, &old_pipe);
  }
  ~SignalScope() {
    sigaction(SIGINT, &old_int, nullptr);
    sigaction(SIGTERM, &old_term, nullptr);
    sigaction(SIGHUP, &old_hup, nullptr);
    sigaction(SIGPIPE, &old_pipe, nullptr);
  }
};

void sleep_ms(double ms) {
  if (ms <= 0) return;
  timespec ts;
  ts.tv_sec = (time_t)(ms / 1000);
  ts.tv_nsec = (long)((ms - ts.tv_sec * 1000.0) * 1e6);
  ::nanosleep(&ts, nullptr);  // a signal cuts it short, which is what we want
}

std::string signal_name(int sig) {
  switch (sig) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    case SIGKILL: return "SIGKILL";
    case SIGSEGV: return "SIGSEGV";
    case SIGABRT: return "SIGABRT";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGILL: return "SIGILL";
    default: return "signal " + std::to_string(sig);
  }
}

// ---------------------------------------------------------------- output

std::mutex g_out_mu;

void write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;  // stdout closed: drop the output, keep supervising
    p += w;
    n -= (size_t)w;
  }
}

// One whole line at a time, so lines of different ranks never interleave mid-line.
void emit(int fd, const std::string& line) {
  std::lock_guard<std::mutex> lk(g_out_mu);
  write_all(fd, line.data(), line.size());
}

void say(const std::string& msg) { emit(2, "llmtrain launch: " + msg + "\n"); }

// Reads the workers' pipes of one attempt and writes prefixed lines until every pipe hit EOF, or
// until finish() was called and its drain deadline passed (a grandchild that escaped our process
// group could hold a pipe open forever).
class OutputPump {
 public:
  struct Stream {
    int fd;
    int out_fd;  // 1 or 2
    std::string prefix;
    std::string pending;
  };
  explicit OutputPump(std::vector<Stream> streams) : streams_(std::move(streams)) {
    if (::pipe2(wake_, O_CLOEXEC) != 0) throw RuntimeError(std::string("launch: pipe: ") + std::strerror(errno));
    thread_ = std::thread([this] { loop(); });
  }
  ~OutputPump() { finish(0.0); }
  void finish(double drain_s) {
    if (!thread_.joinable()) return;
    drain_deadline_ns_ = (Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                             std::chrono::duration<double>(drain_s)))
                             .time_since_epoch()
                             .count();
    finishing_ = true;
    char c = 1;
    (void)!::write(wake_[1], &c, 1);
    thread_.join();
    ::close(wake_[0]);
    ::close(wake_[1]);
  }

 private:
  void flush_lines(Stream& s, bool all) {
    size_t start = 0;
    for (;;) {
      size_t nl = s.pending.find('\n', start);
      if (nl == std::string::npos) break;
      emit(s.out_fd, s.prefix + s.pending.substr(start, nl + 1 - start));
      start = nl + 1;
    }
    s.pending.erase(0, start);
    // Unterminated output: flush at EOF, or when a line grows absurdly long (progress bars).
    if (!s.pending.empty() && (all || s.pending.size() > (64u << 10))) {
      emit(s.out_fd, s.prefix + s.pending + "\n");
      s.pending.clear();
    }
  }
  void loop() {
    std::vector<Stream*> open;
    for (auto& s : streams_) open.push_back(&s);
    char buf[65536];
    while (!open.empty()) {
      std::vector<pollfd> pfds;
      for (auto* s : open) pfds.push_back({s->fd, POLLIN, 0});
      pfds.push_back({wake_[0], POLLIN, 0});
      int timeout_ms = -1;
      if (finishing_) {
        const auto left = drain_deadline_ns_ - Clock::now().time_since_epoch().count();
        if (left <= 0) break;
        timeout_ms = (int)std::max<long long>(1, left / 1000000);
      }
      const int pr = ::poll(pfds.data(), pfds.size(), timeout_ms);
      if (pr < 0 && errno != EINTR) break;
      if (pfds.back().revents) {
        char c;
        (void)!::read(wake_[0], &c, 1);
      }
      std::vector<Stream*> still;
      for (size_t i = 0; i < open.size(); ++i) {
        Stream* s = open[i];
        bool eof = false;
        if (pfds[i].revents & (POLLIN | POLLHUP | POLLERR)) {
          ssize_t r = ::read(s->fd, buf, sizeof buf);
          if (r > 0) {
            s->pending.append(buf, (size_t)r);
            flush_lines(*s, false);
          } else if (r == 0 || (errno != EINTR && errno != EAGAIN)) {
            eof = true;
          }
        }
        if (eof) {
          flush_lines(*s, true);
          ::close(s->fd);
          s->fd = -1;
        } else {
          still.push_back(s);
        }
      }
      open.swap(still);
    }
    for (auto* s : open) {
      flush_lines(*s, true);
      ::close(s->fd);
      s->fd = -1;
    }
  }

  std::vector<Stream> streams_;
  int wake_[2] = {-1, -1};
  std::atomic<bool> finishing_{false};
  std::atomic<long long> drain_deadline_ns_{0};
  std::thread thread_;
};

// ---------------------------------------------------------------- workers

struct Worker {
  int local_rank = 0;
  int rank = 0;
  pid_t pid = -1;
  bool running = false;
  int status = 0;  // waitpid status once exited
};

// Exit code as the launcher reports it: the code, or 128+signal.
int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

std::string describe_exit(int rank, int status) {
  if (WIFSIGNALED(status))
    return "rank " + std::to_string(rank) + " was killed by " + signal_name(WTERMSIG(status)) + " (exit code " +
           std::to_string(128 + WTERMSIG(status)) + ")";
  return "rank " + std::to_string(rank) + " exited with code " + std::to_string(exit_code_of(status));
}

// argv/envp as C arrays, built before fork (only async-signal-safe calls are allowed after it).
struct CArgs {
  std::vector<std::string> store;
  std::vector<char*> ptrs;
  explicit CArgs(std::vector<std::string> v) : store(std::move(v)) {
    for (auto& s : store) ptrs.push_back(&s[0]);
    ptrs.push_back(nullptr);
  }
  char** get() { return ptrs.data(); }
};

std::vector<std::string> worker_environment(const std::map<std::string, std::string>& set) {
  std::vector<std::string> env;
  for (char** e = environ; e && *e; ++e) {
    const char* eq = std::strchr(*e, '=');
    const std::string key = eq ? std::string(*e, eq - *e) : std::string(*e);
    if (set.count(key)) continue;
    env.push_back(*e);
  }
  for (const auto& kv : set) env.push_back(kv.first + "=" + kv.second);
  return env;
}

// Forks and execs one worker with stdout/stderr into fresh pipes; returns the read ends.
void spawn(Worker& w, const std::string& program, CArgs& argv, CArgs& envp, int& out_fd, int& err_fd) {
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0) throw RuntimeError(std::string("launch: pipe: ") + std::strerror(errno));
  if (::pipe2(err, O_CLOEXEC) != 0) {
    ::close(out[0]);
    ::close(out[1]);
    throw RuntimeError(std::string("launch: pipe: ") + std::strerror(errno));
  }
  const int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const pid_t parent = ::getpid();
  const std::string exec_fail = "llmtrain launch: cannot execute " + program + ": ";
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int e = errno;
    for (int fd : {out[0], out[1], err[0], err[1], devnull}) ::close(fd);
    throw RuntimeError(std::string("launch: fork: ") + std::strerror(e));
  }
  if (pid == 0) {
    // Child: async-signal-safe calls only.
    ::setpgid(0, 0);
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);  // the launcher died before prctl took effect
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    for (int s : {SIGINT, SIGTERM, SIGHUP, SIGPIPE}) ::sigaction(s, &dfl, nullptr);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (devnull >= 0) ::dup2(devnull, 0);
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    ::execve(program.c_str(), argv.get(), envp.get());
    const char* why = std::strerror(errno);
    (void)!::write(2, exec_fail.data(), exec_fail.size());
    (void)!::write(2, why, std::strlen(why));
    (void)!::write(2, "\n", 1);
    ::_exit(127);
  }
  ::setpgid(pid, pid);  // also from the parent, so signals never race the child's own call
  ::close(out[1]);
  ::close(err[1]);
  if (devnull >= 0) ::close(devnull);
  w.pid = pid;
  w.running = true;
  w.status = 0;
  out_fd = out[0];
  err_fd = err[0];
}

// Reaps whatever exited; returns true when some worker changed state.
bool reap(std::vector<Worker>& ws, std::vector<Worker*>* exited) {
  bool any = false;
  for (auto& w : ws) {
    if (!w.running) continue;
    int st = 0;
    const pid_t r = ::waitpid(w.pid, &st, WNOHANG);
    if (r == w.pid) {
      w.running = false;
      w.status = st;
      any = true;
      if (exited) exited->push_back(&w);
    }
  }
  return any;
}

bool any_running(const std::vector<Worker>& ws) {
  for (const auto& w : ws)
    if (w.running) return true;
  return false;
}

// Sends `sig` to every running worker's process group, waits up to grace_s for them to exit
// (a second signal to the launcher cuts the wait short), then SIGKILLs what is left. Finally
// SIGKILLs every worker's group, so children a worker left behind do not outlive it.
void stop_workers(std::vector<Worker>& ws, int sig, double grace_s, int signal_count_at_start) {
  for (auto& w : ws)
    if (w.running) {
      ::kill(-w.pid, sig);
      ::kill(w.pid, sig);
    }
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(grace_s));
  while (any_running(ws) && Clock::now() < deadline && g_signal_count <= signal_count_at_start) {
    reap(ws, nullptr);
    if (any_running(ws)) sleep_ms(20);
  }
  for (auto& w : ws)
    if (w.running) {
      ::kill(-w.pid, SIGKILL);
      ::kill(w.pid, SIGKILL);
      int st = 0;
      while (::waitpid(w.pid, &st, 0) < 0 && errno == EINTR) {
      }
      w.running = false;
      w.status = st;
    }
  for (auto& w : ws) ::kill(-w.pid, SIGKILL);
}

// ---------------------------------------------------------------- coordination keys

std::string key_failed(int attempt) { return "launch/failed/" + std::to_string(attempt); }
std::string key_nfail(int attempt) { return "launch/nfail/" + std::to_string(attempt); }
std::string key_done(int attempt) { return "launch/done/" + std::to_string(attempt); }
std::string key_left(int attempt) { return "launch/left/" + std::to_string(attempt); }
const char* kKeyStop = "launch/stop";

// "<code> <message>" <-> parts.
std::string encode_failure(int code, const std::string& msg) { return std::to_string(code) + " " + msg; }
void decode_failure(const std::string& v, int& code, std::string& msg) {
  const size_t sp = v.find(' ');
  code = std::atoi(v.substr(0, sp).c_str());
  if (code == 0) code = 1;
  msg = sp == std::string::npos ? v : v.substr(sp + 1);
}

// The command line as a user would type it (arguments with blanks or quotes single-quoted).
std::string display_command(const std::string& program, const std::vector<std::string>& args) {
  std::string out = program;
  for (const auto& a : args) {
    out += ' ';
    if (!a.empty() && a.find_first_of(" \t\n'\"\\$`") == std::string::npos) {
      out += a;
      continue;
    }
    out += '\'';
    for (char c : a) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    out += '\'';
  }
  return out;
}

enum class Outcome { kSuccess, kLocalFailure, kRemoteFailure, kRemoteStop, kSignal, kStoreLost };

}  // namespace

int run_launcher(const LaunchSpec& spec) {
  if (spec.nproc_per_node < 1) throw InputError("--nproc-per-node " + std::to_string(spec.nproc_per_node) + ": must be at least 1");
  if (spec.nnodes < 1) throw InputError("--nnodes " + std::to_string(spec.nnodes) + ": must be at least 1");
  if (spec.node_rank < 0 || spec.node_rank >= spec.nnodes)
    throw InputError("--node-rank " + std::to_string(spec.node_rank) + ": must be in [0, " + std::to_string(spec.nnodes) + ")");
  if (spec.standalone && spec.nnodes != 1) throw InputError("--standalone runs one node; it cannot be combined with --nnodes " + std::to_string(spec.nnodes));
  if (!spec.standalone && (spec.master_port < 1 || spec.master_port > 65535))
    throw InputError("--master-port " + std::to_string(spec.master_port) + ": must be in [1, 65535]");
  if (spec.max_restarts < 0) throw InputError("--max-restarts " + std::to_string(spec.max_restarts) + ": must be >= 0");
  if (!(spec.monitor_interval_s > 0)) throw InputError("--monitor-interval: must be > 0");
  if (!(spec.grace_period_s >= 0)) throw InputError("--grace-period: must be >= 0");
  if (spec.program.empty()) throw InputError("launch: no worker command given");

  const bool multi_node = spec.nnodes > 1;
  const int world = spec.nnodes * spec.nproc_per_node;
  const Millis store_timeout = dist_timeout_from_environment();

  // ---- the store: node 0 hosts it, every launcher is a client ----
  std::unique_ptr<TcpStoreServer> server;
  std::string master_addr = spec.standalone ? "127.0.0.1" : spec.master_addr;
  int master_port = spec.master_port;
  if (spec.node_rank == 0) {
    server = std::make_unique<TcpStoreServer>(spec.standalone ? 0 : spec.master_port, "0.0.0.0");
    master_port = server->port();
  }
  std::unique_ptr<TcpStoreClient> store;
  if (multi_node)
    store = std::make_unique<TcpStoreClient>(server ? "127.0.0.1" : master_addr, master_port, store_timeout);

  SignalScope signals;
  const std::string store_addr = master_addr + ":" + std::to_string(master_port);
  say("node " + std::to_string(spec.node_rank) + "/" + std::to_string(spec.nnodes) + ": starting " +
      std::to_string(spec.nproc_per_node) + " worker(s) (ranks " + std::to_string(spec.node_rank * spec.nproc_per_node) +
      "-" + std::to_string((spec.node_rank + 1) * spec.nproc_per_node - 1) + " of " + std::to_string(world) +
      "), store " + store_addr + (server ? " (hosted here)" : "") + ", max restarts " + std::to_string(spec.max_restarts));

  const double interval_ms = spec.monitor_interval_s * 1000.0;
  const double remote_check_ms = std::max(interval_ms, 500.0);

  for (int attempt = 0;; ++attempt) {
    // ---- start the workers of this attempt ----
    const std::vector<std::string>& args = attempt == 0 ? spec.args : spec.restart_args;
    std::vector<std::string> argv_s{spec.program};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    CArgs argv(argv_s);
    std::vector<Worker> workers(spec.nproc_per_node);
    std::vector<OutputPump::Stream> streams;
    std::string spawn_error;
    for (int i = 0; i < spec.nproc_per_node; ++i) {
      Worker& w = workers[i];
      w.local_rank = i;
      w.rank = spec.node_rank * spec.nproc_per_node + i;
      CArgs envp(worker_environment({{"RANK", std::to_string(w.rank)},
                                     {"LOCAL_RANK", std::to_string(i)},
                                     {"WORLD_SIZE", std::to_string(world)},
                                     {"LOCAL_WORLD_SIZE", std::to_string(spec.nproc_per_node)},
                                     {"GROUP_RANK", std::to_string(spec.node_rank)},
                                     {"MASTER_ADDR", master_addr},
                                     {"MASTER_PORT", std::to_string(master_port)},
                                     {"LLMTRAIN_STORE", store_addr},
                                     {"LLMTRAIN_RESTART_COUNT", std::to_string(attempt)}}));
      int out_fd = -1, err_fd = -1;
      try {
        spawn(w, spec.program, argv, envp, out_fd, err_fd);
      } catch (const std::exception& e) {
        spawn_error = e.what();
        break;
      }
      const std::string prefix = "[rank " + std::to_string(w.rank) + "] ";
      streams.push_back({out_fd, 1, prefix, ""});
      streams.push_back({err_fd, 2, prefix, ""});
    }
    OutputPump pump(std::move(streams));
    if (!spawn_error.empty()) {
      stop_workers(workers, SIGKILL, 0, g_signal_count);
      pump.finish(1.0);
      throw RuntimeError(spawn_error);
    }

    // ---- watch them ----
    Outcome outcome = Outcome::kSuccess;
    int fail_code = 0;
    std::string fail_msg;
    auto last_remote_check = Clock::now();
    bool done_reported = false;
    for (;;) {
      if (g_signal) {
        outcome = Outcome::kSignal;
        break;
      }
      std::vector<Worker*> exited;
      reap(workers, &exited);
      // Several failures seen in one check: a worker killed by a signal is named first (the others
      // usually exited because they lost it as a peer), then the lowest rank.
      auto named_before = [](const Worker* a, const Worker* b) {
        const bool sa = WIFSIGNALED(a->status), sb = WIFSIGNALED(b->status);
        return sa != sb ? sa : a->rank < b->rank;
      };
      const Worker* failed = nullptr;
      for (const Worker* w : exited)
        if (w->status != 0 && (!failed || named_before(w, failed))) failed = w;
      if (failed) {
        outcome = Outcome::kLocalFailure;
        fail_code = exit_code_of(failed->status);
        fail_msg = describe_exit(failed->rank, failed->status);
        break;
      }
      const bool local_done = !any_running(workers);
      if (local_done && !multi_node) break;  // success
      if (multi_node) {
        try {
          if (local_done && !done_reported) {
            store->add(key_done(attempt), 1);
            done_reported = true;
          }
          const double since = std::chrono::duration<double, std::milli>(Clock::now() - last_remote_check).count();
          if (since >= remote_check_ms || local_done) {
            last_remote_check = Clock::now();
            if (store->check({kKeyStop})) {
              decode_failure(store->get(kKeyStop, Millis(10000)), fail_code, fail_msg);
              outcome = Outcome::kRemoteStop;
              break;
            }
            if (store->check({key_failed(attempt)})) {
              decode_failure(store->get(key_failed(attempt), Millis(10000)), fail_code, fail_msg);
              outcome = Outcome::kRemoteFailure;
              break;
            }
            if (local_done && store->add(key_done(attempt), 0) >= spec.nnodes) break;  // everyone finished
          }
        } catch (const RuntimeError& e) {
          outcome = Outcome::kStoreLost;
          fail_code = 1;
          fail_msg = e.what();
          break;
        }
      }
      sleep_ms(local_done ? std::max(interval_ms, 100.0) : interval_ms);
    }

    // ---- act on the outcome ----
    if (outcome == Outcome::kSuccess) {
      pump.finish(1.0);
      if (multi_node) {
        // Node 0 hosts the store: it leaves last, once every launcher has seen the job finish.
        try {
          store->add(key_left(attempt), 1);
          const auto deadline = Clock::now() + std::chrono::seconds(30);
          while (server && store->add(key_left(attempt), 0) < spec.nnodes && Clock::now() < deadline && !g_signal)
            sleep_ms(100);
        } catch (const RuntimeError&) {
        }
      }
      say("all " + std::to_string(spec.nproc_per_node) + " worker(s) of node " + std::to_string(spec.node_rank) +
          " finished" + (multi_node ? " (all nodes done)" : ""));
      return 0;
    }
    if (outcome == Outcome::kSignal) {
      const int sig = g_signal;
      const int count = g_signal_count;
      say("received " + signal_name(sig) + ": passing it to the workers (again to kill them at once)");
      if (multi_node && store) {
        try {
          store->set(kKeyStop, encode_failure(128 + sig, "node " + std::to_string(spec.node_rank) + " launcher got " +
                                                             signal_name(sig)));
        } catch (const RuntimeError&) {
        }
      }
      stop_workers(workers, sig, spec.grace_period_s, count);
      pump.finish(1.0);
      return 128 + sig;
    }
    if (outcome == Outcome::kLocalFailure && multi_node) {
      try {
        if (store->add(key_nfail(attempt), 1) == 1)
          store->set(key_failed(attempt), encode_failure(fail_code, fail_msg + " (node " + std::to_string(spec.node_rank) + ")"));
      } catch (const RuntimeError&) {
      }
    }
    const std::string why = outcome == Outcome::kLocalFailure    ? fail_msg
                            : outcome == Outcome::kRemoteFailure ? "another node reported: " + fail_msg
                            : outcome == Outcome::kRemoteStop    ? "stopped: " + fail_msg
                                                                 : "lost the rendezvous store: " + fail_msg;
    say(why + "; stopping the other workers");
    stop_workers(workers, SIGTERM, spec.grace_period_s, g_signal_count);
    pump.finish(1.0);
    if (outcome == Outcome::kStoreLost || outcome == Outcome::kRemoteStop) return fail_code;
    if (g_signal) return 128 + g_signal;
    if (attempt >= spec.max_restarts) {
      if (spec.max_restarts > 0) say("giving up after " + std::to_string(spec.max_restarts) + " restart(s)");
      say(fail_msg);
      return fail_code == 0 ? 1 : fail_code;
    }
    say("restarting all workers (restart " + std::to_string(attempt + 1) + " of " + std::to_string(spec.max_restarts) +
        "): " + display_command(spec.program, spec.restart_args));
  }
}

}  // namespace llmtrain::dist
