// A minimal, bounds-checked decoder for the Thrift Compact Protocol and the handful of Parquet
// metadata structs the string-column reader needs (the footer's FileMetaData and the PageHeader
// in front of every page). Only fields the reader uses are kept; every other field, including
// ones added to parquet.thrift after this was written, is skipped by its wire type, so newer
// files still parse. The decoder never reads past the buffer it is given and throws ThriftError
// (without file context: the caller knows which file and page it was decoding) on any malformed
// input: bad varints, impossible lengths, unknown wire types, nesting deeper than a sane limit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace llmtrain {
namespace parquet {

class ThriftError : public std::runtime_error {
 public:
  explicit ThriftError(const std::string& msg) : std::runtime_error(msg) {}
};

// Enum values as numbered in parquet.thrift.
enum PhysicalType : int32_t {
  kBoolean = 0, kInt32 = 1, kInt64 = 2, kInt96 = 3, kFloat = 4, kDouble = 5,
  kByteArray = 6, kFixedLenByteArray = 7
};
enum Repetition : int32_t { kRequired = 0, kOptional = 1, kRepeated = 2 };
enum Codec : int32_t {
  kUncompressed = 0, kSnappy = 1, kGzip = 2, kLzo = 3, kBrotli = 4, kLz4 = 5, kZstd = 6, kLz4Raw = 7
};
enum Encoding : int32_t {
  kPlain = 0, kPlainDictionary = 2, kRle = 3, kBitPacked = 4, kDeltaBinaryPacked = 5,
  kDeltaLengthByteArray = 6, kDeltaByteArray = 7, kRleDictionary = 8, kByteStreamSplit = 9
};
enum PageType : int32_t { kDataPage = 0, kIndexPage = 1, kDictionaryPage = 2, kDataPageV2 = 3 };

const char* codec_name(int32_t codec);
const char* encoding_name(int32_t encoding);
const char* type_name(int32_t type);

struct SchemaElement {
  bool has_type = false;
  int32_t type = 0;
  bool has_repetition = false;
  int32_t repetition = kRequired;
  std::string name;
  int32_t num_children = 0;
};

struct ColumnMetaData {
  int32_t type = 0;
  std::vector<std::string> path_in_schema;
  int32_t codec = 0;
  int64_t num_values = 0;
  int64_t total_compressed_size = 0;
  int64_t data_page_offset = 0;
  bool has_dictionary_page_offset = false;
  int64_t dictionary_page_offset = 0;
};

struct ColumnChunk {
  bool has_file_path = false;
  std::string file_path;
  bool has_meta_data = false;
  ColumnMetaData meta_data;
};

struct RowGroup {
  std::vector<ColumnChunk> columns;
  int64_t num_rows = 0;
};

struct FileMetaData {
  int32_t version = 0;
  std::vector<SchemaElement> schema;
  int64_t num_rows = 0;
  std::vector<RowGroup> row_groups;
  std::string created_by;
};

struct DataPageHeader {
  int32_t num_values = 0;
  int32_t encoding = 0;
  int32_t definition_level_encoding = 0;
  int32_t repetition_level_encoding = 0;
};

struct DataPageHeaderV2 {
  int32_t num_values = 0;
  int32_t num_nulls = 0;
  int32_t num_rows = 0;
  int32_t encoding = 0;
  int32_t definition_levels_byte_length = 0;
  int32_t repetition_levels_byte_length = 0;
  bool is_compressed = true;  // the spec's default when the field is absent
};

struct DictionaryPageHeader {
  int32_t num_values = 0;
  int32_t encoding = 0;
};

struct PageHeader {
  int32_t type = 0;
  int32_t uncompressed_page_size = 0;
  int32_t compressed_page_size = 0;
  bool has_data_page_header = false;
  DataPageHeader data_page_header;
  bool has_dictionary_page_header = false;
  DictionaryPageHeader dictionary_page_header;
  bool has_data_page_header_v2 = false;
  DataPageHeaderV2 data_page_header_v2;
};

// Decodes the footer's FileMetaData from exactly [data, data + size). Checks that required
// fields are present; the caller checks their values against the file.
FileMetaData parse_file_metadata(const uint8_t* data, size_t size);

// Decodes one PageHeader starting at `data`, reading at most `size` bytes; returns the header
// and stores how many bytes it took in *consumed.
PageHeader parse_page_header(const uint8_t* data, size_t size, size_t* consumed);

}  // namespace parquet
}  // namespace llmtrain
