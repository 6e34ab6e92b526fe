// llm.c token shards: header validation, the read-only memory map the loader indexes into, the
// crash-safe writer the tokenizer streams into, and glob resolution of shard patterns. The format is
// little-endian on disk and we read it in place, so this file only builds for little-endian hosts.
#include "llmtrain/shard.h"

#include <fcntl.h>
#include <glob.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>

#include "llmtrain/checkpoint.h"
#include "llmtrain/error.h"
#include "util/util.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "llm.c shards are read in place: little-endian hosts only");

namespace llmtrain {
namespace {

std::string errno_text() { return std::strerror(errno); }

// Checks a header already read from `path` against the file's size.
ShardInfo validate_header(const std::string& path, const int32_t* hdr, uint64_t file_bytes) {
  ShardInfo info;
  info.path = path;
  if (hdr[0] == kShardMagicU16) {
    if (hdr[1] != kShardVersionU16)
      throw InputError(path + ": bad version " + std::to_string(hdr[1]) + " for magic " +
                       std::to_string(kShardMagicU16) + " (expected " + std::to_string(kShardVersionU16) + ")");
    info.token_bytes = 2;
  } else if (hdr[0] == kShardMagicU32) {
    if (hdr[1] != kShardVersionU32)
      throw InputError(path + ": bad version " + std::to_string(hdr[1]) + " for magic " +
                       std::to_string(kShardMagicU32) + " (expected " + std::to_string(kShardVersionU32) + ")");
    info.token_bytes = 4;
  } else {
    throw InputError(path + ": bad magic " + std::to_string(hdr[0]) + " (expected " + std::to_string(kShardMagicU16) +
                     " or " + std::to_string(kShardMagicU32) + ")");
  }
  info.version = hdr[1];
  if (hdr[2] < 0) throw InputError(path + ": bad token count " + std::to_string(hdr[2]) + " in header");
  info.num_tokens = static_cast<uint64_t>(hdr[2]);
  const uint64_t expect = kShardHeaderBytes + info.num_tokens * info.token_bytes;
  if (file_bytes != expect) {
    throw InputError(path + ": " + (file_bytes < expect ? "truncated shard" : "oversized shard") + ": header says " +
                     std::to_string(info.num_tokens) + " tokens (" + std::to_string(expect) + " bytes) but file has " +
                     std::to_string(file_bytes) + " bytes");
  }
  return info;
}

// Opens `path` read-only and returns the fd and its size; InputError if missing, not a regular
// file, or too short to hold a header.
int open_shard(const std::string& path, uint64_t* file_bytes) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw InputError(path + ": " + errno_text());
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    std::string e = errno_text();
    ::close(fd);
    throw InputError(path + ": " + e);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw InputError(path + ": not a regular file");
  }
  *file_bytes = static_cast<uint64_t>(st.st_size);
  if (*file_bytes < kShardHeaderBytes) {
    ::close(fd);
    throw InputError(path + ": truncated shard: file has " + std::to_string(*file_bytes) + " bytes, less than the " +
                     std::to_string(kShardHeaderBytes) + "-byte header");
  }
  return fd;
}

}  // namespace

ShardInfo read_shard_header(const std::string& path) {
  uint64_t file_bytes = 0;
  int fd = open_shard(path, &file_bytes);
  int32_t hdr[kShardHeaderInts];
  ssize_t got = ::pread(fd, hdr, kShardHeaderBytes, 0);
  int err = errno;
  ::close(fd);
  if (got != static_cast<ssize_t>(kShardHeaderBytes))
    throw InputError(path + ": cannot read header: " + (got < 0 ? std::strerror(err) : "short read"));
  return validate_header(path, hdr, file_bytes);
}

// ---------------------------------------------------------------- ShardView

ShardView::ShardView(const std::string& path) {
  uint64_t file_bytes = 0;
  int fd = open_shard(path, &file_bytes);
  void* m = ::mmap(nullptr, file_bytes, PROT_READ, MAP_SHARED, fd, 0);
  int err = errno;
  ::close(fd);  // the mapping keeps the file alive
  if (m == MAP_FAILED) throw RuntimeError(path + ": mmap failed: " + std::strerror(err));
  map_ = m;
  map_bytes_ = file_bytes;
  try {
    info_ = validate_header(path, static_cast<const int32_t*>(map_), file_bytes);
  } catch (...) {
    release();
    throw;
  }
  tokens_ = static_cast<const unsigned char*>(map_) + kShardHeaderBytes;
}

ShardView::~ShardView() { release(); }

ShardView::ShardView(ShardView&& o) noexcept
    : info_(std::move(o.info_)), map_(o.map_), map_bytes_(o.map_bytes_), tokens_(o.tokens_) {
  o.map_ = nullptr;
  o.map_bytes_ = 0;
  o.tokens_ = nullptr;
}

ShardView& ShardView::operator=(ShardView&& o) noexcept {
  if (this != &o) {
    release();
    info_ = std::move(o.info_);
    map_ = o.map_;
    map_bytes_ = o.map_bytes_;
    tokens_ = o.tokens_;
    o.map_ = nullptr;
    o.map_bytes_ = 0;
    o.tokens_ = nullptr;
  }
  return *this;
}

void ShardView::release() {
  if (map_) ::munmap(map_, map_bytes_);
  map_ = nullptr;
  map_bytes_ = 0;
  tokens_ = nullptr;
}

