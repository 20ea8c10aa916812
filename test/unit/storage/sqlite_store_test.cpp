#include "storage/sqlite/sqlite_store.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>

namespace tern::storage::sqlite {
namespace {

namespace fs = std::filesystem;

// A fresh directory per test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    static std::atomic<int> counter{0};
    std::random_device random;
    path_ =
        fs::temp_directory_path() / ("tern-store-test-" + std::to_string(::getpid()) + "-" +
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

// Runs a statement on the database file directly, bypassing the store.
void rawExec(const fs::path& file, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(file.c_str(), &db), SQLITE_OK);
  sqlite3_busy_timeout(db, 5000);
  char* message = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &message);
  const std::string error = message != nullptr ? message : "";
  sqlite3_free(message);
  sqlite3_close(db);
  ASSERT_EQ(rc, SQLITE_OK) << error;
}

std::string rawQueryText(const fs::path& file, const std::string& sql) {
  sqlite3* db = nullptr;
  EXPECT_EQ(sqlite3_open(file.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  std::string value;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) == SQLITE_OK &&
      sqlite3_step(stmt) == SQLITE_ROW) {
    value = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
  }
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return value;
}

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { store_ = open(); }

  std::unique_ptr<Store> open() {
    SqliteOptions options;
    options.path = file().string();
    options.cacheBytes = 8 * 1024 * 1024;
    return openSqliteStore(options);
  }
  fs::path file() const { return dir_.path() / "data" / "tern.db"; }

  void append(const std::vector<Record>& records) {
    const core::Status status = store_->appendBatch(records);
    ASSERT_TRUE(status.ok()) << status.message();
  }

  std::vector<StoredRecord> query(const MessageQuery& q) {
    auto result = store_->queryMessages(q);
    EXPECT_TRUE(result.ok()) << (result.ok() ? "" : result.error().message);
    return result.ok() ? *result : std::vector<StoredRecord>{};
  }

  std::vector<Bucket> series(const std::string& key, Aggregate aggregate,
                             std::int64_t bucketUs = 100, std::int64_t fromUs = 0) {
    SeriesQuery q;
    q.deviceId = "s1";
    q.fromUs = fromUs;
    q.key = key;
    q.bucketUs = bucketUs;
    q.aggregate = aggregate;
    auto result = store_->querySeries(q);
    EXPECT_TRUE(result.ok()) << (result.ok() ? "" : result.error().message);
    return result.ok() ? *result : std::vector<Bucket>{};
  }

  // Walks all pages of device "p" and checks: strictly ordered by (ts, id), nothing twice,
  // nothing missing.
  void checkPagination(bool descending, std::size_t expected) {
    MessageQuery q;
    q.deviceId = "p";
    q.limit = 3;
    q.descending = descending;
    std::vector<std::pair<std::int64_t, std::int64_t>> seen;
    for (int page = 0; page < 100; ++page) {
      auto rows = query(q);
      if (rows.empty()) {
        break;
      }
      EXPECT_LE(rows.size(), 3u);
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
        EXPECT_TRUE(descending ? seen[i - 1] > seen[i] : seen[i - 1] < seen[i]) << i;
      }
    }
    EXPECT_EQ(ids.size(), expected);
  }

  TempDir dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(SqliteStoreTest, RoundTripsEveryFieldType) {
  const std::int64_t kMin = std::numeric_limits<std::int64_t>::min();
  const std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  Record record = makeRecord("dev-1", 1'700'000'000'000'000,
                             {{"int", std::int64_t{42}},
                              {"neg", std::int64_t{-7}},
                              {"min", kMin},
                              {"max", kMax},
                              {"one", 1.0},
                              {"tenth", 0.1},
                              {"negzero", -0.0},
                              {"tiny", 1.3927926388013963e-143},
                              {"huge", 1e300},
                              {"yes", true},
                              {"no", false},
                              {"text", std::string("héllo \"wörld\" \\ \n\t\x01 ☃ 😀")},
                              {"empty", std::string()},
                              {"a.b.0", std::int64_t{3}},
                              {"quo\"te", std::string("k")}});
  record.deviceTimeUs = 1'699'999'999'123'456;
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
}

