// One contract for every storage::Store backend: the same tests run against SQLite and against
// a real PostgreSQL server (test/support/postgres_fixture.h). Backend-specific behaviour
// (partitions, migrations, reconnects) is tested at the end, per backend.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "storage/postgres/postgres_store.h"
#include "storage/sqlite/sqlite_store.h"
#include "support/postgres_fixture.h"

namespace tern::storage {
namespace {

[[maybe_unused]] auto* const kPostgresEnvironment =
    ::testing::AddGlobalTestEnvironment(new test::PostgresEnvironment);

constexpr std::int64_t kDayUs = 86'400'000'000;
constexpr std::int64_t kJan2026Us = 1'767'225'600'000'000;  // 2026-01-01T00:00:00Z
constexpr std::int64_t kSecondUs = 1'000'000;
constexpr std::int64_t kMinuteUs = 60 * kSecondUs;
constexpr std::int64_t kHourUs = 60 * kMinuteUs;

namespace fs = std::filesystem;

// A fresh directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    std::random_device random;
    path_ =
        fs::temp_directory_path() / ("tern-contract-" + std::to_string(::getpid()) + "-" +
                                     std::to_string(counter++) + "-" + std::to_string(random()));
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// Opens stores of one backend on one database, as often as a test wants (reopen tests).
class Backend {
 public:
  virtual ~Backend() = default;
  virtual std::unique_ptr<Store> open() = 0;
  // Runs SQL on the database directly, behind the store's back (tests of what the store uses).
  virtual void exec(const std::string& sql) = 0;
};

class SqliteBackend : public Backend {
 public:
  std::unique_ptr<Store> open() override {
    sqlite::SqliteOptions options;
    options.path = (dir_.path() / "data" / "tern.db").string();
    options.cacheBytes = 8 * 1024 * 1024;
    return sqlite::openSqliteStore(options);
  }
  void exec(const std::string& sql) override {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open((dir_.path() / "data" / "tern.db").c_str(), &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    char* error = nullptr;
    EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error), SQLITE_OK)
        << (error != nullptr ? error : "");
    sqlite3_free(error);
    sqlite3_close(db);
  }

 private:
  TempDir dir_;
};

postgres::PostgresOptions postgresOptions(const std::string& url) {
  postgres::PostgresOptions options;
  options.url = url;
  // Short backoff so reconnect tests are quick.
  options.reconnectMin = std::chrono::milliseconds(20);
  options.reconnectMax = std::chrono::milliseconds(200);
  return options;
}

class PostgresBackend : public Backend {
 public:
  PostgresBackend() : url_(test::PostgresServer::shared().createDatabase()) {}
  std::unique_ptr<Store> open() override {
    return postgres::openPostgresStore(postgresOptions(url_));
  }
  void exec(const std::string& sql) override { test::PostgresServer::query(url_, sql); }
  const std::string& url() const { return url_; }

 private:
  std::string url_;
};

std::unique_ptr<Backend> makeBackend(const std::string& name) {
  if (name == "postgres") {
    return std::make_unique<PostgresBackend>();
  }
  return std::make_unique<SqliteBackend>();
}

Record makeRecord(const std::string& device, std::int64_t ts, std::vector<Field> fields = {}) {
  Record record;
  record.deviceId = device;
  record.serverTimeUs = ts;
  record.nodeId = "node-1";
  record.topic = "device/" + device;
  record.payload = "{}";
  record.payloadIsJson = true;
  record.fields = std::move(fields);
  return record;
}

const FieldValue* findField(const std::vector<Field>& fields, const std::string& key) {
  for (const Field& field : fields) {
    if (field.key == key) {
      return &field.value;
    }
  }
  return nullptr;
}

class StoreContractTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    backend_ = makeBackend(GetParam());
    store_ = backend_->open();
  }

  void append(const std::vector<Record>& records) {
    const core::Status status = store_->appendBatch(records);
    ASSERT_TRUE(status.ok()) << status.message();
  }

  // The count of `device`'s `key` in the hour from `hourUs` comes from its hour rollup: raw rows
  // in [deleteFromUs, deleteToUs) deleted behind the store's back (no dirty mark) leave the
  // rolled-up answer as it was and shrink the raw one.
  void expectHourAnsweredFromRollups(const std::string& device, const std::string& key,
                                     std::int64_t hourUs, std::int64_t deleteFromUs,
                                     std::int64_t deleteToUs) {
    SeriesQuery q;
    q.deviceId = device;
    q.key = key;
    q.fromUs = hourUs;
    q.toUs = hourUs + kHourUs;
    q.bucketUs = kHourUs;
    q.aggregate = Aggregate::kCount;
    auto before = store_->querySeries(q);
    ASSERT_TRUE(before.ok() && before->size() == 1u);
    backend_->exec("DELETE FROM messages WHERE ts >= " + std::to_string(deleteFromUs) +
                   " AND ts < " + std::to_string(deleteToUs));
    auto rolled = store_->querySeries(q);
    q.useRollups = false;
    auto raw = store_->querySeries(q);
    ASSERT_TRUE(rolled.ok() && raw.ok());
    ASSERT_EQ(rolled->size(), 1u);
    ASSERT_EQ(raw->size(), 1u);
    EXPECT_EQ((*rolled)[0].count, (*before)[0].count);
    EXPECT_LT((*raw)[0].count, (*before)[0].count);
  }

  std::vector<StoredRecord> query(const MessageQuery& q) {
    auto result = store_->queryMessages(q);
    EXPECT_TRUE(result.ok()) << (result.ok() ? "" : result.error().message);
    return result.ok() ? *result : std::vector<StoredRecord>{};
  }

  std::vector<Bucket> series(const std::string& key, Aggregate aggregate,
                             std::int64_t bucketUs = 100, std::int64_t fromUs = 0,
                             const std::string& device = "s1") {
    SeriesQuery q;
    q.deviceId = device;
    q.fromUs = fromUs;
    q.key = key;
    q.bucketUs = bucketUs;
    q.aggregate = aggregate;
    auto result = store_->querySeries(q);
    EXPECT_TRUE(result.ok()) << (result.ok() ? "" : result.error().message);
    return result.ok() ? *result : std::vector<Bucket>{};
  }

  std::int64_t count() {
    auto result = store_->countMessages();
    EXPECT_TRUE(result.ok()) << (result.ok() ? "" : result.error().message);
    return result.ok() ? *result : -1;
  }

  // Walks every page of `device` and checks: strictly ordered by (ts, id), nothing twice,
  // nothing missing.
  void checkPagination(const std::string& device, bool descending, std::uint32_t pageSize,
                       std::size_t expected) {
    MessageQuery q;
    q.deviceId = device;
    q.limit = pageSize;
    q.descending = descending;
    std::vector<std::pair<std::int64_t, std::int64_t>> seen;
    for (std::size_t page = 0; page < expected + 2; ++page) {
      auto rows = query(q);
      if (rows.empty()) {
        break;
      }
      EXPECT_LE(rows.size(), pageSize);
      for (const auto& row : rows) {
        seen.emplace_back(row.record.serverTimeUs, row.id);
      }
      q.afterTimeUs = rows.back().record.serverTimeUs;
      q.afterId = rows.back().id;
    }
    ASSERT_EQ(seen.size(), expected) << (descending ? "desc" : "asc");
    std::set<std::int64_t> ids;
    for (std::size_t i = 0; i < seen.size(); ++i) {
      ids.insert(seen[i].second);
      if (i > 0) {
        ASSERT_TRUE(descending ? seen[i - 1] > seen[i] : seen[i - 1] < seen[i]) << i;
      }
    }
    EXPECT_EQ(ids.size(), expected);
  }

  std::unique_ptr<Backend> backend_;
  std::unique_ptr<Store> store_;
};

TEST_P(StoreContractTest, RoundTripsEveryFieldType) {
  const std::int64_t kMin = std::numeric_limits<std::int64_t>::min();
  const std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  Record record = makeRecord("dev-1", kJan2026Us + 123'456,
                             {{"int", std::int64_t{42}},
                              {"neg", std::int64_t{-7}},
                              {"min", kMin},
                              {"max", kMax},
                              {"one", 1.0},
                              {"tenth", 0.1},
                              {"negzero", -0.0},
                              {"tiny", 1.3927926388013963e-143},
                              {"huge", 1e300},
                              {"big", 1e18},
                              {"yes", true},
                              {"no", false},
                              {"text", std::string("héllo \"wörld\" \\ \n\t\x01 ☃ 😀")},
                              {"empty", std::string()},
                              {"a.b.0", std::int64_t{3}},
                              {"quo\"te", std::string("k")},
                              {"ключ", std::string("值")}});
  record.deviceTimeUs = kJan2026Us - 876'544;
  record.payload = R"({"int":42})";
  record.topic = "sensors/dev-1/telemetry";
  record.nodeId = "gw-7";
  append({record});

  MessageQuery q;
  q.deviceId = "dev-1";
  const auto rows = query(q);
  ASSERT_EQ(rows.size(), 1u);
  const Record& got = rows[0].record;
  EXPECT_GT(rows[0].id, 0);
  EXPECT_EQ(got.deviceId, "dev-1");
  EXPECT_EQ(got.serverTimeUs, record.serverTimeUs);
  EXPECT_EQ(got.deviceTimeUs, record.deviceTimeUs);
  EXPECT_EQ(got.nodeId, "gw-7");
  EXPECT_EQ(got.topic, "sensors/dev-1/telemetry");
  EXPECT_EQ(got.payload, record.payload);
  EXPECT_TRUE(got.payloadIsJson);
  ASSERT_EQ(got.fields.size(), record.fields.size());
  for (std::size_t i = 0; i < record.fields.size(); ++i) {
    EXPECT_EQ(got.fields[i].key, record.fields[i].key);
    // variant equality compares the alternative too, so int vs double is checked.
    EXPECT_EQ(got.fields[i].value, record.fields[i].value) << record.fields[i].key;
  }
  const auto* negZero = findField(got.fields, "negzero");
  ASSERT_NE(negZero, nullptr);
  ASSERT_TRUE(std::holds_alternative<double>(*negZero));
  EXPECT_TRUE(std::signbit(std::get<double>(*negZero)));

  // The latest values keep every type too.
  auto device = store_->getDevice("dev-1");
  ASSERT_TRUE(device.ok()) << device.error().message;
  ASSERT_TRUE(device->has_value());
  ASSERT_EQ((*device)->latest.size(), record.fields.size());
  for (const Field& field : record.fields) {
    const FieldValue* latest = findField((*device)->latest, field.key);
    ASSERT_NE(latest, nullptr) << field.key;
    EXPECT_EQ(*latest, field.value) << field.key;
  }
}

TEST_P(StoreContractTest, NotFiniteDoublesAreLeftOut) {
  append({makeRecord("nan", 10,
                     {{"a", std::nan("")},
                      {"b", std::numeric_limits<double>::infinity()},
                      {"c", std::int64_t{1}}})});
  MessageQuery q;
  q.deviceId = "nan";
  const auto rows = query(q);
  ASSERT_EQ(rows.size(), 1u);
  ASSERT_EQ(rows[0].record.fields.size(), 1u);
  EXPECT_EQ(rows[0].record.fields[0].key, "c");
  auto device = store_->getDevice("nan");
  ASSERT_TRUE(device.ok() && device->has_value());
  EXPECT_EQ((*device)->latest.size(), 1u);
}

TEST_P(StoreContractTest, EmptyBatchIsANoOp) {
  append({});
  EXPECT_EQ(count(), 0);
  auto devices = store_->listDevices();
  ASSERT_TRUE(devices.ok());
  EXPECT_TRUE(devices->empty());
}

TEST_P(StoreContractTest, NonJsonPayloadKeepsExactBytes) {
  Record binary = makeRecord("raw", 10);
  binary.payloadIsJson = false;
  binary.payload.clear();
  for (int i = 0; i < 256; ++i) {
    binary.payload += static_cast<char>(i);
  }
  binary.payload += std::string("\0\0end", 5);
  Record empty = makeRecord("raw", 11);
  empty.payloadIsJson = false;
  empty.payload.clear();
  Record text = makeRecord("raw", 12);
  text.payloadIsJson = false;
  text.payload = "temperature=21.5 ☃";
  append({binary, empty, text});

  MessageQuery q;
  q.deviceId = "raw";
  const auto rows = query(q);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_FALSE(rows[0].record.payloadIsJson);
  EXPECT_EQ(rows[0].record.payload, binary.payload);
  EXPECT_EQ(rows[0].record.payload.size(), 261u);
  EXPECT_TRUE(rows[0].record.fields.empty());
  EXPECT_FALSE(rows[0].record.deviceTimeUs.has_value());
  EXPECT_FALSE(rows[1].record.payloadIsJson);
  EXPECT_EQ(rows[1].record.payload, "");
  EXPECT_EQ(rows[2].record.payload, text.payload);
  auto device = store_->getDevice("raw");
  ASSERT_TRUE(device.ok() && device->has_value());
  EXPECT_EQ((*device)->messageCount, 3);
  EXPECT_TRUE((*device)->latest.empty());
}

TEST_P(StoreContractTest, DecodedFieldsOfNonJsonPayloadsAreKept) {
  // A tracker's binary frame: raw payload, fields from the protocol decoder.
  Record position =
      makeRecord("trk", kJan2026Us,
                 {{"lat", 52.52}, {"lon", 13.4}, {"speed", std::int64_t{12}}, {"valid", true}});
  position.payloadIsJson = false;
  position.payload = std::string("\x78\x78\x0d\x01\x00", 5);
  append({position});
  MessageQuery q;
  q.deviceId = "trk";
  const auto rows = query(q);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_FALSE(rows[0].record.payloadIsJson);
  EXPECT_EQ(rows[0].record.payload, position.payload);
  ASSERT_EQ(rows[0].record.fields.size(), 4u);
  EXPECT_EQ(rows[0].record.fields[0].value, FieldValue(52.52));
  const auto buckets = series("speed", Aggregate::kMax, kDayUs, 0, "trk");
  ASSERT_EQ(buckets.size(), 1u);
  EXPECT_DOUBLE_EQ(buckets[0].value, 12);
  auto device = store_->getDevice("trk");
  ASSERT_TRUE(device.ok() && device->has_value());
  EXPECT_EQ((*device)->latest.size(), 4u);
}

TEST_P(StoreContractTest, UnicodeDeviceIdsTopicsAndNodes) {
  Record record = makeRecord("gerät-ü-😀", 5, {{"t", std::int64_t{1}}});
  record.topic = "device/gerät-ü-😀";
  record.nodeId = "knoten-ß";
  append({record});
  MessageQuery q;
  q.deviceId = "gerät-ü-😀";
  const auto rows = query(q);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].record.topic, record.topic);
  EXPECT_EQ(rows[0].record.nodeId, record.nodeId);
  auto device = store_->getDevice("gerät-ü-😀");
  ASSERT_TRUE(device.ok() && device->has_value());
  EXPECT_EQ((*device)->deviceId, "gerät-ü-😀");
}

