// ParquetReader (tools/parquet.h): footer parsing, schema flattening into leaf columns,
// and the page loop that turns one BYTE_ARRAY column chunk at a time into string views. Each
// column chunk is memory-mapped on its own (pread as a fallback), pages are decompressed into a
// reused buffer, and values are decoded in a streaming fashion, so memory stays at about one
// chunk mapping plus one page whatever the file size, and nothing is allocated from a count read
// off the disk. Decoders throw CorruptData with a bare description; for_each_string adds the file,
// column, row group and page and rethrows it as InputError. The format is little-endian and we
// read integers in place, so this file only builds for little-endian hosts.
#include "tools/parquet.h"

#include <fcntl.h>
#include <snappy.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <utility>

#include "tools/thrift_compact.h"
#include "llmtrain/error.h"

static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "Parquet integers are read in place: little-endian hosts only");

namespace llmtrain {
namespace pq = parquet;

namespace {

// A decoded page can legitimately be large, but a corrupt header must not make us allocate
// gigabytes; real writers stay far below this (Arrow's default page is 1 MiB).
constexpr int64_t kMaxPageBytes = int64_t(1) << 30;
// Deeper schemas than this only come from crafted files; the limit protects the stack.
constexpr int kMaxSchemaDepth = 64;

struct CorruptData : std::runtime_error {
  using std::runtime_error::runtime_error;
};
[[noreturn]] void corrupt(const std::string& what) { throw CorruptData(what); }

std::string errno_text() { return std::strerror(errno); }

uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Loads up to 8 bytes, zero-filling past `avail`, so bit unpacking near the end of a run never
// reads outside it.
uint64_t load_u64_tail(const uint8_t* p, size_t avail) {
  uint64_t v = 0;
  std::memcpy(&v, p, avail < 8 ? avail : 8);
  return v;
}

// Bits [bit, bit + bw) of a little-endian bit stream of `nbytes` bytes, bw <= 64. The caller has
// checked that bit + bw <= 8 * nbytes.
uint64_t read_bits(const uint8_t* base, size_t nbytes, uint64_t bit, int bw) {
  if (bw == 0) return 0;
  size_t byte = static_cast<size_t>(bit >> 3);
  int shift = static_cast<int>(bit & 7);
  uint64_t v = load_u64_tail(base + byte, nbytes - byte) >> shift;
  if (shift + bw > 64) v |= static_cast<uint64_t>(base[byte + 8]) << (64 - shift);
  if (bw < 64) v &= (uint64_t(1) << bw) - 1;
  return v;
}

uint64_t uleb128(const uint8_t*& p, const uint8_t* end, const char* what) {
  uint64_t v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (p >= end) corrupt(std::string(what) + ": varint runs past the end of the page");
    uint8_t b = *p++;
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) return v;
  }
  corrupt(std::string(what) + ": varint longer than 10 bytes");
}

int64_t unzigzag(uint64_t v) { return static_cast<int64_t>((v >> 1) ^ (~(v & 1) + 1)); }

int bit_width_for(uint32_t max_value) {
  int bw = 0;
  while (bw < 32 && (uint64_t(1) << bw) <= max_value) ++bw;
  return bw;
}

// The RLE / bit-packed hybrid used for definition levels and dictionary indices: a sequence of
// runs, each a varint header whose low bit picks a bit-packed run (header >> 1 groups of 8 values,
// bw bits each, LSB first) or a repeated run (header >> 1 copies of one value stored in
// ceil(bw / 8) bytes). Values are pulled one at a time; the stream has no count of its own, so
// the caller decides how many to take.
class RleDecoder {
 public:
  RleDecoder(const uint8_t* p, size_t n, int bw, const char* what) : p_(p), end_(p + n), bw_(bw), what_(what) {
    if (bw < 0 || bw > 32) corrupt(std::string(what) + ": bit width " + std::to_string(bw) + " exceeds 32");
  }

  uint32_t next() {
    for (;;) {
      if (rle_left_ > 0) {
        --rle_left_;
        return rle_value_;
      }
      if (packed_left_ > 0) {
        if (bit_pos_ + bw_ > 8 * static_cast<uint64_t>(packed_bytes_))
          corrupt(std::string(what_) + ": bit-packed run is truncated");
        uint32_t v = static_cast<uint32_t>(read_bits(packed_, packed_bytes_, bit_pos_, bw_));
        bit_pos_ += bw_;
        --packed_left_;
        return v;
      }
      next_run();
    }
  }

 private:
  void next_run() {
    if (p_ >= end_) corrupt(std::string(what_) + ": RLE/bit-packed data ends before all values were read");
    uint64_t header = uleb128(p_, end_, what_);
    uint64_t count = header >> 1;
    size_t left = static_cast<size_t>(end_ - p_);
    if (header & 1) {
      // Tolerate a final run shorter than its declared groups (some writers trim the padding);
      // next() still checks every value it unpacks lies within the bytes present.
      if (count > (uint64_t(1) << 40)) corrupt(std::string(what_) + ": bit-packed run of " + std::to_string(count) + " groups");
      uint64_t bytes = count * static_cast<uint64_t>(bw_);
      packed_ = p_;
      packed_bytes_ = static_cast<size_t>(std::min<uint64_t>(bytes, left));
      packed_left_ = count * 8;
      bit_pos_ = 0;
      p_ += packed_bytes_;
    } else {
      size_t vbytes = static_cast<size_t>((bw_ + 7) / 8);
      if (vbytes > left) corrupt(std::string(what_) + ": repeated run is truncated");
      uint32_t v = 0;
      std::memcpy(&v, p_, vbytes);
      p_ += vbytes;
      rle_value_ = v;
      rle_left_ = count;
    }
  }

