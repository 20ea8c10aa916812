// The whole server on PostgreSQL: MQTT QoS 1 publishes are acknowledged only once committed,
// and read back through the store and the HTTP API. The database is a real private server.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <chrono>
#include <functional>
#include <string>
#include <thread>

#include "storage/store.h"
#include "support/mqtt_test_client.h"
#include "support/postgres_fixture.h"
#include "support/test_server.h"

namespace tern::test {
namespace {

using namespace std::chrono_literals;

[[maybe_unused]] auto* const kPostgresEnvironment =
    ::testing::AddGlobalTestEnvironment(new PostgresEnvironment);

std::string httpGet(TestServer& server, const std::string& target) {
  std::string out;
  // Health is public (and must answer while the database, which holds the keys, is down).
  const std::string auth = target.rfind("/api/v1/health", 0) == 0 ? "" : server.curlAuth("viewer");
  const int rc = runCommand(
      "curl -s " + auth + " 'http://127.0.0.1:" + std::to_string(server.httpPort()) + target + "'",
      &out);
  EXPECT_EQ(rc, 0) << out;
  return out;
}

boost::json::object parseObject(const std::string& text) {
  boost::system::error_code ec;
  boost::json::value value = boost::json::parse(text, ec);
  EXPECT_FALSE(ec) << text;
  if (ec || !value.is_object()) {
    ADD_FAILURE() << "not a JSON object: " << text;
    return {};
  }
  return value.as_object();
}

// Parameterised only so that the test names carry "postgres" for `ctest -R postgres`.
class PostgresIngestTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    url_ = PostgresServer::shared().createDatabase();
    server_ = std::make_unique<TestServer>([&](core::Config& c) {
      c.storage.backend = "postgres";
      c.storage.url = url_;
      c.ingest.latestCacheSyncUs = 200'000;
    });
  }

  std::string url_;
  std::unique_ptr<TestServer> server_;
};

TEST_P(PostgresIngestTest, QosOnePublishesAreStoredAndServedByTheApi) {
  MqttTestClient client;
  ASSERT_TRUE(client.connect(server_->mqttPort(), "pg-sensor"));
  constexpr int kMessages = 60;
  for (int i = 0; i < kMessages; ++i) {
    const std::string payload =
        "{\"uuid\":\"pg-dev-1\",\"temp\":" + std::to_string(20 + i % 5) + ",\"ok\":true}";
    ASSERT_TRUE(client.publish("device/pg-dev-1", payload, 1)) << "no PUBACK for " << i;
  }
  ASSERT_TRUE(client.publish("device/pg-dev-2", "not json \xff", 1));

  // A PUBACK means committed: everything is readable at once, exactly once.
  storage::Store& store = server_->server().store();
  EXPECT_EQ(store.backendName(), "postgres");
  auto counted = store.countMessages();
  ASSERT_TRUE(counted.ok()) << counted.error().message;
  EXPECT_EQ(*counted, kMessages + 1);
  auto device = store.getDevice("pg-dev-1");
  ASSERT_TRUE(device.ok() && device->has_value());
  EXPECT_EQ((*device)->messageCount, kMessages);
  storage::MessageQuery q;
  q.deviceId = "pg-dev-1";
  q.limit = 1000;
  auto rows = store.queryMessages(q);
  ASSERT_TRUE(rows.ok()) << rows.error().message;
  ASSERT_EQ(rows->size(), static_cast<std::size_t>(kMessages));
  EXPECT_EQ((*rows)[0].record.topic, "device/pg-dev-1");
  EXPECT_EQ((*rows)[0].record.nodeId, "test-node");

  TestServer& http = *server_;
  auto health = parseObject(httpGet(http, "/api/v1/health"));
  ASSERT_TRUE(health.contains("storage")) << boost::json::serialize(health);
  EXPECT_EQ(health["storage"].as_object()["backend"], "postgres");
  EXPECT_EQ(health["storage"].as_object()["status"], "ok");

  auto page = parseObject(httpGet(http, "/api/v1/devices/pg-dev-1/messages?from=0&limit=50"));
  ASSERT_TRUE(page.contains("messages")) << boost::json::serialize(page);
  EXPECT_EQ(page["messages"].as_array().size(), 50u);
  ASSERT_TRUE(page["next_cursor"].is_string());
  const std::string cursor(page["next_cursor"].as_string());
  auto rest = parseObject(
      httpGet(http, "/api/v1/devices/pg-dev-1/messages?from=0&limit=50&cursor=" + cursor));
  EXPECT_EQ(rest["messages"].as_array().size(), static_cast<std::size_t>(kMessages - 50));
  EXPECT_TRUE(rest["next_cursor"].is_null());
  const auto& first = page["messages"].as_array()[0].as_object();
  EXPECT_EQ(first.at("fields").as_object().at("temp"), 20);
  EXPECT_EQ(first.at("fields").as_object().at("ok"), true);

  auto devices = parseObject(httpGet(http, "/api/v1/devices"));
  EXPECT_NE(boost::json::serialize(devices).find("pg-dev-2"), std::string::npos);
  auto one = parseObject(httpGet(http, "/api/v1/devices/pg-dev-1"));
  EXPECT_NE(boost::json::serialize(one).find(std::to_string(kMessages)), std::string::npos)
      << boost::json::serialize(one);

  auto series =
      parseObject(httpGet(http, "/api/v1/devices/pg-dev-1/series/temp?bucket=1d&agg=count&from=0"));
  ASSERT_TRUE(series.contains("points")) << boost::json::serialize(series);
  std::int64_t total = 0;
  for (const auto& point : series["points"].as_array()) {
    total += point.as_object().at("count").as_int64();
  }
  EXPECT_EQ(total, kMessages);

  auto raw = parseObject(httpGet(http, "/api/v1/devices/pg-dev-2/messages?from=0"));
  ASSERT_EQ(raw["messages"].as_array().size(), 1u) << boost::json::serialize(raw);
  EXPECT_EQ(raw["messages"].as_array()[0].as_object().at("payload_encoding"), "base64");
}

