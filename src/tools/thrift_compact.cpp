// Thrift Compact Protocol decoding for Parquet metadata (see thrift_compact.h). The wire format:
// a struct is a sequence of field headers (one byte: field-id delta in the high nibble, wire type
// in the low nibble; a zero delta means a zigzag varint field id follows) ending in a STOP byte;
// integers are zigzag varints, binaries a varint length then bytes, lists a size/type byte (size
// 15 means a varint size follows), maps a varint size then a key/value type byte, booleans live
// in the field header's type nibble (but take one byte each inside lists). Every read is checked
// against the end of the buffer, and element counts are checked against the bytes left, so a
// corrupt count can never trigger a huge allocation.
#include "tools/thrift_compact.h"

#include <cstring>
#include <limits>

namespace llmtrain {
namespace parquet {
namespace {

// Compact protocol wire types.
enum WireType : uint8_t {
  kWireStop = 0, kWireBoolTrue = 1, kWireBoolFalse = 2, kWireByte = 3, kWireI16 = 4, kWireI32 = 5, kWireI64 = 6,
  kWireDouble = 7, kWireBinary = 8, kWireList = 9, kWireSet = 10, kWireMap = 11, kWireStruct = 12, kWireUuid = 13
};

// Parquet metadata nests at most ~6 deep; the limit only stops a crafted file from exhausting the
// stack through unknown nested fields.
constexpr int kMaxDepth = 64;

class Reader {
 public:
  Reader(const uint8_t* data, size_t size) : p_(data), begin_(data), end_(data + size) {}

  size_t consumed() const { return static_cast<size_t>(p_ - begin_); }
  size_t remaining() const { return static_cast<size_t>(end_ - p_); }

  [[noreturn]] void fail(const std::string& what) const {
    throw ThriftError("thrift metadata: " + what + " at byte " + std::to_string(consumed()));
  }

  uint8_t byte() {
    if (p_ >= end_) fail("unexpected end of data");
    return *p_++;
  }

  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      uint8_t b = byte();
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    fail("varint longer than 10 bytes");
  }

  int64_t zigzag64() {
    uint64_t v = varint();
    return static_cast<int64_t>((v >> 1) ^ (~(v & 1) + 1));
  }

  int32_t zigzag32() {
    int64_t v = zigzag64();
    if (v < std::numeric_limits<int32_t>::min() || v > std::numeric_limits<int32_t>::max())
      fail("i32 value out of range");
    return static_cast<int32_t>(v);
  }

  void skip_bytes(uint64_t n) {
    if (n > remaining()) fail("length " + std::to_string(n) + " runs past the end");
    p_ += n;
  }

  std::string binary() {
    uint64_t n = varint();
    if (n > remaining()) fail("string length " + std::to_string(n) + " runs past the end");
    std::string s(reinterpret_cast<const char*>(p_), static_cast<size_t>(n));
    p_ += n;
    return s;
  }

  // Reads a list header; the size is checked against the bytes left (every element takes at
  // least one byte) so callers may reserve() it safely.
  size_t list_header(uint8_t* elem_type) {
    uint8_t h = byte();
    uint64_t n = h >> 4;
    if (n == 15) n = varint();
    *elem_type = h & 0x0f;
    if (n > remaining()) fail("list of " + std::to_string(n) + " elements runs past the end");
    return static_cast<size_t>(n);
  }

  // Field headers: returns false on STOP. `last_id` carries the previous id for delta coding.
  bool field_header(int16_t* last_id, int16_t* id, uint8_t* type) {
    uint8_t h = byte();
    if (h == kWireStop) return false;
    *type = h & 0x0f;
    uint8_t delta = h >> 4;
    if (delta != 0) {
      *id = static_cast<int16_t>(*last_id + delta);
    } else {
      int64_t v = zigzag64();
      if (v < std::numeric_limits<int16_t>::min() || v > std::numeric_limits<int16_t>::max())
        fail("field id out of range");
      *id = static_cast<int16_t>(v);
    }
    *last_id = *id;
    return true;
  }