  const uint8_t* p_;
  const uint8_t* end_;
  int bw_;
  const char* what_;
  uint64_t rle_left_ = 0;
  uint32_t rle_value_ = 0;
  uint64_t packed_left_ = 0;
  const uint8_t* packed_ = nullptr;
  size_t packed_bytes_ = 0;
  uint64_t bit_pos_ = 0;
};

// DELTA_BINARY_PACKED integers (the lengths and prefix lengths of the DELTA byte-array encodings):
// a header <block size> <miniblocks per block> <total count> <first value, zigzag>, then blocks
// of <min delta, zigzag> <one bit width byte per miniblock> <miniblocks bit-packed LSB first>;
// each value is the previous one plus min delta plus the unpacked number.
class DeltaDecoder {
 public:
  DeltaDecoder(const uint8_t* p, size_t n, const char* what) : begin_(p), p_(p), end_(p + n), what_(what) {
    block_size_ = uleb128(p_, end_, what);
    mb_count_ = uleb128(p_, end_, what);
    total_ = uleb128(p_, end_, what);
    last_ = unzigzag(uleb128(p_, end_, what));
    if (block_size_ == 0 || block_size_ > (uint64_t(1) << 24) || mb_count_ == 0 || block_size_ % mb_count_ != 0 ||
        (block_size_ / mb_count_) % 8 != 0)
      corrupt(std::string(what) + ": bad delta header (block size " + std::to_string(block_size_) + ", " +
              std::to_string(mb_count_) + " miniblocks)");
    per_mb_ = block_size_ / mb_count_;
    mb_index_ = mb_count_;
  }

  uint64_t total() const { return total_; }
  uint64_t produced() const { return produced_; }

  int64_t next() {
    if (produced_ >= total_) corrupt(std::string(what_) + ": delta stream holds only " + std::to_string(total_) + " values");
    if (produced_ == 0) {
      produced_ = 1;
      return last_;
    }
    if (mb_pos_ == mb_avail_) next_miniblock();
    uint64_t raw = read_bits(mb_data_, mb_bytes_, mb_pos_ * mb_bw_, mb_bw_);
    ++mb_pos_;
    ++produced_;
    last_ = static_cast<int64_t>(static_cast<uint64_t>(last_) + static_cast<uint64_t>(min_delta_) + raw);
    return last_;
  }

  // Offset just past the encoded stream, found by walking the block headers without decoding;
  // the byte data of DELTA_LENGTH_BYTE_ARRAY starts there.
  size_t end_offset() const {
    DeltaDecoder d = *this;
    if (d.produced_ < d.total_ && d.produced_ == 0) d.produced_ = 1;
    while (d.produced_ < d.total_) {
      d.next_miniblock();
      d.produced_ += d.mb_avail_;
    }
    return static_cast<size_t>(d.p_ - d.begin_);
  }

 private:
  void next_miniblock() {
    if (mb_index_ >= mb_count_) {
      min_delta_ = unzigzag(uleb128(p_, end_, what_));
      if (mb_count_ > static_cast<uint64_t>(end_ - p_)) corrupt(std::string(what_) + ": delta block header is truncated");
      widths_ = p_;
      p_ += mb_count_;
      mb_index_ = 0;
    }
    int bw = widths_[mb_index_++];
    if (bw > 64) corrupt(std::string(what_) + ": delta miniblock bit width " + std::to_string(bw) + " exceeds 64");
    uint64_t take = std::min(per_mb_, total_ - produced_);
    uint64_t full = per_mb_ * bw / 8;
    uint64_t need = (take * bw + 7) / 8;
    size_t avail = static_cast<size_t>(end_ - p_);
    if (need > avail) corrupt(std::string(what_) + ": delta miniblock is truncated");
    mb_data_ = p_;
    mb_bytes_ = static_cast<size_t>(std::min<uint64_t>(full, avail));
    p_ += mb_bytes_;
    mb_bw_ = bw;
    mb_pos_ = 0;
    mb_avail_ = take;
  }

  const uint8_t* begin_;
  const uint8_t* p_;
  const uint8_t* end_;
  const char* what_;
  uint64_t block_size_ = 0, mb_count_ = 0, per_mb_ = 0, total_ = 0, produced_ = 0;
  int64_t last_ = 0;
  int64_t min_delta_ = 0;
  const uint8_t* widths_ = nullptr;
  uint64_t mb_index_ = 0;
  const uint8_t* mb_data_ = nullptr;
  size_t mb_bytes_ = 0;
  int mb_bw_ = 0;
  uint64_t mb_pos_ = 0, mb_avail_ = 0;
};

// Decompresses whole pages; the output size is always known from the page header, and each codec
// is made to confirm it before or after inflating.
class Decompressor {
 public:
  Decompressor() = default;
  Decompressor(const Decompressor&) = delete;
  Decompressor& operator=(const Decompressor&) = delete;
  ~Decompressor() {
    if (zstd_) ZSTD_freeDCtx(zstd_);
  }

