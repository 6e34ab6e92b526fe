// safetensors reader and writer. The reader treats the file as untrusted input: the header length,
// the JSON, every dtype, shape and [begin, end) range is checked (with overflow-safe arithmetic)
// against the mapped file before any pointer is formed, and overlapping tensors are rejected.
#include "llmtrain/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>

#include "llmtrain/checkpoint.h"
#include "llmtrain/error.h"
#include "util/util.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is read in place: little-endian hosts only");

namespace llmtrain {
namespace {

using nlohmann::json;

// Headers of real checkpoints are a few hundred KB; anything far beyond is a corrupt length field.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

std::string shape_str(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

// a * b, or false on uint64 overflow.
bool mul_ok(uint64_t a, uint64_t b, uint64_t* out) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return false;
  *out = a * b;
  return true;
}

}  // namespace

const char* dtype_name(DType d) {
  switch (d) {
    case DType::F32: return "F32";
    case DType::F16: return "F16";
    case DType::BF16: return "BF16";
    case DType::I32: return "I32";
    case DType::I64: return "I64";
    case DType::U8: return "U8";
    case DType::F64: return "F64";
  }
  return "?";
}

size_t dtype_size(DType d) {
  switch (d) {
    case DType::F32: return 4;
    case DType::F16: return 2;
    case DType::BF16: return 2;
    case DType::I32: return 4;
    case DType::I64: return 8;
    case DType::U8: return 1;
    case DType::F64: return 8;
  }
  return 0;
}

std::optional<DType> parse_dtype(const std::string& name) {
  for (DType d : {DType::F32, DType::F16, DType::BF16, DType::I32, DType::I64, DType::U8, DType::F64})
    if (name == dtype_name(d)) return d;
  return std::nullopt;
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, u;
  if (exp == 0x1f) {
    u = sign | 0x7f800000u | (mant << 13);  // inf / NaN
  } else if (exp != 0) {
    u = sign | ((exp + 112) << 23) | (mant << 13);  // rebias 15 -> 127
  } else if (mant == 0) {
    u = sign;
  } else {
    // Subnormal half: normalise the mantissa into an f32 normal.
    int e = -1;
    do {
      ++e;
      mant <<= 1;
    } while ((mant & 0x400u) == 0);
    u = sign | static_cast<uint32_t>(112 - e) << 23 | ((mant & 0x3ffu) << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// ---------------------------------------------------------------- writer

void write_safetensors(const std::string& path, const std::vector<SafetensorsEntry>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  // Largest element first, so with an 8-aligned data start every tensor is naturally aligned.
  std::vector<const SafetensorsEntry*> order;
  for (const auto& t : tensors) order.push_back(&t);
  std::stable_sort(order.begin(), order.end(), [](const SafetensorsEntry* a, const SafetensorsEntry* b) {
    return dtype_size(a->dtype) > dtype_size(b->dtype);
  });

  json header = json::object();
  if (!metadata.empty()) {
    json m = json::object();
    for (const auto& [k, v] : metadata) m[k] = v;
    header["__metadata__"] = m;
  }
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const SafetensorsEntry* t : order) {
    if (t->name.empty() || t->name == "__metadata__")
      throw RuntimeError(path + ": invalid tensor name '" + t->name + "'");
    if (!seen.insert(t->name).second) throw RuntimeError(path + ": duplicate tensor '" + t->name + "'");
    uint64_t need = dtype_size(t->dtype);
    for (int64_t d : t->shape) {
      if (d < 0 || !mul_ok(need, static_cast<uint64_t>(d), &need))
        throw RuntimeError(path + ": tensor '" + t->name + "': invalid shape " + shape_str(t->shape));
    }
    if (need != t->nbytes)
      throw RuntimeError(path + ": tensor '" + t->name + "': " + std::to_string(t->nbytes) + " bytes given but " +
                         dtype_name(t->dtype) + " " + shape_str(t->shape) + " needs " + std::to_string(need));
    if (t->nbytes && !t->data) throw RuntimeError(path + ": tensor '" + t->name + "': null data");
    header[t->name] = {{"dtype", dtype_name(t->dtype)}, {"shape", t->shape}, {"data_offsets", {offset, offset + need}}};
    offset += need;
  }
  std::string h = header.dump();
  h.append((8 - (h.size() % 8)) % 8, ' ');  // data section starts 8-aligned
  const uint64_t hlen = h.size();

  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) throw RuntimeError(tmp + ": cannot create: " + std::strerror(errno));
  auto fail = [&](const char* what) {
    std::string e = std::strerror(errno);
    std::fclose(f);
    std::remove(tmp.c_str());
    throw RuntimeError(tmp + ": " + what + ": " + e);
  };
  if (std::fwrite(&hlen, 8, 1, f) != 1 || std::fwrite(h.data(), 1, h.size(), f) != h.size()) fail("write failed");
  for (const SafetensorsEntry* t : order)
    if (t->nbytes && std::fwrite(t->data, 1, t->nbytes, f) != t->nbytes) fail("write failed");
  if (std::fflush(f) != 0) fail("write failed");
  if (::fsync(::fileno(f)) != 0) fail("fsync failed");
  if (std::fclose(f) != 0) {
    std::string e = std::strerror(errno);
    std::remove(tmp.c_str());
    throw RuntimeError(tmp + ": close failed: " + e);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string e = std::strerror(errno);
    std::remove(tmp.c_str());
    throw RuntimeError(tmp + ": rename to " + path + " failed: " + e);
  }
  fsync_parent_dir(path);
}

// ---------------------------------------------------------------- reader

SafetensorsReader::SafetensorsReader(const std::string& path) : path_(path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw InputError(path + ": " + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    throw InputError(path + ": not a regular file");
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size < 8) {
    ::close(fd);
    throw InputError(path + ": not a safetensors file: " + std::to_string(size) +
                     " bytes, too short for the 8-byte header length");
  }
  void* m = ::mmap(nullptr, size, PROT_READ, MAP_SHARED, fd, 0);
  int err = errno;
  ::close(fd);
  if (m == MAP_FAILED) throw RuntimeError(path + ": mmap failed: " + std::strerror(err));
  map_ = m;
  map_bytes_ = size;

  try {
    const unsigned char* base = static_cast<const unsigned char*>(map_);
    uint64_t hlen;
    std::memcpy(&hlen, base, 8);
    if (hlen > size - 8 || hlen > kMaxHeaderBytes)
      throw InputError(path + ": corrupt header: header length " + std::to_string(hlen) + " but the file has " +
                       std::to_string(size) + " bytes");
    const char* hp = reinterpret_cast<const char*>(base + 8);
    json header;
    try {
      header = json::parse(hp, hp + hlen);
    } catch (const json::exception& e) {
      throw InputError(path + ": corrupt header: " + e.what());
    }
    if (!header.is_object()) throw InputError(path + ": corrupt header: not a JSON object");
    const uint64_t data_start = 8 + hlen, data_size = size - data_start;
    const unsigned char* data = base + data_start;

    for (auto it = header.begin(); it != header.end(); ++it) {
      const std::string& name = it.key();
      const json& v = it.value();
      if (name == "__metadata__") {
        if (!v.is_object()) throw InputError(path + ": corrupt header: __metadata__ is not an object");
        for (auto m2 = v.begin(); m2 != v.end(); ++m2) {
          if (!m2.value().is_string())
            throw InputError(path + ": corrupt header: __metadata__ value '" + m2.key() + "' is not a string");
          metadata_[m2.key()] = m2.value().get<std::string>();
        }
        continue;
      }
      const std::string where = path + ": tensor '" + name + "': ";
      if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets"))
        throw InputError(where + "corrupt header entry (needs dtype, shape, data_offsets)");
      if (!v["dtype"].is_string()) throw InputError(where + "dtype is not a string");
      auto dt = parse_dtype(v["dtype"].get<std::string>());
      if (!dt) throw InputError(where + "unsupported dtype '" + v["dtype"].get<std::string>() + "'");
      SafetensorsEntry e;
      e.name = name;
      e.dtype = *dt;
      if (!v["shape"].is_array()) throw InputError(where + "shape is not an array");
      uint64_t need = dtype_size(*dt);
      for (const auto& d : v["shape"]) {
        if (!d.is_number_unsigned() || d.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
          throw InputError(where + "bad shape " + v["shape"].dump());
        if (!mul_ok(need, d.get<uint64_t>(), &need)) throw InputError(where + "shape " + v["shape"].dump() + " overflows");
        e.shape.push_back(d.get<int64_t>());
      }
      const json& off = v["data_offsets"];
      if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() || !off[1].is_number_unsigned())
        throw InputError(where + "bad data_offsets " + off.dump());
      const uint64_t b = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
      if (b > end) throw InputError(where + "bad data_offsets " + off.dump() + " (begin > end)");
      if (end - b != need)
        throw InputError(where + "data_offsets " + off.dump() + " span " + std::to_string(end - b) + " bytes but " +
                         dtype_name(*dt) + " " + shape_str(e.shape) + " needs " + std::to_string(need));
      if (end > data_size)
        throw InputError(where + "truncated data section: needs bytes [" + std::to_string(b) + ", " +
                         std::to_string(end) + ") but the data section has " + std::to_string(data_size) + " bytes");
      e.data = data + b;
      e.nbytes = need;
      entries_.push_back(std::move(e));
    }
    std::sort(entries_.begin(), entries_.end(), [&](const SafetensorsEntry& a, const SafetensorsEntry& b) {
      return a.data != b.data ? a.data < b.data : a.nbytes < b.nbytes;
    });
    for (size_t i = 0; i < entries_.size(); ++i) {
      if (i > 0) {
        const auto& p = entries_[i - 1];
        const auto& c = entries_[i];
        if (static_cast<const unsigned char*>(p.data) + p.nbytes > static_cast<const unsigned char*>(c.data))
          throw InputError(path + ": corrupt header: tensors '" + p.name + "' and '" + c.name + "' overlap");
      }
      index_[entries_[i].name] = i;
    }
  } catch (...) {
    release();
    throw;
  }
}

SafetensorsReader::~SafetensorsReader() { release(); }

SafetensorsReader::SafetensorsReader(SafetensorsReader&& o) noexcept
    : path_(std::move(o.path_)),
      map_(o.map_),
      map_bytes_(o.map_bytes_),
      entries_(std::move(o.entries_)),
      index_(std::move(o.index_)),
      metadata_(std::move(o.metadata_)) {
  o.map_ = nullptr;
  o.map_bytes_ = 0;
}

SafetensorsReader& SafetensorsReader::operator=(SafetensorsReader&& o) noexcept {
  if (this != &o) {
    release();
    path_ = std::move(o.path_);
    map_ = o.map_;
    map_bytes_ = o.map_bytes_;
    entries_ = std::move(o.entries_);
    index_ = std::move(o.index_);
    metadata_ = std::move(o.metadata_);
    o.map_ = nullptr;
    o.map_bytes_ = 0;
  }
  return *this;
}

void SafetensorsReader::release() {
  if (map_) ::munmap(map_, map_bytes_);
  map_ = nullptr;
  map_bytes_ = 0;
}

std::vector<std::string> SafetensorsReader::names() const {
  std::vector<std::string> out;
  for (const auto& e : entries_) out.push_back(e.name);
  return out;
}

const SafetensorsEntry& SafetensorsReader::get(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) throw InputError(path_ + ": no tensor named '" + name + "'");
  return entries_[it->second];
}

void SafetensorsReader::read_f32(const std::string& name, float* dst, size_t numel) const {
  const SafetensorsEntry& e = get(name);
  if (e.numel() != numel)
    throw InputError(path_ + ": tensor '" + name + "' has " + std::to_string(e.numel()) + " elements (shape " +
                     shape_str(e.shape) + ") but " + std::to_string(numel) + " were expected");
  const unsigned char* p = static_cast<const unsigned char*>(e.data);
  switch (e.dtype) {
    case DType::F32:
      std::memcpy(dst, p, numel * 4);
      break;
    case DType::BF16:
      for (size_t i = 0; i < numel; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        dst[i] = bf16_to_f32(h);
      }
      break;
    case DType::F16:
      for (size_t i = 0; i < numel; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        dst[i] = f16_to_f32(h);
      }
      break;
    case DType::F64:
      for (size_t i = 0; i < numel; ++i) {
        double d;
        std::memcpy(&d, p + 8 * i, 8);
        dst[i] = static_cast<float>(d);
      }
      break;
    default:
      throw InputError(path_ + ": tensor '" + name + "' has dtype " + dtype_name(e.dtype) +
                       ", not a floating-point type");
  }
}

void SafetensorsReader::read_raw(const std::string& name, DType dtype, void* dst, size_t numel) const {
  const SafetensorsEntry& e = get(name);
  if (e.dtype != dtype)
    throw InputError(path_ + ": tensor '" + name + "' has dtype " + dtype_name(e.dtype) + " but " + dtype_name(dtype) +
                     " was expected");
  if (e.numel() != numel)
    throw InputError(path_ + ": tensor '" + name + "' has " + std::to_string(e.numel()) + " elements (shape " +
                     shape_str(e.shape) + ") but " + std::to_string(numel) + " were expected");
  if (e.nbytes) std::memcpy(dst, e.data, e.nbytes);
}

}  // namespace llmtrain
