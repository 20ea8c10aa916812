// DELETE /api/v1/devices/{id} through the whole server, on SQLite and on PostgreSQL: a device
// with a password that published over MQTT is deleted over HTTP; its history, tags and cache
// entry go, its MQTT client is disconnected and cannot log in again, other devices keep
// everything, and a device that sends again afterwards is new.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "app/server.h"
#include "auth/device_credentials.h"
#include "storage/auth_store.h"
#include "storage/store.h"
#include "support/mqtt_test_client.h"
#include "support/postgres_fixture.h"
#include "support/test_server.h"
#include "unit/api/http_test_client.h"

namespace tern::test {
namespace {

using namespace std::chrono_literals;
namespace mqtt = codec::mqtt;
using api::testing::HttpTestClient;

[[maybe_unused]] auto* const kPostgresEnvironment =
    ::testing::AddGlobalTestEnvironment(new PostgresEnvironment);

constexpr const char* kPassword = "delete-me-password";

bool waitFor(const std::function<bool()>& done, std::chrono::milliseconds limit = 20s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(20ms);
  }
  return done();
}

mqtt::Connect connectPacket(const std::string& clientId, std::optional<std::string> user,
                            std::optional<std::string> password) {
  mqtt::Connect c;
  c.protocolName = "MQTT";
  c.protocolLevel = 4;
  c.clientId = clientId;
  c.username = std::move(user);
  c.password = std::move(password);
  c.keepAlive = 60;
  return c;
}

class DeviceDeleteTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string url;
    if (GetParam() == "postgres") url = PostgresServer::shared().createDatabase();
    server_ = std::make_unique<TestServer>([&](core::Config& c) {
      if (!url.empty()) {
        c.storage.backend = "postgres";
        c.storage.url = url;
      }
      c.mqtt.credentialCheckUs = 200'000;
    });
    // What `tern device add` does: its own connection to the database.
    cli_ = app::openAuthStore(server_->server().config());
    devices_ = std::make_unique<auth::DeviceCredentials>(*cli_);
    operator_ = server_->authHeader("operator");
  }
  void TearDown() override {
    devices_.reset();
    cli_.reset();
    server_.reset();
  }

  api::testing::HttpTestResponse call(std::string_view method, const std::string& target,
                                      const std::string& authorization,
                                      std::string_view body = {}) {
    HttpTestClient client(server_->httpPort(), authorization);
    return client.request(method, target, body);
  }
  std::int64_t messageCount(const std::string& device) {
    const auto r = call("GET", "/api/v1/devices/" + device, operator_);
    if (r.status != 200) return -1;
    return r.json().at("message_count").as_int64();
  }

  std::unique_ptr<TestServer> server_;
  std::unique_ptr<storage::AuthStore> cli_;
  std::unique_ptr<auth::DeviceCredentials> devices_;
  std::string operator_;
};