  // Checks what the compressed stream itself says about its size against the page header, so
  // that a corrupt header is caught before we allocate its claimed size.
  static void precheck(int32_t codec, const uint8_t* src, size_t n, size_t dst_n) {
    switch (codec) {
      case pq::kSnappy: {
        size_t ulen = 0;
        if (!snappy::GetUncompressedLength(reinterpret_cast<const char*>(src), n, &ulen))
          corrupt("snappy data is corrupt (bad length header)");
        if (ulen != dst_n)
          corrupt("snappy data inflates to " + std::to_string(ulen) + " bytes, the page header says " + std::to_string(dst_n));
        return;
      }
      case pq::kZstd: {
        unsigned long long declared = ZSTD_getFrameContentSize(src, n);
        if (declared == ZSTD_CONTENTSIZE_ERROR) corrupt("zstd data is corrupt (bad frame header)");
        if (declared != ZSTD_CONTENTSIZE_UNKNOWN && declared != dst_n)
          corrupt("zstd frame declares " + std::to_string(declared) + " bytes, the page header says " + std::to_string(dst_n));
        return;
      }
      case pq::kGzip:
        // Deflate cannot expand by more than about 1032:1.
        if (dst_n / 1032 > n + 64)
          corrupt("page claims " + std::to_string(dst_n) + " bytes from " + std::to_string(n) + " bytes of gzip data");
        return;
      default: corrupt(std::string("unsupported compression codec ") + pq::codec_name(codec));
    }
  }

  void run(int32_t codec, const uint8_t* src, size_t n, uint8_t* dst, size_t dst_n) {
    switch (codec) {
      case pq::kSnappy: {
        if (!snappy::RawUncompress(reinterpret_cast<const char*>(src), n, reinterpret_cast<char*>(dst)))
          corrupt("snappy data is corrupt");
        return;
      }
      case pq::kZstd: {
        if (!zstd_) zstd_ = ZSTD_createDCtx();
        if (!zstd_) throw RuntimeError("parquet: cannot create a zstd decompression context");
        size_t r = ZSTD_decompressDCtx(zstd_, dst, dst_n, src, n);
        if (ZSTD_isError(r)) corrupt(std::string("zstd data is corrupt: ") + ZSTD_getErrorName(r));
        if (r != dst_n)
          corrupt("zstd data inflates to " + std::to_string(r) + " bytes, the page header says " + std::to_string(dst_n));
        return;
      }
      case pq::kGzip: inflate_gzip(src, n, dst, dst_n); return;
      default: corrupt(std::string("unsupported compression codec ") + pq::codec_name(codec));
    }
  }

 private:
  static void inflate_gzip(const uint8_t* src, size_t n, uint8_t* dst, size_t dst_n) {
    z_stream zs{};
    // 15 + 32: accept both gzip and zlib headers; Parquet says gzip but some writers emit zlib.
    if (inflateInit2(&zs, 15 + 32) != Z_OK) throw RuntimeError("parquet: cannot initialise zlib");
    uint8_t dummy = 0;
    zs.next_in = const_cast<Bytef*>(src);
    zs.avail_in = static_cast<uInt>(n);
    zs.next_out = dst_n ? dst : &dummy;
    zs.avail_out = static_cast<uInt>(dst_n);
    std::string err;
    for (;;) {
      int rc = inflate(&zs, Z_NO_FLUSH);
      if (rc == Z_STREAM_END) {
        // Concatenated gzip members are one stream by the gzip spec.
        if (zs.avail_in > 0 && zs.avail_out > 0 && inflateReset(&zs) == Z_OK) continue;
        break;
      }
      if (rc == Z_OK) continue;
      err = zs.msg ? zs.msg : (rc == Z_BUF_ERROR ? "data truncated or larger than the page header says" : "inflate failed");
      break;
    }
    size_t out = dst_n - zs.avail_out;
    inflateEnd(&zs);
    if (!err.empty()) corrupt("gzip data is corrupt: " + err);
    if (out != dst_n) corrupt("gzip data inflates to " + std::to_string(out) + " bytes, the page header says " + std::to_string(dst_n));
  }

  ZSTD_DCtx* zstd_ = nullptr;
};

bool codec_supported(int32_t codec) {
  return codec == pq::kUncompressed || codec == pq::kSnappy || codec == pq::kGzip || codec == pq::kZstd;
}

void pread_full(int fd, uint8_t* dst, size_t n, uint64_t offset, const std::string& path) {
  while (n > 0) {
    ssize_t r = ::pread(fd, dst, n, static_cast<off_t>(offset));
    if (r < 0) {
      if (errno == EINTR) continue;
      throw InputError(path + ": read failed at offset " + std::to_string(offset) + ": " + errno_text());
    }
    if (r == 0) throw InputError(path + ": unexpected end of file at offset " + std::to_string(offset));
    dst += r;
    n -= static_cast<size_t>(r);
    offset += static_cast<uint64_t>(r);
  }
}