TEST_F(SqliteStoreTest, NonJsonPayloadKeepsExactBytes) {
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
  append({binary, empty});

  MessageQuery q;
  q.deviceId = "raw";
  const auto rows = query(q);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_FALSE(rows[0].record.payloadIsJson);
  EXPECT_EQ(rows[0].record.payload, binary.payload);
  EXPECT_EQ(rows[0].record.payload.size(), 261u);
  EXPECT_TRUE(rows[0].record.fields.empty());
  EXPECT_FALSE(rows[0].record.deviceTimeUs.has_value());
  EXPECT_FALSE(rows[1].record.payloadIsJson);
  EXPECT_EQ(rows[1].record.payload, "");
}

TEST_F(SqliteStoreTest, OrdersAscendingAndDescending) {
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
  EXPECT_EQ(query(q).size(), 2u);
  q.deviceId = "nobody";
  EXPECT_TRUE(query(q).empty());
}

TEST_F(SqliteStoreTest, PagesAcrossEqualTimestampsWithoutGapsOrDuplicates) {
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
  checkPagination(false, 25);
  checkPagination(true, 25);

  // A cursor time without an id skips that whole timestamp.
  MessageQuery q;
  q.deviceId = "p";
  q.afterTimeUs = 1000;
  auto rows = query(q);
  ASSERT_FALSE(rows.empty());
  EXPECT_EQ(rows.front().record.serverTimeUs, 1001);
  q.afterTimeUs.reset();
  q.afterId = 5;
  EXPECT_FALSE(store_->queryMessages(q).ok());
}

TEST_F(SqliteStoreTest, RangeIsFromInclusiveToExclusive) {
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
}

TEST_F(SqliteStoreTest, SeriesBucketsEveryAggregate) {
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
  raw.fields.clear();
  append({raw, makeRecord("s1", 299, {{"a.x", 10.0}}), makeRecord("s1", 300, {})});

  struct Expect {
    Aggregate aggregate;
    double first;
    double second;
  };
  const Expect expectations[] = {
      {Aggregate::kAvg, 7.5 / 3, 3.5}, {Aggregate::kMin, 1, -3},  {Aggregate::kMax, 4, 10},
      {Aggregate::kSum, 7.5, 7},       {Aggregate::kCount, 3, 2},
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

  EXPECT_TRUE(series("missing", Aggregate::kAvg).empty());
  q.bucketUs = 0;
  EXPECT_FALSE(store_->querySeries(q).ok());
}

TEST_F(SqliteStoreTest, SeriesHandlesOddKeysAndNegativeTimes) {
  append({makeRecord("s1", -150, {{"we\"ird", std::int64_t{2}}, {"", 1.5}}),
          makeRecord("s1", -50, {{"we\"ird", std::int64_t{4}}, {"", 2.5}})});
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
}

TEST_F(SqliteStoreTest, DeviceSummaryTracksLatestValuesAcrossBatches) {
  append({makeRecord("b", 200, {{"t", std::int64_t{20}}, {"mode", std::string("eco")}}),
          makeRecord("a", 100, {{"on", true}}),
          makeRecord("b", 150, {{"t", std::int64_t{15}}, {"hum", 0.5}})});
  append({makeRecord("b", 300, {{"t", 21.5}, {"on", false}}), makeRecord("b", 250, {})});

  auto devices = store_->listDevices();
  ASSERT_TRUE(devices.ok()) << devices.error().message;
  ASSERT_EQ(devices->size(), 2u);
  EXPECT_EQ((*devices)[0].deviceId, "a");
  EXPECT_EQ((*devices)[0].messageCount, 1);
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

  append({makeRecord("b", 400, {{"t", std::int64_t{22}}})});
  auto one = store_->getDevice("b");
  ASSERT_TRUE(one.ok());
  ASSERT_TRUE(one->has_value());
  EXPECT_EQ((*one)->messageCount, 5);
  EXPECT_EQ(*findField((*one)->latest, "t"), FieldValue(std::int64_t{22}));
  auto none = store_->getDevice("zzz");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());

  auto count = store_->countMessages();
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 6);
  EXPECT_TRUE(store_->check().ok());
  EXPECT_EQ(store_->backendName(), "sqlite");
}

