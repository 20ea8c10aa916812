// The spool on its own: record encoding, framing, torn tails, segments, quota, checkpoint.
#include "ingest/spool.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <filesystem>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace tern::ingest {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::random_device random;
    path_ = fs::temp_directory_path() /
            ("tern_spool_test_" + std::to_string(random()) + std::to_string(random()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

storage::Record numbered(int i) {
  storage::Record r;
  r.deviceId = "dev-" + std::to_string(i % 3);
  r.serverTimeUs = 1'700'000'000'000'000 + i;
  r.nodeId = "node";
  r.topic = "device/dev";
  r.payload = "{\"n\":" + std::to_string(i) + "}";
  r.payloadIsJson = true;
  r.fields.push_back({"n", std::int64_t{i}});
  return r;
}

std::vector<storage::Record> numberedRange(int from, int to) {
  std::vector<storage::Record> out;
  for (int i = from; i < to; ++i) out.push_back(numbered(i));
  return out;
}

std::int64_t numberOf(const storage::Record& r) {
  return std::get<std::int64_t>(r.fields.at(0).value);
}

// Everything the spool holds, in replay order, committing as it goes.
std::vector<std::int64_t> drain(Spool& spool, std::size_t chunk = 4) {
  std::vector<std::int64_t> out;
  std::vector<storage::Record> records;
  for (;;) {
    auto status = spool.readChunk(chunk, records);
    EXPECT_TRUE(status.ok()) << status.message();
    if (records.empty()) break;
    for (const auto& r : records) out.push_back(numberOf(r));
    EXPECT_TRUE(spool.commitChunk().ok());
  }
  EXPECT_TRUE(spool.empty());
  return out;
}

std::vector<std::int64_t> iota(int from, int to) {
  std::vector<std::int64_t> out;
  for (int i = from; i < to; ++i) out.push_back(i);
  return out;
}

SpoolOptions optionsFor(const fs::path& dir) {
  SpoolOptions o;
  o.dir = (dir / "spool").string();
  return o;
}

TEST(SpoolTest, Crc32cMatchesTheStandardCheckValue) {
  EXPECT_EQ(crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(crc32c(""), 0u);
}

TEST(SpoolTest, RecordRoundTripsEveryFieldType) {
  storage::Record r;
  r.deviceId = std::string("dev\0ice", 7);
  r.serverTimeUs = -5;
  r.deviceTimeUs = std::numeric_limits<std::int64_t>::min();
  r.nodeId = "gw-1";
  r.topic = "device/abc";
  r.payload = std::string("\x00\xff raw \x01", 8);
  r.payloadIsJson = false;
  r.fields = {{"i.max", std::numeric_limits<std::int64_t>::max()},
              {"i.min", std::numeric_limits<std::int64_t>::min()},
              {"d", 1.5},
              {"d.neg0", -0.0},
              {"d.big", 1e300},
              {"d.nan", std::numeric_limits<double>::quiet_NaN()},
              {"b.t", true},
              {"b.f", false},
              {"s", std::string("text \0 nul", 10)},
              {"", std::string()}};
  std::string bytes;
  encodeRecord(r, bytes);
  storage::Record back;
  ASSERT_TRUE(decodeRecord(bytes, back));
  EXPECT_EQ(back.deviceId, r.deviceId);
  EXPECT_EQ(back.serverTimeUs, r.serverTimeUs);
  EXPECT_EQ(back.deviceTimeUs, r.deviceTimeUs);
  EXPECT_EQ(back.nodeId, r.nodeId);
  EXPECT_EQ(back.topic, r.topic);
  EXPECT_EQ(back.payload, r.payload);
  EXPECT_EQ(back.payloadIsJson, r.payloadIsJson);
  ASSERT_EQ(back.fields.size(), r.fields.size());
  for (std::size_t i = 0; i < r.fields.size(); ++i) {
    EXPECT_EQ(back.fields[i].key, r.fields[i].key);
    ASSERT_EQ(back.fields[i].value.index(), r.fields[i].value.index()) << r.fields[i].key;
    if (const auto* d = std::get_if<double>(&r.fields[i].value)) {
      // Bit-exact, so -0.0 and NaN survive too.
      EXPECT_EQ(std::bit_cast<std::uint64_t>(std::get<double>(back.fields[i].value)),
                std::bit_cast<std::uint64_t>(*d));
    } else {
      EXPECT_EQ(back.fields[i].value, r.fields[i].value) << r.fields[i].key;
    }
  }

  storage::Record plain = numbered(7);
  plain.payloadIsJson = true;
  plain.fields.clear();
  bytes.clear();
  encodeRecord(plain, bytes);
  ASSERT_TRUE(decodeRecord(bytes, back));
  EXPECT_FALSE(back.deviceTimeUs.has_value());
  EXPECT_TRUE(back.payloadIsJson);
  EXPECT_TRUE(back.fields.empty());
}

TEST(SpoolTest, DecodeRejectsEveryTruncationAndTrailingBytes) {
  storage::Record r = numbered(3);
  r.deviceTimeUs = 42;
  r.fields.push_back({"s", std::string("abc")});
  r.fields.push_back({"b", true});
  r.fields.push_back({"d", 2.5});
  std::string bytes;
  encodeRecord(r, bytes);
  storage::Record back;
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_FALSE(decodeRecord(std::string_view(bytes).substr(0, n), back)) << n;
  }
  EXPECT_FALSE(decodeRecord(bytes + "x", back));
  EXPECT_TRUE(decodeRecord(bytes, back));
}

TEST(SpoolTest, FramesParsedByteAtATimeStopCleanlyAtATornTail) {
  std::string stream;
  std::vector<std::size_t> ends;
  for (int i = 0; i < 3; ++i) {
    std::string payload;
    encodeRecord(numbered(i), payload);
    appendFrame(payload, stream);
    ends.push_back(stream.size());
  }
  for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
    std::string_view data = std::string_view(stream).substr(0, cut);
    std::size_t complete = 0;
    for (;;) {
      const FrameView frame = parseFrame(data);
      if (frame.status != FrameStatus::kOk) {
        EXPECT_EQ(frame.status, FrameStatus::kIncomplete) << cut;
        break;
      }
      storage::Record r;
      ASSERT_TRUE(decodeRecord(frame.payload, r));
      EXPECT_EQ(numberOf(r), static_cast<std::int64_t>(complete));
      ++complete;
      data.remove_prefix(frame.size);
    }
    std::size_t expected = 0;
    while (expected < ends.size() && ends[expected] <= cut) ++expected;
    EXPECT_EQ(complete, expected) << cut;
  }
  std::string corrupt = stream;
  corrupt[ends[0] + 10] ^= 0x40;
  EXPECT_EQ(parseFrame(std::string_view(corrupt).substr(ends[0])).status, FrameStatus::kCorrupt);
}

TEST(SpoolTest, TornTailOnDiskIsIgnoredAtEveryCut) {
  TempDir dir;
  std::uint64_t fullSize = 0;
  {
    Spool spool(optionsFor(dir.path()));
    ASSERT_TRUE(spool.open().ok());
    ASSERT_TRUE(spool.append(numberedRange(0, 3)).ok());
    fullSize = spool.bytes();
  }
  const fs::path segment = dir.path() / "spool" / "00000000000000000001.log";
  ASSERT_TRUE(fs::exists(segment));
  std::string content;
  {
    std::FILE* f = std::fopen(segment.c_str(), "rb");
    ASSERT_NE(f, nullptr);
    content.resize(fullSize);
    ASSERT_EQ(std::fread(content.data(), 1, content.size(), f), content.size());
    std::fclose(f);
  }
  const std::size_t frame = content.size() / 3;  // equal-sized records
  for (std::size_t cut = 0; cut <= content.size(); ++cut) {
    TempDir crash;
    fs::create_directories(crash.path() / "spool");
    {
      std::FILE* f = std::fopen((crash.path() / "spool" / segment.filename()).c_str(), "wb");
      ASSERT_NE(f, nullptr);
      std::fwrite(content.data(), 1, cut, f);
      std::fclose(f);
    }
    Spool spool(optionsFor(crash.path()));
    ASSERT_TRUE(spool.open().ok());
    EXPECT_EQ(drain(spool, 2), iota(0, static_cast<int>(cut / frame))) << "cut " << cut;
    EXPECT_EQ(spool.bytes(), 0u);
    // New records go to a new segment, never after the torn frame.
    ASSERT_TRUE(spool.append(numberedRange(10, 12)).ok());
    EXPECT_EQ(drain(spool), iota(10, 12));
  }
}

TEST(SpoolTest, ACorruptFrameSkipsTheRestOfItsSegmentOnly) {
  TempDir dir;
  SpoolOptions options = optionsFor(dir.path());
  options.segmentBytes = 1;  // one batch per segment
  {
    Spool spool(options);
    ASSERT_TRUE(spool.open().ok());
    ASSERT_TRUE(spool.append(numberedRange(0, 3)).ok());
    ASSERT_TRUE(spool.append(numberedRange(3, 6)).ok());
    EXPECT_EQ(spool.segmentCount(), 2u);
  }
  const fs::path first = dir.path() / "spool" / "00000000000000000001.log";
  const auto size = fs::file_size(first);
  {
    std::FILE* f = std::fopen(first.c_str(), "r+b");
    ASSERT_NE(f, nullptr);
    std::fseek(f, static_cast<long>(size / 3 + 12), SEEK_SET);  // inside the second frame
    std::fputc('Z', f);
    std::fclose(f);
  }
  Spool spool(options);
  ASSERT_TRUE(spool.open().ok());
  EXPECT_EQ(drain(spool), (std::vector<std::int64_t>{0, 3, 4, 5}));
}

TEST(SpoolTest, SegmentsRollOverAndAreDeletedOnlyOnceCommitted) {
  TempDir dir;
  SpoolOptions options = optionsFor(dir.path());
  options.segmentBytes = 150;  // about two records
  Spool spool(options);
  ASSERT_TRUE(spool.open().ok());
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(spool.append(numberedRange(i, i + 1)).ok());
  const std::size_t segments = spool.segmentCount();
  EXPECT_GE(segments, 4u);
  std::size_t files = 0;
  for (const auto& e : fs::directory_iterator(dir.path() / "spool")) {
    files += e.path().extension() == ".log";
  }
  EXPECT_EQ(files, segments);

  // Reading without committing neither advances nor deletes.
  std::vector<storage::Record> records;
  ASSERT_TRUE(spool.readChunk(100, records).ok());
  ASSERT_FALSE(records.empty());
  EXPECT_EQ(numberOf(records[0]), 0);
  EXPECT_LT(records.size(), 10u);  // a chunk stays within one segment
  ASSERT_TRUE(spool.readChunk(100, records).ok());
  EXPECT_EQ(numberOf(records[0]), 0);
  EXPECT_EQ(spool.segmentCount(), segments);

  const std::uint64_t before = spool.bytes();
  EXPECT_EQ(drain(spool, 3), iota(0, 10));
  EXPECT_GT(before, 0u);
  EXPECT_EQ(spool.bytes(), 0u);
  EXPECT_EQ(spool.segmentCount(), 0u);
}

TEST(SpoolTest, QuotaRefusesWithoutWritingAndFreesAfterReplay) {
  TempDir dir;
  SpoolOptions options = optionsFor(dir.path());
  options.maxBytes = 400;
  options.segmentBytes = 1;  // one append per segment
  Spool spool(options);
  ASSERT_TRUE(spool.open().ok());
  int next = 0;
  bool full = false;
  while (!full && next < 100) {
    auto status = spool.append(numberedRange(next, next + 1), &full);
    if (status.ok()) ++next;
  }
  ASSERT_TRUE(full);
  EXPECT_GT(next, 0);
  EXPECT_LE(spool.bytes(), options.maxBytes);
  const std::uint64_t used = spool.bytes();
  EXPECT_FALSE(spool.append(numberedRange(next, next + 1), &full).ok());
  EXPECT_TRUE(full);
  EXPECT_EQ(spool.bytes(), used);

  std::vector<storage::Record> records;
  ASSERT_TRUE(spool.readChunk(1, records).ok());
  ASSERT_TRUE(spool.commitChunk().ok());
  ASSERT_TRUE(spool.readChunk(1, records).ok());  // deletes the first, replayed segment
  ASSERT_TRUE(spool.append(numberedRange(next, next + 1), &full).ok());
  EXPECT_FALSE(full);
  EXPECT_EQ(drain(spool), iota(1, next + 1));
}

TEST(SpoolTest, CheckpointSurvivesAReopenAndOrderIsKept) {
  TempDir dir;
  SpoolOptions options = optionsFor(dir.path());
  {
    Spool spool(options);
    ASSERT_TRUE(spool.open().ok());
    ASSERT_TRUE(spool.append(numberedRange(0, 10)).ok());
    std::vector<storage::Record> records;
    ASSERT_TRUE(spool.readChunk(4, records).ok());
    ASSERT_EQ(records.size(), 4u);
    ASSERT_TRUE(spool.commitChunk().ok());
    ASSERT_TRUE(spool.readChunk(3, records).ok());  // read, not committed: replayed again
  }
  {
    Spool spool(options);
    ASSERT_TRUE(spool.open().ok());
    EXPECT_FALSE(spool.empty());
    ASSERT_TRUE(spool.append(numberedRange(10, 12)).ok());
    EXPECT_EQ(drain(spool), iota(4, 12));
  }
  // Drained, then reopened: new segments must not be mistaken for replayed ones.
  {
    Spool spool(options);
    ASSERT_TRUE(spool.open().ok());
    EXPECT_TRUE(spool.empty());
    ASSERT_TRUE(spool.append(numberedRange(20, 22)).ok());
  }
  {
    Spool spool(options);
    ASSERT_TRUE(spool.open().ok());
    EXPECT_EQ(drain(spool), iota(20, 22));
  }
}

TEST(SpoolTest, SyncFullWorks) {
  TempDir dir;
  SpoolOptions options = optionsFor(dir.path());
  options.syncFull = true;
  Spool spool(options);
  ASSERT_TRUE(spool.open().ok());
  ASSERT_TRUE(spool.append(numberedRange(0, 5)).ok());
  EXPECT_EQ(drain(spool), iota(0, 5));
}

}  // namespace
}  // namespace tern::ingest
