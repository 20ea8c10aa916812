// Retention end to end: messages ingested over MQTT, the server's retention job (driven through
// its job runner), then the store, the API's device summary and health all agree.
#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <thread>

#include "core/config.h"
#include "core/time.h"
#include "ingest/latest_cache.h"
#include "scheduler/job_runner.h"
#include "storage/store.h"
#include "support/mqtt_test_client.h"
#include "support/test_server.h"

namespace tern::test {
namespace {

using namespace std::chrono_literals;

TEST(RetentionTest, TheRetentionJobDeletesExpiredMessagesAndKeys) {
  TestServer server([](core::Config& c) {
    c.storage.retentionUs = 1'000'000;  // 1 s
    c.storage.retentionKeys = {{"rpm", 1'000'000}};
  });
  MqttTestClient client;
  ASSERT_TRUE(client.connect(server.mqttPort(), "dev"));
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(client.publish("device/old", R"({"value":1,"rpm":900})", 1));
  }
  auto& store = server.server().store();
  ASSERT_EQ(*store.countMessages(), 5);
  auto jobs = server.server().jobs().status();
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_EQ(jobs[0].name, "retention");
  EXPECT_EQ(jobs[0].schedule, "*/10 * * * *");
  EXPECT_EQ(jobs[1].name, "rollup");
  EXPECT_EQ(jobs[1].schedule, "@every 1m");

  // Let the first five age past the 1 s retention (a wait, not a timing assertion), then add
  // fresh ones that must survive.
  std::this_thread::sleep_for(1100ms);
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(client.publish("device/old", R"({"value":2,"rpm":1000})", 1));
  }
  EXPECT_EQ(server.server().jobs().runDue(core::nowMicros() + 3'600'000'000LL), 2u);
  jobs = server.server().jobs().status();
  EXPECT_EQ(jobs[0].runs, 1u);
  EXPECT_EQ(jobs[0].failures, 0u) << jobs[0].lastError;
  EXPECT_EQ(jobs[1].runs, 1u);
  EXPECT_EQ(jobs[1].failures, 0u) << jobs[1].lastError;
  EXPECT_EQ(*store.countMessages(), 3);
  auto device = store.getDevice("old");
  ASSERT_TRUE(device.ok() && device->has_value());
  EXPECT_EQ((*device)->messageCount, 3);
  // The API's latest-state cache took the new count and first-seen time over from the store.
  auto cached = server.server().latest().getDevice("old");
  ASSERT_TRUE(cached.ok() && cached->has_value());
  EXPECT_EQ((*cached)->messageCount, 3);
  EXPECT_EQ((*cached)->firstSeenUs, (*device)->firstSeenUs);
  EXPECT_EQ(server.server().latest().stats().refreshes, 1u);
  storage::MessageQuery query;
  query.deviceId = "old";
  auto left = store.queryMessages(query);
  ASSERT_TRUE(left.ok());
  ASSERT_EQ(left->size(), 3u);
  for (const auto& stored : *left)
    EXPECT_NE(stored.record.payload.find("\"value\":2"), std::string::npos);
}

TEST(RetentionTest, ABadScheduleIsAConfigError) {
  EXPECT_THROW(TestServer([](core::Config& c) {
                 c.storage.retentionUs = 1'000'000;
                 c.storage.retentionSchedule = "61 * * * *";
               }),
               core::ConfigError);
  EXPECT_THROW(TestServer([](core::Config& c) { c.storage.rollupSchedule = "@every"; }),
               core::ConfigError);
  // No retention configured and rollups off: no job, whatever the schedules say.
  TestServer server([](core::Config& c) {
    c.storage.retentionSchedule = "nonsense";
    c.storage.rollups = false;
    c.storage.rollupSchedule = "nonsense";
  });
  EXPECT_TRUE(server.server().jobs().status().empty());
}

}  // namespace
}  // namespace tern::test