// storage.partition reaches a new database through `tern serve`'s composition: hourly
// partitions, kept in tern_settings.
TEST_P(PostgresIngestTest, StoragePartitionSetsTheLengthOfANewDatabasesPartitions) {
  const std::string url = PostgresServer::shared().createDatabase();
  TestServer hourly([&](core::Config& c) {
    c.storage.backend = "postgres";
    c.storage.url = url;
    c.storage.partitionUs = 3'600'000'000;
  });
  EXPECT_EQ(
      PostgresServer::query(url, "SELECT value FROM tern_settings WHERE key = 'partition_us'")[0],
      "3600000000");
  MqttTestClient client;
  ASSERT_TRUE(client.connect(hourly.mqttPort(), "hourly"));
  ASSERT_TRUE(client.publish("device/hourly-1", "{\"temp\":1}", 1));
  // The record went into the partition of its hour (named by its start), not of its day.
  const auto rows = PostgresServer::query(
      url,
      "SELECT c.relname FROM messages m JOIN pg_class c ON c.oid = m.tableoid "
      "WHERE m.device_id = 'hourly-1'");
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].size(), std::string("messages_p20260101_130000").size()) << rows[0];
  // The default database of this fixture was made with days.
  EXPECT_EQ(
      PostgresServer::query(url_, "SELECT value FROM tern_settings WHERE key = 'partition_us'")[0],
      "86400000000");
}

TEST_P(PostgresIngestTest, PubackWaitsWhileTheDatabaseIsDown) {
  MqttTestClient client;
  ASSERT_TRUE(client.connect(server_->mqttPort(), "pg-sensor"));
  ASSERT_TRUE(client.publish("device/pg-dev-3", "{\"v\":1}", 1));

  PostgresServer& database = PostgresServer::shared();
  database.stop();
  codec::mqtt::Publish publish;
  publish.topic = "device/pg-dev-3";
  publish.payload = "{\"v\":2}";
  publish.qos = 1;
  publish.packetId = client.nextPacketId();
  client.send(publish);
  // Not committed, so not acknowledged; the health endpoint says why.
  EXPECT_FALSE(client.receiveType(codec::mqtt::PacketType::kPuback, 700ms));
  auto health = parseObject(httpGet(*server_, "/api/v1/health"));
  ASSERT_TRUE(health.contains("storage")) << boost::json::serialize(health);
  EXPECT_EQ(health["storage"].as_object()["status"], "error");

  database.start();
  // The pipeline retries (backoff up to 2 s) and the store reconnects (up to 5 s).
  auto ack = client.receiveType(codec::mqtt::PacketType::kPuback, 15s);
  ASSERT_TRUE(ack) << "no PUBACK after the database came back";
  auto counted = server_->server().store().countMessages();
  ASSERT_TRUE(counted.ok()) << counted.error().message;
  EXPECT_EQ(*counted, 2);  // exactly once
  health = parseObject(httpGet(*server_, "/api/v1/health"));
  EXPECT_EQ(health["storage"].as_object()["status"], "ok");
}