TEST_F(SqliteStoreTest, ReopenKeepsDataAndRecordsSchemaVersion) {
  append({makeRecord("keep", 1, {{"v", std::int64_t{1}}}), makeRecord("keep", 2)});
  store_.reset();
  EXPECT_EQ(rawQueryText(file(), "SELECT value FROM meta WHERE key = 'schema_version'"),
            std::to_string(sqliteSchemaVersion()));
  EXPECT_EQ(sqliteSchemaVersion(), 6);

  store_ = open();
  // The new instance has an empty id cache: appending must find the existing device row.
  append({makeRecord("keep", 3, {{"w", std::int64_t{2}}})});
  auto count = store_->countMessages();
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 3);
  auto device = store_->getDevice("keep");
  ASSERT_TRUE(device.ok() && device->has_value());
  EXPECT_EQ((*device)->messageCount, 3);
  EXPECT_EQ((*device)->latest.size(), 2u);
  auto devices = store_->listDevices();
  ASSERT_TRUE(devices.ok());
  EXPECT_EQ(devices->size(), 1u);
  MessageQuery q;
  q.deviceId = "keep";
  EXPECT_EQ(query(q).size(), 3u);
}

TEST_F(SqliteStoreTest, MessageQueryUsesTheDeviceTimeIndex) {
  for (bool descending : {false, true}) {
    auto plan = explainMessageQuery(*store_, descending);
    ASSERT_TRUE(plan.ok()) << plan.error().message;
    EXPECT_NE(plan->find(std::string("INDEX ") + kMessagesIndexName), std::string::npos) << *plan;
    EXPECT_EQ(plan->find("SCAN messages"), std::string::npos) << *plan;
    EXPECT_EQ(plan->find("TEMP B-TREE"), std::string::npos) << *plan;  // no sort step
  }
}