// The bytes of one column chunk: a private read-only mapping so the page cache, not our heap,
// holds them, with pread into a buffer where mmap is unavailable.
class ChunkBytes {
 public:
  ChunkBytes(int fd, uint64_t offset, uint64_t len, const std::string& path) {
    long page = ::sysconf(_SC_PAGESIZE);
    uint64_t align = page > 0 ? static_cast<uint64_t>(page) : 4096;
    uint64_t start = offset - offset % align;
    map_len_ = static_cast<size_t>(len + (offset - start));
    void* m = ::mmap(nullptr, map_len_, PROT_READ, MAP_PRIVATE, fd, static_cast<off_t>(start));
    if (m != MAP_FAILED) {
      map_ = m;
      ::madvise(m, map_len_, MADV_SEQUENTIAL);
      data_ = static_cast<const uint8_t*>(m) + (offset - start);
    } else {
      buf_.resize(static_cast<size_t>(len));
      pread_full(fd, buf_.data(), buf_.size(), offset, path);
      data_ = buf_.data();
    }
    size_ = static_cast<size_t>(len);
  }
  ChunkBytes(const ChunkBytes&) = delete;
  ChunkBytes& operator=(const ChunkBytes&) = delete;
  ~ChunkBytes() {
    if (map_) ::munmap(map_, map_len_);
  }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  void* map_ = nullptr;
  size_t map_len_ = 0;
  std::vector<uint8_t> buf_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

struct Leaf {
  std::string path;
  int32_t type = 0;
  int max_def = 0;
  int max_rep = 0;
};

// Flattens the depth-first schema list into leaf columns, accumulating definition levels (one per
// non-required ancestor) and repetition levels (one per repeated ancestor). Returns the index of
// the element after the subtree rooted at i.
size_t flatten_schema(const std::vector<pq::SchemaElement>& s, size_t i, int depth, const std::string& prefix,
                      int def, int rep, std::vector<Leaf>& out, const std::string& path) {
  if (depth > kMaxSchemaDepth)
    throw InputError(path + ": schema nests deeper than " + std::to_string(kMaxSchemaDepth) + " levels");
  const pq::SchemaElement& e = s[i];
  int32_t r = e.has_repetition ? e.repetition : pq::kRequired;
  if (r < pq::kRequired || r > pq::kRepeated)
    throw InputError(path + ": schema element '" + e.name + "' has invalid repetition type " + std::to_string(r));
  if (e.num_children < 0)
    throw InputError(path + ": schema element '" + e.name + "' has " + std::to_string(e.num_children) + " children");
  def += r != pq::kRequired;
  rep += r == pq::kRepeated;
  std::string name = prefix.empty() ? e.name : prefix + "." + e.name;
  if (e.num_children > 0 || !e.has_type) {
    size_t next = i + 1;
    for (int32_t c = 0; c < e.num_children; ++c) {
      if (next >= s.size())
        throw InputError(path + ": schema group '" + name + "' claims " + std::to_string(e.num_children) +
                         " children but the schema list ends");
      next = flatten_schema(s, next, depth + 1, name, def, rep, out, path);
    }
    return next;
  }
  out.push_back(Leaf{name, e.type, def, rep});
  return i + 1;
}

std::string join_names(const std::vector<Leaf>& leaves) {
  std::string s;
  for (size_t i = 0; i < leaves.size() && i < 20; ++i) s += (i ? ", " : "") + leaves[i].path;
  if (leaves.size() > 20) s += ", ...";
  return s;
}

using StringFn = std::function<void(std::string_view, int64_t row)>;

// Calls fn for every non-null value of one data page. `levels` is null when the column has no
// definition levels (or the page has no nulls and omits them); `next` yields the next non-null
// value from the page's value encoding. Returns the number of non-null values.
template <class Next>
uint64_t walk_page(uint64_t n, RleDecoder* levels, uint32_t max_def, int64_t row0, const StringFn& fn, Next&& next) {
  uint64_t non_null = 0;
  for (uint64_t i = 0; i < n; ++i) {
    if (levels) {
      uint32_t d = levels->next();
      if (d > max_def)
        corrupt("definition level " + std::to_string(d) + " exceeds the column's maximum " + std::to_string(max_def));
      if (d != max_def) continue;
    }
    fn(next(), row0 + static_cast<int64_t>(i));
    ++non_null;
  }
  return non_null;
}

// Per-chunk decoding state, reused across pages.
struct PageDecoder {
  Decompressor decompressor;
  std::vector<uint8_t> page_buf;
  std::vector<uint8_t> dict_buf;
  std::vector<std::string_view> dict;
  bool have_dict = false;
  std::string prev, cur;  // DELTA_BYTE_ARRAY reconstructs each value from the previous one

  uint8_t* scratch(size_t n) {
    if (page_buf.size() < n) page_buf.resize(n);
    return page_buf.data();
  }

  // Returns the uncompressed bytes of [src, src + n), which inflate to `dst_n` bytes.
  std::pair<const uint8_t*, size_t> inflate(int32_t codec, const uint8_t* src, size_t n, int64_t dst_n) {
    if (codec == pq::kUncompressed) return {src, n};
    if (dst_n < 0 || dst_n > kMaxPageBytes)
      corrupt("page claims " + std::to_string(dst_n) + " bytes uncompressed (limit " + std::to_string(kMaxPageBytes) + ")");
    if (n == 0 && dst_n == 0) return {nullptr, 0};
    Decompressor::precheck(codec, src, n, static_cast<size_t>(dst_n));
    uint8_t* dst = scratch(static_cast<size_t>(dst_n));
    decompressor.run(codec, src, n, dst, static_cast<size_t>(dst_n));
    return {dst, static_cast<size_t>(dst_n)};
  }