void ShardView::copy(uint64_t start, size_t n, int32_t* dst) const {
  if (info_.token_bytes == 2) {
    const uint16_t* p = static_cast<const uint16_t*>(tokens_) + start;
    for (size_t i = 0; i < n; ++i) dst[i] = p[i];
  } else {
    const uint32_t* p = static_cast<const uint32_t*>(tokens_) + start;
    for (size_t i = 0; i < n; ++i) dst[i] = static_cast<int32_t>(p[i]);
  }
}

// ---------------------------------------------------------------- ShardWriter

ShardWriter::ShardWriter(const std::string& path, bool uint32_tokens)
    : path_(path), tmp_path_(path + ".tmp"), uint32_(uint32_tokens) {
  f_ = std::fopen(tmp_path_.c_str(), "wb");
  if (!f_) throw InputError(tmp_path_ + ": cannot create shard: " + errno_text());
  // The header goes first with count 0; close() rewrites it with the real count.
  int32_t hdr[kShardHeaderInts] = {};
  hdr[0] = uint32_ ? kShardMagicU32 : kShardMagicU16;
  hdr[1] = uint32_ ? kShardVersionU32 : kShardVersionU16;
  if (std::fwrite(hdr, 1, kShardHeaderBytes, f_) != kShardHeaderBytes) {
    std::string e = errno_text();
    std::fclose(f_);
    f_ = nullptr;
    std::remove(tmp_path_.c_str());
    throw RuntimeError(tmp_path_ + ": write failed: " + e);
  }
}

ShardWriter::~ShardWriter() {
  if (f_) {
    std::fclose(f_);
    std::remove(tmp_path_.c_str());
  }
}

void ShardWriter::write(const int32_t* ids, size_t n) {
  if (!f_) throw RuntimeError(path_ + ": write after close");
  if (count_ + n > static_cast<uint64_t>(std::numeric_limits<int32_t>::max()))
    throw InputError(path_ + ": shard would exceed " + std::to_string(std::numeric_limits<int32_t>::max()) +
                     " tokens (the header count is int32); start a new shard");
  const int64_t max_id = uint32_ ? std::numeric_limits<int32_t>::max() : 65535;
  const size_t width = uint32_ ? 4 : 2;
  buf_.resize(n * width);
  for (size_t i = 0; i < n; ++i) {
    const int32_t id = ids[i];
    if (id < 0 || id > max_id)
      throw InputError(path_ + ": token id " + std::to_string(id) + " at offset " + std::to_string(count_ + i) +
                       " does not fit a " + (uint32_ ? "uint32" : "uint16") + " shard" +
                       (uint32_ ? "" : " (use uint32 tokens for vocabularies above 65536)"));
    if (uint32_) {
      const uint32_t v = static_cast<uint32_t>(id);
      std::memcpy(&buf_[i * 4], &v, 4);
    } else {
      const uint16_t v = static_cast<uint16_t>(id);
      std::memcpy(&buf_[i * 2], &v, 2);
    }
  }
  if (n && std::fwrite(buf_.data(), 1, buf_.size(), f_) != buf_.size())
    throw RuntimeError(tmp_path_ + ": write failed: " + errno_text());
  count_ += n;
}

void ShardWriter::close() {
  if (!f_) return;
  auto fail = [&](const std::string& what) {
    std::string e = errno_text();
    std::fclose(f_);
    f_ = nullptr;
    std::remove(tmp_path_.c_str());
    throw RuntimeError(tmp_path_ + ": " + what + ": " + e);
  };
  const int32_t count = static_cast<int32_t>(count_);
  if (std::fflush(f_) != 0) fail("write failed");
  if (std::fseek(f_, 2 * sizeof(int32_t), SEEK_SET) != 0) fail("seek failed");
  if (std::fwrite(&count, sizeof count, 1, f_) != 1) fail("write failed");
  if (std::fflush(f_) != 0) fail("write failed");
  if (::fsync(::fileno(f_)) != 0) fail("fsync failed");
  if (std::fclose(f_) != 0) {
    f_ = nullptr;
    std::string e = errno_text();
    std::remove(tmp_path_.c_str());
    throw RuntimeError(tmp_path_ + ": close failed: " + e);
  }
  f_ = nullptr;
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    std::string e = errno_text();
    std::remove(tmp_path_.c_str());
    throw RuntimeError(tmp_path_ + ": rename to " + path_ + " failed: " + e);
  }
  fsync_parent_dir(path_);
}

// ---------------------------------------------------------------- resolve_shards

std::vector<std::string> resolve_shards(const std::string& pattern, const std::string& what) {
  if (pattern.empty()) throw InputError(what + ": no shard file or pattern given");
  std::vector<std::string> out;
  if (pattern.find_first_of("*?[") == std::string::npos) {
    struct stat st;
    if (::stat(pattern.c_str(), &st) != 0) throw InputError(what + ": " + pattern + ": " + errno_text());
    if (!S_ISREG(st.st_mode)) throw InputError(what + ": " + pattern + ": not a regular file");
    out.push_back(pattern);
    return out;
  }
  glob_t g;
  std::memset(&g, 0, sizeof g);
  int rc = ::glob(pattern.c_str(), GLOB_ERR, nullptr, &g);
  if (rc == 0) {
    for (size_t i = 0; i < g.gl_pathc; ++i) {
      struct stat st;
      if (::stat(g.gl_pathv[i], &st) == 0 && S_ISREG(st.st_mode)) out.emplace_back(g.gl_pathv[i]);
    }
  }
  ::globfree(&g);
  if (rc != 0 && rc != GLOB_NOMATCH)
    throw InputError(what + ": cannot expand '" + pattern + "': " + (rc == GLOB_NOSPACE ? "out of memory" : "read error"));
  if (out.empty()) throw InputError(what + ": no files match '" + pattern + "'");
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace llmtrain
