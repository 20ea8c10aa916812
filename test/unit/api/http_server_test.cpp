// End-to-end tests of the HTTP API: a real SQLite store in a temp dir, the real server on an
// ephemeral port, and a blocking Beast client.
#include "api/http_server.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "api/csv_out.h"
#include "api/encoding.h"
#include "api/json_out.h"
#include "auth/auth_service.h"
#include "core/time.h"
#include "storage/sqlite/sqlite_auth_store.h"
#include "storage/sqlite/sqlite_store.h"
#include "unit/api/http_test_client.h"

namespace tern::api {
namespace {

namespace json = boost::json;
using testing::HttpTestClient;
using testing::HttpTestResponse;

constexpr std::int64_t kSecond = 1'000'000;
constexpr std::int64_t kT0Seconds = 1'767'225'600;  // 2026-01-01T00:00:00Z
constexpr std::int64_t kT0 = kT0Seconds * kSecond;
constexpr int kSensorRecords = 2500;  // two per second from kT0
constexpr std::string_view kBinaryPayload{"\x00\x01\xff\xfe", 4};

std::filesystem::path makeTempDir() {
  std::random_device random;
  auto dir = std::filesystem::temp_directory_path() /
             ("tern_api_test_" + std::to_string(random()) + std::to_string(random()));
  std::filesystem::create_directories(dir);
  return dir;
}

std::vector<storage::Record> testRecords() {
  std::vector<storage::Record> records;
  for (int i = 0; i < kSensorRecords; ++i) {
    storage::Record r;
    r.deviceId = "sensor-1";
    r.serverTimeUs = kT0 + (i / 2) * kSecond;  // pairs share a timestamp: cursors need the id
    if (i % 2 == 0) r.deviceTimeUs = r.serverTimeUs - kSecond / 2;
    r.nodeId = "node-a";
    r.topic = "device/sensor-1";
    r.payload = "{\"temp\":" + std::to_string(i) + ".5}";
    r.payloadIsJson = true;
    r.fields = {{"temp", static_cast<double>(i) + 0.5},
                {"count", std::int64_t{i}},
                {"ok", i % 2 == 0},
                {"name", "s-" + std::to_string(i)},
                {"nested.a", std::int64_t{1}}};
    records.push_back(std::move(r));
  }
  for (int k = 0; k < 3; ++k) {
    storage::Record r;
    r.deviceId = "bin/dev";
    r.serverTimeUs = kT0 + (10 + k) * kSecond;
    r.nodeId = "node-b";
    r.topic = "raw/bin";
    r.payload = std::string(kBinaryPayload) + static_cast<char>('a' + k);
    records.push_back(std::move(r));
  }
  storage::Record text;
  text.deviceId = "dev \xC3\xBC";  // "dev ü"
  text.serverTimeUs = kT0 + 20 * kSecond;
  text.nodeId = "node-a";
  text.topic = "raw/text";
  text.payload = "h\xC3\xA9llo";  // valid UTF-8 but not JSON
  records.push_back(std::move(text));
  return records;
}

// Wraps the real store and fails on demand, for the error paths.
class FaultyStore : public storage::Store {
 public:
  explicit FaultyStore(storage::Store& inner) : inner_(inner) {}
  std::atomic<bool> failReads{false};
  std::atomic<bool> failCheck{false};
  // While set, message queries wait inside the store (bounded) until it is cleared: a slow
  // database, deterministically.
  std::atomic<bool> holdQueries{false};
  std::atomic<int> held{0};

  core::Status appendBatch(std::span<const storage::Record> records) override {
    return inner_.appendBatch(records);
  }
  core::Result<std::vector<storage::StoredRecord>> queryMessages(
      const storage::MessageQuery& query) override {
    if (failReads) return core::Error{"disk on fire"};
    if (holdQueries) {
      ++held;
      for (int i = 0; i < 3000 && holdQueries; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
      --held;
    }
    return inner_.queryMessages(query);
  }
  core::Result<std::vector<storage::Bucket>> querySeries(
      const storage::SeriesQuery& query) override {
    if (failReads) return core::Error{"disk on fire"};
    return inner_.querySeries(query);
  }
  core::Result<std::vector<storage::DeviceSummary>> listDevices() override {
    if (failReads) return core::Error{"disk on fire"};
    return inner_.listDevices();
  }
  core::Result<std::optional<storage::DeviceSummary>> getDevice(
      const std::string& deviceId) override {
    if (failReads) return core::Error{"disk on fire"};
    return inner_.getDevice(deviceId);
  }
  core::Result<std::int64_t> countMessages() override { return inner_.countMessages(); }
  std::string backendName() const override { return inner_.backendName(); }
  core::Status check() override {
    if (failCheck) return core::Error{"database is locked"};
    return inner_.check();
  }

 private:
  storage::Store& inner_;
};

class HttpServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::filesystem::path(makeTempDir());
    store_ = storage::sqlite::openSqliteStore({(*dir_ / "tern.db").string()}).release();
    const auto records = testRecords();
    const auto status = store_->appendBatch(records);
    ASSERT_TRUE(status.ok()) << status.message();
    authStore_ = storage::sqlite::openSqliteAuthStore((*dir_ / "tern.db").string()).release();
    auth_ = new auth::AuthService(*authStore_, {});
    // These tests are about the data endpoints: they all go with an admin API key (the
    // authentication itself is tested in auth_api_test.cpp).
    auto key = auth_->createApiKey("api-test", auth::Role::kAdmin, "test");
    ASSERT_TRUE(key.ok()) << key.error().message;
    token_ = new std::string("Bearer " + key->key);
  }
  static void TearDownTestSuite() {
    delete token_;
    delete auth_;
    delete authStore_;
    delete store_;
    store_ = nullptr;
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }

  void SetUp() override {
    faulty_ = std::make_unique<FaultyStore>(*store_);
    server_ = startServer({});
  }
  void TearDown() override {
    server_.reset();
    faulty_.reset();
  }

  std::unique_ptr<HttpServer> startServer(ApiOptions options) {
    options.listen = {"127.0.0.1", 0};
    options.nodeId = "node-test";
    options.threads = 2;
    options.auth = auth_;
    if (!options.healthInfo) {
      options.healthInfo = [] {
        return json::object{{"broker", json::object{{"clients_connected", 3}}},
                            {"status", "overridden?"}};
      };
    }
    auto server = std::make_unique<HttpServer>(*faulty_, std::move(options));
    server->start();
    return server;
  }

  HttpTestResponse get(std::string_view target) {
    HttpTestClient client(server_->port(), *token_);
    return client.get(target);
  }

  // Asserts a problem response naming `mention` in its detail.
  static void expectProblem(const HttpTestResponse& r, unsigned status, std::string_view mention) {
    EXPECT_EQ(r.status, status) << r.body;
    EXPECT_EQ(r.header("content-type"), "application/problem+json");
    EXPECT_EQ(r.header("cache-control"), "no-store");
    const json::value body = r.json();
    if (!body.is_object()) return;
    EXPECT_EQ(body.at("type"), "about:blank");
    EXPECT_EQ(body.at("status").to_number<unsigned>(), status);
    EXPECT_FALSE(body.at("title").as_string().empty());
    const std::string detail(body.at("detail").as_string());
    EXPECT_NE(detail.find(mention), std::string::npos)
        << "detail '" << detail << "' should mention " << mention;
  }

  static std::string messagesUrl(std::string_view device, std::string_view query) {
    return "/api/v1/devices/" + std::string(device) + "/messages?" + std::string(query);
  }