TEST_P(StoreContractTest, DevicesSeenSinceLeaveOutOlderAndNeverSeenDevices) {
  append({makeRecord("old", kJan2026Us + 100, {{"v", std::int64_t{1}}}),
          makeRecord("new", kJan2026Us + 200, {{"v", std::int64_t{2}}}),
          makeRecord("both", kJan2026Us + 50, {{"v", std::int64_t{3}}})});
  append({makeRecord("both", kJan2026Us + 300, {{"v", std::int64_t{4}}})});
  DeviceUpdate registration;
  registration.name = std::string("registered, never seen");
  ASSERT_TRUE(store_->updateDevice("quiet", registration).ok());
  auto recent = store_->listDevicesSeenSince(kJan2026Us + 150);
  ASSERT_TRUE(recent.ok()) << recent.error().message;
  ASSERT_EQ(recent->size(), 2U);
  EXPECT_EQ((*recent)[0].deviceId, "both");
  EXPECT_EQ((*recent)[0].messageCount, 2);
  EXPECT_EQ(*findField((*recent)[0].latest, "v"), FieldValue(std::int64_t{4}));
  EXPECT_EQ((*recent)[1].deviceId, "new");
  // At the boundary: last seen exactly at sinceUs is included.
  auto exact = store_->listDevicesSeenSince(kJan2026Us + 300);
  ASSERT_TRUE(exact.ok());
  ASSERT_EQ(exact->size(), 1U);
  EXPECT_EQ((*exact)[0].deviceId, "both");
  auto all = store_->listDevicesSeenSince(0);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->size(), 3U);  // "quiet" has never sent
  auto none = store_->listDevicesSeenSince(kJan2026Us + 301);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST_P(StoreContractTest, ManyDevicesInOneBatchAndAcrossBatches) {
  constexpr int kDevices = 50;
  constexpr int kPerDevice = 40;
  std::vector<Record> records;
  for (int i = 0; i < kDevices * kPerDevice; ++i) {
    std::string device = "m";
    device += std::to_string(i % kDevices);
    records.push_back(
        makeRecord(device, kJan2026Us + i, {{"seq", std::int64_t{i}}, {"half", i * 0.5}}));
  }
  append(records);
  append({makeRecord("m0", kJan2026Us + 100'000, {{"seq", std::int64_t{-1}}})});
  EXPECT_EQ(count(), kDevices * kPerDevice + 1);
  auto devices = store_->listDevices();
  ASSERT_TRUE(devices.ok()) << devices.error().message;
  ASSERT_EQ(devices->size(), static_cast<std::size_t>(kDevices));
  // Byte order of device ids: m0, m1, m10, m11, ...
  EXPECT_EQ((*devices)[0].deviceId, "m0");
  EXPECT_EQ((*devices)[1].deviceId, "m1");
  EXPECT_EQ((*devices)[2].deviceId, "m10");
  for (const DeviceSummary& summary : *devices) {
    const int n = std::stoi(summary.deviceId.substr(1));
    EXPECT_EQ(summary.messageCount, kPerDevice + (n == 0 ? 1 : 0)) << summary.deviceId;
    EXPECT_EQ(summary.firstSeenUs, kJan2026Us + n);
    const std::int64_t lastSeq = (kPerDevice - 1) * kDevices + n;
    if (n == 0) {
      EXPECT_EQ(summary.lastSeenUs, kJan2026Us + 100'000);
      EXPECT_EQ(*findField(summary.latest, "seq"), FieldValue(std::int64_t{-1}));
      EXPECT_EQ(*findField(summary.latest, "half"), FieldValue(static_cast<double>(lastSeq) * 0.5));
    } else {
      EXPECT_EQ(summary.lastSeenUs, kJan2026Us + lastSeq);
      EXPECT_EQ(*findField(summary.latest, "seq"), FieldValue(lastSeq));
    }
  }
  MessageQuery q;
  q.deviceId = "m7";
  q.limit = 1000;
  EXPECT_EQ(query(q).size(), static_cast<std::size_t>(kPerDevice));
}

TEST_P(StoreContractTest, OrdersAscendingAndDescendingWithLimit) {
  append(
      {makeRecord("d", 300), makeRecord("d", 100), makeRecord("other", 150), makeRecord("d", 200)});
  MessageQuery q;
  q.deviceId = "d";
  auto asc = query(q);
  ASSERT_EQ(asc.size(), 3u);
  EXPECT_EQ(asc[0].record.serverTimeUs, 100);
  EXPECT_EQ(asc[1].record.serverTimeUs, 200);
  EXPECT_EQ(asc[2].record.serverTimeUs, 300);
  q.descending = true;
  auto desc = query(q);
  ASSERT_EQ(desc.size(), 3u);
  EXPECT_EQ(desc[0].record.serverTimeUs, 300);
  EXPECT_EQ(desc[2].record.serverTimeUs, 100);
  q.limit = 2;
  desc = query(q);
  ASSERT_EQ(desc.size(), 2u);
  EXPECT_EQ(desc[1].record.serverTimeUs, 200);
  q.limit = 0;
  EXPECT_TRUE(query(q).empty());
  q.limit = 100;
  q.deviceId = "nobody";
  EXPECT_TRUE(query(q).empty());
  // Ids grow with insertion order.
  EXPECT_LT(asc[2].id, asc[1].id);  // 300 was appended before 200
}

TEST_P(StoreContractTest, RangeIsFromInclusiveToExclusive) {
  append({makeRecord("r", 99), makeRecord("r", 100), makeRecord("r", 150), makeRecord("r", 199),
          makeRecord("r", 200)});
  MessageQuery q;
  q.deviceId = "r";
  q.fromUs = 100;
  q.toUs = 200;
  auto rows = query(q);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].record.serverTimeUs, 100);
  EXPECT_EQ(rows[2].record.serverTimeUs, 199);
  q.descending = true;
  rows = query(q);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].record.serverTimeUs, 199);
  q.fromUs = 200;
  q.toUs = 200;
  EXPECT_TRUE(query(q).empty());
  q.fromUs = 300;
  q.toUs = 100;
  EXPECT_TRUE(query(q).empty());
  // Before the epoch, and the whole int64 range.
  append({makeRecord("r", -5)});
  q.fromUs = std::numeric_limits<std::int64_t>::min();
  q.toUs = std::numeric_limits<std::int64_t>::max();
  q.descending = false;
  rows = query(q);
  ASSERT_EQ(rows.size(), 6u);
  EXPECT_EQ(rows[0].record.serverTimeUs, -5);
}

TEST_P(StoreContractTest, PagesAcrossEqualTimestampsWithoutGapsOrDuplicates) {
  // Four records per timestamp, split over batches and interleaved with another device, so a
  // page boundary falls inside runs of equal timestamps.
  for (int batch = 0; batch < 5; ++batch) {
    std::vector<Record> records;
    for (int i = 0; i < 5; ++i) {
      const int n = batch * 5 + i;
      records.push_back(makeRecord("p", 1000 + n / 4));
      records.push_back(makeRecord("q", 1000 + n / 4));
    }
    append(records);
  }
  checkPagination("p", false, 3, 25);
  checkPagination("p", true, 3, 25);

  // A cursor time without an id skips that whole timestamp.
  MessageQuery q;
  q.deviceId = "p";
  q.afterTimeUs = 1000;
  auto rows = query(q);
  ASSERT_FALSE(rows.empty());
  EXPECT_EQ(rows.front().record.serverTimeUs, 1001);
  q.descending = true;
  q.afterTimeUs = 1006;
  rows = query(q);
  ASSERT_FALSE(rows.empty());
  EXPECT_EQ(rows.front().record.serverTimeUs, 1005);
  q.afterTimeUs.reset();
  q.afterId = 5;
  EXPECT_FALSE(store_->queryMessages(q).ok());
}

TEST_P(StoreContractTest, PagesThroughThousandsOfRecords) {
  constexpr int kRecords = 3000;
  constexpr std::int64_t kStepUs = 3 * kDayUs / (kRecords / 7 + 1);
  std::vector<Record> records;
  for (int i = 0; i < kRecords; ++i) {
    // Runs of 7 equal timestamps spread over three days, in batches of 1000 records.
    records.push_back(makeRecord("big", kJan2026Us + (i / 7) * kStepUs, {{"i", std::int64_t{i}}}));
    records.push_back(makeRecord("noise", kJan2026Us + i));
    if (records.size() == 1000) {
      append(records);
      records.clear();
    }
  }
  append(records);
  checkPagination("big", false, 100, kRecords);
  checkPagination("big", true, 97, kRecords);
  // A sub-range, paged.
  MessageQuery q;
  q.deviceId = "big";
  q.fromUs = kJan2026Us + kDayUs;
  q.toUs = kJan2026Us + 2 * kDayUs;
  q.limit = 10'000;
  const auto day = query(q);
  ASSERT_FALSE(day.empty());
  for (const auto& row : day) {
    EXPECT_GE(row.record.serverTimeUs, q.fromUs);
    EXPECT_LT(row.record.serverTimeUs, q.toUs);
  }
}

TEST_P(StoreContractTest, SeriesBucketsEveryAggregate) {
  // Bucket [0,100): x = 1, 2.5, 4 (plus a bool and a string that must not count).
  // Bucket [100,200): nothing numeric. Bucket [200,300): x = -3, 10.
  append({makeRecord("s1", 5, {{"a.x", std::int64_t{1}}}), makeRecord("s1", 40, {{"a.x", 2.5}}),
          makeRecord("s1", 60, {{"a.x", true}}), makeRecord("s1", 70, {{"a.x", std::string("9")}}),
          makeRecord("s1", 99, {{"a.x", std::int64_t{4}}}),
          makeRecord("s1", 150, {{"other", std::int64_t{1}}}),
          makeRecord("s2", 160, {{"a.x", std::int64_t{1000}}}),
          makeRecord("s1", 200, {{"a.x", std::int64_t{-3}}})});
  Record raw = makeRecord("s1", 250);
  raw.payloadIsJson = false;
  raw.payload = R"({"a.x": 77})";  // not parsed: not a value
  raw.fields.clear();
  append({raw, makeRecord("s1", 299, {{"a.x", 10.0}}), makeRecord("s1", 300, {})});

  struct Expect {
    Aggregate aggregate;
    double first;
    double second;
  };
  const Expect expectations[] = {
      {Aggregate::kAvg, 7.5 / 3, 3.5},
      {Aggregate::kMin, 1, -3},
      {Aggregate::kMax, 4, 10},
      {Aggregate::kSum, 7.5, 7},
      {Aggregate::kCount, 3, 2},
      // The earliest/latest numeric value: the bool and string at 60 and 70 do not count.
      {Aggregate::kFirst, 1, -3},
      {Aggregate::kLast, 4, 10},
  };
  for (const auto& e : expectations) {
    const auto buckets = series("a.x", e.aggregate);
    ASSERT_EQ(buckets.size(), 2u) << static_cast<int>(e.aggregate);
    EXPECT_EQ(buckets[0].startUs, 0);
    EXPECT_DOUBLE_EQ(buckets[0].value, e.first) << static_cast<int>(e.aggregate);
    EXPECT_EQ(buckets[0].count, 3);
    EXPECT_EQ(buckets[1].startUs, 200);
    EXPECT_DOUBLE_EQ(buckets[1].value, e.second) << static_cast<int>(e.aggregate);
    EXPECT_EQ(buckets[1].count, 2);
  }

  // One big bucket, and a range that cuts the data.
  auto all = series("a.x", Aggregate::kSum, 1'000'000);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_DOUBLE_EQ(all[0].value, 14.5);
  SeriesQuery q;
  q.deviceId = "s1";
  q.key = "a.x";
  q.fromUs = 40;
  q.toUs = 200;
  q.bucketUs = 100;
  q.aggregate = Aggregate::kCount;
  auto cut = store_->querySeries(q);
  ASSERT_TRUE(cut.ok());
  ASSERT_EQ(cut->size(), 1u);
  EXPECT_EQ((*cut)[0].count, 2);

  q.bucketUs = 0;
  EXPECT_FALSE(store_->querySeries(q).ok());
  q.bucketUs = -5;
  EXPECT_FALSE(store_->querySeries(q).ok());
}

TEST_P(StoreContractTest, SeriesFirstAndLastFollowServerTimeThenArrival) {
  // Arrival order differs from time order; two records share a timestamp (the one stored first
  // is the earlier), and a later non-numeric value does not make "last" go away.
  append({makeRecord("s1", 50, {{"v", std::int64_t{5}}}), makeRecord("s1", 10, {{"v", 1.5}}),
          makeRecord("s1", 90, {{"v", std::int64_t{9}}}),
          makeRecord("s1", 90, {{"v", std::int64_t{8}}})});
  append({makeRecord("s1", 95, {{"v", std::string("nine")}}),
          makeRecord("s1", 97, {{"w", std::int64_t{1}}}), makeRecord("s1", 5, {{"v", false}}),
          makeRecord("s1", 150, {{"v", std::int64_t{-7}}})});
  auto first = series("v", Aggregate::kFirst);
  ASSERT_EQ(first.size(), 2u);
  EXPECT_DOUBLE_EQ(first[0].value, 1.5);
  EXPECT_EQ(first[0].count, 4);
  EXPECT_DOUBLE_EQ(first[1].value, -7);
  auto last = series("v", Aggregate::kLast);
  ASSERT_EQ(last.size(), 2u);
  EXPECT_DOUBLE_EQ(last[0].value, 8);
  EXPECT_EQ(last[0].count, 4);
  EXPECT_DOUBLE_EQ(last[1].value, -7);
  // One bucket over everything, and keys that need quoting.
  last = series("v", Aggregate::kLast, 1000);
  ASSERT_EQ(last.size(), 1u);
  EXPECT_DOUBLE_EQ(last[0].value, -7);
  append({makeRecord("s1", 20, {{"q\"k", std::int64_t{3}}}),
          makeRecord("s1", 30, {{"q\"k", std::int64_t{4}}})});
  first = series("q\"k", Aggregate::kFirst, 1000);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_DOUBLE_EQ(first[0].value, 3);
  last = series("q\"k", Aggregate::kLast, 1000);
  ASSERT_EQ(last.size(), 1u);
  EXPECT_DOUBLE_EQ(last[0].value, 4);
  EXPECT_TRUE(series("missing", Aggregate::kFirst).empty());
}

TEST_P(StoreContractTest, SeriesEmptyRangesKeysAndDevices) {
  append({makeRecord("s1", 50, {{"v", std::int64_t{1}}, {"label", std::string("x")}})});
  EXPECT_TRUE(series("missing", Aggregate::kAvg).empty());
  EXPECT_TRUE(series("label", Aggregate::kCount).empty());  // strings never count
  EXPECT_TRUE(series("v", Aggregate::kAvg, 100, 0, "nobody").empty());
  EXPECT_TRUE(series("v", Aggregate::kAvg, 100, 51).empty());
  SeriesQuery q;
  q.deviceId = "s1";
  q.key = "v";
  q.fromUs = 50;
  q.toUs = 50;
  auto none = store_->querySeries(q);
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
}