// Messages are indexed per chunk of 2^16 row ids. A filler row moves the row ids on to the next
// chunk; late records there overlap the first chunk in time. Every per-device read and delete
// must see both chunks, in time order.
TEST_F(SqliteStoreTest, MessagesAcrossChunksStayInTimeOrder) {
  std::vector<Record> first;
  for (int i = 0; i < 10; ++i) {  // chunk 0: 100, 110, ..., 190
    first.push_back(makeRecord("c", 100 + 10 * i, {{"v", std::int64_t{1}}}));
  }
  first.push_back(makeRecord("x", 100));
  append(first);
  rawExec(file(),
          "INSERT INTO messages(id, device, ts, node, topic, payload, flags) "
          "SELECT 65535, id, 100, 'n', 't', x'', 0 FROM devices WHERE device_id = 'x'; "
          "UPDATE devices SET message_count = message_count + 1 WHERE device_id = 'x'");
  std::vector<Record> second;
  for (int i = 0; i < 10; ++i) {  // chunk 1: two late records, then 200, 210, ..., 290
    second.push_back(makeRecord("c", i < 2 ? 150 + 5 * i : 200 + 10 * i, {{"v", std::int64_t{2}}}));
  }
  append(second);
  EXPECT_EQ(rawQueryText(file(),
                         "SELECT group_concat(chunk) FROM (SELECT chunk FROM "
                         "message_chunks ORDER BY chunk)"),
            "0,1");
  EXPECT_EQ(rawQueryText(file(),
                         "SELECT min_ts || '-' || max_ts FROM message_chunks "
                         "WHERE chunk = 1"),
            "150-290");

  std::vector<std::int64_t> expected;
  for (int i = 0; i < 10; ++i) {
    expected.push_back(100 + 10 * i);
    expected.push_back(i < 2 ? 150 + 5 * i : 200 + 10 * i);
  }
  std::sort(expected.begin(), expected.end());
  MessageQuery q;
  q.deviceId = "c";
  for (bool descending : {false, true}) {
    q.descending = descending;
    q.limit = 100;
    std::vector<std::int64_t> times;
    for (const auto& row : query(q)) {
      times.push_back(row.record.serverTimeUs);
    }
    std::vector<std::int64_t> want = expected;
    if (descending) {
      std::reverse(want.begin(), want.end());
    }
    EXPECT_EQ(times, want);
    // Pages of 3 (the late records sit inside the first chunk's span): nothing lost or twice.
    q.limit = 3;
    std::vector<std::int64_t> paged;
    for (int page = 0; page < 20; ++page) {
      auto rows = query(q);
      if (rows.empty()) {
        break;
      }
      for (const auto& row : rows) {
        paged.push_back(row.record.serverTimeUs);
      }
      q.afterTimeUs = rows.back().record.serverTimeUs;
      q.afterId = rows.back().id;
    }
    q.afterTimeUs.reset();
    q.afterId.reset();
    EXPECT_EQ(paged, want) << (descending ? "desc" : "asc");
  }
  q.descending = false;
  q.fromUs = 150;
  q.toUs = 160;
  EXPECT_EQ(query(q).size(), 3u);  // 150 from each chunk, 155

  // Series: chunk 0 holds v = 1, chunk 1 v = 2; buckets of 100 us.
  SeriesQuery s;
  s.deviceId = "c";
  s.key = "v";
  s.bucketUs = 100;
  s.aggregate = Aggregate::kSum;
  s.useRollups = false;
  auto sums = store_->querySeries(s);
  ASSERT_TRUE(sums.ok()) << sums.error().message;
  ASSERT_EQ(sums->size(), 2u);
  EXPECT_EQ((*sums)[0].value, 10 + 2 * 2);  // 100..199: ten 1s, two late 2s
  EXPECT_EQ((*sums)[1].value, 8 * 2);
  s.aggregate = Aggregate::kLast;
  sums = store_->querySeries(s);
  ASSERT_TRUE(sums.ok());
  EXPECT_EQ((*sums)[0].value, 1);  // 190 is the last in time, though written before 150, 155

  FleetWindowQuery fleet;
  fleet.key = "v";
  fleet.fromUs = 140;
  fleet.toUs = 220;
  fleet.threshold = 100;
  auto averages = store_->fleetWindowAverage(fleet);
  ASSERT_TRUE(averages.ok()) << averages.error().message;
  ASSERT_EQ(averages->size(), 1u);
  EXPECT_EQ((*averages)[0].count, 8);  // 140..190 from chunk 0, 150 and 155 from chunk 1

  // Retention: everything before 175 goes from both chunks; the oldest left is 180.
  auto deleted = store_->deleteBefore(175);
  ASSERT_TRUE(deleted.ok()) << deleted.error().message;
  EXPECT_EQ(*deleted, 8 + 2 + 2);  // c: 100..170, and 150, 155; x: both of its rows
  auto device = store_->getDevice("c");
  ASSERT_TRUE(device.ok() && device->has_value());
  EXPECT_EQ((*device)->messageCount, 10);
  EXPECT_EQ((*device)->firstSeenUs, 180);
  q.fromUs = 0;
  q.toUs = INT64_MAX;
  q.limit = 100;
  EXPECT_EQ(query(q).size(), 10u);
  // Deleting the device reaches both chunks.
  auto removed = store_->deleteDevice("c");
  ASSERT_TRUE(removed.ok() && *removed);
  EXPECT_EQ(rawQueryText(file(), "SELECT count(*) FROM messages"), "0");
  EXPECT_EQ(*store_->countMessages(), 0);
  // Retention forgets the now empty chunks; with the table empty, row ids start again at 1 and
  // chunk 0 is listed anew, so the next record is found.
  ASSERT_TRUE(store_->deleteBefore(1000).ok());
  EXPECT_EQ(rawQueryText(file(), "SELECT count(*) FROM message_chunks"), "0");
  append({makeRecord("c", 2000)});
  EXPECT_EQ(rawQueryText(file(), "SELECT chunk || ':' || min_ts FROM message_chunks"), "0:2000");
  ASSERT_EQ(query(q).size(), 1u);
  EXPECT_EQ(query(q)[0].record.serverTimeUs, 2000);
}