  static inline std::filesystem::path* dir_ = nullptr;
  static inline storage::Store* store_ = nullptr;
  static inline storage::AuthStore* authStore_ = nullptr;
  static inline auth::AuthService* auth_ = nullptr;
  static inline std::string* token_ = nullptr;
  std::unique_ptr<FaultyStore> faulty_;
  std::unique_ptr<HttpServer> server_;
};

// --- health ------------------------------------------------------------------------------------

TEST_F(HttpServerTest, HealthReportsStatusAndMergesHealthInfo) {
  const auto r = get("/api/v1/health");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.header("content-type"), "application/json");
  EXPECT_EQ(r.header("cache-control"), "no-store");
  EXPECT_EQ(r.header("content-length"), std::to_string(r.body.size()));
  const auto body = r.json();
  EXPECT_EQ(body.at("status"), "ok");  // a component cannot override the core members
  EXPECT_EQ(body.at("version"), TERN_VERSION);
  EXPECT_EQ(body.at("node"), "node-test");
  EXPECT_GE(body.at("uptime_s").as_int64(), 0);
  EXPECT_EQ(body.at("storage").at("status"), "ok");
  EXPECT_FALSE(body.at("storage").at("backend").as_string().empty());
  EXPECT_FALSE(body.at("storage").as_object().contains("error"));
  EXPECT_EQ(body.at("broker").at("clients_connected").as_int64(), 3);
}

TEST_F(HttpServerTest, HealthIsDegradedWhenTheStoreCheckFails) {
  faulty_->failCheck = true;
  const auto r = get("/api/v1/health");
  ASSERT_EQ(r.status, 503u) << r.body;
  EXPECT_EQ(r.header("content-type"), "application/json");
  const auto body = r.json();
  EXPECT_EQ(body.at("status"), "degraded");
  EXPECT_EQ(body.at("storage").at("status"), "error");
  EXPECT_EQ(body.at("storage").at("error"), "database is locked");
  EXPECT_EQ(body.at("broker").at("clients_connected").as_int64(), 3);
}

TEST_F(HttpServerTest, HealthSurvivesAThrowingHealthInfo) {
  ApiOptions options;
  options.healthInfo = []() -> json::object { throw std::runtime_error("broker gone"); };
  server_ = startServer(std::move(options));
  const auto r = get("/api/v1/health");
  ASSERT_EQ(r.status, 503u) << r.body;
  EXPECT_EQ(r.json().at("status"), "degraded");
  EXPECT_EQ(r.json().at("storage").at("status"), "ok");
}

TEST_F(HttpServerTest, HealthRejectsParameters) {
  expectProblem(get("/api/v1/health?verbose=1"), 400, "'verbose'");
}

// --- devices -----------------------------------------------------------------------------------

TEST_F(HttpServerTest, ListsDevicesWithTypedLatestValues) {
  const auto r = get("/api/v1/devices");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.header("content-type"), "application/json");
  const json::value devicesDoc = r.json();
  const auto& devices = devicesDoc.at("devices").as_array();
  ASSERT_EQ(devices.size(), 3u);
  std::set<std::string> ids;
  for (const auto& d : devices) ids.insert(std::string(d.at("id").as_string()));
  EXPECT_EQ(ids, (std::set<std::string>{"sensor-1", "bin/dev", "dev \xC3\xBC"}));

  const auto sensor = std::find_if(devices.begin(), devices.end(),
                                   [](const json::value& d) { return d.at("id") == "sensor-1"; });
  ASSERT_NE(sensor, devices.end());
  EXPECT_EQ(sensor->at("first_seen"), "2026-01-01T00:00:00.000Z");
  EXPECT_EQ(sensor->at("last_seen"), "2026-01-01T00:20:49.000Z");  // (2499 / 2) s
  EXPECT_EQ(sensor->at("message_count").as_int64(), kSensorRecords);
  const auto& latest = sensor->at("latest").as_object();
  ASSERT_TRUE(latest.at("temp").is_double()) << json::serialize(latest);
  EXPECT_DOUBLE_EQ(latest.at("temp").as_double(), 2499.5);
  ASSERT_TRUE(latest.at("count").is_int64()) << json::serialize(latest);
  EXPECT_EQ(latest.at("count").as_int64(), 2499);
  ASSERT_TRUE(latest.at("ok").is_bool());
  EXPECT_FALSE(latest.at("ok").as_bool());
  EXPECT_EQ(latest.at("name"), "s-2499");
  EXPECT_EQ(latest.at("nested.a").as_int64(), 1);
}

TEST_F(HttpServerTest, GetsOneDeviceWithPercentDecodedId) {
  auto r = get("/api/v1/devices/sensor-1");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.json().at("id"), "sensor-1");
  EXPECT_EQ(r.json().at("message_count").as_int64(), kSensorRecords);

  r = get("/api/v1/devices/bin%2Fdev");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.json().at("id"), "bin/dev");
  EXPECT_EQ(r.json().at("message_count").as_int64(), 3);
  EXPECT_TRUE(r.json().at("latest").as_object().empty());

  r = get("/api/v1/devices/dev%20%c3%bc");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.json().at("id"), "dev \xC3\xBC");
}

TEST_F(HttpServerTest, UnknownDeviceIs404) {
  expectProblem(get("/api/v1/devices/nope"), 404, "'nope'");
  expectProblem(get("/api/v1/devices/nope/messages"), 404, "'nope'");
  expectProblem(get("/api/v1/devices/nope/series/temp?from=0&to=1000000"), 404, "'nope'");
}

// --- messages ----------------------------------------------------------------------------------

TEST_F(HttpServerTest, MessagesDefaultToTheFirst100InAscendingOrder) {
  const auto r = get("/api/v1/devices/sensor-1/messages");
  ASSERT_EQ(r.status, 200u) << r.body;
  const auto body = r.json();
  EXPECT_EQ(body.at("device"), "sensor-1");
  const auto& messages = body.at("messages").as_array();
  ASSERT_EQ(messages.size(), 100u);
  EXPECT_TRUE(body.at("next_cursor").is_string());

  const auto& first = messages[0].as_object();
  EXPECT_TRUE(first.at("id").is_int64());
  EXPECT_EQ(first.at("ts"), "2026-01-01T00:00:00.000Z");
  EXPECT_EQ(first.at("device_ts"), "2025-12-31T23:59:59.500Z");
  EXPECT_EQ(first.at("node"), "node-a");
  EXPECT_EQ(first.at("topic"), "device/sensor-1");
  EXPECT_EQ(first.at("payload"), "{\"temp\":0.5}");
  EXPECT_EQ(first.at("payload_encoding"), "utf8");
  EXPECT_EQ(first.at("json"), true);
  const auto& fields = first.at("fields").as_object();
  EXPECT_TRUE(fields.at("temp").is_double());
  EXPECT_DOUBLE_EQ(fields.at("temp").as_double(), 0.5);
  EXPECT_TRUE(fields.at("count").is_int64());
  EXPECT_EQ(fields.at("count").as_int64(), 0);
  EXPECT_EQ(fields.at("ok"), true);
  EXPECT_EQ(fields.at("name"), "s-0");
  EXPECT_EQ(fields.at("nested.a").as_int64(), 1);

  const auto& second = messages[1].as_object();
  EXPECT_FALSE(second.contains("device_ts"));  // odd records have no device time
  EXPECT_EQ(second.at("fields").at("count").as_int64(), 1);
  EXPECT_EQ(messages[99].at("fields").at("count").as_int64(), 99);
}

TEST_F(HttpServerTest, MessagesDescendingStartWithTheNewest) {
  const auto r = get(messagesUrl("sensor-1", "order=desc&limit=3"));
  ASSERT_EQ(r.status, 200u) << r.body;
  const json::value messagesDoc = r.json();
  const auto& messages = messagesDoc.at("messages").as_array();
  ASSERT_EQ(messages.size(), 3u);
  EXPECT_EQ(messages[0].at("fields").at("count").as_int64(), 2499);
  EXPECT_EQ(messages[1].at("fields").at("count").as_int64(), 2498);
  EXPECT_EQ(messages[2].at("fields").at("count").as_int64(), 2497);
}

