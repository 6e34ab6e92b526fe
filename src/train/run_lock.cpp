// flock-based run-directory lock (see run_lock.h).
#include "train/run_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "llmtrain/error.h"

namespace llmtrain {

RunLock::RunLock(const std::string& run_dir) : path_((std::filesystem::path(run_dir) / ".lock").string()) {
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd_ < 0) throw RuntimeError(path_ + ": cannot open the run-directory lock: " + std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    std::string holder;
    char buf[256];
    ssize_t n = ::pread(fd_, buf, sizeof buf - 1, 0);
    if (n > 0) holder.assign(buf, (size_t)n);
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    ::close(fd_);
    fd_ = -1;
    if (err != EWOULDBLOCK) throw RuntimeError(path_ + ": flock failed: " + std::strerror(err));
    throw InputError("run.dir " + run_dir + " is in use by another trainer (" +
                     (holder.empty() ? std::string("holder unknown") : holder) + ", lock " + path_ +
                     "); wait for it to finish or choose another run.dir");
  }
  char host[256] = "?";
  ::gethostname(host, sizeof host - 1);
  char when[32] = "";
  std::time_t now = std::time(nullptr);
  std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", std::localtime(&now));
  const std::string who = "pid " + std::to_string(::getpid()) + " on " + host + " since " + when + "\n";
  // The flock is what excludes; the text only names the holder, so a failed write is not fatal.
  if (::ftruncate(fd_, 0) == 0) (void)!::pwrite(fd_, who.data(), who.size(), 0);
}

RunLock::~RunLock() {
  if (fd_ >= 0) ::close(fd_);
}

}  // namespace llmtrain