TEST_F(SqliteStoreTest, ReadersRunConcurrentlyWithTheWriter) {
  constexpr int kBatches = 40;
  constexpr int kPerBatch = 250;
  std::atomic<bool> done{false};
  std::atomic<int> readErrors{0};
  std::atomic<int> reads{0};
  std::vector<std::string> errors;
  std::mutex errorMutex;
  auto noteError = [&](const std::string& message) {
    std::lock_guard lock(errorMutex);
    ++readErrors;
    errors.push_back(message);
  };
  auto reader = [&] {
    std::int64_t lastCount = 0;
    while (!done.load()) {
      auto count = store_->countMessages();
      if (!count.ok()) {
        noteError(count.error().message);
        continue;
      }
      if (*count < lastCount) {
        noteError(std::string("count went backwards"));
      }
      lastCount = *count;
      MessageQuery q;
      q.deviceId = "c0";
      q.descending = true;
      q.limit = 50;
      if (auto rows = store_->queryMessages(q); !rows.ok()) {
        noteError(rows.error().message);
      }
      SeriesQuery s;
      s.deviceId = "c1";
      s.key = "v";
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
  EXPECT_EQ(readErrors.load(), 0) << (errors.empty() ? "" : errors.front());
  EXPECT_GT(reads.load(), 0);
  auto count = store_->countMessages();
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, kBatches * kPerBatch);
}

TEST_F(SqliteStoreTest, FailedBatchRollsBackCompletely) {
  append({makeRecord("old", 1)});
  // A trigger makes the insert of one record fail after the device rows were written.
  rawExec(file(),
          "CREATE TRIGGER boom BEFORE INSERT ON messages WHEN NEW.topic = 'boom' "
          "BEGIN SELECT RAISE(ABORT, 'boom refused'); END");
  Record bad = makeRecord("new", 3);
  bad.topic = "boom";
  const core::Status status =
      store_->appendBatch(std::vector<Record>{makeRecord("new", 2), makeRecord("old", 2), bad});
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("boom refused"), std::string::npos) << status.message();

  auto none = store_->getDevice("new");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  auto count = store_->countMessages();
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 1);

  rawExec(file(), "DROP TRIGGER boom");
  append({makeRecord("new", 4), makeRecord("old", 4)});
  auto device = store_->getDevice("new");
  ASSERT_TRUE(device.ok() && device->has_value());
  EXPECT_EQ((*device)->messageCount, 1);
  EXPECT_EQ((*device)->firstSeenUs, 4);
  MessageQuery q;
  q.deviceId = "new";
  EXPECT_EQ(query(q).size(), 1u);
  count = store_->countMessages();
  ASSERT_TRUE(count.ok());
  EXPECT_EQ(*count, 3);
}

// Retention itself is in the store contract (test/contract); this is the SQLite limit: its JSON
// paths cannot quote a '"', so such keys are refused rather than matched wrongly.
TEST_F(SqliteStoreTest, PerKeyRetentionRefusesKeysWithAQuote) {
  append({makeRecord("k", 1, {{"a\"b", std::int64_t{1}}})});
  EXPECT_FALSE(store_->dropKeyBefore("a\"b", 700).ok());
  EXPECT_FALSE(store_->dropKeyBefore("", 700).ok());
}

TEST(SqliteStoreOpenTest, FailsAtOpenOnUnusablePaths) {
  TempDir dir;
  const fs::path notADir = dir.path() / "plain-file";
  std::ofstream(notADir) << "x";
  SqliteOptions options;
  options.path = (notADir / "tern.db").string();
  EXPECT_THROW(openSqliteStore(options), std::runtime_error);

  const fs::path garbage = dir.path() / "garbage.db";
  std::ofstream(garbage) << std::string(4096, 'g');
  options.path = garbage.string();
  EXPECT_THROW(openSqliteStore(options), std::runtime_error);

  options.path.clear();
  EXPECT_THROW(openSqliteStore(options), std::runtime_error);
}

// Turns a current database back into schema 5's message layout (the (device, ts) index).
constexpr const char* kUndoSchema6 =
    "DROP INDEX messages_chunk_device_ts; DROP TABLE message_chunks; "
    "ALTER TABLE messages DROP COLUMN chunk; "
    "CREATE INDEX messages_device_ts ON messages(device, ts); ";

