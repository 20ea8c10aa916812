// The API answers device lists, device lookups and latest positions from the latest-state cache
// that the ingest writer keeps current, not from the store's devices table (whose reads are
// counted and switched off here), and shows a record only once its batch is committed.
// Real parts throughout: SQLite store, pipeline, cache, HTTP server, a Beast client.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <thread>

#include "api/http_server.h"
#include "auth/auth_service.h"
#include "core/time.h"
#include "ingest/latest_cache.h"
#include "ingest/pipeline.h"
#include "storage/sqlite/sqlite_auth_store.h"
#include "storage/sqlite/sqlite_store.h"
#include "support/counting_store.h"
#include "unit/api/http_test_client.h"

namespace tern::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using api::testing::HttpTestClient;

storage::Record reading(const std::string& device, std::vector<storage::Field> fields) {
  storage::Record r;
  r.deviceId = device;
  r.serverTimeUs = core::nowMicros();
  r.nodeId = "n";
  r.topic = "device/" + device;
  r.payload = "{}";
  r.payloadIsJson = true;
  r.fields = std::move(fields);
  return r;
}

template <typename Predicate>
bool waitFor(Predicate done, std::chrono::milliseconds limit = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

class LatestApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device random;
    dir_ = fs::temp_directory_path() /
           ("tern_latest_api_" + std::to_string(random()) + std::to_string(random()));
    inner_ = storage::sqlite::openSqliteStore({(dir_ / "tern.db").string()});
    store_ = std::make_unique<CountingStore>(*inner_);
    // Known before start: loaded into the cache from the store.
    ASSERT_TRUE(
        store_->appendBatch(std::vector<storage::Record>{reading("pre", {{"v", 1.0}})}).ok());
    cache_ = std::make_unique<ingest::LatestCache>(*store_, 1000);
    ASSERT_TRUE(cache_->load().ok());
    ingest::PipelineOptions options;
    options.batchMs = 0;
    pipeline_ = std::make_unique<ingest::Pipeline>(*store_, options, cache_.get());
    ASSERT_TRUE(pipeline_->start().ok());
    authStore_ = storage::sqlite::openSqliteAuthStore((dir_ / "tern.db").string());
    auth_ = std::make_unique<auth::AuthService>(*authStore_, auth::AuthOptions{});
    auto key = auth_->createApiKey("latest-test", auth::Role::kViewer, "test");
    ASSERT_TRUE(key.ok()) << key.error().message;
    token_ = "Bearer " + key->key;
    api::ApiOptions api;
    api.listen = {"127.0.0.1", 0};
    api.auth = auth_.get();
    api.devices.list = [this] { return cache_->listDevices(); };
    api.devices.get = [this](const std::string& id) { return cache_->getDevice(id); };
    http_ = std::make_unique<api::HttpServer>(*store_, api);
    http_->start();
  }
  void TearDown() override {
    if (store_) store_->release();
    http_.reset();
    auth_.reset();
    authStore_.reset();
    pipeline_.reset();
    cache_.reset();
    store_.reset();
    inner_.reset();
    fs::remove_all(dir_);
  }

  void ingest(storage::Record record) {
    pipeline_->submit(std::move(record), [this] { ++acked_; });
  }

  fs::path dir_;
  std::unique_ptr<storage::Store> inner_;
  std::unique_ptr<CountingStore> store_;
  std::unique_ptr<ingest::LatestCache> cache_;
  std::unique_ptr<ingest::Pipeline> pipeline_;
  std::unique_ptr<storage::AuthStore> authStore_;
  std::unique_ptr<auth::AuthService> auth_;
  std::string token_;  // every API call but health needs credentials
  std::unique_ptr<api::HttpServer> http_;
  std::atomic<int> acked_{0};
};

TEST_F(LatestApiTest, DeviceEndpointsAnswerFromTheCache) {
  ingest(reading("truck", {{"lat", 52.5}, {"lon", 13.4}, {"speed", 30.0}}));
  ingest(reading("truck", {{"fuel", std::int64_t{40}}}));
  ASSERT_TRUE(waitFor([&] { return acked_ == 2; }));
  store_->failDeviceReads = true;  // any read of the devices table now fails the request
  const int reads = store_->deviceReads;

  HttpTestClient client(http_->port(), token_);
  auto list = client.get("/api/v1/devices");
  ASSERT_EQ(list.status, 200u) << list.body;
  const auto listJson = list.json();
  const auto& devices = listJson.at("devices").as_array();
  ASSERT_EQ(devices.size(), 2u);
  EXPECT_EQ(devices[0].at("id"), "pre");
  EXPECT_EQ(devices[1].at("id"), "truck");
  EXPECT_EQ(devices[1].at("message_count"), 2);
  EXPECT_EQ(devices[1].at("latest").at("fuel"), 40);

  auto one = client.get("/api/v1/devices/truck");
  ASSERT_EQ(one.status, 200u) << one.body;
  EXPECT_EQ(one.json().at("latest").at("speed"), 30.0);
  EXPECT_EQ(client.get("/api/v1/devices/ghost").status, 404u);
  // The 404 check behind an empty message page uses the cache too.
  EXPECT_EQ(client.get("/api/v1/devices/ghost/messages").status, 404u);

  auto positions = client.get("/api/v1/positions/latest");
  ASSERT_EQ(positions.status, 200u) << positions.body;
  const auto positionsJson = positions.json();
  const auto& list2 = positionsJson.at("positions").as_array();
  ASSERT_EQ(list2.size(), 1u);
  EXPECT_EQ(list2[0].at("device"), "truck");
  EXPECT_EQ(list2[0].at("lat"), 52.5);
  EXPECT_EQ(store_->deviceReads, reads) << "the devices table was read";
}

TEST_F(LatestApiTest, ARecordShowsOnlyAfterItsBatchCommits) {
  HttpTestClient client(http_->port(), token_);
  store_->hold();
  ingest(reading("late", {{"v", 7.0}}));
  ASSERT_TRUE(store_->waitUntilHeld(10s));
  // The batch is with the writer but not committed: not acknowledged, not visible.
  EXPECT_EQ(acked_.load(), 0);
  EXPECT_EQ(client.get("/api/v1/devices/late").status, 404u);
  EXPECT_EQ(client.get("/api/v1/devices").json().at("devices").as_array().size(), 1u);

  store_->release();
  ASSERT_TRUE(waitFor([&] { return acked_ == 1; }));
  // Applied to the cache before the completion ran, so visible as soon as it is acknowledged.
  auto late = client.get("/api/v1/devices/late");
  ASSERT_EQ(late.status, 200u) << late.body;
  EXPECT_EQ(late.json().at("message_count"), 1);
  EXPECT_EQ(late.json().at("latest").at("v"), 7.0);
}

}  // namespace
}  // namespace tern::test