TEST_F(HttpServerTest, MessagesFilterByTimeInEveryAcceptedFormat) {
  // [t0+100 s, t0+110 s) holds records 200..219; `to` is exclusive.
  const std::string from = std::to_string(kT0Seconds + 100);
  const std::string to = std::to_string(kT0Seconds + 110);
  const std::vector<std::string> queries = {
      "from=2026-01-01T00:01:40Z&to=2026-01-01T00:01:50Z",
      "from=2026-01-01T01:01:40%2B01:00&to=2026-01-01T00:01:49.999Z",
      "from=" + from + "&to=" + to,
      "from=" + from + "000&to=" + to + "000",
      "from=" + from + "000000&to=" + to + "000000",
  };
  for (const auto& query : queries) {
    SCOPED_TRACE(query);
    const auto r = get(messagesUrl("sensor-1", query));
    ASSERT_EQ(r.status, 200u) << r.body;
    const json::value messagesDoc = r.json();
    const auto& messages = messagesDoc.at("messages").as_array();
    ASSERT_EQ(messages.size(), 20u);
    EXPECT_EQ(messages.front().at("fields").at("count").as_int64(), 200);
    EXPECT_EQ(messages.back().at("fields").at("count").as_int64(), 219);
    EXPECT_TRUE(r.json().at("next_cursor").is_null());
  }
}

TEST_F(HttpServerTest, BinaryPayloadsAreBase64) {
  const auto r = get("/api/v1/devices/bin%2Fdev/messages");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.json().at("device"), "bin/dev");
  const json::value messagesDoc = r.json();
  const auto& messages = messagesDoc.at("messages").as_array();
  ASSERT_EQ(messages.size(), 3u);
  EXPECT_EQ(messages[0].at("payload"), "AAH//mE=");  // 00 01 ff fe 'a'
  EXPECT_EQ(messages[0].at("payload_encoding"), "base64");
  EXPECT_EQ(messages[0].at("json"), false);
  EXPECT_TRUE(messages[0].at("fields").as_object().empty());
  EXPECT_EQ(messages[2].at("payload"),
            json::value(base64Encode(std::string(kBinaryPayload) + "c")));

  const auto text = get("/api/v1/devices/dev%20%C3%BC/messages");
  ASSERT_EQ(text.status, 200u) << text.body;
  const json::value messageDoc = text.json();
  const auto& message = messageDoc.at("messages").at(0);
  EXPECT_EQ(message.at("payload"), "h\xC3\xA9llo");
  EXPECT_EQ(message.at("payload_encoding"), "utf8");
  EXPECT_EQ(message.at("json"), false);
}

// Walks every page with cursors; returns the `count` field of every record, in page order.
std::vector<std::int64_t> walkPages(HttpTestClient& client, const std::string& baseUrl,
                                    std::size_t limit, std::size_t& pages) {
  std::vector<std::int64_t> seen;
  std::set<std::int64_t> ids;
  std::string cursor;
  pages = 0;
  while (true) {
    const std::string url =
        baseUrl + "&limit=" + std::to_string(limit) + (cursor.empty() ? "" : "&cursor=" + cursor);
    const auto r = client.get(url);
    EXPECT_EQ(r.status, 200u) << r.body;
    if (r.status != 200) break;
    ++pages;
    const auto body = r.json();
    const auto& messages = body.at("messages").as_array();
    EXPECT_LE(messages.size(), limit);
    for (const auto& m : messages) {
      EXPECT_TRUE(ids.insert(m.at("id").as_int64()).second) << "duplicate id";
      seen.push_back(m.at("fields").at("count").as_int64());
    }
    if (body.at("next_cursor").is_null()) break;
    EXPECT_EQ(messages.size(), limit) << "a cursor is only given with a full page";
    cursor = std::string(body.at("next_cursor").as_string());
    EXPECT_EQ(cursor.find_first_not_of(
                  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
              std::string::npos)
        << "cursor must be URL-safe: " << cursor;
    if (pages > 100) {
      ADD_FAILURE() << "pagination does not end";
      break;
    }
  }
  return seen;
}

TEST_F(HttpServerTest, CursorsPageThroughEveryRecordExactlyOnce) {
  HttpTestClient client(server_->port(), *token_);  // one keep-alive connection for all pages
  const std::string base = messagesUrl("sensor-1", "from=2026-01-01T00:00:00Z&to=2026-01-02");
  std::size_t pages = 0;

  auto seen = walkPages(client, base, 333, pages);
  EXPECT_EQ(pages, 8u);  // ceil(2500 / 333)
  ASSERT_EQ(seen.size(), static_cast<std::size_t>(kSensorRecords));
  for (int i = 0; i < kSensorRecords; ++i) EXPECT_EQ(seen[i], i);

  seen = walkPages(client, base + "&order=desc", 333, pages);
  ASSERT_EQ(seen.size(), static_cast<std::size_t>(kSensorRecords));
  for (int i = 0; i < kSensorRecords; ++i) EXPECT_EQ(seen[i], kSensorRecords - 1 - i);

  // Exactly full pages: the last one has no cursor, so there is no empty extra page.
  seen = walkPages(client, base, 500, pages);
  EXPECT_EQ(pages, 5u);
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(kSensorRecords));
}

TEST_F(HttpServerTest, MessagesRejectBadParameters) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"from=yesterday", "'from'"},
      {"from=2026-13-01T00:00:00Z", "'from'"},
      {"to=12abc", "'to'"},
      {"from=2026-01-02&to=2026-01-01", "'to'"},
      {"limit=abc", "'limit'"},
      {"limit=0", "'limit'"},
      {"limit=10001", "'limit'"},
      {"limit=-5", "'limit'"},
      {"limit=", "'limit'"},
      {"order=up", "'order'"},
      {"cursor=not-a-cursor", "'cursor'"},
      {"cursor=" + base64UrlEncode("garbage bytes of the wrong size"), "'cursor'"},
      {"cursor=%zz", "'cursor'"},
      {"limt=5", "'limt'"},
      {"limit=5&limit=6", "'limit'"},
  };
  for (const auto& [query, mention] : cases) {
    SCOPED_TRACE(query);
    expectProblem(get(messagesUrl("sensor-1", query)), 400, mention);
  }
  const auto r = get(messagesUrl("sensor-1", "limit=abc"));
  EXPECT_EQ(r.json().at("detail"),
            "parameter 'limit': expected an integer between 1 and 10000, got 'abc'");
  EXPECT_EQ(r.json().at("title"), "Bad Request");
}

TEST_F(HttpServerTest, StoreErrorsAre500Problems) {
  faulty_->failReads = true;
  expectProblem(get("/api/v1/devices"), 500, "store");
  expectProblem(get("/api/v1/devices/sensor-1"), 500, "store");
  expectProblem(get("/api/v1/devices/sensor-1/messages"), 500, "store");
  expectProblem(get("/api/v1/devices/sensor-1/series/temp"), 500, "store");
  // The store's own message stays in the log.
  EXPECT_EQ(get("/api/v1/devices").body.find("disk on fire"), std::string::npos);
}

// --- series ------------------------------------------------------------------------------------

TEST_F(HttpServerTest, SeriesAggregatesPerBucket) {
  // Minute k holds records 120k..120k+119 with temp = i + 0.5.
  const std::string range = "from=2026-01-01T00:00:00Z&to=2026-01-01T00:03:00Z&bucket=1m";
  struct Expect {
    std::string agg;
    double first;  // value of minute 0; minute k adds 120k per record
    double perMinute;
  };
  const std::vector<Expect> expectations = {
      {"avg", 60.0, 120.0},
      {"min", 0.5, 120.0},
      {"max", 119.5, 120.0},
      {"sum", 7200.0, 14400.0},
      {"count", 120.0, 0.0},
      // Records share timestamps in pairs: the later-stored one of the last pair is "last".
      {"first", 0.5, 120.0},
      {"last", 119.5, 120.0},
  };
  for (const auto& e : expectations) {
    SCOPED_TRACE(e.agg);
    const auto r = get("/api/v1/devices/sensor-1/series/temp?" + range + "&agg=" + e.agg);
    ASSERT_EQ(r.status, 200u) << r.body;
    const auto body = r.json();
    EXPECT_EQ(body.at("device"), "sensor-1");
    EXPECT_EQ(body.at("key"), "temp");
    EXPECT_EQ(body.at("bucket"), "1m");
    EXPECT_EQ(body.at("agg"), json::value(e.agg));
    const auto& points = body.at("points").as_array();
    ASSERT_EQ(points.size(), 3u);
    for (std::size_t k = 0; k < points.size(); ++k) {
      EXPECT_EQ(points[k].at("ts"),
                json::value("2026-01-01T00:0" + std::to_string(k) + ":00.000Z"));
      EXPECT_EQ(points[k].at("count").as_int64(), 120);
      EXPECT_DOUBLE_EQ(points[k].at("value").to_number<double>(),
                       e.first + e.perMinute * static_cast<double>(k));
    }
  }
}