TEST_P(StoreContractTest, SeriesBucketsAlignToMultiplesOfTheBucket) {
  constexpr std::int64_t kMinute = 60'000'000;
  const std::int64_t base = kJan2026Us + 3 * kMinute;  // a multiple of a minute
  append({makeRecord("s1", base + 59'999'999, {{"v", std::int64_t{1}}}),
          makeRecord("s1", base + kMinute, {{"v", std::int64_t{2}}}),
          makeRecord("s1", base + kMinute + 1, {{"v", std::int64_t{3}}}),
          makeRecord("s1", base + 5 * kMinute + 17, {{"v", std::int64_t{4}}})});
  auto buckets = series("v", Aggregate::kSum, kMinute, base + 30'000'000);
  ASSERT_EQ(buckets.size(), 3u);
  EXPECT_EQ(buckets[0].startUs, base);  // aligned, not starting at `from`
  EXPECT_DOUBLE_EQ(buckets[0].value, 1);
  EXPECT_EQ(buckets[1].startUs, base + kMinute);
  EXPECT_DOUBLE_EQ(buckets[1].value, 5);
  EXPECT_EQ(buckets[1].count, 2);
  EXPECT_EQ(buckets[2].startUs, base + 5 * kMinute);  // empty buckets are left out
  buckets = series("v", Aggregate::kMax, kDayUs, 0);
  ASSERT_EQ(buckets.size(), 1u);
  EXPECT_EQ(buckets[0].startUs, kJan2026Us);
  EXPECT_DOUBLE_EQ(buckets[0].value, 4);
  // Seven-minute buckets align to multiples of seven minutes since the epoch.
  buckets = series("v", Aggregate::kCount, 7 * kMinute, 0);
  ASSERT_FALSE(buckets.empty());
  std::int64_t total = 0;
  for (const Bucket& bucket : buckets) {
    EXPECT_EQ(bucket.startUs % (7 * kMinute), 0);
    total += bucket.count;
  }
  EXPECT_EQ(total, 4);
}

TEST_P(StoreContractTest, SeriesHandlesOddKeysAndNegativeTimes) {
  append({makeRecord("s1", -150, {{"we\"ird", std::int64_t{2}}, {"", 1.5}, {"a'b", 1.0}}),
          makeRecord("s1", -50, {{"we\"ird", std::int64_t{4}}, {"", 2.5}, {"a'b", 2.0}})});
  constexpr std::int64_t kFrom = -1'000'000;  // the default range starts at the epoch
  auto buckets = series("we\"ird", Aggregate::kSum, 100, kFrom);
  ASSERT_EQ(buckets.size(), 2u);
  EXPECT_EQ(buckets[0].startUs, -200);  // floor, not truncation toward zero
  EXPECT_DOUBLE_EQ(buckets[0].value, 2);
  EXPECT_EQ(buckets[1].startUs, -100);
  EXPECT_DOUBLE_EQ(buckets[1].value, 4);
  buckets = series("", Aggregate::kMax, 1000, kFrom);
  ASSERT_EQ(buckets.size(), 1u);
  EXPECT_EQ(buckets[0].startUs, -1000);
  EXPECT_DOUBLE_EQ(buckets[0].value, 2.5);
  buckets = series("a'b", Aggregate::kAvg, 1000, kFrom);
  ASSERT_EQ(buckets.size(), 1u);
  EXPECT_DOUBLE_EQ(buckets[0].value, 1.5);
}