  void read_dictionary(const pq::PageHeader& h, int32_t codec, const uint8_t* body, size_t n) {
    if (!h.has_dictionary_page_header) corrupt("dictionary page lacks its dictionary_page_header");
    const pq::DictionaryPageHeader& d = h.dictionary_page_header;
    if (d.encoding != pq::kPlain && d.encoding != pq::kPlainDictionary)
      corrupt(std::string("dictionary page uses encoding ") + pq::encoding_name(d.encoding) + ", expected PLAIN");
    if (d.num_values < 0) corrupt("dictionary page has " + std::to_string(d.num_values) + " values");
    auto data = inflate(codec, body, n, h.uncompressed_page_size);
    dict_buf.assign(data.first, data.first + data.second);
    if (static_cast<uint64_t>(d.num_values) > dict_buf.size() / 4)
      corrupt("dictionary page claims " + std::to_string(d.num_values) + " values in " + std::to_string(dict_buf.size()) + " bytes");
    dict.clear();
    dict.reserve(static_cast<size_t>(d.num_values));
    size_t pos = 0;
    for (int32_t i = 0; i < d.num_values; ++i) {
      if (dict_buf.size() - pos < 4) corrupt("dictionary entry " + std::to_string(i) + " runs past the end of the page");
      uint32_t len = load_u32(dict_buf.data() + pos);
      pos += 4;
      if (len > dict_buf.size() - pos) corrupt("dictionary entry " + std::to_string(i) + " of " + std::to_string(len) + " bytes runs past the end of the page");
      dict.emplace_back(reinterpret_cast<const char*>(dict_buf.data() + pos), len);
      pos += len;
    }
    have_dict = true;
  }

  // Decodes the values section of a data page (after the levels) and calls fn for each row with
  // a value. Returns the number of non-null values.
  uint64_t decode_values(int32_t encoding, const uint8_t* v, size_t vn, uint64_t n, RleDecoder* levels, uint32_t max_def,
                         int64_t row0, const StringFn& fn) {
    const uint8_t* end = v + vn;
    switch (encoding) {
      case pq::kPlain: {
        const uint8_t* p = v;
        return walk_page(n, levels, max_def, row0, fn, [&]() {
          if (end - p < 4) corrupt("PLAIN value length runs past the end of the page");
          uint32_t len = load_u32(p);
          p += 4;
          if (len > static_cast<size_t>(end - p)) corrupt("PLAIN value of " + std::to_string(len) + " bytes runs past the end of the page");
          std::string_view s(reinterpret_cast<const char*>(p), len);
          p += len;
          return s;
        });
      }
      case pq::kPlainDictionary:
      case pq::kRleDictionary: {
        if (!have_dict) corrupt("dictionary-encoded page but the column chunk has no dictionary page");
        if (vn < 1) corrupt("dictionary-encoded page has no bit width byte");
        RleDecoder idx(v + 1, vn - 1, v[0], "dictionary indices");
        return walk_page(n, levels, max_def, row0, fn, [&]() {
          uint32_t i = idx.next();
          if (i >= dict.size())
            corrupt("dictionary index " + std::to_string(i) + " out of range (dictionary has " + std::to_string(dict.size()) + " entries)");
          return dict[i];
        });
      }
      case pq::kDeltaLengthByteArray: {
        DeltaDecoder lens(v, vn, "DELTA_LENGTH_BYTE_ARRAY lengths");
        const uint8_t* p = v + lens.end_offset();
        uint64_t nn = walk_page(n, levels, max_def, row0, fn, [&]() {
          int64_t len = lens.next();
          if (len < 0 || static_cast<uint64_t>(len) > static_cast<uint64_t>(end - p))
            corrupt("DELTA_LENGTH_BYTE_ARRAY value of " + std::to_string(len) + " bytes runs past the end of the page");
          std::string_view s(reinterpret_cast<const char*>(p), static_cast<size_t>(len));
          p += len;
          return s;
        });
        if (lens.produced() != lens.total())
          corrupt("DELTA_LENGTH_BYTE_ARRAY holds " + std::to_string(lens.total()) + " lengths for " + std::to_string(nn) + " values");
        return nn;
      }
      case pq::kDeltaByteArray: {
        DeltaDecoder prefixes(v, vn, "DELTA_BYTE_ARRAY prefix lengths");
        size_t off = prefixes.end_offset();
        DeltaDecoder suffixes(v + off, vn - off, "DELTA_BYTE_ARRAY suffix lengths");
        const uint8_t* p = v + off + suffixes.end_offset();
        prev.clear();
        uint64_t nn = walk_page(n, levels, max_def, row0, fn, [&]() {
          int64_t pre = prefixes.next();
          int64_t len = suffixes.next();
          if (pre < 0 || static_cast<uint64_t>(pre) > prev.size())
            corrupt("DELTA_BYTE_ARRAY prefix of " + std::to_string(pre) + " bytes is longer than the previous value");
          if (len < 0 || static_cast<uint64_t>(len) > static_cast<uint64_t>(end - p))
            corrupt("DELTA_BYTE_ARRAY suffix of " + std::to_string(len) + " bytes runs past the end of the page");
          cur.assign(prev, 0, static_cast<size_t>(pre));
          cur.append(reinterpret_cast<const char*>(p), static_cast<size_t>(len));
          p += len;
          std::swap(prev, cur);
          return std::string_view(prev);
        });
        if (prefixes.produced() != prefixes.total() || suffixes.produced() != suffixes.total())
          corrupt("DELTA_BYTE_ARRAY value count does not match the page");
        return nn;
      }
      default:
        corrupt(std::string("unsupported value encoding ") + pq::encoding_name(encoding) + " (" + std::to_string(encoding) +
                ") for a string column");
    }
  }