TEST_F(HttpServerTest, SeriesDefaultsAndIntegerFieldsAndUnknownKeys) {
  // Default range is the last hour, where this fixture has no data: no points, not 404.
  auto r = get("/api/v1/devices/sensor-1/series/temp");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.json().at("bucket"), "1m");
  EXPECT_EQ(r.json().at("agg"), "avg");
  EXPECT_TRUE(r.json().at("points").as_array().empty());

  r =
      get("/api/v1/devices/sensor-1/series/count?from=2026-01-01T00:00:00Z&to=2026-01-01T00:01:00Z"
          "&bucket=30s&agg=max");
  ASSERT_EQ(r.status, 200u) << r.body;
  const json::value pointsDoc = r.json();
  const auto& points = pointsDoc.at("points").as_array();
  ASSERT_EQ(points.size(), 2u);
  EXPECT_DOUBLE_EQ(points[0].at("value").to_number<double>(), 59.0);
  EXPECT_DOUBLE_EQ(points[1].at("value").to_number<double>(), 119.0);

  r = get("/api/v1/devices/sensor-1/series/no.such.key?from=0&to=2026-02-01&bucket=1d");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_TRUE(r.json().at("points").as_array().empty());
  EXPECT_EQ(r.json().at("key"), "no.such.key");
}

TEST_F(HttpServerTest, SeriesRejectBadParameters) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"bucket=abc", "'bucket'"},
      {"bucket=500ms", "'bucket'"},
      {"bucket=367d", "'bucket'"},
      {"bucket=0", "'bucket'"},
      {"from=0&to=2026-01-01&bucket=1s", "'bucket'"},  // ~1.8e9 buckets
      {"agg=median", "'agg'"},
      {"from=now", "'from'"},
      {"to=x", "'to'"},
      {"from=2026-01-01T00:00:00Z&to=2026-01-01T00:00:00Z", "'to'"},
      {"limit=5", "'limit'"},
  };
  for (const auto& [query, mention] : cases) {
    SCOPED_TRACE(query);
    expectProblem(get("/api/v1/devices/sensor-1/series/temp?" + query), 400, mention);
  }
  // 100,000 buckets are fine, one more is not.
  EXPECT_EQ(get("/api/v1/devices/sensor-1/series/temp?from=0&to=100000&bucket=1s").status, 200u);
  expectProblem(get("/api/v1/devices/sensor-1/series/temp?from=0&to=100001&bucket=1s"), 400,
                "'bucket'");
}

// --- routing and HTTP --------------------------------------------------------------------------

// --- CSV ---------------------------------------------------------------------------------------

std::vector<std::string> csvLines(const std::string& body) {
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (start < body.size()) {
    const std::size_t end = body.find("\r\n", start);
    EXPECT_NE(end, std::string::npos) << "every CSV line ends with CRLF";
    if (end == std::string::npos) break;
    lines.push_back(body.substr(start, end - start));
    start = end + 2;
  }
  return lines;
}

TEST_F(HttpServerTest, MessagesAsCsvWithAColumnPerFieldAndACursorHeader) {
  const auto asJson = get(messagesUrl("sensor-1", "limit=2"));
  ASSERT_EQ(asJson.status, 200u);
  const auto jsonDoc = asJson.json();
  const auto& messages = jsonDoc.at("messages").as_array();
  ASSERT_EQ(messages.size(), 2u);

  const auto r = get(messagesUrl("sensor-1", "limit=2&format=csv"));
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.header("content-type"), "text/csv; charset=utf-8");
  const auto lines = csvLines(r.body);
  ASSERT_EQ(lines.size(), 3u) << r.body;
  EXPECT_EQ(lines[0],
            "id,ts,device_ts,node,topic,temp,count,ok,name,nested.a,payload,payload_encoding");
  EXPECT_EQ(lines[1], std::to_string(messages[0].at("id").as_int64()) +
                          ",2026-01-01T00:00:00.000Z,2025-12-31T23:59:59.500Z,node-a,"
                          "device/sensor-1,0.5,0,true,s-0,1,\"{\"\"temp\"\":0.5}\",utf8");
  EXPECT_EQ(lines[2], std::to_string(messages[1].at("id").as_int64()) +
                          ",2026-01-01T00:00:00.000Z,,node-a,device/sensor-1,1.5,1,false,s-1,1,"
                          "\"{\"\"temp\"\":1.5}\",utf8");
  // The JSON page's next_cursor travels in a header, and continues the CSV the same way.
  EXPECT_EQ(r.header("x-next-cursor"), std::string(jsonDoc.at("next_cursor").as_string()));
  const auto next =
      get(messagesUrl("sensor-1", "limit=2&format=csv&cursor=" + r.header("x-next-cursor")));
  ASSERT_EQ(next.status, 200u) << next.body;
  const auto nextLines = csvLines(next.body);
  ASSERT_EQ(nextLines.size(), 3u);
  EXPECT_NE(nextLines[1].find(",s-2,"), std::string::npos) << nextLines[1];

  // Binary payloads are base64, as in JSON; a device without fields has no field columns.
  const auto bin = get("/api/v1/devices/bin%2Fdev/messages?format=csv");
  ASSERT_EQ(bin.status, 200u) << bin.body;
  const auto binLines = csvLines(bin.body);
  ASSERT_EQ(binLines.size(), 4u);
  EXPECT_EQ(binLines[0], "id,ts,device_ts,node,topic,payload,payload_encoding");
  EXPECT_TRUE(binLines[1].ends_with(",node-b,raw/bin,AAH//mE=,base64")) << binLines[1];
  EXPECT_EQ(bin.header("x-next-cursor"), "");
}

TEST_F(HttpServerTest, AcceptHeaderSelectsCsvAndFormatOverridesIt) {
  HttpTestClient client(server_->port(), *token_);
  const std::string url =
      "/api/v1/devices/sensor-1/series/temp?from=2026-01-01T00:00:00Z&"
      "to=2026-01-01T00:02:00Z&bucket=1m&agg=max";
  auto raw = [&](const std::string& target, const std::string& accept) {
    return client.sendRaw("GET " + target + " HTTP/1.1\r\nHost: t\r\nAuthorization: " + *token_ +
                          "\r\nAccept: " + accept + "\r\n\r\n");
  };
  const auto csv = raw(url, "text/csv");
  ASSERT_EQ(csv.status, 200u) << csv.body;
  EXPECT_EQ(csv.header("content-type"), "text/csv; charset=utf-8");
  EXPECT_EQ(csv.body,
            "ts,value,count\r\n2026-01-01T00:00:00.000Z,119.5,120\r\n"
            "2026-01-01T00:01:00.000Z,239.5,120\r\n");
  const auto firstCsv =
      raw("/api/v1/devices/sensor-1/series/temp?from=2026-01-01T00:00:00Z&to=2026-01-01T00:02:00Z&"
          "bucket=1m&agg=first&format=csv",
          "application/json");
  ASSERT_EQ(firstCsv.status, 200u) << firstCsv.body;
  EXPECT_EQ(firstCsv.body,
            "ts,value,count\r\n2026-01-01T00:00:00.000Z,0.5,120\r\n"
            "2026-01-01T00:01:00.000Z,120.5,120\r\n");
  EXPECT_EQ(raw(url, "application/json, text/csv;q=0.5").header("content-type"),
            "application/json");
  EXPECT_EQ(raw(url + "&format=json", "text/csv").header("content-type"), "application/json");
  EXPECT_EQ(raw(messagesUrl("sensor-1", "limit=1"), "text/csv, */*").header("content-type"),
            "text/csv; charset=utf-8");
  // Problems stay JSON whatever was asked for.
  expectProblem(raw(url + "&format=xml", "text/csv"), 400, "format");
  expectProblem(get(messagesUrl("sensor-1", "format=")), 400, "format");
}

