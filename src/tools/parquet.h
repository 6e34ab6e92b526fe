// A small reader for the string columns of Parquet files, so that `llmtrain tokenize` can read
// corpora such as FineWeb-Edu (a `text` BYTE_ARRAY column, zstd or snappy) without Arrow, which
// Debian does not package. It reads the footer once, then streams one column chunk at a time
// (memory-mapped, never the whole file) and hands each string to a callback as a view that is
// valid only during the call. Supported: PLAIN, dictionary and DELTA byte-array encodings, data
// pages v1 and v2, optional (nullable) flat columns including leaves of optional groups, and the
// UNCOMPRESSED, SNAPPY, GZIP and ZSTD codecs; docs/parquet.md lists what is not. Every malformed
// input is reported as an InputError naming the file (and column, row group and page when the
// damage is in the data), never a crash.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace llmtrain {

class ParquetReader {
 public:
  // Reads and validates the footer; InputError naming `path` on a missing, corrupt or truncated
  // file.
  explicit ParquetReader(const std::string& path);
  ~ParquetReader();
  ParquetReader(ParquetReader&&) noexcept;
  ParquetReader& operator=(ParquetReader&&) noexcept;
  ParquetReader(const ParquetReader&) = delete;
  ParquetReader& operator=(const ParquetReader&) = delete;

  int64_t num_rows() const;
  // Leaf column paths in schema order: "text", or "meta.url" for a leaf inside a group.
  std::vector<std::string> column_names() const;

  // Calls fn(value, row) for each non-null value of a BYTE_ARRAY (string) column, in row order
  // across row groups. Null values are skipped (their row index still counts). The view points
  // into a buffer reused for the next value: copy it to keep it. InputError on an unknown or
  // non-string column, on a repeated (list) column, and on corrupt data, naming the path, column,
  // row group and page. Exceptions thrown by fn pass through unchanged.
  void for_each_string(const std::string& column,
                       const std::function<void(std::string_view, int64_t row)>& fn);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace llmtrain