  // Skips one value of wire type `type`. `in_list` matters only for booleans, which carry their
  // value in the field header when they are fields but take one byte when they are elements.
  void skip(uint8_t type, int depth, bool in_list = false) {
    if (depth > kMaxDepth) fail("nesting deeper than " + std::to_string(kMaxDepth));
    switch (type) {
      case kWireBoolTrue:
      case kWireBoolFalse:
        if (in_list) byte();
        return;
      case kWireByte: byte(); return;
      case kWireI16:
      case kWireI32:
      case kWireI64: varint(); return;
      case kWireDouble: skip_bytes(8); return;
      case kWireBinary: skip_bytes(varint()); return;
      case kWireUuid: skip_bytes(16); return;
      case kWireList:
      case kWireSet: {
        uint8_t et;
        size_t n = list_header(&et);
        for (size_t i = 0; i < n; ++i) skip(et, depth + 1, true);
        return;
      }
      case kWireMap: {
        uint64_t n = varint();
        if (n == 0) return;
        if (n > remaining()) fail("map of " + std::to_string(n) + " entries runs past the end");
        uint8_t kv = byte();
        for (uint64_t i = 0; i < n; ++i) {
          skip(kv >> 4, depth + 1, true);
          skip(kv & 0x0f, depth + 1, true);
        }
        return;
      }
      case kWireStruct: {
        int16_t last = 0, id;
        uint8_t t;
        while (field_header(&last, &id, &t)) skip(t, depth + 1);
        return;
      }
      default: fail("unknown wire type " + std::to_string(type));
    }
  }

  // Typed field readers: the declared wire type must match what parquet.thrift says.
  void expect(uint8_t got, uint8_t want, const char* field) {
    if (got != want) fail(std::string("field ") + field + " has wire type " + std::to_string(got) +
                          ", expected " + std::to_string(want));
  }
  int32_t i32(uint8_t type, const char* field) { expect(type, kWireI32, field); return zigzag32(); }
  int64_t i64(uint8_t type, const char* field) {
    // Some writers store small i64 values as i32 on the wire; both are zigzag varints.
    if (type != kWireI64 && type != kWireI32) expect(type, kWireI64, field);
    return zigzag64();
  }
  bool boolean(uint8_t type, const char* field) {
    if (type != kWireBoolTrue && type != kWireBoolFalse) expect(type, kWireBoolTrue, field);
    return type == kWireBoolTrue;
  }
  std::string str(uint8_t type, const char* field) { expect(type, kWireBinary, field); return binary(); }