// --- device tags and attributes, fleet queries -------------------------------------------------

// Its own store, since these tests write: trucks t1, t2 (fleet east) and t3 (west) report at
// 2026-01-01T00:00:10Z and :20Z; t4 (untagged) reports a minute ago; t5 is registered only.
class FleetApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = makeTempDir();
    store_ = storage::sqlite::openSqliteStore({(dir_ / "tern.db").string()});
    const auto record = [](std::string device, std::int64_t ts,
                           std::vector<storage::Field> fields) {
      storage::Record r;
      r.deviceId = std::move(device);
      r.serverTimeUs = ts;
      r.nodeId = "node-a";
      r.topic = "device/" + r.deviceId;
      r.payload = "{}";
      r.payloadIsJson = true;
      r.fields = std::move(fields);
      return r;
    };
    const std::int64_t now = core::nowMicros();
    const std::vector<storage::Record> records{
        record("t1", kT0 + 10 * kSecond, {{"speed", 0.0}, {"fuel", 0.05}, {"lat", 52.5}}),
        record("t1", kT0 + 20 * kSecond, {{"speed", 1.0}, {"lon", 13.25}}),
        record("t2", kT0 + 10 * kSecond, {{"speed", 40.0}, {"fuel", std::int64_t{1}}}),
        record("t2", kT0 + 86'400 * kSecond, {{"speed", 60.0}}),
        record("t3", kT0 + 20 * kSecond, {{"speed", std::string("n/a")}, {"fuel", 0.01}}),
        record("t4", now - 60 * kSecond, {{"speed", 0.5}, {"fuel", 0.5}})};
    ASSERT_TRUE(store_->appendBatch(records).ok());
    authStore_ = storage::sqlite::openSqliteAuthStore((dir_ / "tern.db").string());
    auth_ = std::make_unique<auth::AuthService>(*authStore_, auth::AuthOptions{});
    auto key = auth_->createApiKey("fleet-test", auth::Role::kOperator, "test");  // PUT needs it
    ASSERT_TRUE(key.ok()) << key.error().message;
    token_ = "Bearer " + key->key;
    ApiOptions options;
    options.listen = {"127.0.0.1", 0};
    options.nodeId = "node-test";
    options.auth = auth_.get();
    server_ = std::make_unique<HttpServer>(*store_, std::move(options));
    server_->start();
    for (const auto& [device, fleet] : std::vector<std::pair<std::string, std::string>>{
             {"t1", "east"}, {"t2", "east"}, {"t3", "west"}, {"t5", "east"}}) {
      const auto r = put("/api/v1/devices/" + device,
                         R"({"tags":{"fleet":")" + fleet + R"(","model":"F-150"}})");
      ASSERT_TRUE(r.status == 200u || r.status == 201u) << r.body;
    }
  }
  void TearDown() override {
    server_.reset();
    auth_.reset();
    authStore_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  HttpTestResponse get(std::string_view target) {
    HttpTestClient client(server_->port(), token_);
    return client.get(target);
  }
  HttpTestResponse put(std::string_view target, std::string_view body) {
    HttpTestClient client(server_->port(), token_);
    return client.request("PUT", target, body);
  }
  static std::vector<std::string> ids(const json::value& body) {
    std::vector<std::string> out;
    for (const auto& d : body.at("devices").as_array()) out.emplace_back(d.at("id").as_string());
    return out;
  }
  static void expectProblem(const HttpTestResponse& r, unsigned status, std::string_view mention) {
    EXPECT_EQ(r.status, status) << r.body;
    EXPECT_EQ(r.header("content-type"), "application/problem+json");
    const json::value body = r.json();
    if (!body.is_object()) return;
    const std::string detail(body.at("detail").as_string());
    EXPECT_NE(detail.find(mention), std::string::npos)
        << "detail '" << detail << "' should mention " << mention;
  }

  std::filesystem::path dir_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<storage::AuthStore> authStore_;
  std::unique_ptr<auth::AuthService> auth_;
  std::string token_;
  std::unique_ptr<HttpServer> server_;
};

TEST_F(FleetApiTest, PutSetsTagsAndAttributesAndRegistersUnknownDevices) {
  // t5 was created by the PUT in SetUp: it shows up without having sent anything.
  auto r = get("/api/v1/devices/t5");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.json().at("first_seen"), json::value(nullptr));
  EXPECT_EQ(r.json().at("last_seen"), json::value(nullptr));
  EXPECT_EQ(r.json().at("message_count").as_int64(), 0);
  EXPECT_EQ(r.json().at("tags"), (json::object{{"fleet", "east"}, {"model", "F-150"}}));
  EXPECT_EQ(r.json().at("attributes"), json::object());

  r = put("/api/v1/devices/new%2F1", R"({"attributes":{"vin":"1FT","axles":2,"max":7.5}})");
  EXPECT_EQ(r.status, 201u) << r.body;
  EXPECT_EQ(r.json().at("id"), "new/1");
  r = put("/api/v1/devices/t1", R"({"attributes":{"vin":"X1","limits":{"speed":90.0},"a":[1]}})");
  ASSERT_EQ(r.status, 200u) << r.body;
  const auto t1 = r.json();
  EXPECT_EQ(t1.at("first_seen"), "2026-01-01T00:00:10.000Z");
  EXPECT_EQ(t1.at("message_count").as_int64(), 2);
  EXPECT_EQ(t1.at("tags").at("fleet"), "east");  // kept: only attributes were given
  EXPECT_EQ(t1.at("attributes").at("vin"), "X1");
  EXPECT_DOUBLE_EQ(t1.at("attributes").at("limits").at("speed").as_double(), 90.0);
  // GET shows the same, and the list does too.
  r = get("/api/v1/devices/t1");
  ASSERT_EQ(r.status, 200u);
  EXPECT_EQ(r.json(), t1);
  r = put("/api/v1/devices/t1", R"({"tags":{}})");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_TRUE(r.json().at("tags").as_object().empty());
  EXPECT_EQ(r.json().at("attributes").at("vin"), "X1");
  r = get("/api/v1/devices");
  ASSERT_EQ(r.status, 200u);
  EXPECT_EQ(ids(r.json()), (std::vector<std::string>{"new/1", "t1", "t2", "t3", "t4", "t5"}));
}

TEST_F(FleetApiTest, DevicesFilterByTag) {
  auto r = get("/api/v1/devices?tag=fleet:east");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(ids(r.json()), (std::vector<std::string>{"t1", "t2", "t5"}));
  EXPECT_EQ(r.json().at("devices").at(0).at("message_count").as_int64(), 2);
  r = get("/api/v1/devices?tag=fleet%3Awest");
  EXPECT_EQ(ids(r.json()), (std::vector<std::string>{"t3"}));
  r = get("/api/v1/devices?tag=fleet:nowhere");
  ASSERT_EQ(r.status, 200u);
  EXPECT_TRUE(ids(r.json()).empty());
  expectProblem(get("/api/v1/devices?tag=fleet"), 400, "'tag'");
  expectProblem(get("/api/v1/devices?tag=:east"), 400, "'tag'");
  expectProblem(get("/api/v1/devices?fleet=east"), 400, "'fleet'");
}