  // Data page v1: the whole page (levels and values) is compressed; definition levels are RLE
  // with a 4-byte length prefix. Returns the number of values (rows) in the page.
  uint64_t read_data_page_v1(const pq::PageHeader& h, int32_t codec, const uint8_t* body, size_t n, uint32_t max_def,
                             int64_t row0, uint64_t rows_left, const StringFn& fn) {
    if (!h.has_data_page_header) corrupt("data page lacks its data_page_header");
    const pq::DataPageHeader& d = h.data_page_header;
    if (d.num_values < 0 || static_cast<uint64_t>(d.num_values) > rows_left)
      corrupt("data page claims " + std::to_string(d.num_values) + " values, " + std::to_string(rows_left) + " remain in the chunk");
    auto data = inflate(codec, body, n, h.uncompressed_page_size);
    const uint8_t* p = data.first;
    size_t left = data.second;
    RleDecoder* levels = nullptr;
    RleDecoder def_levels(nullptr, 0, 0, "definition levels");
    if (max_def > 0) {
      if (d.definition_level_encoding != pq::kRle)
        corrupt(std::string("definition levels use encoding ") + pq::encoding_name(d.definition_level_encoding) + ", only RLE is supported");
      if (left < 4) corrupt("definition levels length runs past the end of the page");
      uint32_t len = load_u32(p);
      if (len > left - 4) corrupt("definition levels of " + std::to_string(len) + " bytes run past the end of the page");
      def_levels = RleDecoder(p + 4, len, bit_width_for(max_def), "definition levels");
      levels = &def_levels;
      p += 4 + len;
      left -= 4 + len;
    }
    decode_values(d.encoding, p, left, static_cast<uint64_t>(d.num_values), levels, max_def, row0, fn);
    return static_cast<uint64_t>(d.num_values);
  }

  // Data page v2: levels come first and are never compressed (and carry no length prefix); only
  // the values section is, and only when is_compressed says so.
  uint64_t read_data_page_v2(const pq::PageHeader& h, int32_t codec, const uint8_t* body, size_t n, uint32_t max_def,
                             int64_t row0, uint64_t rows_left, const StringFn& fn) {
    if (!h.has_data_page_header_v2) corrupt("data page v2 lacks its data_page_header_v2");
    const pq::DataPageHeaderV2& d = h.data_page_header_v2;
    if (d.num_values < 0 || static_cast<uint64_t>(d.num_values) > rows_left)
      corrupt("data page claims " + std::to_string(d.num_values) + " values, " + std::to_string(rows_left) + " remain in the chunk");
    if (d.num_nulls < 0 || d.num_nulls > d.num_values)
      corrupt("data page claims " + std::to_string(d.num_nulls) + " nulls in " + std::to_string(d.num_values) + " values");
    if (d.definition_levels_byte_length < 0 || d.repetition_levels_byte_length < 0 ||
        static_cast<uint64_t>(d.definition_levels_byte_length) + static_cast<uint64_t>(d.repetition_levels_byte_length) > n)
      corrupt("level lengths (" + std::to_string(d.repetition_levels_byte_length) + " + " +
              std::to_string(d.definition_levels_byte_length) + " bytes) exceed the page's " + std::to_string(n) + " bytes");
    size_t levels_len = static_cast<size_t>(d.repetition_levels_byte_length) + static_cast<size_t>(d.definition_levels_byte_length);
    RleDecoder* levels = nullptr;
    RleDecoder def_levels(body + d.repetition_levels_byte_length, static_cast<size_t>(d.definition_levels_byte_length),
                          bit_width_for(max_def), "definition levels");
    if (max_def > 0 && !(d.definition_levels_byte_length == 0 && d.num_nulls == 0)) levels = &def_levels;
    if (max_def == 0 && d.num_nulls != 0) corrupt("page of a required column claims " + std::to_string(d.num_nulls) + " nulls");
    const uint8_t* vsrc = body + levels_len;
    size_t vn = n - levels_len;
    std::pair<const uint8_t*, size_t> values{vsrc, vn};
    if (d.is_compressed) values = inflate(codec, vsrc, vn, int64_t(h.uncompressed_page_size) - int64_t(levels_len));
    uint64_t nn = decode_values(d.encoding, values.first, values.second, static_cast<uint64_t>(d.num_values), levels, max_def,
                                row0, fn);
    if (nn != static_cast<uint64_t>(d.num_values - d.num_nulls))
      corrupt("page has " + std::to_string(nn) + " non-null values, its header says " + std::to_string(d.num_values - d.num_nulls));
    return static_cast<uint64_t>(d.num_values);
  }
};

}  // namespace

