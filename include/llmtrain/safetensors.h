// The safetensors format (Hugging Face): an 8-byte little-endian header length N, N bytes of JSON
// ({name: {dtype, shape, data_offsets: [begin, end)}} plus an optional "__metadata__" string map),
// then the data section the offsets index. We use it for model weights (so exported models load in
// HF tools) and for optimizer state. The reader memory-maps the file and validates every offset
// against the file before handing out a pointer, so a corrupt or truncated file is an InputError
// naming the file and tensor, never a crash. The writer lays tensors out largest dtype first after an
// 8-byte aligned header, so every tensor is naturally aligned in the file, and writes atomically.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace llmtrain {

enum class DType { F32, F16, BF16, I32, I64, U8, F64 };

const char* dtype_name(DType d);                              // "F32", "BF16", ...
size_t dtype_size(DType d);                                   // bytes per element
std::optional<DType> parse_dtype(const std::string& name);  // nullopt if unknown

// One tensor: the writer's input and the reader's output. For the reader, `data` points into the
// mapped file and stays valid while the reader lives; it is naturally aligned for files we wrote, but
// other writers need not align, so read through memcpy or read_f32 / read_raw when unsure.
struct SafetensorsEntry {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t nbytes = 0;
  uint64_t numel() const {
    uint64_t n = 1;
    for (int64_t d : shape) n *= static_cast<uint64_t>(d);
    return n;
  }
};

// Writes `tensors` (names unique, nbytes == numel * dtype size) and `metadata` to `path` through a
// temp file + fsync + rename. RuntimeError naming the path and tensor on a bad entry or I/O failure.
void write_safetensors(const std::string& path, const std::vector<SafetensorsEntry>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

class SafetensorsReader {
 public:
  explicit SafetensorsReader(const std::string& path);
  ~SafetensorsReader();
  SafetensorsReader(SafetensorsReader&& o) noexcept;
  SafetensorsReader& operator=(SafetensorsReader&& o) noexcept;
  SafetensorsReader(const SafetensorsReader&) = delete;
  SafetensorsReader& operator=(const SafetensorsReader&) = delete;

  const std::string& path() const { return path_; }
  std::vector<std::string> names() const;  // in file (data offset) order
  bool contains(const std::string& name) const { return index_.count(name) != 0; }
  const SafetensorsEntry& get(const std::string& name) const;  // InputError if absent
  const std::map<std::string, std::string>& metadata() const { return metadata_; }

  // Copies tensor `name` into dst as f32, converting F16/BF16/F64; InputError if the tensor holds a
  // different number of elements than `numel` or an integer dtype.
  void read_f32(const std::string& name, float* dst, size_t numel) const;
  // Copies tensor `name` verbatim; InputError unless it has exactly this dtype and numel.
  void read_raw(const std::string& name, DType dtype, void* dst, size_t numel) const;

 private:
  void release();
  std::string path_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  std::vector<SafetensorsEntry> entries_;  // file order
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

// Scalar conversions. bf16 is the top half of an f32; f32 -> bf16 rounds to nearest even.
inline float bf16_to_f32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}
float f16_to_f32(uint16_t h);

}  // namespace llmtrain