TEST_F(FleetApiTest, BadBodiesAre400NamingTheField) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "request body"},
      {"not json", "request body"},
      {"[1]", "request body"},
      {"{}", "request body"},
      {R"({"tag":{}})", "'tag'"},
      {R"({"tags":[]})", "'tags'"},
      {R"({"tags":{"fleet":1}})", "'tags.fleet'"},
      {R"({"tags":{"fleet":null}})", "'tags.fleet'"},
      {R"({"tags":{"":"x"}})", "'tags'"},
      {R"({"tags":{"a:b":"x"}})", "'tags'"},
      {R"({"tags":{"k":")" + std::string(257, 'v') + R"("}})", "'tags.k'"},
      {R"({"attributes":"x"})", "'attributes'"},
      {R"({"attributes":[1]})", "'attributes'"},
      {R"({"tags":{},"attributes":{},"extra":1})", "'extra'"},
  };
  for (const auto& [body, mention] : cases) {
    SCOPED_TRACE(body);
    expectProblem(put("/api/v1/devices/t1", body), 400, mention);
  }
  std::string many = R"({"tags":{)";
  for (int i = 0; i < 65; ++i) {
    if (i > 0) many += ',';
    many += "\"k";
    many += std::to_string(i);
    many += "\":\"v\"";
  }
  many += "}}";
  expectProblem(put("/api/v1/devices/t1", many), 400, "'tags'");
  expectProblem(put("/api/v1/devices/t1?x=1", R"({"tags":{}})"), 400, "'x'");
  // Nothing changed, and no device was created by a rejected PUT.
  auto r = get("/api/v1/devices/t1");
  EXPECT_EQ(r.json().at("tags").at("fleet"), "east");
  EXPECT_EQ(get("/api/v1/devices/t9").status, 404u);
  expectProblem(put("/api/v1/devices/t9", "{"), 400, "request body");
  EXPECT_EQ(get("/api/v1/devices/t9").status, 404u);
}

TEST_F(FleetApiTest, LatestValuesOfAGroupOrTheWholeFleet) {
  auto r = get("/api/v1/fleet/latest?tag=fleet:east&keys=lat,lon");
  ASSERT_EQ(r.status, 200u) << r.body;
  auto body = r.json();
  EXPECT_EQ(body.at("tag"), "fleet:east");
  ASSERT_EQ(ids(body), (std::vector<std::string>{"t1"}));  // t2 has no position, t5 nothing
  const auto& t1 = body.at("devices").at(0);
  EXPECT_EQ(t1.at("last_seen"), "2026-01-01T00:00:20.000Z");
  EXPECT_EQ(toJsonText(t1.at("values")), R"({"lat":52.5,"lon":13.25})");

  r = get("/api/v1/fleet/latest?keys=fuel");
  ASSERT_EQ(r.status, 200u) << r.body;
  body = r.json();
  EXPECT_EQ(body.at("tag"), json::value(nullptr));
  EXPECT_EQ(ids(body), (std::vector<std::string>{"t1", "t2", "t3", "t4"}));
  EXPECT_EQ(body.at("devices").at(1).at("values").at("fuel").as_int64(), 1);
  r = get("/api/v1/fleet/latest?tag=fleet:west");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.json().at("devices").at(0).at("values").at("speed"), "n/a");
  r = get("/api/v1/fleet/latest?tag=fleet:nobody");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_TRUE(ids(r.json()).empty());

  expectProblem(get("/api/v1/fleet/latest?keys=lat,,lon"), 400, "'keys'");
  expectProblem(get("/api/v1/fleet/latest?keys="), 400, "'keys'");
  expectProblem(get("/api/v1/fleet/latest?tag=east"), 400, "'tag'");
  expectProblem(get("/api/v1/fleet/latest?key=lat"), 400, "'key'");
}

TEST_F(FleetApiTest, DevicesBelowOrAboveAThreshold) {
  auto r = get("/api/v1/fleet/threshold?key=fuel_state&below=0.1");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_TRUE(ids(r.json()).empty());  // nobody has that key
  r = get("/api/v1/fleet/threshold?key=fuel&below=0.1");
  ASSERT_EQ(r.status, 200u) << r.body;
  auto body = r.json();
  EXPECT_EQ(ids(body), (std::vector<std::string>{"t1", "t3"}));
  EXPECT_DOUBLE_EQ(body.at("devices").at(0).at("value").as_double(), 0.05);
  EXPECT_DOUBLE_EQ(body.at("below").as_double(), 0.1);
  r = get("/api/v1/fleet/threshold?tag=fleet:east&key=fuel&below=0.1");
  EXPECT_EQ(ids(r.json()), (std::vector<std::string>{"t1"}));
  r = get("/api/v1/fleet/threshold?key=fuel&above=0.4");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(ids(r.json()), (std::vector<std::string>{"t2", "t4"}));
  EXPECT_DOUBLE_EQ(r.json().at("above").as_double(), 0.4);
  // t3's latest speed is a string: never below or above anything.
  r = get("/api/v1/fleet/threshold?key=speed&below=1e9");
  EXPECT_EQ(ids(r.json()), (std::vector<std::string>{"t1", "t2", "t4"}));

  for (const auto& [query, mention] : std::vector<std::pair<std::string, std::string>>{
           {"below=1", "'key'"},
           {"key=fuel", "'below'"},
           {"key=fuel&below=1&above=2", "'above'"},
           {"key=fuel&below=low", "'below'"},
           {"key=fuel&above=nan", "'above'"},
           {"key=fuel&below=1e999", "'below'"},
           {"key=&below=1", "'key'"},
           {"key=fuel&below=1&window=1m", "'window'"},
       }) {
    SCOPED_TRACE(query);
    expectProblem(get("/api/v1/fleet/threshold?" + query), 400, mention);
  }
}

TEST_F(FleetApiTest, StationaryDevicesOverAWindow) {
  // The default: `speed` below 1 over the last 10 minutes; only t4 reported recently.
  auto r = get("/api/v1/fleet/stationary");
  ASSERT_EQ(r.status, 200u) << r.body;
  auto body = r.json();
  EXPECT_EQ(body.at("key"), "speed");
  EXPECT_DOUBLE_EQ(body.at("below").as_double(), 1.0);
  EXPECT_EQ(ids(body), (std::vector<std::string>{"t4"}));
  EXPECT_DOUBLE_EQ(body.at("devices").at(0).at("average").as_double(), 0.5);
  EXPECT_EQ(body.at("devices").at(0).at("count").as_int64(), 1);
  r = get("/api/v1/fleet/stationary?tag=fleet:east&window=1h");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_TRUE(ids(r.json()).empty());

  // An explicit range: t1 averages 0.5, t2 40; t3's speed is not a number.
  const std::string range = "from=2026-01-01T00:00:00Z&to=2026-01-01T00:01:00Z";
  r = get("/api/v1/fleet/stationary?key=speed&below=1&" + range);
  ASSERT_EQ(r.status, 200u) << r.body;
  body = r.json();
  EXPECT_EQ(ids(body), (std::vector<std::string>{"t1"}));
  EXPECT_DOUBLE_EQ(body.at("devices").at(0).at("average").as_double(), 0.5);
  EXPECT_EQ(body.at("devices").at(0).at("count").as_int64(), 2);
  EXPECT_EQ(body.at("from"), "2026-01-01T00:00:00.000Z");
  r = get("/api/v1/fleet/stationary?tag=fleet:east&above=10&" + range);
  EXPECT_EQ(ids(r.json()), (std::vector<std::string>{"t2"}));
  r = get("/api/v1/fleet/stationary?tag=fleet:west&below=1000&" + range);
  EXPECT_TRUE(ids(r.json()).empty());

  for (const auto& [query, mention] : std::vector<std::pair<std::string, std::string>>{
           {"window=abc", "'window'"},
           {"window=0s", "'window'"},
           {"window=400d", "'window'"},
           {"window=10m&from=2026-01-01", "'window'"},
           {"from=2026-01-02&to=2026-01-01", "'to'"},
           {"from=yesterday", "'from'"},
           {"below=x", "'below'"},
           {"tag=x", "'tag'"},
           {"limit=0", "'limit'"},
           {"sort=name", "'sort'"},
       }) {
    SCOPED_TRACE(query);
    expectProblem(get("/api/v1/fleet/stationary?" + query), 400, mention);
  }
}