struct ParquetReader::Impl {
  std::string path;
  int fd = -1;
  uint64_t file_size = 0;
  pq::FileMetaData md;
  std::vector<Leaf> leaves;

  Impl() = default;
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  ~Impl() {
    if (fd >= 0) ::close(fd);
  }
};

ParquetReader::ParquetReader(const std::string& path) : impl_(new Impl) {
  Impl& m = *impl_;
  m.path = path;
  m.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (m.fd < 0) throw InputError(path + ": cannot open Parquet file: " + errno_text());
  struct stat st;
  if (::fstat(m.fd, &st) != 0) throw InputError(path + ": cannot stat: " + errno_text());
  if (!S_ISREG(st.st_mode)) throw InputError(path + ": not a regular file");
  m.file_size = static_cast<uint64_t>(st.st_size);
  // Layout: "PAR1" <column chunks> <footer: thrift FileMetaData> <u32 footer length> "PAR1".
  if (m.file_size < 12)
    throw InputError(path + ": " + std::to_string(m.file_size) + " bytes is too small to be a Parquet file");
  uint8_t head[4], tail[8];
  pread_full(m.fd, head, 4, 0, path);
  pread_full(m.fd, tail, 8, m.file_size - 8, path);
  if (std::memcmp(head, "PAR1", 4) != 0) throw InputError(path + ": not a Parquet file (does not start with PAR1)");
  if (std::memcmp(tail + 4, "PARE", 4) == 0) throw InputError(path + ": encrypted Parquet files are not supported");
  if (std::memcmp(tail + 4, "PAR1", 4) != 0)
    throw InputError(path + ": does not end with PAR1 (truncated or not a Parquet file)");
  uint32_t footer_len = load_u32(tail);
  if (footer_len == 0 || footer_len > m.file_size - 12)
    throw InputError(path + ": footer length " + std::to_string(footer_len) + " does not fit in a file of " +
                     std::to_string(m.file_size) + " bytes (truncated or corrupt)");
  std::vector<uint8_t> footer(footer_len);
  pread_full(m.fd, footer.data(), footer.size(), m.file_size - 8 - footer_len, path);
  try {
    m.md = pq::parse_file_metadata(footer.data(), footer.size());
  } catch (const pq::ThriftError& e) {
    throw InputError(path + ": corrupt footer: " + e.what());
  }

  const pq::FileMetaData& md = m.md;
  if (md.schema.empty()) throw InputError(path + ": footer has an empty schema");
  const pq::SchemaElement& root = md.schema[0];
  if (root.num_children < 0) throw InputError(path + ": schema root has " + std::to_string(root.num_children) + " children");
  size_t next = 1;
  for (int32_t c = 0; c < root.num_children; ++c) {
    if (next >= md.schema.size())
      throw InputError(path + ": schema root claims " + std::to_string(root.num_children) + " children but the schema list ends");
    next = flatten_schema(md.schema, next, 1, "", 0, 0, m.leaves, path);
  }
  if (next != md.schema.size())
    throw InputError(path + ": schema lists " + std::to_string(md.schema.size()) + " elements but its tree holds " + std::to_string(next));
  if (md.num_rows < 0) throw InputError(path + ": footer says the file has " + std::to_string(md.num_rows) + " rows");
  int64_t rows = 0;
  for (size_t g = 0; g < md.row_groups.size(); ++g) {
    const pq::RowGroup& rg = md.row_groups[g];
    if (rg.num_rows < 0 || rg.num_rows > md.num_rows - rows)
      throw InputError(path + ": row group " + std::to_string(g) + " claims " + std::to_string(rg.num_rows) +
                       " rows, inconsistent with the file's " + std::to_string(md.num_rows));
    rows += rg.num_rows;
    if (rg.columns.size() != m.leaves.size())
      throw InputError(path + ": row group " + std::to_string(g) + " has " + std::to_string(rg.columns.size()) +
                       " column chunks, the schema has " + std::to_string(m.leaves.size()) + " columns");
  }
  if (rows != md.num_rows)
    throw InputError(path + ": row groups hold " + std::to_string(rows) + " rows, the footer says " + std::to_string(md.num_rows));
}

ParquetReader::~ParquetReader() = default;
ParquetReader::ParquetReader(ParquetReader&&) noexcept = default;
ParquetReader& ParquetReader::operator=(ParquetReader&&) noexcept = default;

int64_t ParquetReader::num_rows() const { return impl_->md.num_rows; }

std::vector<std::string> ParquetReader::column_names() const {
  std::vector<std::string> names;
  names.reserve(impl_->leaves.size());
  for (const Leaf& l : impl_->leaves) names.push_back(l.path);
  return names;
}

