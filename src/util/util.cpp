// See util.h.
#include "util/util.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "llmtrain/error.h"

namespace fs = std::filesystem;

namespace llmtrain {

void fsync_path(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw RuntimeError(path + ": cannot open to fsync: " + std::strerror(errno));
  int rc = ::fsync(fd);
  int err = errno;
  ::close(fd);
  // Some filesystems refuse fsync on directories (EINVAL); there is nothing more we can do there.
  if (rc != 0 && err != EINVAL) throw RuntimeError(path + ": fsync failed: " + std::strerror(err));
}

void fsync_parent_dir(const std::string& path) {
  fs::path parent = fs::path(path).parent_path();
  fsync_path(parent.empty() ? "." : parent.string());
}

void write_file_atomic(const std::string& path, const std::string& content) {
  const fs::path p(path);
  const fs::path tmp = p.parent_path() / ("." + p.filename().string() + ".tmp." + std::to_string(::getpid()));
  const std::string tmp_s = tmp.string();
  // A leftover of a dead process with the same pid goes first; O_EXCL then refuses anything that
  // reappears there (a symlink included) instead of writing through it.
  ::unlink(tmp_s.c_str());
  int fd = ::open(tmp_s.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) throw RuntimeError(tmp_s + ": cannot create: " + std::strerror(errno));
  size_t done = 0;
  while (done < content.size()) {
    ssize_t w = ::write(fd, content.data() + done, content.size() - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      std::string e = std::strerror(errno);
      ::close(fd);
      ::unlink(tmp_s.c_str());
      throw RuntimeError(tmp_s + ": write failed: " + e);
    }
    done += static_cast<size_t>(w);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    std::string e = std::strerror(errno);
    ::unlink(tmp_s.c_str());
    throw RuntimeError(tmp_s + ": fsync/close failed: " + e);
  }
  if (std::rename(tmp_s.c_str(), path.c_str()) != 0) {
    std::string e = std::strerror(errno);
    ::unlink(tmp_s.c_str());
    throw RuntimeError(tmp_s + ": rename to " + path + " failed: " + e);
  }
  fsync_parent_dir(path);
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string format_duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e9) return "?";
  long s = (long)(seconds + 0.5);
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  return buf;
}

}  // namespace llmtrain