TEST_F(FleetApiTest, DailyAggregatesPerGroup) {
  const std::string range = "&from=2026-01-01&to=2026-01-03";
  auto r = get("/api/v1/fleet/daily?key=speed&agg=avg" + range);
  ASSERT_EQ(r.status, 200u) << r.body;
  auto body = r.json();
  EXPECT_EQ(body.at("agg"), "avg");
  EXPECT_EQ(body.at("by"), json::value(nullptr));
  const auto& days = body.at("days").as_array();
  ASSERT_EQ(days.size(), 2u) << r.body;
  EXPECT_EQ(days[0].at("day"), "2026-01-01");
  EXPECT_FALSE(days[0].as_object().contains("group"));
  EXPECT_DOUBLE_EQ(days[0].at("value").as_double(), 41.0 / 3);  // t1 0, 1; t2 40
  EXPECT_EQ(days[0].at("count").as_int64(), 3);
  EXPECT_EQ(days[1].at("day"), "2026-01-02");
  EXPECT_DOUBLE_EQ(days[1].at("value").as_double(), 60);

  r = get("/api/v1/fleet/daily?key=fuel&agg=count&by=fleet" + range);
  ASSERT_EQ(r.status, 200u) << r.body;
  body = r.json();
  EXPECT_EQ(body.at("by"), "fleet");
  ASSERT_EQ(body.at("days").as_array().size(), 2u) << r.body;
  EXPECT_EQ(body.at("days").at(0).at("group"), "east");
  EXPECT_EQ(body.at("days").at(0).at("count").as_int64(), 2);
  EXPECT_EQ(body.at("days").at(1).at("group"), "west");
  r = get("/api/v1/fleet/daily?key=fuel&by=fleet");  // the last 7 days: t4 only, untagged
  ASSERT_EQ(r.status, 200u) << r.body;
  ASSERT_EQ(r.json().at("days").as_array().size(), 1u) << r.body;
  EXPECT_EQ(r.json().at("days").at(0).at("group"), json::value(nullptr));
  r = get("/api/v1/fleet/daily?tag=fleet:nobody&key=speed" + range);
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_TRUE(r.json().at("days").as_array().empty());

  for (const auto& [query, mention] : std::vector<std::pair<std::string, std::string>>{
           {"agg=avg", "'key'"},
           {"key=speed&agg=first", "'agg'"},
           {"key=speed&agg=median", "'agg'"},
           {"key=speed&by=", "'by'"},
           {"key=speed&by=a:b", "'by'"},
           {"key=speed&from=2020-01-01&to=2026-01-01", "'from'"},
           {"key=speed&from=2026-01-02&to=2026-01-01", "'to'"},
           {"key=speed&bucket=1d", "'bucket'"},
       }) {
    SCOPED_TRACE(query);
    expectProblem(get("/api/v1/fleet/daily?" + query), 400, mention);
  }
}

TEST_F(FleetApiTest, DeviceListsSortAndPage) {
  // The next page of `target` (which has a query) after `body`.
  const auto nextPage = [&](const std::string& target, const json::value& body) {
    return get(target + "&cursor=" + std::string(body.at("next_cursor").as_string()));
  };
  // t1..t4 have fuel; last seen: t1 and t3 at :20, t2 a day later, t4 a minute ago.
  const std::string latest = "/api/v1/fleet/latest?keys=fuel&limit=3";
  auto r = get(latest);
  ASSERT_EQ(r.status, 200u) << r.body;
  auto body = r.json();
  EXPECT_EQ(ids(body), (std::vector<std::string>{"t1", "t2", "t3"}));
  r = nextPage(latest, body);
  ASSERT_EQ(r.status, 200u) << r.body;
  body = r.json();
  EXPECT_EQ(ids(body), (std::vector<std::string>{"t4"}));
  EXPECT_EQ(body.at("next_cursor"), json::value(nullptr));
  r = get("/api/v1/fleet/latest?keys=fuel&sort=-last_seen");
  EXPECT_EQ(ids(r.json()), (std::vector<std::string>{"t4", "t2", "t3", "t1"}));
  const std::string byTime = "/api/v1/fleet/latest?keys=fuel&sort=last_seen&limit=2";
  r = get(byTime);
  body = r.json();
  EXPECT_EQ(ids(body), (std::vector<std::string>{"t1", "t3"}));
  r = nextPage(byTime, body);
  EXPECT_EQ(ids(r.json()), (std::vector<std::string>{"t2", "t4"}));
  // A cursor continues only the sort it came from.
  expectProblem(get("/api/v1/fleet/latest?keys=fuel&sort=-id&cursor=" +
                    std::string(body.at("next_cursor").as_string())),
                400, "'cursor'");

  r = get("/api/v1/fleet/threshold?key=fuel&below=0.1&sort=-id");
  EXPECT_EQ(ids(r.json()), (std::vector<std::string>{"t3", "t1"}));
  const std::string stationary =
      "/api/v1/fleet/stationary?above=-1&from=2026-01-01T00:00:00Z&to=2026-01-01T00:01:00Z"
      "&sort=-id&limit=1";
  r = get(stationary);
  ASSERT_EQ(r.status, 200u) << r.body;
  body = r.json();
  EXPECT_EQ(ids(body), (std::vector<std::string>{"t2"}));
  r = nextPage(stationary, body);
  body = r.json();
  EXPECT_EQ(ids(body), (std::vector<std::string>{"t1"}));
  EXPECT_EQ(body.at("next_cursor"), json::value(nullptr));
  expectProblem(get("/api/v1/fleet/threshold?key=fuel&below=1&limit=10001"), 400, "'limit'");

  // Latest positions: t1 has one; t2 and t3 get one now.
  std::vector<storage::Record> moves;
  for (const char* device : {"t2", "t3"}) {
    storage::Record move;
    move.deviceId = device;
    move.serverTimeUs = kT0 + 30 * kSecond;
    move.nodeId = "node-a";
    move.topic = std::string("device/") + device;
    move.payload = "{}";
    move.payloadIsJson = true;
    move.fields = {{"lat", 48.0}, {"lon", 11.5}};
    moves.push_back(std::move(move));
  }
  ASSERT_TRUE(store_->appendBatch(moves).ok());
  const auto positionIds = [](const json::value& page) {
    std::vector<std::string> out;
    for (const auto& p : page.at("positions").as_array()) {
      out.emplace_back(p.at("device").as_string());
    }
    return out;
  };
  const std::string positions = "/api/v1/positions/latest?limit=2";
  r = get(positions);
  ASSERT_EQ(r.status, 200u) << r.body;
  body = r.json();
  EXPECT_EQ(positionIds(body), (std::vector<std::string>{"t1", "t2"}));
  r = nextPage(positions, body);
  body = r.json();
  EXPECT_EQ(positionIds(body), (std::vector<std::string>{"t3"}));
  EXPECT_EQ(body.at("next_cursor"), json::value(nullptr));
  r = get("/api/v1/positions/latest?tag=fleet:east&sort=-id");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(positionIds(r.json()), (std::vector<std::string>{"t2", "t1"}));
  r = get("/api/v1/positions/latest?search=T3");
  EXPECT_EQ(positionIds(r.json()), (std::vector<std::string>{"t3"}));
  r = get("/api/v1/positions/latest?sort=last_seen");
  EXPECT_EQ(positionIds(r.json()), (std::vector<std::string>{"t1", "t3", "t2"}));
  expectProblem(get("/api/v1/positions/latest?tag=east"), 400, "'tag'");
  expectProblem(get("/api/v1/positions/latest?sort=size"), 400, "'sort'");
}