TEST(SqliteStoreOpenTest, UpgradesAVersion1DatabaseInPlace) {
  TempDir dir;
  const fs::path file = dir.path() / "v1.db";
  SqliteOptions options;
  options.path = file.string();
  {
    auto store = openSqliteStore(options);
    const std::vector<Record> records{makeRecord("old", 5, {{"v", std::int64_t{1}}})};
    ASSERT_TRUE(store->appendBatch(records).ok());
  }
  // What an older build left behind: schema version 1, no tags or attributes.
  rawExec(file, std::string(kUndoSchema6) +
                    "DROP TABLE device_tags; ALTER TABLE devices DROP COLUMN attributes; "
                    "DROP TABLE rollup_1m; DROP TABLE rollup_1h; DROP TABLE rollup_dirty; "
                    "ALTER TABLE devices DROP COLUMN name; ALTER TABLE devices DROP COLUMN type; "
                    "UPDATE meta SET value = '1' WHERE key = 'schema_version'");
  auto store = openSqliteStore(options);
  EXPECT_EQ(rawQueryText(file, "SELECT value FROM meta WHERE key = 'schema_version'"), "6");
  // Schema 5 rebuilt devices with AUTOINCREMENT, ids kept: a deleted id never comes back.
  EXPECT_EQ(rawQueryText(file, "SELECT seq FROM sqlite_sequence WHERE name = 'devices'"),
            rawQueryText(file, "SELECT max(id) FROM devices"));
  auto device = store->getDevice("old");
  ASSERT_TRUE(device.ok() && device->has_value());
  EXPECT_EQ((*device)->messageCount, 1);
  EXPECT_EQ((*device)->attributes, "{}");
  EXPECT_TRUE((*device)->tags.empty());
  EXPECT_EQ((*device)->name, "");
  DeviceUpdate update;
  update.tags = std::map<std::string, std::string>{{"fleet", "east"}};
  update.name = "Old one";
  auto updated = store->updateDevice("old", update);
  ASSERT_TRUE(updated.ok()) << updated.error().message;
  EXPECT_EQ(updated->tags.at("fleet"), "east");
  EXPECT_EQ(updated->name, "Old one");
  EXPECT_EQ(updated->messageCount, 1);
}

TEST(SqliteStoreOpenTest, UpgradesAnEmptyFileAndRefusesNewerSchemas) {
  TempDir dir;
  const fs::path empty = dir.path() / "empty.db";
  std::ofstream(empty).flush();
  SqliteOptions options;
  options.path = empty.string();
  {
    auto store = openSqliteStore(options);
    EXPECT_TRUE(store->check().ok());
  }
  EXPECT_EQ(rawQueryText(empty, "SELECT value FROM meta WHERE key = 'schema_version'"),
            std::to_string(sqliteSchemaVersion()));

  // A version 2 database (before rollups) gets the rollup tables at open, data kept.
  {
    auto store = openSqliteStore(options);
    Record r;
    r.deviceId = "d";
    r.serverTimeUs = 120'000'000;
    r.nodeId = "n";
    r.payload = "{}";
    r.payloadIsJson = true;
    r.fields = {{"v", 1.5}};
    ASSERT_TRUE(store->appendBatch(std::vector<Record>{r}).ok());
  }
  rawExec(empty, std::string(kUndoSchema6) +
                     "DROP TABLE rollup_1m; DROP TABLE rollup_1h; DROP TABLE rollup_dirty; "
                     "ALTER TABLE devices DROP COLUMN name; ALTER TABLE devices DROP COLUMN type; "
                     "UPDATE meta SET value = '2' WHERE key = 'schema_version'");
  {
    auto store = openSqliteStore(options);
    EXPECT_EQ(rawQueryText(empty, "SELECT value FROM meta WHERE key = 'schema_version'"), "6");
    auto run = store->rollup(600'000'000);
    ASSERT_TRUE(run.ok()) << run.error().message;
    EXPECT_EQ(run->minutes, 1);
    EXPECT_EQ(*store->countMessages(), 1);
    // Schema 6 listed the old message's chunk, so the chunked index finds it.
    MessageQuery q;
    q.deviceId = "d";
    auto rows = store->queryMessages(q);
    ASSERT_TRUE(rows.ok()) << rows.error().message;
    ASSERT_EQ(rows->size(), 1u);
    EXPECT_EQ((*rows)[0].record.serverTimeUs, 120'000'000);
  }

  rawExec(empty, "UPDATE meta SET value = '99' WHERE key = 'schema_version'");
  try {
    openSqliteStore(options);
    FAIL() << "expected a throw";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("newer"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace tern::storage::sqlite