 private:
  const uint8_t* p_;
  const uint8_t* begin_;
  const uint8_t* end_;
};

// Tracks which required fields a struct carried.
struct Seen {
  uint32_t bits = 0;
  void set(int id) { bits |= 1u << id; }
  void require(Reader& r, int id, const char* strct, const char* field) const {
    if (!(bits & (1u << id))) r.fail(std::string(strct) + " lacks required field " + field);
  }
};

SchemaElement read_schema_element(Reader& r) {
  SchemaElement e;
  Seen seen;
  int16_t last = 0, id;
  uint8_t t;
  while (r.field_header(&last, &id, &t)) {
    switch (id) {
      case 1: e.type = r.i32(t, "SchemaElement.type"); e.has_type = true; break;
      case 3: e.repetition = r.i32(t, "SchemaElement.repetition_type"); e.has_repetition = true; break;
      case 4: e.name = r.str(t, "SchemaElement.name"); seen.set(4); break;
      case 5: e.num_children = r.i32(t, "SchemaElement.num_children"); break;
      default: r.skip(t, 1);
    }
  }
  seen.require(r, 4, "SchemaElement", "name");
  return e;
}

ColumnMetaData read_column_metadata(Reader& r) {
  ColumnMetaData m;
  Seen seen;
  int16_t last = 0, id;
  uint8_t t;
  while (r.field_header(&last, &id, &t)) {
    switch (id) {
      case 1: m.type = r.i32(t, "ColumnMetaData.type"); seen.set(1); break;
      case 3: {
        r.expect(t, kWireList, "ColumnMetaData.path_in_schema");
        uint8_t et;
        size_t n = r.list_header(&et);
        r.expect(et, kWireBinary, "ColumnMetaData.path_in_schema element");
        m.path_in_schema.reserve(n);
        for (size_t i = 0; i < n; ++i) m.path_in_schema.push_back(r.binary());
        break;
      }
      case 4: m.codec = r.i32(t, "ColumnMetaData.codec"); seen.set(4); break;
      case 5: m.num_values = r.i64(t, "ColumnMetaData.num_values"); seen.set(5); break;
      case 7: m.total_compressed_size = r.i64(t, "ColumnMetaData.total_compressed_size"); seen.set(7); break;
      case 9: m.data_page_offset = r.i64(t, "ColumnMetaData.data_page_offset"); seen.set(9); break;
      case 11:
        m.dictionary_page_offset = r.i64(t, "ColumnMetaData.dictionary_page_offset");
        m.has_dictionary_page_offset = true;
        break;
      default: r.skip(t, 2);
    }
  }
  seen.require(r, 1, "ColumnMetaData", "type");
  seen.require(r, 4, "ColumnMetaData", "codec");
  seen.require(r, 5, "ColumnMetaData", "num_values");
  seen.require(r, 7, "ColumnMetaData", "total_compressed_size");
  seen.require(r, 9, "ColumnMetaData", "data_page_offset");
  return m;
}

ColumnChunk read_column_chunk(Reader& r) {
  ColumnChunk c;
  int16_t last = 0, id;
  uint8_t t;
  while (r.field_header(&last, &id, &t)) {
    switch (id) {
      case 1: c.file_path = r.str(t, "ColumnChunk.file_path"); c.has_file_path = true; break;
      case 3:
        r.expect(t, kWireStruct, "ColumnChunk.meta_data");
        c.meta_data = read_column_metadata(r);
        c.has_meta_data = true;
        break;
      default: r.skip(t, 1);
    }
  }
  return c;
}

RowGroup read_row_group(Reader& r) {
  RowGroup g;
  Seen seen;
  int16_t last = 0, id;
  uint8_t t;
  while (r.field_header(&last, &id, &t)) {
    switch (id) {
      case 1: {
        r.expect(t, kWireList, "RowGroup.columns");
        uint8_t et;
        size_t n = r.list_header(&et);
        r.expect(et, kWireStruct, "RowGroup.columns element");
        g.columns.reserve(n);
        for (size_t i = 0; i < n; ++i) g.columns.push_back(read_column_chunk(r));
        seen.set(1);
        break;
      }
      case 3: g.num_rows = r.i64(t, "RowGroup.num_rows"); seen.set(3); break;
      default: r.skip(t, 1);
    }
  }
  seen.require(r, 1, "RowGroup", "columns");
  seen.require(r, 3, "RowGroup", "num_rows");
  return g;
}

DataPageHeader read_data_page_header(Reader& r) {
  DataPageHeader h;
  Seen seen;
  int16_t last = 0, id;
  uint8_t t;
  while (r.field_header(&last, &id, &t)) {
    switch (id) {
      case 1: h.num_values = r.i32(t, "DataPageHeader.num_values"); seen.set(1); break;
      case 2: h.encoding = r.i32(t, "DataPageHeader.encoding"); seen.set(2); break;
      case 3: h.definition_level_encoding = r.i32(t, "DataPageHeader.definition_level_encoding"); break;
      case 4: h.repetition_level_encoding = r.i32(t, "DataPageHeader.repetition_level_encoding"); break;
      default: r.skip(t, 2);
    }
  }
  seen.require(r, 1, "DataPageHeader", "num_values");
  seen.require(r, 2, "DataPageHeader", "encoding");
  return h;
}

DataPageHeaderV2 read_data_page_header_v2(Reader& r) {
  DataPageHeaderV2 h;
  Seen seen;
  int16_t last = 0, id;
  uint8_t t;
  while (r.field_header(&last, &id, &t)) {
    switch (id) {
      case 1: h.num_values = r.i32(t, "DataPageHeaderV2.num_values"); seen.set(1); break;
      case 2: h.num_nulls = r.i32(t, "DataPageHeaderV2.num_nulls"); seen.set(2); break;
      case 3: h.num_rows = r.i32(t, "DataPageHeaderV2.num_rows"); seen.set(3); break;
      case 4: h.encoding = r.i32(t, "DataPageHeaderV2.encoding"); seen.set(4); break;
      case 5:
        h.definition_levels_byte_length = r.i32(t, "DataPageHeaderV2.definition_levels_byte_length");
        seen.set(5);
        break;
      case 6:
        h.repetition_levels_byte_length = r.i32(t, "DataPageHeaderV2.repetition_levels_byte_length");
        seen.set(6);
        break;
      case 7: h.is_compressed = r.boolean(t, "DataPageHeaderV2.is_compressed"); break;
      default: r.skip(t, 2);
    }
  }
  for (int f = 1; f <= 6; ++f) {
    static const char* names[] = {"", "num_values", "num_nulls", "num_rows", "encoding",
                                  "definition_levels_byte_length", "repetition_levels_byte_length"};
    seen.require(r, f, "DataPageHeaderV2", names[f]);
  }
  return h;
}

DictionaryPageHeader read_dictionary_page_header(Reader& r) {
  DictionaryPageHeader h;
  Seen seen;
  int16_t last = 0, id;
  uint8_t t;
  while (r.field_header(&last, &id, &t)) {
    switch (id) {
      case 1: h.num_values = r.i32(t, "DictionaryPageHeader.num_values"); seen.set(1); break;
      case 2: h.encoding = r.i32(t, "DictionaryPageHeader.encoding"); seen.set(2); break;
      default: r.skip(t, 2);
    }
  }
  seen.require(r, 1, "DictionaryPageHeader", "num_values");
  seen.require(r, 2, "DictionaryPageHeader", "encoding");
  return h;
}

}  // namespace

const char* codec_name(int32_t codec) {
  switch (codec) {
    case kUncompressed: return "UNCOMPRESSED";
    case kSnappy: return "SNAPPY";
    case kGzip: return "GZIP";
    case kLzo: return "LZO";
    case kBrotli: return "BROTLI";
    case kLz4: return "LZ4";
    case kZstd: return "ZSTD";
    case kLz4Raw: return "LZ4_RAW";
    default: return "unknown";
  }
}

const char* encoding_name(int32_t encoding) {
  switch (encoding) {
    case kPlain: return "PLAIN";
    case kPlainDictionary: return "PLAIN_DICTIONARY";
    case kRle: return "RLE";
    case kBitPacked: return "BIT_PACKED";
    case kDeltaBinaryPacked: return "DELTA_BINARY_PACKED";
    case kDeltaLengthByteArray: return "DELTA_LENGTH_BYTE_ARRAY";
    case kDeltaByteArray: return "DELTA_BYTE_ARRAY";
    case kRleDictionary: return "RLE_DICTIONARY";
    case kByteStreamSplit: return "BYTE_STREAM_SPLIT";
    default: return "unknown";
  }
}

const char* type_name(int32_t type) {
  switch (type) {
    case kBoolean: return "BOOLEAN";
    case kInt32: return "INT32";
    case kInt64: return "INT64";
    case kInt96: return "INT96";
    case kFloat: return "FLOAT";
    case kDouble: return "DOUBLE";
    case kByteArray: return "BYTE_ARRAY";
    case kFixedLenByteArray: return "FIXED_LEN_BYTE_ARRAY";
    default: return "unknown";
  }
}

FileMetaData parse_file_metadata(const uint8_t* data, size_t size) {
  Reader r(data, size);
  FileMetaData md;
  Seen seen;
  int16_t last = 0, id;
  uint8_t t;
  while (r.field_header(&last, &id, &t)) {
    switch (id) {
      case 1: md.version = r.i32(t, "FileMetaData.version"); break;
      case 2: {
        r.expect(t, kWireList, "FileMetaData.schema");
        uint8_t et;
        size_t n = r.list_header(&et);
        r.expect(et, kWireStruct, "FileMetaData.schema element");
        md.schema.reserve(n);
        for (size_t i = 0; i < n; ++i) md.schema.push_back(read_schema_element(r));
        seen.set(2);
        break;
      }
      case 3: md.num_rows = r.i64(t, "FileMetaData.num_rows"); seen.set(3); break;
      case 4: {
        r.expect(t, kWireList, "FileMetaData.row_groups");
        uint8_t et;
        size_t n = r.list_header(&et);
        r.expect(et, kWireStruct, "FileMetaData.row_groups element");
        md.row_groups.reserve(n);
        for (size_t i = 0; i < n; ++i) md.row_groups.push_back(read_row_group(r));
        seen.set(4);
        break;
      }
      case 6: md.created_by = r.str(t, "FileMetaData.created_by"); break;
      default: r.skip(t, 1);
    }
  }
  seen.require(r, 2, "FileMetaData", "schema");
  seen.require(r, 3, "FileMetaData", "num_rows");
  seen.require(r, 4, "FileMetaData", "row_groups");
  return md;
}

PageHeader parse_page_header(const uint8_t* data, size_t size, size_t* consumed) {
  Reader r(data, size);
  PageHeader h;
  Seen seen;
  int16_t last = 0, id;
  uint8_t t;
  while (r.field_header(&last, &id, &t)) {
    switch (id) {
      case 1: h.type = r.i32(t, "PageHeader.type"); seen.set(1); break;
      case 2: h.uncompressed_page_size = r.i32(t, "PageHeader.uncompressed_page_size"); seen.set(2); break;
      case 3: h.compressed_page_size = r.i32(t, "PageHeader.compressed_page_size"); seen.set(3); break;
      case 5:
        r.expect(t, kWireStruct, "PageHeader.data_page_header");
        h.data_page_header = read_data_page_header(r);
        h.has_data_page_header = true;
        break;
      case 7:
        r.expect(t, kWireStruct, "PageHeader.dictionary_page_header");
        h.dictionary_page_header = read_dictionary_page_header(r);
        h.has_dictionary_page_header = true;
        break;
      case 8:
        r.expect(t, kWireStruct, "PageHeader.data_page_header_v2");
        h.data_page_header_v2 = read_data_page_header_v2(r);
        h.has_data_page_header_v2 = true;
        break;
      default: r.skip(t, 1);
    }
  }
  seen.require(r, 1, "PageHeader", "type");
  seen.require(r, 2, "PageHeader", "uncompressed_page_size");
  seen.require(r, 3, "PageHeader", "compressed_page_size");
  *consumed = r.consumed();
  return h;
}

}  // namespace parquet
}  // namespace llmtrain