TEST_P(DeviceDeleteTest, DeletesHistoryCredentialsAndCacheEntry) {
  ASSERT_TRUE(devices_->addDevice("doomed", kPassword).ok());
  ASSERT_TRUE(devices_->createToken("doomed").ok());
  MqttTestClient device;
  auto ack = device.connect(server_->mqttPort(), connectPacket("doomed-1", "doomed", kPassword));
  ASSERT_TRUE(ack.has_value());
  ASSERT_EQ(ack->returnCode, mqtt::ConnackCode::kAccepted);
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(device.publish("device/doomed", "{\"v\":" + std::to_string(i) + "}", 1));
  }
  // Anonymous (every listener is on loopback): another device that must keep everything.
  MqttTestClient other;
  ASSERT_TRUE(other.connect(server_->mqttPort(), "other-1"));
  ASSERT_TRUE(other.publish("device/survivor", R"({"v":1})", 1));
  ASSERT_EQ(call("PUT", "/api/v1/devices/doomed", operator_, R"({"tags":{"fleet":"east"}})").status,
            200u);
  ASSERT_EQ(messageCount("doomed"), 20);

  // Roles: reading is not enough.
  EXPECT_EQ(call("DELETE", "/api/v1/devices/doomed", server_->authHeader("viewer")).status, 403u);
  EXPECT_EQ(call("DELETE", "/api/v1/devices/doomed", {}).status, 401u);
  EXPECT_EQ(messageCount("doomed"), 20);

  auto r = call("DELETE", "/api/v1/devices/doomed", operator_);
  ASSERT_EQ(r.status, 204u) << r.body;
  EXPECT_TRUE(r.body.empty());

  // Gone from the cache, the store and the group; the other device is untouched.
  EXPECT_EQ(call("GET", "/api/v1/devices/doomed", operator_).status, 404u);
  EXPECT_EQ(call("GET", "/api/v1/devices/doomed/messages", operator_).status, 404u);
  r = call("GET", "/api/v1/devices", operator_);
  ASSERT_EQ(r.status, 200u);
  ASSERT_EQ(r.json().at("devices").as_array().size(), 1u) << r.body;
  EXPECT_EQ(r.json().at("devices").at(0).at("id"), "survivor");
  r = call("GET", "/api/v1/devices?tag=fleet:east", operator_);
  ASSERT_EQ(r.status, 200u);
  EXPECT_TRUE(r.json().at("devices").as_array().empty()) << r.body;
  EXPECT_EQ(messageCount("survivor"), 1);
  storage::MessageQuery query;
  query.deviceId = "doomed";
  auto stored = server_->server().store().queryMessages(query);
  ASSERT_TRUE(stored.ok());
  EXPECT_TRUE(stored->empty());

  // Credentials: gone, its connected client is disconnected and cannot log in again.
  auto credential = cli_->findDevice("doomed");
  ASSERT_TRUE(credential.ok());
  EXPECT_FALSE(credential->has_value());
  EXPECT_TRUE(device.waitClosed(20s));
  MqttTestClient again;
  ack = again.connect(server_->mqttPort(), connectPacket("doomed-2", "doomed", kPassword));
  ASSERT_TRUE(ack.has_value());
  EXPECT_EQ(ack->returnCode, mqtt::ConnackCode::kBadUsernameOrPassword);

  // A second delete finds nothing.
  EXPECT_EQ(call("DELETE", "/api/v1/devices/doomed", operator_).status, 404u);
  EXPECT_EQ(call("DELETE", "/api/v1/devices/never-was", operator_).status, 404u);

  // Data for the id again (here from an anonymous client): a new device, counted from zero.
  ASSERT_TRUE(other.publish("device/doomed", R"({"w":2})", 1));
  EXPECT_TRUE(waitFor([&] { return messageCount("doomed") == 1; }));
  r = call("GET", "/api/v1/devices/doomed", operator_);
  ASSERT_EQ(r.status, 200u);
  EXPECT_TRUE(r.json().at("tags").as_object().empty()) << r.body;
  EXPECT_FALSE(r.json().at("latest").as_object().contains("v")) << r.body;
}

TEST_P(DeviceDeleteTest, DeletesADeviceKnownOnlyByItsCredentialsOrOnlyByTheStore) {
  ASSERT_TRUE(devices_->addDevice("creds-only", kPassword).ok());
  EXPECT_EQ(call("DELETE", "/api/v1/devices/creds-only", operator_).status, 204u);
  auto credential = cli_->findDevice("creds-only");
  ASSERT_TRUE(credential.ok());
  EXPECT_FALSE(credential->has_value());

  ASSERT_EQ(call("POST", "/api/v1/devices", operator_, R"({"id":"registered/1"})").status, 201u);
  EXPECT_EQ(call("DELETE", "/api/v1/devices/registered%2F1", server_->authHeader("admin")).status,
            204u);
  EXPECT_EQ(call("GET", "/api/v1/devices/registered%2F1", operator_).status, 404u);
}

INSTANTIATE_TEST_SUITE_P(backends, DeviceDeleteTest, ::testing::Values("sqlite", "postgres"),
                         [](const ::testing::TestParamInfo<std::string>& param) {
                           return param.param;
                         });

}  // namespace
}  // namespace tern::test