TEST_P(StoreContractTest, DeviceSummaryTracksLatestValuesAcrossBatches) {
  append({makeRecord("b", 200, {{"t", std::int64_t{20}}, {"mode", std::string("eco")}}),
          makeRecord("a", 100, {{"on", true}}),
          makeRecord("b", 150, {{"t", std::int64_t{15}}, {"hum", 0.5}})});
  append({makeRecord("b", 300, {{"t", 21.5}, {"on", false}}), makeRecord("b", 250, {})});

  auto devices = store_->listDevices();
  ASSERT_TRUE(devices.ok()) << devices.error().message;
  ASSERT_EQ(devices->size(), 2u);
  EXPECT_EQ((*devices)[0].deviceId, "a");
  EXPECT_EQ((*devices)[0].messageCount, 1);
  EXPECT_EQ((*devices)[0].firstSeenUs, 100);
  EXPECT_EQ((*devices)[0].lastSeenUs, 100);
  const DeviceSummary& b = (*devices)[1];
  EXPECT_EQ(b.deviceId, "b");
  EXPECT_EQ(b.firstSeenUs, 150);
  EXPECT_EQ(b.lastSeenUs, 300);
  EXPECT_EQ(b.messageCount, 4);
  ASSERT_EQ(b.latest.size(), 4u);
  // Later records win, in batch order, and the type of the newest value is kept.
  EXPECT_EQ(*findField(b.latest, "t"), FieldValue(21.5));
  EXPECT_EQ(*findField(b.latest, "mode"), FieldValue(std::string("eco")));
  EXPECT_EQ(*findField(b.latest, "hum"), FieldValue(0.5));
  EXPECT_EQ(*findField(b.latest, "on"), FieldValue(false));

  // Earlier records arriving later move first-seen back and still count.
  append({makeRecord("b", 400, {{"t", std::int64_t{22}}}), makeRecord("b", 50, {})});
  auto one = store_->getDevice("b");
  ASSERT_TRUE(one.ok()) << one.error().message;
  ASSERT_TRUE(one->has_value());
  EXPECT_EQ((*one)->messageCount, 6);
  EXPECT_EQ((*one)->firstSeenUs, 50);
  EXPECT_EQ((*one)->lastSeenUs, 400);
  EXPECT_EQ(*findField((*one)->latest, "t"), FieldValue(std::int64_t{22}));
  // A batch naming fewer keys than the device has keeps the others.
  ASSERT_EQ((*one)->latest.size(), 4u);
  EXPECT_EQ(*findField((*one)->latest, "mode"), FieldValue(std::string("eco")));
  // One naming them all and more replaces them all; then fewer again keeps the rest.
  append({makeRecord("b", 500,
                     {{"t", std::int64_t{23}},
                      {"mode", std::string("sport")},
                      {"hum", 0.25},
                      {"on", true},
                      {"gear", std::int64_t{3}}})});
  append({makeRecord("b", 600, {{"hum", 0.75}})});
  one = store_->getDevice("b");
  ASSERT_TRUE(one.ok() && one->has_value());
  ASSERT_EQ((*one)->latest.size(), 5u);
  EXPECT_EQ(*findField((*one)->latest, "t"), FieldValue(std::int64_t{23}));
  EXPECT_EQ(*findField((*one)->latest, "mode"), FieldValue(std::string("sport")));
  EXPECT_EQ(*findField((*one)->latest, "hum"), FieldValue(0.75));
  EXPECT_EQ(*findField((*one)->latest, "on"), FieldValue(true));
  EXPECT_EQ(*findField((*one)->latest, "gear"), FieldValue(std::int64_t{3}));
  auto none = store_->getDevice("zzz");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

TEST_P(StoreContractTest, CountsMessagesAndReportsHealth) {
  EXPECT_EQ(count(), 0);
  EXPECT_TRUE(store_->check().ok());
  EXPECT_EQ(store_->backendName(), GetParam());
  append({makeRecord("c", 1), makeRecord("c", 2), makeRecord("d", 3)});
  append({makeRecord("e", 4)});
  EXPECT_EQ(count(), 4);
  EXPECT_TRUE(store_->check().ok());
}

TEST_P(StoreContractTest, DataSurvivesClosingAndReopening) {
  append({makeRecord("keep", 1, {{"v", std::int64_t{1}}}), makeRecord("keep", 2)});
  store_.reset();
  store_ = backend_->open();
  // The new instance has empty caches: appending must find the existing device row.
  append({makeRecord("keep", 3, {{"w", std::int64_t{2}}})});
  EXPECT_EQ(count(), 3);
  auto device = store_->getDevice("keep");
  ASSERT_TRUE(device.ok() && device->has_value());
  EXPECT_EQ((*device)->messageCount, 3);
  EXPECT_EQ((*device)->latest.size(), 2u);
  auto devices = store_->listDevices();
  ASSERT_TRUE(devices.ok());
  EXPECT_EQ(devices->size(), 1u);
  MessageQuery q;
  q.deviceId = "keep";
  const auto rows = query(q);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_LT(rows[1].id, rows[2].id);  // ids keep growing after a reopen
}

TEST_P(StoreContractTest, ReadersRunConcurrentlyWithTheWriter) {
  constexpr int kBatches = 20;
  constexpr int kPerBatch = 250;
  std::atomic<bool> done{false};
  std::atomic<int> reads{0};
  std::vector<std::string> errors;
  std::mutex errorMutex;
  auto noteError = [&](const std::string& message) {
    std::lock_guard lock(errorMutex);
    errors.push_back(message);
  };
  auto reader = [&] {
    std::int64_t lastCount = 0;
    while (!done.load()) {
      auto counted = store_->countMessages();
      if (!counted.ok()) {
        noteError(counted.error().message);
        continue;
      }
      if (*counted < lastCount) {
        noteError("count went backwards");
      }
      lastCount = *counted;
      MessageQuery q;
      q.deviceId = "c0";
      q.descending = true;
      q.limit = 50;
      if (auto rows = store_->queryMessages(q); !rows.ok()) {
        noteError(rows.error().message);
      }
      SeriesQuery s;
      s.deviceId = "c1";
      // Move-assigned: GCC 12 at -O3 warns falsely (-Wrestrict) about assigning the literal.
      s.key = std::string("v");
      s.bucketUs = 1000;
      if (auto buckets = store_->querySeries(s); !buckets.ok()) {
        noteError(buckets.error().message);
      }
      if (auto devices = store_->listDevices(); !devices.ok()) {
        noteError(devices.error().message);
      }
      ++reads;
    }
  };
  std::thread r1(reader);
  std::thread r2(reader);
  int writeErrors = 0;
  for (int batch = 0; batch < kBatches; ++batch) {
    std::vector<Record> records;
    for (int i = 0; i < kPerBatch; ++i) {
      const int n = batch * kPerBatch + i;
      std::string device = "c";
      device += std::to_string(n % 4);
      records.push_back(makeRecord(device, n, {{"v", std::int64_t{n}}}));
    }
    if (!store_->appendBatch(records).ok()) {
      ++writeErrors;
    }
  }
  done = true;
  r1.join();
  r2.join();
  EXPECT_EQ(writeErrors, 0);
  EXPECT_TRUE(errors.empty()) << (errors.empty() ? "" : errors.front());
  EXPECT_GT(reads.load(), 0);
  EXPECT_EQ(count(), kBatches * kPerBatch);
}

// --- retention ---------------------------------------------------------------------------------

TEST_P(StoreContractTest, RetentionDeletesOldMessagesAndKeepsSummariesTrue) {
  // 12,000 messages for "a" (more than one retention chunk) and 3 for "b", at ts 0..N-1.
  std::vector<Record> records;
  for (std::int64_t i = 0; i < 12'000; ++i) {
    records.push_back(makeRecord("a", i, {{"v", i}}));
  }
  for (std::int64_t i = 0; i < 3; ++i) {
    records.push_back(makeRecord("b", 5'000 + i, {{"w", i}}));
  }
  append(records);
  auto deleted = store_->deleteBefore(11'000);
  ASSERT_TRUE(deleted.ok()) << deleted.error().message;
  EXPECT_EQ(*deleted, 11'000 + 3);
  EXPECT_EQ(count(), 1'000);

  auto a = store_->getDevice("a");
  ASSERT_TRUE(a.ok() && a->has_value());
  EXPECT_EQ((*a)->messageCount, 1'000);
  EXPECT_EQ((*a)->firstSeenUs, 11'000);
  EXPECT_EQ((*a)->lastSeenUs, 11'999);
  // A device with nothing left keeps its summary (and latest values) with a zero count.
  auto b = store_->getDevice("b");
  ASSERT_TRUE(b.ok() && b->has_value());
  EXPECT_EQ((*b)->messageCount, 0);
  ASSERT_NE(findField((*b)->latest, "w"), nullptr);
  EXPECT_EQ(std::get<std::int64_t>(*findField((*b)->latest, "w")), 2);

  MessageQuery q;
  q.deviceId = "a";
  q.limit = 1;
  EXPECT_EQ(query(q).at(0).record.serverTimeUs, 11'000);
  // Again: nothing more to delete; new data after retention is unaffected.
  deleted = store_->deleteBefore(11'000);
  ASSERT_TRUE(deleted.ok()) << deleted.error().message;
  EXPECT_EQ(*deleted, 0);
  append({makeRecord("a", 20'000, {{"v", std::int64_t{1}}})});
  EXPECT_EQ(count(), 1'001);
}

TEST_P(StoreContractTest, RetentionAcrossDaysKeepsCountsAndFirstSeenExact) {
  // Six days, two devices; "late" starts on day 3. The cutoff is in the middle of day 4, so
  // whole days go at once (partitions, where the backend has them) and part of day 4 row by row.
  std::vector<Record> records;
  for (std::int64_t day = 0; day < 6; ++day) {
    for (std::int64_t i = 0; i < 10; ++i) {
      const std::int64_t ts = kJan2026Us + day * kDayUs + i * (kDayUs / 10);
      records.push_back(makeRecord("early", ts, {{"v", day}}));
      if (day >= 3) {
        records.push_back(makeRecord("late", ts + 1, {{"v", day}}));
      }
    }
  }
  append(records);
  ASSERT_EQ(count(), 90);
  const std::int64_t cutoff = kJan2026Us + 4 * kDayUs + kDayUs / 2;  // day 4, after i = 4
  auto deleted = store_->deleteBefore(cutoff);
  ASSERT_TRUE(deleted.ok()) << deleted.error().message;
  EXPECT_EQ(*deleted, 45 + 15);
  EXPECT_EQ(count(), 30);
  auto early = store_->getDevice("early");
  ASSERT_TRUE(early.ok() && early->has_value());
  EXPECT_EQ((*early)->messageCount, 15);
  EXPECT_EQ((*early)->firstSeenUs, cutoff);
  auto late = store_->getDevice("late");
  ASSERT_TRUE(late.ok() && late->has_value());
  EXPECT_EQ((*late)->messageCount, 15);
  EXPECT_EQ((*late)->firstSeenUs, cutoff + 1);
  MessageQuery q;
  q.deviceId = "early";
  q.fromUs = std::numeric_limits<std::int64_t>::min();
  q.limit = 1000;
  const auto rows = query(q);
  ASSERT_EQ(rows.size(), 15u);
  EXPECT_EQ(rows.front().record.serverTimeUs, cutoff);

  // Appending into an expired day again works (its partition is made anew where needed), and
  // the next run removes it again.
  append({makeRecord("early", kJan2026Us + kDayUs, {{"v", std::int64_t{9}}})});
  EXPECT_EQ(count(), 31);
  early = store_->getDevice("early");
  ASSERT_TRUE(early.ok() && early->has_value());
  EXPECT_EQ((*early)->firstSeenUs, kJan2026Us + kDayUs);
  deleted = store_->deleteBefore(cutoff);
  ASSERT_TRUE(deleted.ok()) << deleted.error().message;
  EXPECT_EQ(*deleted, 1);
  early = store_->getDevice("early");
  ASSERT_TRUE(early.ok() && early->has_value());
  EXPECT_EQ((*early)->messageCount, 15);
  EXPECT_EQ((*early)->firstSeenUs, cutoff);
  EXPECT_EQ(count(), 30);
}

TEST_P(StoreContractTest, RetentionRunsWhileTheWriterAppends) {
  std::vector<Record> old;
  const std::vector<std::string> devices{"d0", "d1", "d2", "d3", "d4", "d5", "d6"};
  for (std::int64_t i = 0; i < 20'000; ++i) {
    old.push_back(makeRecord(devices[static_cast<std::size_t>(i % 7)], i));
  }
  append(old);
  std::atomic<bool> failed{false};
  std::thread retention([&] {
    auto deleted = store_->deleteBefore(20'000);
    if (!deleted.ok() || *deleted != 20'000) failed = true;
  });
  for (std::int64_t batch = 0; batch < 50; ++batch) {
    std::vector<Record> fresh;
    for (std::int64_t i = 0; i < 100; ++i) {
      fresh.push_back(makeRecord("d1", 100'000 + batch * 100 + i));
    }
    append(fresh);
  }
  retention.join();
  EXPECT_FALSE(failed.load());
  EXPECT_EQ(count(), 5'000);
  auto d1 = store_->getDevice("d1");
  ASSERT_TRUE(d1.ok() && d1->has_value());
  EXPECT_EQ((*d1)->messageCount, 5'000);
  EXPECT_EQ((*d1)->firstSeenUs, 100'000);
}

// A device whose messages all expired starts its first-seen time afresh with its next message,
// whichever of retention and the writer gets there first.
TEST_P(StoreContractTest, DeviceEmptiedByRetentionTakesTheNextFirstSeen) {
  append({makeRecord("gone", 10), makeRecord("gone", 20)});
  auto deleted = store_->deleteBefore(1'000);
  ASSERT_TRUE(deleted.ok()) << deleted.error().message;
  EXPECT_EQ(*deleted, 2);
  append({makeRecord("gone", 5'000), makeRecord("gone", 6'000)});
  auto device = store_->getDevice("gone");
  ASSERT_TRUE(device.ok() && device->has_value());
  EXPECT_EQ((*device)->messageCount, 2);
  EXPECT_EQ((*device)->firstSeenUs, 5'000);
  EXPECT_EQ((*device)->lastSeenUs, 6'000);
}

TEST_P(StoreContractTest, PerKeyRetentionDropsOnlyThatKeyFromOldMessages) {
  std::vector<Record> records;
  for (std::int64_t i = 0; i < 10; ++i) {
    records.push_back(makeRecord(
        "k", i * 100,
        {{"rpm", i}, {"temp", 20.5 + static_cast<double>(i)}, {"name", std::string("x\"y")}}));
  }
  append(records);
  auto changed = store_->dropKeyBefore("rpm", 500);
  ASSERT_TRUE(changed.ok()) << changed.error().message;
  EXPECT_EQ(*changed, 5);
  MessageQuery q;
  q.deviceId = "k";
  const auto all = query(q);
  ASSERT_EQ(all.size(), 10u);
  for (const auto& stored : all) {
    const bool old = stored.record.serverTimeUs < 500;
    EXPECT_EQ(findField(stored.record.fields, "rpm") == nullptr, old) << stored.record.serverTimeUs;
    // The other fields survive bit-exact, types and order included.
    ASSERT_EQ(stored.record.fields.size(), old ? 2u : 3u);
    EXPECT_EQ(stored.record.fields[old ? 0 : 1].key, "temp");
    ASSERT_NE(findField(stored.record.fields, "temp"), nullptr);
    EXPECT_EQ(std::get<double>(*findField(stored.record.fields, "temp")),
              20.5 + static_cast<double>(stored.record.serverTimeUs / 100));
    EXPECT_EQ(std::get<std::string>(*findField(stored.record.fields, "name")), "x\"y");
  }
  // The series of the dropped key starts at the cutoff; the latest value is untouched.
  SeriesQuery sq;
  sq.deviceId = "k";
  sq.key = "rpm";
  sq.bucketUs = 1000;
  sq.aggregate = Aggregate::kCount;
  auto buckets = store_->querySeries(sq);
  ASSERT_TRUE(buckets.ok() && buckets->size() == 1u);
  EXPECT_EQ(buckets->at(0).value, 5.0);
  auto device = store_->getDevice("k");
  ASSERT_TRUE(device.ok() && device->has_value());
  EXPECT_EQ(std::get<std::int64_t>(*findField((*device)->latest, "rpm")), 9);
  // A later run only reads what is new since the last cutoff, and the result is the same.
  EXPECT_EQ(*store_->dropKeyBefore("rpm", 500), 0);
  EXPECT_EQ(*store_->dropKeyBefore("rpm", 700), 2);
  // Other keys have their own progress.
  EXPECT_EQ(*store_->dropKeyBefore("temp", 300), 3);
  // The progress survives a reopen.
  store_.reset();
  store_ = backend_->open();
  EXPECT_EQ(*store_->dropKeyBefore("rpm", 700), 0);
  EXPECT_EQ(*store_->dropKeyBefore("rpm", 800), 1);
}

// --- device tags, attributes and fleet queries -------------------------------------------------

DeviceUpdate tagsUpdate(std::map<std::string, std::string> tags) {
  DeviceUpdate update;
  update.tags = std::move(tags);
  return update;
}

TEST_P(StoreContractTest, DeviceNameAndTypeAreStoredAndKept) {
  DeviceUpdate update;
  update.name = "Kühlwagen 7";
  update.type = "reefer";
  auto created = store_->updateDevice("n1", update);
  ASSERT_TRUE(created.ok()) << created.error().message;
  EXPECT_EQ(created->name, "Kühlwagen 7");
  EXPECT_EQ(created->type, "reefer");
  EXPECT_TRUE(created->neverSeen());
  // Messages and other updates leave them; a device that only sends has none.
  append({makeRecord("n1", 100, {}), makeRecord("n2", 200, {})});
  ASSERT_TRUE(store_->updateDevice("n1", tagsUpdate({{"fleet", "east"}})).ok());
  auto n1 = store_->getDevice("n1");
  ASSERT_TRUE(n1.ok() && n1->has_value());
  EXPECT_EQ((*n1)->name, "Kühlwagen 7");
  EXPECT_EQ((*n1)->type, "reefer");
  EXPECT_EQ((*n1)->messageCount, 1);
  DeviceUpdate rename;
  rename.name = "";
  auto renamed = store_->updateDevice("n1", rename);
  ASSERT_TRUE(renamed.ok()) << renamed.error().message;
  EXPECT_EQ(renamed->name, "");
  EXPECT_EQ(renamed->type, "reefer");
  // Every read path carries them.
  auto all = store_->listDevices();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 2u);
  EXPECT_EQ((*all)[0].type, "reefer");
  EXPECT_EQ((*all)[1].deviceId, "n2");
  EXPECT_EQ((*all)[1].name, "");
  EXPECT_EQ((*all)[1].type, "");
  auto tagged = store_->listDevicesWithTag("fleet", "east");
  ASSERT_TRUE(tagged.ok());
  ASSERT_EQ(tagged->size(), 1u);
  EXPECT_EQ((*tagged)[0].type, "reefer");
}

TEST_P(StoreContractTest, DeviceTagsAndAttributesAreStoredAndReplaced) {
  // A device registered before it sends: no messages, "never seen", not counted.
  DeviceUpdate update = tagsUpdate({{"fleet", "east"}, {"model", "F-150"}, {"ü", "a:b"}});
  update.attributes = R"({"vin":"1FT","axles":2,"load":{"max":7.5},"ok":[true,null]})";
  auto created = store_->updateDevice("t1", update);
  ASSERT_TRUE(created.ok()) << created.error().message;
  EXPECT_EQ(created->deviceId, "t1");
  EXPECT_EQ(created->messageCount, 0);
  EXPECT_TRUE(created->neverSeen());
  EXPECT_TRUE(created->latest.empty());
  const std::map<std::string, std::string> tags{
      {"fleet", "east"}, {"model", "F-150"}, {"ü", "a:b"}};
  EXPECT_EQ(created->tags, tags);
  EXPECT_EQ(created->attributes, *update.attributes);
  EXPECT_EQ(count(), 0);

  // Its first messages give it real first/last seen times; tags and attributes stay.
  append({makeRecord("t1", 500, {{"v", std::int64_t{1}}}), makeRecord("t1", 300, {}),
          makeRecord("t2", 100, {})});
  auto t1 = store_->getDevice("t1");
  ASSERT_TRUE(t1.ok() && t1->has_value());
  EXPECT_FALSE((*t1)->neverSeen());
  EXPECT_EQ((*t1)->firstSeenUs, 300);
  EXPECT_EQ((*t1)->lastSeenUs, 500);
  EXPECT_EQ((*t1)->messageCount, 2);
  EXPECT_EQ((*t1)->tags, tags);
  EXPECT_EQ((*t1)->attributes, *update.attributes);
  EXPECT_EQ(count(), 3);

  // A member left out is kept; tags are replaced as a whole.
  DeviceUpdate attributesOnly;
  attributesOnly.attributes = "{}";
  auto updated = store_->updateDevice("t1", attributesOnly);
  ASSERT_TRUE(updated.ok()) << updated.error().message;
  EXPECT_EQ(updated->tags, tags);
  EXPECT_EQ(updated->attributes, "{}");
  EXPECT_EQ(updated->messageCount, 2);
  updated = store_->updateDevice("t1", tagsUpdate({{"fleet", "west"}}));
  ASSERT_TRUE(updated.ok()) << updated.error().message;
  EXPECT_EQ(updated->tags, (std::map<std::string, std::string>{{"fleet", "west"}}));
  EXPECT_EQ(updated->attributes, "{}");
  EXPECT_EQ(updated->lastSeenUs, 500);
  ASSERT_TRUE(store_->updateDevice("t2", tagsUpdate({{"fleet", "east"}})).ok());
  ASSERT_TRUE(store_->updateDevice("t3", tagsUpdate({{"fleet", "east"}, {"x", ""}})).ok());

  // Attributes must be a JSON object; a failed update changes nothing.
  for (const char* bad : {"{", "[1,2]", "3", "\"text\"", ""}) {
    DeviceUpdate wrong = tagsUpdate({{"fleet", "north"}});
    wrong.attributes = bad;
    EXPECT_FALSE(store_->updateDevice("t2", wrong).ok()) << bad;
    EXPECT_FALSE(store_->updateDevice("t9", wrong).ok()) << bad;
  }
  auto t2 = store_->getDevice("t2");
  ASSERT_TRUE(t2.ok() && t2->has_value());
  EXPECT_EQ((*t2)->tags, (std::map<std::string, std::string>{{"fleet", "east"}}));
  auto t9 = store_->getDevice("t9");
  ASSERT_TRUE(t9.ok());
  EXPECT_FALSE(t9->has_value());

  // Filtering by tag, in device id order, and every device in the list.
  auto east = store_->listDevicesWithTag("fleet", "east");
  ASSERT_TRUE(east.ok()) << east.error().message;
  ASSERT_EQ(east->size(), 2u);
  EXPECT_EQ((*east)[0].deviceId, "t2");
  EXPECT_EQ((*east)[0].messageCount, 1);
  EXPECT_EQ((*east)[1].deviceId, "t3");
  EXPECT_TRUE((*east)[1].neverSeen());
  EXPECT_EQ((*east)[1].tags.at("x"), "");
  auto empty = store_->listDevicesWithTag("x", "");
  ASSERT_TRUE(empty.ok());
  ASSERT_EQ(empty->size(), 1u);
  EXPECT_EQ(empty->front().deviceId, "t3");
  auto none = store_->listDevicesWithTag("fleet", "EAST");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  auto all = store_->listDevices();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[2].deviceId, "t3");
  EXPECT_EQ(count(), 3);

  // Retention leaves registered devices alone; everything survives a reopen.
  auto deleted = store_->deleteBefore(400);
  ASSERT_TRUE(deleted.ok()) << deleted.error().message;
  EXPECT_EQ(*deleted, 2);
  store_.reset();
  store_ = backend_->open();
  auto t3 = store_->getDevice("t3");
  ASSERT_TRUE(t3.ok() && t3->has_value());
  EXPECT_TRUE((*t3)->neverSeen());
  EXPECT_EQ((*t3)->tags.size(), 2u);
  t1 = store_->getDevice("t1");
  ASSERT_TRUE(t1.ok() && t1->has_value());
  EXPECT_EQ((*t1)->messageCount, 1);
  EXPECT_EQ((*t1)->tags.at("fleet"), "west");
  EXPECT_EQ(count(), 1);
}

// A small fleet: a and b in fleet east, c in west, d untagged, e registered in east but silent.
class FleetTest : public StoreContractTest {
 protected:
  static constexpr std::int64_t kDay0 = kJan2026Us;
  static constexpr std::int64_t kDay1 = kJan2026Us + kDayUs;

  void SetUp() override {
    StoreContractTest::SetUp();
    for (const auto& [device, fleet, model] :
         std::vector<std::tuple<std::string, std::string, std::string>>{
             {"a", "east", "x"}, {"b", "east", "y"}, {"c", "west", "x"}, {"e", "east", "y"}}) {
      auto done = store_->updateDevice(device, tagsUpdate({{"fleet", fleet}, {"model", model}}));
      ASSERT_TRUE(done.ok()) << done.error().message;
    }
    append({makeRecord("a", kDay0 + 10, {{"speed", std::int64_t{0}}, {"fuel", 0.2}}),
            makeRecord("b", kDay0 + 10, {{"speed", std::int64_t{10}}, {"fuel", std::int64_t{1}}}),
            makeRecord("c", kDay0 + 15,
                       {{"speed", std::string("fast")}, {"fuel", std::string("low")}}),
            makeRecord("d", kDay0 - 100, {{"speed", std::int64_t{0}}, {"fuel", 0.01}}),
            makeRecord("f", kDay0 + 12, {})});
    append({makeRecord("a", kDay0 + 20,
                       {{"speed", std::int64_t{1}}, {"lat", 1.5}, {"lon", 2.0}, {"fuel", 0.05}}),
            makeRecord("b", kDay0 + 30,
                       {{"speed", std::int64_t{20}}, {"lat", std::int64_t{3}}, {"lon", -4.25}}),
            makeRecord("a", kDay1 + 5, {{"speed", std::int64_t{4}}}),
            makeRecord("c", kDay1 + 7, {{"speed", std::int64_t{8}}})});
  }

  static DeviceGroup group(const std::string& key = {}, const std::string& value = {}) {
    return DeviceGroup{key, value};
  }

  static std::vector<std::string> ids(const std::vector<FleetDevice>& devices) {
    std::vector<std::string> out;
    for (const FleetDevice& device : devices) out.push_back(device.deviceId);
    return out;
  }

  std::vector<FleetDevice> latest(const DeviceGroup& g, std::vector<std::string> keys) {
    auto result = store_->fleetLatest(FleetLatestQuery{g, std::move(keys)});
    EXPECT_TRUE(result.ok()) << (result.ok() ? "" : result.error().message);
    return result.ok() ? *result : std::vector<FleetDevice>{};
  }
  std::vector<FleetDevice> threshold(const DeviceGroup& g, const std::string& key, double value,
                                     bool below) {
    auto result = store_->fleetThreshold(FleetThresholdQuery{g, key, value, below});
    EXPECT_TRUE(result.ok()) << (result.ok() ? "" : result.error().message);
    return result.ok() ? *result : std::vector<FleetDevice>{};
  }
  std::vector<FleetDevice> window(const DeviceGroup& g, std::int64_t from, std::int64_t to,
                                  double value, bool below, const std::string& key = "speed") {
    auto result = store_->fleetWindowAverage(FleetWindowQuery{g, key, from, to, value, below});
    EXPECT_TRUE(result.ok()) << (result.ok() ? "" : result.error().message);
    return result.ok() ? *result : std::vector<FleetDevice>{};
  }
  std::vector<FleetDailyRow> daily(const DeviceGroup& g, Aggregate aggregate, std::int64_t from,
                                   const std::string& by, const std::string& key = "speed") {
    auto result = store_->fleetDaily(FleetDailyQuery{g, key, aggregate, from, kDay1 + kDayUs, by});
    EXPECT_TRUE(result.ok()) << (result.ok() ? "" : result.error().message);
    return result.ok() ? *result : std::vector<FleetDailyRow>{};
  }
};

TEST_P(FleetTest, LatestValuesOfAGroup) {
  // Devices without any of the keys (c, d, f, the silent e) are left out.
  auto located = latest(group(), {"lat", "lon"});
  ASSERT_EQ(ids(located), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(located[0].lastSeenUs, kDay1 + 5);
  ASSERT_EQ(located[0].values.size(), 2u);
  EXPECT_EQ(*findField(located[0].values, "lat"), FieldValue(1.5));
  EXPECT_EQ(*findField(located[0].values, "lon"), FieldValue(2.0));
  EXPECT_EQ(*findField(located[1].values, "lat"), FieldValue(std::int64_t{3}));  // type kept
  EXPECT_EQ(*findField(located[1].values, "lon"), FieldValue(-4.25));

  // Every key; only the group's devices.
  auto east = latest(group("fleet", "east"), {});
  ASSERT_EQ(ids(east), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(east[0].values.size(), 4u);
  EXPECT_EQ(*findField(east[0].values, "speed"), FieldValue(std::int64_t{4}));
  EXPECT_EQ(*findField(east[0].values, "fuel"), FieldValue(0.05));
  EXPECT_EQ(east[1].values.size(), 4u);
  auto all = latest(group(), {});
  EXPECT_EQ(ids(all), (std::vector<std::string>{"a", "b", "c", "d"}));
  // Non-numeric latest values are values too.
  auto fuel = latest(group("fleet", "west"), {"fuel", "nothing"});
  ASSERT_EQ(ids(fuel), (std::vector<std::string>{"c"}));
  EXPECT_EQ(*findField(fuel[0].values, "fuel"), FieldValue(std::string("low")));
  EXPECT_TRUE(latest(group("fleet", "west"), {"lat"}).empty());
  EXPECT_TRUE(latest(group("fleet", "nobody"), {}).empty());
  EXPECT_TRUE(latest(group("nokey", "east"), {"lat"}).empty());

  // Many keys and repeated keys answer alike (PostgreSQL reads a few keys one by one and many by
  // expanding the object).
  const std::vector<std::string> many{"lat", "k1", "k2", "k3",  "k4",
                                      "k5",  "k6", "k7", "lon", "lat"};
  for (const auto& keys : {many, std::vector<std::string>{"lon", "lat", "lon"}}) {
    auto found = latest(group(), keys);
    ASSERT_EQ(ids(found), (std::vector<std::string>{"a", "b"}));
    ASSERT_EQ(found[1].values.size(), 2u);
    EXPECT_EQ(*findField(found[1].values, "lat"), FieldValue(std::int64_t{3}));
    EXPECT_EQ(*findField(found[1].values, "lon"), FieldValue(-4.25));
  }
  // Keys that JSON escapes.
  const std::string odd = "q\"uote\\ \n";
  append({makeRecord("d", kDay1 + 9, {{odd, std::string("x\"y")}})});
  auto escaped = latest(group(), {odd, "lat"});
  ASSERT_EQ(ids(escaped), (std::vector<std::string>{"a", "b", "d"}));
  ASSERT_EQ(escaped[2].values.size(), 1u);
  EXPECT_EQ(*findField(escaped[2].values, odd), FieldValue(std::string("x\"y")));
}

TEST_P(FleetTest, LatestValueBelowOrAboveAThreshold) {
  // c's latest fuel is a string and e has none: neither qualifies either way.
  auto low = threshold(group(), "fuel", 0.1, true);
  ASSERT_EQ(ids(low), (std::vector<std::string>{"a", "d"}));
  EXPECT_DOUBLE_EQ(low[0].value, 0.05);
  EXPECT_EQ(low[0].count, 1);
  EXPECT_EQ(low[0].lastSeenUs, kDay1 + 5);
  EXPECT_DOUBLE_EQ(low[1].value, 0.01);
  EXPECT_EQ(ids(threshold(group("fleet", "east"), "fuel", 0.1, true)),
            (std::vector<std::string>{"a"}));
  auto high = threshold(group(), "fuel", 0.5, false);
  ASSERT_EQ(ids(high), (std::vector<std::string>{"b"}));
  EXPECT_DOUBLE_EQ(high[0].value, 1.0);  // an integer value
  EXPECT_EQ(ids(threshold(group(), "fuel", 100, true)), (std::vector<std::string>{"a", "b", "d"}));
  // Strict comparisons.
  EXPECT_TRUE(threshold(group(), "fuel", 1, false).empty());
  EXPECT_EQ(ids(threshold(group(), "fuel", 0.05, true)), (std::vector<std::string>{"d"}));
  EXPECT_TRUE(threshold(group(), "missing", 1e300, true).empty());
  EXPECT_TRUE(threshold(group("fleet", "nobody"), "fuel", 100, true).empty());
  // A key SQLite cannot put in a JSON path.
  append({makeRecord("q", kDay0, {{"odd\"key", -3.5}})});
  auto odd = threshold(group(), "odd\"key", 0, true);
  ASSERT_EQ(ids(odd), (std::vector<std::string>{"q"}));
  EXPECT_DOUBLE_EQ(odd[0].value, -3.5);
}

TEST_P(FleetTest, AverageOverAWindow) {
  // In [day0, day0 + 100): a 0, 1 (avg 0.5), b 10, 20 (avg 15), c only a string, d before.
  auto stationary = window(group(), kDay0, kDay0 + 100, 1, true);
  ASSERT_EQ(ids(stationary), (std::vector<std::string>{"a"}));
  EXPECT_DOUBLE_EQ(stationary[0].value, 0.5);
  EXPECT_EQ(stationary[0].count, 2);
  EXPECT_EQ(stationary[0].lastSeenUs, kDay1 + 5);
  auto moving = window(group(), kDay0, kDay0 + 100, 5, false);
  ASSERT_EQ(ids(moving), (std::vector<std::string>{"b"}));
  EXPECT_DOUBLE_EQ(moving[0].value, 15);
  EXPECT_EQ(moving[0].count, 2);
  // From inclusive, to exclusive.
  auto edge = window(group(), kDay0 + 10, kDay0 + 20, 100, true);
  ASSERT_EQ(ids(edge), (std::vector<std::string>{"a", "b"}));
  EXPECT_DOUBLE_EQ(edge[0].value, 0);
  EXPECT_DOUBLE_EQ(edge[1].value, 10);
  EXPECT_EQ(edge[1].count, 1);
  // A group over two days: a has 0, 1, 4.
  auto east = window(group("fleet", "east"), kDay0, kDay1 + kDayUs, 100, true);
  ASSERT_EQ(ids(east), (std::vector<std::string>{"a", "b"}));
  EXPECT_DOUBLE_EQ(east[0].value, 5.0 / 3);
  EXPECT_EQ(east[0].count, 3);
  auto west = window(group("fleet", "west"), kDay0, kDay1 + kDayUs, 100, true);
  ASSERT_EQ(ids(west), (std::vector<std::string>{"c"}));
  EXPECT_DOUBLE_EQ(west[0].value, 8);  // the string does not count
  EXPECT_EQ(west[0].count, 1);
  EXPECT_TRUE(window(group(), kDay0, kDay0 + 100, 1, true, "missing").empty());
  EXPECT_TRUE(window(group(), kDay0 + 100, kDay0 + 200, 1e300, true).empty());
  EXPECT_TRUE(window(group("fleet", "nobody"), kDay0, kDay1 + kDayUs, 100, true).empty());
}

TEST_P(FleetTest, DailyAggregatesPerGroup) {
  // Day 0: a 0, 1; b 10, 20 (c's string does not count). Day 1: a 4, c 8.
  auto fleet = daily(group(), Aggregate::kAvg, kDay0, "");
  ASSERT_EQ(fleet.size(), 2u);
  EXPECT_EQ(fleet[0].dayUs, kDay0);
  EXPECT_FALSE(fleet[0].group.has_value());
  EXPECT_DOUBLE_EQ(fleet[0].value, 31.0 / 4);
  EXPECT_EQ(fleet[0].count, 4);
  EXPECT_EQ(fleet[1].dayUs, kDay1);
  EXPECT_DOUBLE_EQ(fleet[1].value, 6);
  EXPECT_EQ(fleet[1].count, 2);

  // Per model, from the day before (d, untagged, forms the no-group row, sorted last).
  auto models = daily(group(), Aggregate::kSum, kDay0 - kDayUs, "model");
  ASSERT_EQ(models.size(), 4u);
  EXPECT_EQ(models[0].dayUs, kDay0 - kDayUs);
  EXPECT_FALSE(models[0].group.has_value());
  EXPECT_DOUBLE_EQ(models[0].value, 0);
  EXPECT_EQ(models[0].count, 1);
  EXPECT_EQ(models[1].dayUs, kDay0);
  EXPECT_EQ(models[1].group, std::optional<std::string>("x"));
  EXPECT_DOUBLE_EQ(models[1].value, 1);
  EXPECT_EQ(models[2].group, std::optional<std::string>("y"));
  EXPECT_DOUBLE_EQ(models[2].value, 30);
  EXPECT_EQ(models[3].dayUs, kDay1);
  EXPECT_EQ(models[3].group, std::optional<std::string>("x"));
  EXPECT_DOUBLE_EQ(models[3].value, 12);
  EXPECT_EQ(models[3].count, 2);

  auto east = daily(group("fleet", "east"), Aggregate::kCount, kDay0, "fleet");
  ASSERT_EQ(east.size(), 2u);
  EXPECT_EQ(east[0].group, std::optional<std::string>("east"));
  EXPECT_DOUBLE_EQ(east[0].value, 4);
  EXPECT_DOUBLE_EQ(east[1].value, 1);
  auto maxima = daily(group("model", "x"), Aggregate::kMax, kDay0, "");
  ASSERT_EQ(maxima.size(), 2u);
  EXPECT_DOUBLE_EQ(maxima[0].value, 1);
  EXPECT_DOUBLE_EQ(maxima[1].value, 8);
  auto minima = daily(group(), Aggregate::kMin, kDay0, "");
  ASSERT_EQ(minima.size(), 2u);
  EXPECT_DOUBLE_EQ(minima[1].value, 4);

  EXPECT_TRUE(daily(group("fleet", "nobody"), Aggregate::kAvg, kDay0, "").empty());
  EXPECT_TRUE(daily(group(), Aggregate::kAvg, kDay0, "", "fuel").size() == 1u);
  EXPECT_TRUE(daily(group(), Aggregate::kAvg, kDay0, "", "missing").empty());
  EXPECT_FALSE(
      store_->fleetDaily(FleetDailyQuery{group(), "speed", Aggregate::kFirst, kDay0, kDay1, ""})
          .ok());
}

INSTANTIATE_TEST_SUITE_P(contract, FleetTest, ::testing::Values("sqlite", "postgres"),
                         [](const ::testing::TestParamInfo<std::string>& param) {
                           return param.param;
                         });

// The "contract" prefix lets `ctest -R contract` pick the whole suite.
// --- rollups -------------------------------------------------------------------------------------

// Raw rows against rollups: every aggregate, buckets from 1 min to 1 d (and 90 s, which
// rollups cannot serve), aligned and unaligned ranges, two keys; bucket for bucket the same
// start, count and value. Values are multiples of 1/4, so every sum is exact in any order.
void expectRollupsMatchRaw(Store& store, const std::string& device, std::int64_t t0,
                           const std::string& when) {
  const Aggregate aggregates[] = {Aggregate::kAvg, Aggregate::kMin,   Aggregate::kMax,
                                  Aggregate::kSum, Aggregate::kCount, Aggregate::kFirst,
                                  Aggregate::kLast};
  const std::int64_t buckets[] = {kMinuteUs, 90 * kSecondUs, 5 * kMinuteUs, kHourUs,
                                  86'400'000'000};
  const std::pair<std::int64_t, std::int64_t> ranges[] = {
      {t0 - kHourUs, t0 + 5 * kHourUs},
      {kJan2026Us + kHourUs, kJan2026Us + 3 * kHourUs},
      {t0 + 17 * kMinuteUs + 3 * kSecondUs, t0 + 2 * kHourUs + kSecondUs}};
  for (const std::string key : {"v", "w"}) {
    for (const Aggregate aggregate : aggregates) {
      for (const std::int64_t bucket : buckets) {
        for (const auto& [from, to] : ranges) {
          SeriesQuery q;
          q.deviceId = device;
          q.key = key;
          q.fromUs = from;
          q.toUs = to;
          q.bucketUs = bucket;
          q.aggregate = aggregate;
          q.useRollups = false;
          auto raw = store.querySeries(q);
          q.useRollups = true;
          auto rolled = store.querySeries(q);
          ASSERT_TRUE(raw.ok() && rolled.ok()) << when;
          const std::string what = when + ": " + device + " " + key + " agg " +
                                   std::to_string(static_cast<int>(aggregate)) + " bucket " +
                                   std::to_string(bucket) + " from " + std::to_string(from);
          ASSERT_EQ(raw->size(), rolled->size()) << what;
          for (std::size_t i = 0; i < raw->size(); ++i) {
            ASSERT_EQ((*raw)[i].startUs, (*rolled)[i].startUs) << what;
            ASSERT_EQ((*raw)[i].count, (*rolled)[i].count) << what;
            ASSERT_EQ((*raw)[i].value, (*rolled)[i].value) << what << " bucket " << i;
          }
        }
      }
    }
  }
}

// Three hours of readings every 7 s, not minute-aligned, with equal timestamps now and then
// (first/last then go by store id), plus values that are not numbers.
std::vector<Record> rollupReadings(const std::string& device, std::int64_t t0, int n,
                                   int offset = 0) {
  std::vector<Record> records;
  for (int i = 0; i < n; ++i) {
    const std::int64_t ts = t0 + static_cast<std::int64_t>(i) * 7 * kSecondUs;
    const int k = i + offset;
    records.push_back(makeRecord(device, ts,
                                 {{"v", static_cast<double>(k % 37) * 0.25 - 3},
                                  {"w", std::int64_t{k % 11}},
                                  {"s", std::string("x")},
                                  {"b", k % 2 == 0}}));
    if (i % 50 == 0) {
      records.push_back(makeRecord(device, ts, {{"v", static_cast<double>(k % 5) + 0.5}}));
    }
  }
  return records;
}

TEST_P(StoreContractTest, RollupsAnswerExactlyLikeRawRows) {
  const std::int64_t t0 = kJan2026Us + 13 * kMinuteUs + 7 * kSecondUs;
  const auto readings = rollupReadings("r1", t0, 1600);
  for (std::size_t i = 0; i < readings.size(); i += 100) {
    append(std::vector<Record>(
        readings.begin() + static_cast<std::ptrdiff_t>(i),
        readings.begin() + static_cast<std::ptrdiff_t>(std::min(readings.size(), i + 100))));
  }
  append(rollupReadings("r2", t0 + 5 * kMinuteUs, 300, 7));
  expectRollupsMatchRaw(*store_, "r1", t0, "before any rollup run");

  auto run = store_->rollup(t0 + 2 * kHourUs);
  ASSERT_TRUE(run.ok()) << run.error().message;
  EXPECT_EQ(run->watermarkUs, (t0 + 2 * kHourUs) / kMinuteUs * kMinuteUs);
  EXPECT_GT(run->minutes, 200);
  EXPECT_EQ(run->dirtyMinutes, 0);
  expectRollupsMatchRaw(*store_, "r1", t0, "rolled up 2 h");
  expectRollupsMatchRaw(*store_, "r2", t0, "rolled up 2 h");

  // Late data into minutes already rolled up (a replayed spool): another value in a known
  // minute, an earlier one than all, a new key, a new device.
  append({makeRecord("r1", t0 + 10 * kMinuteUs + 1, {{"v", 100.0}, {"w", std::int64_t{-5}}}),
          makeRecord("r1", t0 - 3 * kMinuteUs, {{"v", -100.0}}),
          makeRecord("r1", t0 + 61 * kMinuteUs, {{"v", 0.25}, {"new", 1.0}}),
          makeRecord("r3", t0 + 30 * kMinuteUs, {{"v", 2.0}})});
  expectRollupsMatchRaw(*store_, "r1", t0, "late data, not re-rolled yet");
  expectRollupsMatchRaw(*store_, "r3", t0, "late data, not re-rolled yet");

  run = store_->rollup(t0 + 3 * kHourUs);
  ASSERT_TRUE(run.ok()) << run.error().message;
  EXPECT_EQ(run->dirtyMinutes, 4);
  expectRollupsMatchRaw(*store_, "r1", t0, "late data re-rolled");
  expectRollupsMatchRaw(*store_, "r3", t0, "late data re-rolled");
  run = store_->rollup(t0 + 3 * kHourUs);  // nothing new: nothing to do
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->minutes, 0);
  EXPECT_EQ(run->dirtyMinutes, 0);

  // Retention: the unit holding the cutoff is partly gone, so it comes from raw rows; whole
  // units before it are gone with their messages. Per-key retention likewise for one key.
  ASSERT_TRUE(store_->deleteBefore(t0 + 20 * kMinuteUs + 30 * kSecondUs).ok());
  expectRollupsMatchRaw(*store_, "r1", t0, "after retention");
  ASSERT_TRUE(store_->dropKeyBefore("w", t0 + kHourUs + 10 * kMinuteUs + kSecondUs).ok());
  expectRollupsMatchRaw(*store_, "r1", t0, "after per-key retention");
  run = store_->rollup(t0 + 4 * kHourUs);
  ASSERT_TRUE(run.ok());
  expectRollupsMatchRaw(*store_, "r1", t0, "rolled up after retention");
}

// The rollups are really what answers: raw rows deleted behind the store's back (no dirty
// mark) disappear from raw answers but not from rolled-up ones.
TEST_P(StoreContractTest, RolledUpRangesAreAnsweredFromRollups) {
  const std::int64_t t0 = kJan2026Us;
  append(rollupReadings("r1", t0, 1000));
  ASSERT_TRUE(store_->rollup(t0 + 2 * kHourUs).ok());
  expectHourAnsweredFromRollups("r1", "v", t0, t0 + 10 * kMinuteUs, t0 + 20 * kMinuteUs);
  // Minute buckets come from minute rollups.
  SeriesQuery q;
  q.deviceId = "r1";
  q.key = "v";
  q.fromUs = t0;
  q.toUs = t0 + kHourUs;
  q.bucketUs = kMinuteUs;
  q.aggregate = Aggregate::kCount;
  auto minutes = store_->querySeries(q);
  ASSERT_TRUE(minutes.ok());
  EXPECT_EQ(minutes->size(), 60u);
}

// The server's job runs once a minute as data arrives, each run rolling up the newest minute.
// An hour's rollup is built once the hour is complete, also for a device that went quiet before
// its end (r2 sends for 23 minutes, then nothing); until then minutes and raw rows answer.
TEST_P(StoreContractTest, RollupsRunMinuteByMinuteAnswerLikeRawRows) {
  const std::int64_t t0 = kJan2026Us + 13 * kMinuteUs + 7 * kSecondUs;
  std::vector<Record> arriving = rollupReadings("r1", t0, 1600);
  for (Record& r : rollupReadings("r2", t0 + 5 * kMinuteUs, 200, 7)) {
    arriving.push_back(std::move(r));
  }
  std::stable_sort(arriving.begin(), arriving.end(), [](const Record& a, const Record& b) {
    return a.serverTimeUs < b.serverTimeUs;
  });
  std::size_t next = 0;
  int runs = 0;
  std::int64_t minutes = 0;
  for (std::int64_t now = t0 + kMinuteUs; now <= t0 + 3 * kHourUs + 10 * kMinuteUs;
       now += kMinuteUs) {
    std::vector<Record> batch;
    while (next < arriving.size() && arriving[next].serverTimeUs < now) {
      batch.push_back(arriving[next++]);
    }
    if (!batch.empty()) append(batch);
    auto run = store_->rollup(now - 30 * kSecondUs);
    ASSERT_TRUE(run.ok()) << run.error().message;
    EXPECT_EQ(run->dirtyMinutes, 0);
    minutes += run->minutes;
    if (++runs % 29 == 0) {
      const std::string when = "after run " + std::to_string(runs);
      expectRollupsMatchRaw(*store_, "r1", t0, when);
      expectRollupsMatchRaw(*store_, "r2", t0, when);
    }
  }
  ASSERT_EQ(next, arriving.size());
  EXPECT_GT(minutes, 2 * (180 + 23));  // two numeric keys a minute, per device
  expectRollupsMatchRaw(*store_, "r1", t0, "after the last run");
  expectRollupsMatchRaw(*store_, "r2", t0, "after the last run");

  // r2's hour comes from its hour rollup.
  expectHourAnsweredFromRollups("r2", "w", kJan2026Us, t0 + 10 * kMinuteUs, t0 + 20 * kMinuteUs);
}

// The fleet window average against raw rows: windows with partial minutes at both ends, within
// one minute, across the watermark and past it; every device and one group; thresholds that
// keep everyone, some or none. Device for device the same ids, average, count and last seen.
void expectWindowsMatchRaw(Store& store, std::int64_t t0, const std::string& when) {
  const std::pair<std::int64_t, std::int64_t> windows[] = {
      {t0 - kHourUs, t0 + 4 * kHourUs},
      {t0 + 5 * kMinuteUs + 13 * kSecondUs, t0 + 25 * kMinuteUs + kSecondUs},
      {kJan2026Us + 30 * kMinuteUs, kJan2026Us + 40 * kMinuteUs},
      {t0 + 10 * kMinuteUs, t0 + 10 * kMinuteUs + 30 * kSecondUs},
      {t0 + 110 * kMinuteUs + 3 * kSecondUs, t0 + 130 * kMinuteUs},
      {t0 + 125 * kMinuteUs, t0 + 150 * kMinuteUs}};
  const std::pair<double, bool> thresholds[] = {{1e300, true}, {1.5, true}, {1.5, false}};
  for (const DeviceGroup& group : {DeviceGroup{}, DeviceGroup{"fleet", "east"}}) {
    for (const std::string key : {"v", "w"}) {
      for (const auto& [from, to] : windows) {
        for (const auto& [threshold, below] : thresholds) {
          FleetWindowQuery q{group, key, from, to, threshold, below};
          auto rolled = store.fleetWindowAverage(q);
          q.useRollups = false;
          auto raw = store.fleetWindowAverage(q);
          ASSERT_TRUE(rolled.ok()) << when << ": " << rolled.error().message;
          ASSERT_TRUE(raw.ok()) << when << ": " << raw.error().message;
          const std::string what =
              when + ": group " + group.tagValue + " key " + key + " from " + std::to_string(from) +
              " to " + std::to_string(to) + " threshold " +
              (threshold > 1e9 ? "any" : std::to_string(threshold)) + (below ? " below" : " above");
          ASSERT_EQ(raw->size(), rolled->size()) << what;
          for (std::size_t i = 0; i < raw->size(); ++i) {
            EXPECT_EQ((*raw)[i].deviceId, (*rolled)[i].deviceId) << what;
            EXPECT_EQ((*raw)[i].count, (*rolled)[i].count) << what;
            EXPECT_EQ((*raw)[i].value, (*rolled)[i].value) << what;
            EXPECT_EQ((*raw)[i].lastSeenUs, (*rolled)[i].lastSeenUs) << what;
          }
        }
      }
    }
  }
}

TEST_P(StoreContractTest, FleetWindowAverageFromRollupsAnswersLikeRawRows) {
  const std::int64_t t0 = kJan2026Us + 13 * kMinuteUs + 7 * kSecondUs;
  for (const std::string device : {"r1", "r2"}) {
    ASSERT_TRUE(store_->updateDevice(device, tagsUpdate({{"fleet", "east"}})).ok());
  }
  append(rollupReadings("r1", t0, 1600));
  append(rollupReadings("r2", t0 + 5 * kMinuteUs, 900, 7));
  append(rollupReadings("r3", t0 + 9 * kMinuteUs, 700, 3));
  expectWindowsMatchRaw(*store_, t0, "before any rollup run");

  auto run = store_->rollup(t0 + 2 * kHourUs);
  ASSERT_TRUE(run.ok()) << run.error().message;
  expectWindowsMatchRaw(*store_, t0, "rolled up 2 h");

  // Late data into rolled-up minutes makes them dirty: raw rows answer for them until the next
  // run.
  append({makeRecord("r1", t0 + 10 * kMinuteUs + 1, {{"v", 100.0}, {"w", std::int64_t{-5}}}),
          makeRecord("r2", t0 + 31 * kMinuteUs, {{"v", -50.0}}),
          makeRecord("r4", t0 + 30 * kMinuteUs, {{"v", 2.0}})});
  expectWindowsMatchRaw(*store_, t0, "late data, not re-rolled yet");
  run = store_->rollup(t0 + 3 * kHourUs);
  ASSERT_TRUE(run.ok()) << run.error().message;
  EXPECT_EQ(run->dirtyMinutes, 3);
  expectWindowsMatchRaw(*store_, t0, "late data re-rolled");

  ASSERT_TRUE(store_->deleteBefore(t0 + 20 * kMinuteUs + 30 * kSecondUs).ok());
  expectWindowsMatchRaw(*store_, t0, "after retention");
  ASSERT_TRUE(store_->dropKeyBefore("w", t0 + kHourUs + 10 * kMinuteUs + kSecondUs).ok());
  expectWindowsMatchRaw(*store_, t0, "after per-key retention");

  // The rollups are really what answers whole minutes: raw rows deleted behind the store's back
  // (no dirty mark) disappear from the raw answer only.
  FleetWindowQuery q{DeviceGroup{}, "v", t0 + 60 * kMinuteUs, t0 + 90 * kMinuteUs, 1e300, true};
  auto before = store_->fleetWindowAverage(q);
  ASSERT_TRUE(before.ok() && before->size() == 3u);
  backend_->exec("DELETE FROM messages WHERE ts >= " + std::to_string(t0 + 70 * kMinuteUs) +
                 " AND ts < " + std::to_string(t0 + 80 * kMinuteUs));
  auto rolled = store_->fleetWindowAverage(q);
  q.useRollups = false;
  auto raw = store_->fleetWindowAverage(q);
  ASSERT_TRUE(rolled.ok() && raw.ok());
  ASSERT_EQ(rolled->size(), 3u);
  ASSERT_EQ(raw->size(), 3u);
  EXPECT_EQ((*rolled)[0].count, (*before)[0].count);
  EXPECT_LT((*raw)[0].count, (*before)[0].count);
}

// --- deleting devices ----------------------------------------------------------------------

// Every message of `device`, paged through (the store's own view, not the summary's count).
std::size_t storedMessages(Store& store, const std::string& device) {
  MessageQuery q;
  q.deviceId = device;
  q.limit = 10'000;
  std::size_t total = 0;
  for (int page = 0; page < 1'000; ++page) {
    auto rows = store.queryMessages(q);
    EXPECT_TRUE(rows.ok()) << rows.error().message;
    if (!rows.ok() || rows->empty()) break;
    total += rows->size();
    q.afterTimeUs = rows->back().record.serverTimeUs;
    q.afterId = rows->back().id;
  }
  return total;
}

TEST_P(StoreContractTest, DeleteDeviceRemovesHistoryRollupsTagsAndTheDevice) {
  const std::int64_t t0 = kJan2026Us;
  // More than two retention chunks (5,000), so the history goes in several transactions.
  std::vector<Record> gone;
  for (int i = 0; i < 12'345; ++i) {
    gone.push_back(makeRecord("gone", t0 + i * kSecondUs / 4, {{"v", std::int64_t{i}}}));
  }
  append(gone);
  append(rollupReadings("kept", t0, 300));
  DeviceUpdate update = tagsUpdate({{"fleet", "east"}});
  update.attributes = R"({"model":"X"})";
  update.name = "Gone soon";
  ASSERT_TRUE(store_->updateDevice("gone", update).ok());
  ASSERT_TRUE(store_->updateDevice("kept", tagsUpdate({{"fleet", "east"}})).ok());
  ASSERT_TRUE(store_->rollup(t0 + 3 * kHourUs).ok());
  // A late record in a rolled-up minute leaves a dirty mark behind, to be deleted as well.
  append({makeRecord("gone", t0 + kSecondUs, {{"v", 1.5}})});

  const std::size_t kept = storedMessages(*store_, "kept");
  ASSERT_GT(kept, 0u);
  ASSERT_EQ(count(), static_cast<std::int64_t>(kept + gone.size() + 1));
  auto deleted = store_->deleteDevice("gone");
  ASSERT_TRUE(deleted.ok()) << deleted.error().message;
  EXPECT_TRUE(*deleted);

  auto device = store_->getDevice("gone");
  ASSERT_TRUE(device.ok());
  EXPECT_FALSE(device->has_value());
  EXPECT_EQ(storedMessages(*store_, "gone"), 0u);
  // Series from rollups and from raw rows alike are empty.
  for (const bool useRollups : {true, false}) {
    SeriesQuery q;
    q.deviceId = "gone";
    q.key = "v";
    q.fromUs = t0;
    q.toUs = t0 + 3 * kHourUs;
    q.bucketUs = kMinuteUs;
    q.aggregate = Aggregate::kCount;
    q.useRollups = useRollups;
    auto buckets = store_->querySeries(q);
    ASSERT_TRUE(buckets.ok()) << buckets.error().message;
    EXPECT_TRUE(buckets->empty()) << "useRollups " << useRollups;
  }
  auto listed = store_->listDevices();
  ASSERT_TRUE(listed.ok());
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].deviceId, "kept");
  auto group = store_->listDevicesWithTag("fleet", "east");
  ASSERT_TRUE(group.ok());
  ASSERT_EQ(group->size(), 1u);
  EXPECT_EQ((*group)[0].deviceId, "kept");
  FleetLatestQuery latest;
  auto fleet = store_->fleetLatest(latest);
  ASSERT_TRUE(fleet.ok());
  ASSERT_EQ(fleet->size(), 1u);
  EXPECT_EQ((*fleet)[0].deviceId, "kept");

  // The other device is untouched, rollups included.
  EXPECT_EQ(count(), static_cast<std::int64_t>(kept));
  EXPECT_EQ(storedMessages(*store_, "kept"), kept);
  expectRollupsMatchRaw(*store_, "kept", t0, "after deleting another device");

  // Gone is gone: deleting again, or an unknown device, is false.
  deleted = store_->deleteDevice("gone");
  ASSERT_TRUE(deleted.ok());
  EXPECT_FALSE(*deleted);
  deleted = store_->deleteDevice("never-there");
  ASSERT_TRUE(deleted.ok());
  EXPECT_FALSE(*deleted);

  // A device registered but never seen is deleted just the same.
  ASSERT_TRUE(store_->updateDevice("registered", tagsUpdate({{"fleet", "west"}})).ok());
  deleted = store_->deleteDevice("registered");
  ASSERT_TRUE(deleted.ok() && *deleted);
  device = store_->getDevice("registered");
  ASSERT_TRUE(device.ok());
  EXPECT_FALSE(device->has_value());
}

TEST_P(StoreContractTest, ADeletedDeviceThatSendsAgainIsNew) {
  append({makeRecord("back", 100, {{"a", std::int64_t{1}}}),
          makeRecord("back", 200, {{"b", std::int64_t{2}}})});
  ASSERT_TRUE(store_->updateDevice("back", tagsUpdate({{"fleet", "east"}})).ok());
  auto deleted = store_->deleteDevice("back");
  ASSERT_TRUE(deleted.ok() && *deleted);
  append({makeRecord("back", 900, {{"c", std::int64_t{3}}})});
  auto device = store_->getDevice("back");
  ASSERT_TRUE(device.ok() && device->has_value());
  EXPECT_EQ((*device)->messageCount, 1);
  EXPECT_EQ((*device)->firstSeenUs, 900);
  EXPECT_EQ((*device)->lastSeenUs, 900);
  ASSERT_EQ((*device)->latest.size(), 1u);
  EXPECT_EQ((*device)->latest[0].key, "c");
  EXPECT_TRUE((*device)->tags.empty());
  EXPECT_EQ(storedMessages(*store_, "back"), 1u);
  EXPECT_EQ(count(), 1);
}

// The store may keep internal ids of devices (the SQLite writer caches row ids): a deleted
// device's id must not come back as another device's, even when the deleted one was the newest.
TEST_P(StoreContractTest, ADeletedDevicesIdIsNotReusedByAnother) {
  append({makeRecord("first", 1), makeRecord("newest", 2)});
  auto deleted = store_->deleteDevice("newest");
  ASSERT_TRUE(deleted.ok() && *deleted);
  ASSERT_TRUE(store_->updateDevice("other", tagsUpdate({{"k", "v"}})).ok());
  append({makeRecord("newest", 3), makeRecord("newest", 4)});
  auto other = store_->getDevice("other");
  ASSERT_TRUE(other.ok() && other->has_value());
  EXPECT_EQ((*other)->messageCount, 0);
  EXPECT_TRUE((*other)->neverSeen());
  auto newest = store_->getDevice("newest");
  ASSERT_TRUE(newest.ok() && newest->has_value());
  EXPECT_EQ((*newest)->messageCount, 2);
  EXPECT_TRUE((*newest)->tags.empty());
  EXPECT_EQ(storedMessages(*store_, "newest"), 2u);
  EXPECT_EQ(storedMessages(*store_, "other"), 0u);
  EXPECT_EQ(count(), 3);
}

// Deleting runs concurrently with the writer, which keeps sending for the device: whatever the
// interleaving, the device afterwards is either gone or a consistent new device, and the others
// lose nothing.
TEST_P(StoreContractTest, DeleteDeviceRunsWhileTheWriterAppends) {
  std::vector<Record> old;
  for (std::int64_t i = 0; i < 15'000; ++i) old.push_back(makeRecord("busy", i));
  append(old);
  std::atomic<bool> failed{false};
  std::thread deleter([&] {
    auto deleted = store_->deleteDevice("busy");
    if (!deleted.ok() || !*deleted) failed = true;
  });
  for (std::int64_t batch = 0; batch < 40; ++batch) {
    std::vector<Record> fresh;
    for (std::int64_t i = 0; i < 50; ++i) {
      fresh.push_back(makeRecord(i % 2 == 0 ? "busy" : "calm", 100'000 + batch * 100 + i));
    }
    append(fresh);
  }
  deleter.join();
  EXPECT_FALSE(failed.load());
  auto calm = store_->getDevice("calm");
  ASSERT_TRUE(calm.ok() && calm->has_value());
  EXPECT_EQ((*calm)->messageCount, 1'000);
  EXPECT_EQ(storedMessages(*store_, "calm"), 1'000u);
  auto busy = store_->getDevice("busy");
  ASSERT_TRUE(busy.ok());
  const std::size_t stored = storedMessages(*store_, "busy");
  if (busy->has_value()) {
    // Only records written after the deletion's last transaction, all of them counted.
    EXPECT_EQ(static_cast<std::size_t>((*busy)->messageCount), stored);
    EXPECT_LE(stored, 1'000u);
    EXPECT_GE((*busy)->firstSeenUs, 100'000);
  } else {
    EXPECT_EQ(stored, 0u);
  }
  EXPECT_EQ(count(), static_cast<std::int64_t>(1'000 + stored));
}

INSTANTIATE_TEST_SUITE_P(contract, StoreContractTest, ::testing::Values("sqlite", "postgres"),
                         [](const ::testing::TestParamInfo<std::string>& param) {
                           return param.param;
                         });

// --- PostgreSQL only ---------------------------------------------------------------------------

// Parameterised only so that the test names carry "postgres" for `ctest -R postgres`.
class PostgresStoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override { store_ = backend_.open(); }

  std::vector<std::string> sql(const std::string& text) {
    return test::PostgresServer::query(backend_.url(), text);
  }

  PostgresBackend backend_;
  std::unique_ptr<Store> store_;
};

TEST_P(PostgresStoreTest, PartitionsByDayCreatedAheadAndOnDemand) {
  auto layout = postgres::messagesLayout(*store_);
  ASSERT_TRUE(layout.ok()) << layout.error().message;
  EXPECT_EQ(*layout, "partitioned");  // Debian 12 has no TimescaleDB package

  const auto partitionsOf = [&] {
    const auto rows =
        sql("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'messages'::regclass ORDER BY 1");
    return std::set<std::string>(rows.begin(), rows.end());
  };
  // Today and the next days exist before any data arrives.
  const auto ahead = partitionsOf();
  EXPECT_GE(ahead.size(), 3u);

  // Five days of January 2026 (plus one record before the epoch) need six new partitions.
  std::vector<Record> records;
  for (int day = 0; day < 5; ++day) {
    for (int i = 0; i < 10; ++i) {
      records.push_back(
          makeRecord("pt", kJan2026Us + day * kDayUs + i * 1'000'000, {{"v", std::int64_t{day}}}));
    }
  }
  records.push_back(makeRecord("pt", -1));
  const core::Status status = store_->appendBatch(records);
  ASSERT_TRUE(status.ok()) << status.message();
  const auto after = partitionsOf();
  for (const char* name : {"messages_p20260101", "messages_p20260102", "messages_p20260103",
                           "messages_p20260104", "messages_p20260105", "messages_p19691231"}) {
    EXPECT_EQ(after.count(name), 1u) << name;
  }
  EXPECT_EQ(after.size(), ahead.size() + 6);
  // Each partition holds its day only.
  EXPECT_EQ(sql("SELECT count(*) FROM messages_p20260103")[0], "10");
  EXPECT_EQ(sql("SELECT count(*) FROM messages_p19691231")[0], "1");
  // The device/time index exists on the parent and therefore on every partition.
  EXPECT_EQ(sql("SELECT count(*) FROM pg_indexes WHERE tablename = 'messages_p20260104' "
                "AND indexdef LIKE '%(device_id, ts, id)%'")[0],
            "1");
  EXPECT_EQ(sql("SELECT count(*) FROM pg_indexes WHERE indexname = 'messages_device_ts'")[0], "1");

  // A range query across partitions sees everything in order.
  MessageQuery q;
  q.deviceId = "pt";
  q.fromUs = kJan2026Us + kDayUs / 2;
  q.toUs = kJan2026Us + 4 * kDayUs;
  q.limit = 1000;
  auto rows = store_->queryMessages(q);
  ASSERT_TRUE(rows.ok()) << rows.error().message;
  EXPECT_EQ(rows->size(), 30u);

  // A partition dropped behind the store's back is created again when needed.
  sql("DROP TABLE messages_p20260105");
  EXPECT_FALSE(store_->appendBatch(std::vector<Record>{makeRecord("pt", kJan2026Us + 4 * kDayUs)})
                   .ok());  // the cache still says it exists; the failure refreshes it
  const core::Status again =
      store_->appendBatch(std::vector<Record>{makeRecord("pt", kJan2026Us + 4 * kDayUs)});
  EXPECT_TRUE(again.ok()) << again.message();
}

TEST_P(PostgresStoreTest, PartitionLengthIsFixedWhenTheDatabaseIsCreated) {
  // A new database takes the configured length: here one hour.
  const std::string url = test::PostgresServer::shared().createDatabase();
  postgres::PostgresOptions hourly = postgresOptions(url);
  hourly.partitionUs = 3'600'000'000;
  auto store = postgres::openPostgresStore(hourly);
  const auto query = [&](const std::string& text) {
    return test::PostgresServer::query(url, text);
  };
  EXPECT_EQ(query("SELECT value FROM tern_settings WHERE key = 'partition_us'")[0], "3600000000");
  const std::int64_t hourUs = 3'600'000'000;
  std::vector<Record> records;
  for (int hour = 0; hour < 3; ++hour) {
    for (int i = 0; i < 4; ++i) {
      records.push_back(makeRecord("h", kJan2026Us + hour * hourUs + i * 1'000'000));
    }
  }
  ASSERT_TRUE(store->appendBatch(records).ok());
  const std::string ofJan1 =
      "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
      "WHERE i.inhparent = 'messages'::regclass AND c.relname LIKE 'messages_p20260101%'";
  EXPECT_EQ(query(ofJan1)[0], "3");
  EXPECT_EQ(query("SELECT count(*) FROM messages_p20260101_010000")[0], "4");

  // Opened again with another length (as a node with another config would), it keeps its hours:
  // day-long partitions would overlap the hourly ones and every batch would fail.
  store.reset();
  postgres::PostgresOptions daily = postgresOptions(url);
  store = postgres::openPostgresStore(daily);
  const core::Status later = store->appendBatch(
      std::vector<Record>{makeRecord("h", kJan2026Us + 5 * hourUs), makeRecord("h", kJan2026Us)});
  ASSERT_TRUE(later.ok()) << later.message();
  EXPECT_EQ(query(ofJan1)[0], "4");
  EXPECT_EQ(query("SELECT count(*) FROM messages_p20260101_050000")[0], "1");
  auto counted = store->countMessages();
  ASSERT_TRUE(counted.ok());
  EXPECT_EQ(*counted, 14);

  // The default database of this fixture was made with the default: one day.
  EXPECT_EQ(sql("SELECT value FROM tern_settings WHERE key = 'partition_us'")[0], "86400000000");
}

TEST_P(PostgresStoreTest, RetentionDropsWholePartitionsAndFinishesInterruptedRuns) {
  std::vector<Record> records;
  for (int day = 0; day < 4; ++day) {
    for (int i = 0; i < 5; ++i) {
      records.push_back(
          makeRecord(day % 2 == 0 ? "even" : "odd", kJan2026Us + day * kDayUs + i * 1'000'000));
    }
  }
  ASSERT_TRUE(store_->appendBatch(records).ok());
  const auto exists = [&](const std::string& name) {
    return sql("SELECT count(*) FROM pg_class WHERE relname = '" + name + "'")[0] == "1";
  };
  // An earlier run that stopped after detaching day 0: its table is counted and dropped first.
  const std::string oid = sql("SELECT 'messages_p20260101'::regclass::oid::text")[0];
  sql("ALTER TABLE messages DETACH PARTITION messages_p20260101");
  sql("ALTER TABLE messages_p20260101 RENAME TO tern_expired_" + oid);

  // The cutoff is exactly the start of day 2: days 0 and 1 go whole, no row is deleted singly.
  auto deleted = store_->deleteBefore(kJan2026Us + 2 * kDayUs);
  ASSERT_TRUE(deleted.ok()) << deleted.error().message;
  EXPECT_EQ(*deleted, 10);
  EXPECT_FALSE(exists("tern_expired_" + oid));
  EXPECT_FALSE(exists("messages_p20260102"));
  EXPECT_TRUE(exists("messages_p20260103"));
  EXPECT_EQ(sql("SELECT count(*) FROM pg_class WHERE relname LIKE 'tern_expired%'")[0], "0");
  auto even = store_->getDevice("even");
  ASSERT_TRUE(even.ok() && even->has_value());
  EXPECT_EQ((*even)->messageCount, 5);
  EXPECT_EQ((*even)->firstSeenUs, kJan2026Us + 2 * kDayUs);
  auto odd = store_->getDevice("odd");
  ASSERT_TRUE(odd.ok() && odd->has_value());
  EXPECT_EQ((*odd)->messageCount, 5);
  EXPECT_EQ((*odd)->firstSeenUs, kJan2026Us + 3 * kDayUs);
  EXPECT_EQ(sql("SELECT sum(message_count) FROM devices")[0],
            sql("SELECT count(*) FROM messages")[0]);
  // Progress of per-key retention lives in its own table (schema version 2).
  ASSERT_TRUE(store_->dropKeyBefore("v", kJan2026Us + 3 * kDayUs).ok());
  EXPECT_EQ(sql("SELECT done_before FROM tern_retention_progress WHERE key = 'key:v'")[0],
            std::to_string(kJan2026Us + 3 * kDayUs));
}

TEST_P(PostgresStoreTest, MigrationsAreIdempotentAndVersioned) {
  ASSERT_TRUE(
      store_->appendBatch(std::vector<Record>{makeRecord("m", 1, {{"u", std::int64_t{1}}})}).ok());
  store_.reset();
  store_ = backend_.open();
  auto second = backend_.open();  // two at once, like two nodes
  EXPECT_EQ(
      sql("SELECT string_agg(version::text, ',' ORDER BY version) FROM tern_schema_version")[0],
      "1,2,3,4,5,6,7");
  EXPECT_EQ(postgres::postgresSchemaVersion(), 7);
  auto counted = second->countMessages();
  ASSERT_TRUE(counted.ok());
  EXPECT_EQ(*counted, 1);

  // A database of schema version 1 (an older build) is upgraded in place.
  sql("DROP TABLE tern_retention_progress");
  sql("DROP TABLE device_tags");
  sql("ALTER TABLE devices DROP COLUMN attributes, DROP COLUMN name, DROP COLUMN type, "
      "DROP COLUMN latest_keys");
  sql("DROP TABLE tern_rollup_1m, tern_rollup_1h, tern_rollup_dirty, tern_rollup_state, "
      "tern_rollup_key_floor");
  sql("DROP INDEX messages_ts_brin");
  sql("DROP TABLE tern_settings");
  sql("DELETE FROM tern_schema_version WHERE version > 1");
  // A database made before the partition length was kept was partitioned by day, whatever the
  // configuration says now.
  postgres::PostgresOptions hourly = postgresOptions(backend_.url());
  hourly.partitionUs = 3'600'000'000;
  second = postgres::openPostgresStore(hourly);
  EXPECT_EQ(sql("SELECT value FROM tern_settings WHERE key = 'partition_us'")[0], "86400000000");
  EXPECT_EQ(
      sql("SELECT string_agg(version::text, ',' ORDER BY version) FROM tern_schema_version")[0],
      "1,2,3,4,5,6,7");
  EXPECT_TRUE(second->dropKeyBefore("v", 10).ok());
  // Existing devices get empty attributes and no tags, and can be tagged.
  auto old = second->getDevice("m");
  ASSERT_TRUE(old.ok() && old->has_value());
  EXPECT_EQ((*old)->attributes, "{}");
  EXPECT_TRUE((*old)->tags.empty());
  DeviceUpdate update;
  update.tags = std::map<std::string, std::string>{{"fleet", "east"}};
  auto tagged = second->updateDevice("m", update);
  ASSERT_TRUE(tagged.ok()) << tagged.error().message;
  EXPECT_EQ(tagged->messageCount, 1);
  EXPECT_EQ(tagged->tags.at("fleet"), "east");
  // Its latest values, whose keys the old schema did not keep, are merged with new ones.
  ASSERT_TRUE(second->appendBatch(std::vector<Record>{makeRecord("m", 2, {{"w", 2.5}})}).ok());
  old = second->getDevice("m");
  ASSERT_TRUE(old.ok() && old->has_value());
  EXPECT_EQ((*old)->latest.size(), 2u);
  EXPECT_EQ(*findField((*old)->latest, "w"), FieldValue(2.5));
  EXPECT_EQ(sql("SELECT array_to_string(ARRAY(SELECT unnest(latest_keys) ORDER BY 1), ',') "
                "FROM devices WHERE device_id = 'm'")[0],
            "u,w");
  // Device rows leave room in their pages for the next version (HOT updates, no bloat).
  EXPECT_EQ(
      sql("SELECT array_to_string(reloptions, ',') FROM pg_class WHERE relname = 'devices'")[0],
      "fillfactor=50");
  // And rolls up.
  auto rolled = second->rollup(1'000'000'000);
  EXPECT_TRUE(rolled.ok()) << rolled.error().message;

  sql("INSERT INTO tern_schema_version(version) VALUES (99)");
  try {
    backend_.open();
    FAIL() << "expected a throw";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("newer"), std::string::npos) << e.what();
  }
}

TEST_P(PostgresStoreTest, FailedBatchRollsBackCompletely) {
  ASSERT_TRUE(store_->appendBatch(std::vector<Record>{makeRecord("old", 1)}).ok());
  sql("CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
      "IF NEW.topic = 'boom' THEN RAISE EXCEPTION 'boom refused'; END IF; RETURN NEW; END $$");
  sql("CREATE TRIGGER boom BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION boom()");
  Record bad = makeRecord("new", 3);
  bad.topic = "boom";
  const core::Status status =
      store_->appendBatch(std::vector<Record>{makeRecord("new", 2), makeRecord("old", 2), bad});
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("boom refused"), std::string::npos) << status.message();
  auto none = store_->getDevice("new");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  auto counted = store_->countMessages();
  ASSERT_TRUE(counted.ok());
  EXPECT_EQ(*counted, 1);

  sql("DROP TRIGGER boom ON messages");
  ASSERT_TRUE(
      store_->appendBatch(std::vector<Record>{makeRecord("new", 4), makeRecord("old", 4)}).ok());
  counted = store_->countMessages();
  ASSERT_TRUE(counted.ok());
  EXPECT_EQ(*counted, 3);
}

TEST_P(PostgresStoreTest, ReconnectsAfterTheServerRestarts) {
  test::PostgresServer& server = test::PostgresServer::shared();
  ASSERT_TRUE(store_->appendBatch(std::vector<Record>{makeRecord("rc", 1)}).ok());
  ASSERT_TRUE(store_->check().ok());

  server.stop();
  // While it is down: errors, never a crash.
  const core::Status down =
      store_->appendBatch(std::vector<Record>{makeRecord("rc", 2), makeRecord("rc", 3)});
  EXPECT_FALSE(down.ok());
  EXPECT_NE(down.message().find("postgres"), std::string::npos) << down.message();
  EXPECT_FALSE(store_->check().ok());
  EXPECT_FALSE(store_->countMessages().ok());
  MessageQuery q;
  q.deviceId = "rc";
  EXPECT_FALSE(store_->queryMessages(q).ok());
  EXPECT_FALSE(store_->listDevices().ok());
  EXPECT_FALSE(store_->getDevice("rc").ok());
  SeriesQuery s;
  s.deviceId = "rc";
  s.key = "v";
  EXPECT_FALSE(store_->querySeries(s).ok());
  EXPECT_FALSE(store_->appendBatch(std::vector<Record>{makeRecord("rc", 2)}).ok());

  server.start();
  // The writer retries the same batch, as the ingest pipeline does, until it commits; the
  // backoff after failed attempts is at most 200 ms here.
  const std::vector<Record> retried{makeRecord("rc", 2), makeRecord("rc", 3)};
  core::Status status = store_->appendBatch(retried);
  for (int i = 0; i < 50 && !status.ok(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    status = store_->appendBatch(retried);
  }
  ASSERT_TRUE(status.ok()) << status.message();
  EXPECT_TRUE(store_->check().ok());
  auto rows = store_->queryMessages(q);
  ASSERT_TRUE(rows.ok()) << rows.error().message;
  ASSERT_EQ(rows->size(), 3u);  // everything exactly once
  EXPECT_EQ((*rows)[0].record.serverTimeUs, 1);
  EXPECT_EQ((*rows)[1].record.serverTimeUs, 2);
  EXPECT_EQ((*rows)[2].record.serverTimeUs, 3);
  auto device = store_->getDevice("rc");
  ASSERT_TRUE(device.ok() && device->has_value());
  EXPECT_EQ((*device)->messageCount, 3);

  // A restart between two batches (a pooled connection and the writer's both dead) is
  // invisible: the first call after it succeeds.
  server.stop();
  server.start();
  const core::Status next = store_->appendBatch(std::vector<Record>{makeRecord("rc", 4)});
  EXPECT_TRUE(next.ok()) << next.message();
  auto counted = store_->countMessages();
  ASSERT_TRUE(counted.ok()) << counted.error().message;
  EXPECT_EQ(*counted, 4);
}

// The reply to COMMIT is lost (the connection dies right after COMMIT is sent): the batch may
// or may not be stored, and the pipeline retries it. The retry asks the server whether that
// transaction committed and does not store its records a second time.
TEST_P(PostgresStoreTest, ARetryAfterALostCommitReplyStoresNothingTwice) {
  postgres::PostgresOptions options = postgresOptions(backend_.url());
  options.faultLoseCommitReplies = 1;
  auto store = postgres::openPostgresStore(options);
  const std::vector<Record> batch{makeRecord("lost", 1), makeRecord("lost", 2),
                                  makeRecord("other", 3)};
  const core::Status lost = store->appendBatch(batch);
  ASSERT_FALSE(lost.ok());
  EXPECT_NE(lost.message().find("reply lost"), std::string::npos) << lost.message();
  // The server got the COMMIT before the socket closed: wait (bounded) until it shows.
  std::vector<std::string> count;
  for (int i = 0; i < 100; ++i) {
    count = sql("SELECT count(*) FROM messages");
    if (!count.empty() && count[0] == "3") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(count, std::vector<std::string>{"3"}) << "the injected fault should commit";

  // The retry, as the pipeline sends it: the same batch (here with one more record behind it,
  // as a spool replay chunk may have).
  std::vector<Record> retry = batch;
  retry.push_back(makeRecord("lost", 4));
  core::Status status = store->appendBatch(retry);
  for (int i = 0; i < 50 && !status.ok(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    status = store->appendBatch(retry);
  }
  ASSERT_TRUE(status.ok()) << status.message();
  EXPECT_EQ(sql("SELECT count(*) FROM messages"), std::vector<std::string>{"4"});
  auto device = store->getDevice("lost");
  ASSERT_TRUE(device.ok() && device->has_value());
  EXPECT_EQ((*device)->messageCount, 3);

  // Later batches are written normally.
  ASSERT_TRUE(store->appendBatch(std::vector<Record>{makeRecord("lost", 5)}).ok());
  EXPECT_EQ(sql("SELECT count(*) FROM messages"), std::vector<std::string>{"5"});
}

// A lost reply to a COMMIT that did not happen: the retry writes the batch.
TEST_P(PostgresStoreTest, ARetryAfterALostCommitReplyWritesWhatDidNotCommit) {
  postgres::PostgresOptions options = postgresOptions(backend_.url());
  options.faultLoseCommitReplies = 1;
  auto store = postgres::openPostgresStore(options);
  // A deferred constraint fails at COMMIT time, so the transaction aborts there.
  sql("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
      "IF NEW.topic = 'refused' THEN RAISE EXCEPTION 'refused at commit'; END IF; RETURN NULL; "
      "END $$");
  sql("CREATE CONSTRAINT TRIGGER refuse AFTER INSERT ON messages DEFERRABLE INITIALLY DEFERRED "
      "FOR EACH ROW EXECUTE FUNCTION refuse()");
  Record refused = makeRecord("abort", 1);
  refused.topic = "refused";
  const std::vector<Record> batch{refused, makeRecord("abort", 2)};
  ASSERT_FALSE(store->appendBatch(batch).ok());
  sql("DROP TRIGGER refuse ON messages");
  core::Status status = store->appendBatch(batch);
  for (int i = 0; i < 50 && !status.ok(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    status = store->appendBatch(batch);
  }
  ASSERT_TRUE(status.ok()) << status.message();
  EXPECT_EQ(sql("SELECT count(*) FROM messages"), std::vector<std::string>{"2"});
}

// PostgreSQL text refuses NUL bytes and invalid UTF-8, and its json functions refuse \u0000.
// Such a record must not block ingest (the pipeline would retry the batch forever): they
// become U+FFFD, and the payload keeps its exact bytes.
TEST_P(PostgresStoreTest, HostileTextDoesNotBlockABatch) {
  Record record = makeRecord(std::string("nul\0dev", 7), 5,
                             {{std::string("k\0ey", 4), std::string("v\0al", 4)},
                              {"bad", std::string("a\xff\xfe")},
                              {"ok", std::int64_t{1}}});
  record.topic = std::string("device/\xc3(", 9);
  record.nodeId = std::string("n\0", 2);
  record.payload = std::string("\0\xff", 2);
  const core::Status status = store_->appendBatch(std::vector<Record>{record});
  ASSERT_TRUE(status.ok()) << status.message();
  MessageQuery q;
  q.deviceId =
      "nul\xEF\xBF\xBD"
      "dev";
  auto rows = store_->queryMessages(q);
  ASSERT_TRUE(rows.ok()) << rows.error().message;
  ASSERT_EQ(rows->size(), 1u);
  const Record& got = (*rows)[0].record;
  EXPECT_EQ(got.topic, "device/\xEF\xBF\xBD(");
  EXPECT_EQ(got.payload, record.payload);
  ASSERT_EQ(got.fields.size(), 3u);
  EXPECT_EQ(got.fields[0].key,
            "k\xEF\xBF\xBD"
            "ey");
  EXPECT_EQ(got.fields[0].value, FieldValue(std::string("v\xEF\xBF\xBD"
                                                        "al")));
  EXPECT_EQ(got.fields[1].value, FieldValue(std::string("a\xEF\xBF\xBD\xEF\xBF\xBD")));
  EXPECT_EQ(got.fields[2].value, FieldValue(std::int64_t{1}));
  SeriesQuery s;
  s.deviceId = q.deviceId;
  s.key = "ok";
  auto buckets = store_->querySeries(s);
  ASSERT_TRUE(buckets.ok()) << buckets.error().message;
  EXPECT_EQ(buckets->size(), 1u);
  auto device = store_->getDevice(q.deviceId);
  ASSERT_TRUE(device.ok()) << device.error().message;
  ASSERT_TRUE(device->has_value());
  EXPECT_EQ((*device)->latest.size(), 3u);
  // The next batch for the same device merges its latest values without trouble.
  const core::Status again = store_->appendBatch(std::vector<Record>{record});
  ASSERT_TRUE(again.ok()) << again.message();
  auto counted = store_->countMessages();
  ASSERT_TRUE(counted.ok());
  EXPECT_EQ(*counted, 2);
}

TEST_P(PostgresStoreTest, FailsAtOpenWhenUnreachableOrMisconfigured) {
  postgres::PostgresOptions options;
  EXPECT_THROW(postgres::openPostgresStore(options), std::runtime_error);  // no URL
  // A port nobody listens on: bound but never listening.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof address;
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length), 0);
  options.url = "host=127.0.0.1 port=" + std::to_string(ntohs(address.sin_port)) +
                " user=tern dbname=none connect_timeout=2";
  EXPECT_THROW(postgres::openPostgresStore(options), std::runtime_error);
  ::close(fd);
  options.url = test::PostgresServer::shared().url("does_not_exist");
  EXPECT_THROW(postgres::openPostgresStore(options), std::runtime_error);
}

INSTANTIATE_TEST_SUITE_P(postgres, PostgresStoreTest, ::testing::Values("postgres"),
                         [](const ::testing::TestParamInfo<std::string>& param) {
                           return param.param;
                         });

}  // namespace
}  // namespace tern::storage