// Two nodes on one database: each node's device list (its in-memory latest-state cache) takes
// over what the other node stored, without counting its own messages twice.
TEST_P(PostgresIngestTest, EachNodesDeviceListShowsWhatTheOtherNodeStored) {
  TestServer nodeB([&](core::Config& c) {
    c.storage.backend = "postgres";
    c.storage.url = url_;
    c.server.nodeId = "node-b";
    c.ingest.latestCacheSyncUs = 200'000;
  });
  // The device as node A's API shows it, once `done` holds (bounded wait).
  auto waitOnA = [&](const std::function<bool(const boost::json::object&)>& done) {
    boost::json::object last;
    for (int i = 0; i < 400; ++i) {
      std::string out;
      runCommand("curl -s " + server_->curlAuth("viewer") + " 'http://127.0.0.1:" +
                     std::to_string(server_->httpPort()) + "/api/v1/devices/multi-1'",
                 &out);
      boost::system::error_code ec;
      auto value = boost::json::parse(out, ec);
      if (!ec && value.is_object()) {
        last = value.as_object();
        if (last.contains("id") && done(last)) return last;
      }
      std::this_thread::sleep_for(50ms);
    }
    ADD_FAILURE() << "node A never showed it; last answer: " << boost::json::serialize(last);
    return last;
  };
  auto latestTemp = [](const boost::json::object& device) {
    const auto* latest = device.if_contains("latest");
    return latest != nullptr && latest->is_object() && latest->as_object().contains("temp")
               ? latest->as_object().at("temp").to_number<double>()
               : -1.0;
  };

  MqttTestClient viaB;
  ASSERT_TRUE(viaB.connect(nodeB.mqttPort(), "multi-b"));
  ASSERT_TRUE(viaB.publish("device/multi-1", "{\"temp\":5}", 1));
  auto seen = waitOnA([&](const auto& d) { return latestTemp(d) == 5.0; });
  EXPECT_EQ(seen["message_count"], 1);
  ASSERT_TRUE(viaB.publish("device/multi-1", "{\"temp\":6}", 1));
  seen = waitOnA([&](const auto& d) { return latestTemp(d) == 6.0; });
  EXPECT_EQ(seen["message_count"], 2);

  // A message through node A itself, then more syncs: counted once.
  MqttTestClient viaA;
  ASSERT_TRUE(viaA.connect(server_->mqttPort(), "multi-a"));
  ASSERT_TRUE(viaA.publish("device/multi-1", "{\"temp\":7}", 1));
  auto syncs = [&] {
    auto health = parseObject(httpGet(*server_, "/api/v1/health"));
    const auto* cache = health.if_contains("latest_cache");
    return cache != nullptr ? cache->as_object().at("syncs").to_number<std::int64_t>() : -1;
  };
  const std::int64_t before = syncs();
  for (int i = 0; i < 400 && syncs() < before + 3; ++i) std::this_thread::sleep_for(50ms);
  EXPECT_GE(syncs(), before + 3);
  seen = waitOnA([&](const auto& d) { return latestTemp(d) == 7.0; });
  EXPECT_EQ(seen["message_count"], 3);
  auto stored = server_->server().store().getDevice("multi-1");
  ASSERT_TRUE(stored.ok() && stored->has_value());
  EXPECT_EQ((*stored)->messageCount, 3);

  // Deleted through node B: node A's list drops it at its next whole-list sync (every 30th).
  std::string status;
  runCommand("curl -s -o /dev/null -w '%{http_code}' -X DELETE " + nodeB.curlAuth("admin") +
                 " 'http://127.0.0.1:" + std::to_string(nodeB.httpPort()) +
                 "/api/v1/devices/multi-1'",
             &status);
  ASSERT_EQ(status, "204");
  std::string onA;
  for (int i = 0; i < 600 && onA != "404"; ++i) {
    onA.clear();  // runCommand appends
    runCommand("curl -s -o /dev/null -w '%{http_code}' " + server_->curlAuth("viewer") +
                   " 'http://127.0.0.1:" + std::to_string(server_->httpPort()) +
                   "/api/v1/devices/multi-1'",
               &onA);
    if (onA != "404") std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(onA, "404") << "node A still lists the device node B deleted";
  auto health = parseObject(httpGet(*server_, "/api/v1/health"));
  EXPECT_GE(health["latest_cache"].as_object()["forgotten"].to_number<std::int64_t>(), 1);
}

INSTANTIATE_TEST_SUITE_P(postgres, PostgresIngestTest, ::testing::Values("postgres"),
                         [](const ::testing::TestParamInfo<std::string>& param) {
                           return param.param;
                         });

}  // namespace
}  // namespace tern::test