void ParquetReader::for_each_string(const std::string& column, const StringFn& fn) {
  const Impl& m = *impl_;
  const std::string& path = m.path;
  size_t leaf_index = m.leaves.size();
  for (size_t i = 0; i < m.leaves.size(); ++i)
    if (m.leaves[i].path == column) {
      leaf_index = i;
      break;
    }
  if (leaf_index == m.leaves.size())
    throw InputError(path + ": no column '" + column + "' (columns: " + join_names(m.leaves) + ")");
  const Leaf& leaf = m.leaves[leaf_index];
  if (leaf.type != pq::kByteArray)
    throw InputError(path + ": column '" + column + "' has type " + pq::type_name(leaf.type) + ", not BYTE_ARRAY (string)");
  if (leaf.max_rep > 0)
    throw InputError(path + ": column '" + column + "' is repeated (a list or inside one); only flat string columns are supported");

  // A file truncated after the footer was read would turn mapped reads into SIGBUS.
  struct stat st;
  if (::fstat(m.fd, &st) != 0 || static_cast<uint64_t>(st.st_size) < m.file_size)
    throw InputError(path + ": file shrank since it was opened");

  PageDecoder dec;
  int64_t row_base = 0;
  for (size_t g = 0; g < m.md.row_groups.size(); ++g) {
    const pq::RowGroup& rg = m.md.row_groups[g];
    std::string where = path + ": column '" + column + "', row group " + std::to_string(g);
    const pq::ColumnChunk& cc = rg.columns[leaf_index];
    if (cc.has_file_path) throw InputError(where + ": column data lives in another file ('" + cc.file_path + "'), which is not supported");
    if (!cc.has_meta_data) throw InputError(where + ": column chunk has no metadata");
    const pq::ColumnMetaData& md = cc.meta_data;
    if (md.type != leaf.type)
      throw InputError(where + ": chunk type " + pq::type_name(md.type) + " differs from the schema's " + pq::type_name(leaf.type));
    if (!codec_supported(md.codec))
      throw InputError(where + ": unsupported compression codec " + pq::codec_name(md.codec) + " (" + std::to_string(md.codec) +
                       "); supported: UNCOMPRESSED, SNAPPY, GZIP, ZSTD");
    if (md.num_values != rg.num_rows)
      throw InputError(where + ": chunk holds " + std::to_string(md.num_values) + " values for " + std::to_string(rg.num_rows) + " rows");
    if (rg.num_rows == 0) continue;
    // The chunk starts at its dictionary page when it has one. Some writers record a zero
    // dictionary offset to mean "none", hence the 0 < check.
    int64_t start = md.data_page_offset;
    if (md.has_dictionary_page_offset && md.dictionary_page_offset > 0 && md.dictionary_page_offset < start)
      start = md.dictionary_page_offset;
    int64_t len = md.total_compressed_size;
    uint64_t data_end = m.file_size - 8;  // the footer follows, but bounding by the tail suffices
    if (start < 4 || len <= 0 || static_cast<uint64_t>(start) > data_end || static_cast<uint64_t>(len) > data_end - static_cast<uint64_t>(start))
      throw InputError(where + ": chunk byte range (offset " + std::to_string(start) + ", " + std::to_string(len) +
                       " bytes) lies outside the file of " + std::to_string(m.file_size) + " bytes");
    ChunkBytes bytes(m.fd, static_cast<uint64_t>(start), static_cast<uint64_t>(len), path);

    dec.dict.clear();
    dec.have_dict = false;
    uint64_t total = static_cast<uint64_t>(rg.num_rows);
    uint64_t done = 0;
    size_t pos = 0;
    for (int64_t page = 0; done < total; ++page) {
      uint64_t page_offset = static_cast<uint64_t>(start) + pos;
      try {
        if (pos >= bytes.size())
          corrupt("column chunk ends after " + std::to_string(done) + " of " + std::to_string(total) + " values");
        size_t header_len = 0;
        pq::PageHeader h = pq::parse_page_header(bytes.data() + pos, bytes.size() - pos, &header_len);
        pos += header_len;
        if (h.compressed_page_size < 0 || static_cast<size_t>(h.compressed_page_size) > bytes.size() - pos)
          corrupt("page of " + std::to_string(h.compressed_page_size) + " bytes runs past the end of the column chunk");
        if (h.uncompressed_page_size < 0) corrupt("page claims " + std::to_string(h.uncompressed_page_size) + " bytes uncompressed");
        const uint8_t* body = bytes.data() + pos;
        size_t body_n = static_cast<size_t>(h.compressed_page_size);
        pos += body_n;
        int64_t row0 = row_base + static_cast<int64_t>(done);
        switch (h.type) {
          case pq::kDictionaryPage: dec.read_dictionary(h, md.codec, body, body_n); break;
          case pq::kDataPage: done += dec.read_data_page_v1(h, md.codec, body, body_n, leaf.max_def, row0, total - done, fn); break;
          case pq::kDataPageV2: done += dec.read_data_page_v2(h, md.codec, body, body_n, leaf.max_def, row0, total - done, fn); break;
          default: break;  // index pages and future page types carry no values we need
        }
      } catch (const CorruptData& e) {
        throw InputError(where + ", page " + std::to_string(page) + " (file offset " + std::to_string(page_offset) + "): " + e.what());
      } catch (const pq::ThriftError& e) {
        throw InputError(where + ", page " + std::to_string(page) + " (file offset " + std::to_string(page_offset) +
                         "): corrupt page header: " + e.what());
      }
    }
    row_base += rg.num_rows;
  }
}

}  // namespace llmtrain