TEST_F(FleetApiTest, FleetEndpointsAreGetOnly) {
  HttpTestClient client(server_->port(), token_);
  const auto r = client.request("POST", "/api/v1/fleet/latest", "{}");
  expectProblem(r, 405, "POST");
  EXPECT_EQ(r.header("allow"), "GET");
  expectProblem(get("/api/v1/fleet"), 404, "resource");
  expectProblem(get("/api/v1/fleet/other"), 404, "resource");
}

TEST(CsvTest, FieldsAreQuotedOnlyWhenNeeded) {
  auto field = [](std::string_view v) {
    std::string out;
    appendCsvField(out, v);
    return out;
  };
  EXPECT_EQ(field("plain"), "plain");
  EXPECT_EQ(field(""), "");
  EXPECT_EQ(field("a,b"), "\"a,b\"");
  EXPECT_EQ(field("say \"hi\""), "\"say \"\"hi\"\"\"");
  EXPECT_EQ(field("two\nlines"), "\"two\nlines\"");
  EXPECT_EQ(field("cr\r"), "\"cr\r\"");
}

TEST_F(HttpServerTest, UnknownPathsAre404) {
  for (const char* path :
       {"/app", "/api", "/api/v1", "/api/v2/health", "/api/v1/healthz", "/api/v1/devices/",
        "/api/v1/devices/sensor-1/other", "/api/v1/devices/sensor-1/series",
        "/api/v1/devices/sensor-1/series/", "/api/v1/devices/sensor-1/messages/1"}) {
    SCOPED_TRACE(path);
    expectProblem(get(path), 404, "resource");
  }
  expectProblem(get("/api/v1/devices/%zz"), 400, "percent-encoding");
}

TEST_F(HttpServerTest, WrongMethodIs405WithAllow) {
  HttpTestClient client(server_->port(), *token_);
  const auto allowFor = [](std::string_view path) -> std::string {
    if (path == "/api/v1/devices") return "GET, POST";
    if (path == "/api/v1/devices/sensor-1") return "GET, PUT, PATCH, DELETE";
    return "GET";
  };
  for (const char* method : {"POST", "DELETE", "PUT", "HEAD"}) {
    for (const char* path :
         {"/api/v1/health", "/api/v1/devices", "/api/v1/devices/sensor-1",
          "/api/v1/devices/sensor-1/messages", "/api/v1/devices/sensor-1/series/temp"}) {
      SCOPED_TRACE(std::string(method) + " " + path);
      if (std::string_view(method) == "HEAD") {
        // No body, but the headers a GET would get; the connection stays usable.
        const auto r = client.request(method, path);
        EXPECT_EQ(r.status, 405u);
        EXPECT_EQ(r.header("allow"), allowFor(path));
        EXPECT_TRUE(r.body.empty());
        EXPECT_NE(r.header("content-length"), "0");
        continue;
      }
      if (allowFor(path).find(method) != std::string::npos) continue;  // device writes
      const auto r = client.request(method, path, "{}");
      expectProblem(r, 405, method);
      EXPECT_EQ(r.header("allow"), allowFor(path));
    }
  }
}

TEST_F(HttpServerTest, KeepAliveServesManyRequestsOnOneConnection) {
  HttpTestClient client(server_->port(), *token_);
  for (int i = 0; i < 20; ++i) {
    const auto r = client.get(i % 2 == 0 ? "/api/v1/health" : "/api/v1/nope");
    EXPECT_EQ(r.status, i % 2 == 0 ? 200u : 404u);
    EXPECT_TRUE(r.keepAlive);
  }
}

TEST_F(HttpServerTest, MalformedRequestsGet400AndTheConnectionCloses) {
  for (const char* raw : {"GARBAGE\r\n\r\n", "GET /api/v1/health HTTP/9.9\r\n\r\n",
                          "GET /api/v1/health HTTP/1.1\r\nno colon here\r\n\r\n"}) {
    SCOPED_TRACE(raw);
    HttpTestClient client(server_->port(), *token_);
    const auto r = client.sendRaw(raw);
    expectProblem(r, 400, "malformed");
    EXPECT_FALSE(r.keepAlive);
    EXPECT_TRUE(client.waitForClose());
  }
  HttpTestClient client(server_->port(), *token_);
  const auto r = client.sendRaw("GET *  HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(r.status, 400u);
}

TEST_F(HttpServerTest, OversizedBodiesAndHeadersAreRejected) {
  {
    HttpTestClient client(server_->port(), *token_);
    const auto r = client.request("GET", "/api/v1/health", std::string(70 * 1024, 'x'));
    expectProblem(r, 413, "body");
    EXPECT_TRUE(client.waitForClose());
  }
  {
    HttpTestClient client(server_->port(), *token_);
    const auto r = client.sendRaw(
        "GET /api/v1/health HTTP/1.1\r\nX-Big: " + std::string(20 * 1024, 'y') + "\r\n\r\n");
    expectProblem(r, 431, "header");
  }
  // A body within the limit is read and ignored.
  HttpTestClient client(server_->port(), *token_);
  EXPECT_EQ(client.request("GET", "/api/v1/health", std::string(1000, 'x')).status, 200u);
}

TEST_F(HttpServerTest, IdleConnectionsTimeOut) {
  ApiOptions options;
  options.requestTimeout = std::chrono::milliseconds(200);
  server_ = startServer(std::move(options));
  HttpTestClient idle(server_->port(), *token_);
  EXPECT_TRUE(idle.waitForClose());

  HttpTestClient slow(server_->port(), *token_);
  EXPECT_EQ(slow.get("/api/v1/health").status, 200u);
  EXPECT_TRUE(slow.waitForClose());  // idle after a response: closed as well
}

TEST_F(HttpServerTest, ConnectionsBeyondTheLimitGet503) {
  ApiOptions options;
  options.maxConnections = 1;
  server_ = startServer(std::move(options));
  auto first = std::make_unique<HttpTestClient>(server_->port(), *token_);
  ASSERT_EQ(first->get("/api/v1/health").status, 200u);

  HttpTestClient second(server_->port(), *token_);
  const auto r = second.get("/api/v1/health");
  expectProblem(r, 503, "connections");
  EXPECT_TRUE(second.waitForClose());

  // Once the first connection closes, its slot frees up.
  first.reset();
  unsigned status = 0;
  for (int attempt = 0; attempt < 50 && status != 200; ++attempt) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    HttpTestClient third(server_->port(), *token_);
    status = third.get("/api/v1/health").status;
  }
  EXPECT_EQ(status, 200u);
}

TEST_F(HttpServerTest, ConcurrentClientsAllGetAnswers) {
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      HttpTestClient client(server_->port(), *token_);
      for (int i = 0; i < 25; ++i) {
        if (client.get(messagesUrl("sensor-1", "limit=50&order=desc")).status == 200) ++ok;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(ok.load(), 200);
}

TEST_F(HttpServerTest, ARequestWaitingOnTheStoreDoesNotHoldUpOthers) {
  faulty_->holdQueries = true;
  unsigned slowStatus = 0;
  std::thread slow([&] {
    HttpTestClient client(server_->port(), *token_);
    slowStatus = client.get(messagesUrl("sensor-1", "limit=5")).status;
  });
  for (int i = 0; i < 1000 && faulty_->held.load() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(faulty_->held.load(), 1) << "the slow request never reached the store";
  // Answered by another thread while the first one waits on the store.
  EXPECT_EQ(get("/api/v1/devices").status, 200u);
  EXPECT_EQ(faulty_->held.load(), 1) << "the slow request was let go too early for this check";
  faulty_->holdQueries = false;
  slow.join();
  EXPECT_EQ(slowStatus, 200u);
}

TEST_F(HttpServerTest, StartFailsOnABusyPortAndStopIsIdempotent) {
  ApiOptions options;
  options.listen = {"127.0.0.1", server_->port()};
  HttpServer other(*faulty_, options);
  // reuse_address does not allow two listeners on one port.
  EXPECT_THROW(other.start(), std::runtime_error);
  server_->stop();
  server_->stop();
}

}  // namespace
}  // namespace tern::api
