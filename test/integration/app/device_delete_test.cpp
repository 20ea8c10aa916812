// Device and user administration through the whole server, on SQLite and on PostgreSQL.
// DELETE /api/v1/devices/{id}: a device with a password that published over MQTT is deleted
// over HTTP; its history, tags and cache entry go, its MQTT client is disconnected and cannot log
// in again, other devices keep everything, and a device that sends again afterwards is new.
// Device credentials and users set through the API are what MQTT logins check.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
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

// Credentials and users made through the API are what MQTT logins check, and changing them
// through the API disconnects the clients that used the old ones.
class AdminOverMqttTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    std::string url;
    if (GetParam() == "postgres") url = PostgresServer::shared().createDatabase();
    server_ = std::make_unique<TestServer>([&](core::Config& c) {
      if (!url.empty()) {
        c.storage.backend = "postgres";
        c.storage.url = url;
      }
      c.mqtt.allowAnonymous = false;
      c.mqtt.loginMaxFailures = 0;
      c.mqtt.credentialCheckUs = 200'000;
    });
    operator_ = server_->authHeader("operator");
    admin_ = server_->authHeader("admin");
  }
  api::testing::HttpTestResponse call(std::string_view method, const std::string& target,
                                      const std::string& authorization,
                                      std::string_view body = {}) {
    HttpTestClient client(server_->httpPort(), authorization);
    return client.request(method, target, body);
  }
  int connackCode(const std::string& clientId, std::optional<std::string> user,
                  std::optional<std::string> password, MqttTestClient* keep = nullptr) {
    MqttTestClient local;
    MqttTestClient& client = keep != nullptr ? *keep : local;
    auto ack = client.connect(server_->mqttPort(),
                              connectPacket(clientId, std::move(user), std::move(password)));
    return ack ? static_cast<int>(ack->returnCode) : -1;
  }

  std::unique_ptr<TestServer> server_;
  std::string operator_;
  std::string admin_;
};

TEST_P(AdminOverMqttTest, DevicePasswordsAndTokensFromTheApi) {
  auto r = call("PUT", "/api/v1/devices/dev-a/credentials", operator_,
                R"({"password":"first-password"})");
  ASSERT_EQ(r.status, 201u) << r.body;
  MqttTestClient withPassword;
  ASSERT_EQ(connackCode("a-1", "dev-a", "first-password", &withPassword), 0);
  ASSERT_TRUE(withPassword.publish("device/dev-a", R"({"v":1})", 1));

  r = call("POST", "/api/v1/devices/dev-a/tokens", operator_);
  ASSERT_EQ(r.status, 201u) << r.body;
  const std::string token(r.json().at("token").as_string());
  const std::int64_t tokenId = r.json().at("id").as_int64();
  MqttTestClient withToken;
  ASSERT_EQ(connackCode("a-2", token, std::nullopt, &withToken), 0);

  // A new password: the client of the old one goes, the token's stays.
  r = call("PUT", "/api/v1/devices/dev-a/credentials", operator_,
           R"({"password":"second-password"})");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_TRUE(withPassword.waitClosed(20s));
  EXPECT_EQ(connackCode("a-3", "dev-a", "first-password"), 4);
  EXPECT_EQ(connackCode("a-4", "dev-a", "second-password"), 0);
  EXPECT_FALSE(withToken.closed());
  ASSERT_TRUE(withToken.publish("device/dev-a", R"({"v":2})", 1)) << "still connected";

  // The token revoked: its client goes, and it logs in no more.
  EXPECT_EQ(
      call("DELETE", "/api/v1/devices/dev-a/tokens/" + std::to_string(tokenId), operator_).status,
      204u);
  EXPECT_TRUE(withToken.waitClosed(20s));
  EXPECT_EQ(connackCode("a-5", token, std::nullopt), 4);

  // Everything removed: no login at all; the data stays.
  EXPECT_EQ(call("DELETE", "/api/v1/devices/dev-a/credentials", operator_).status, 204u);
  EXPECT_EQ(connackCode("a-6", "dev-a", "second-password"), 4);
  r = call("GET", "/api/v1/devices/dev-a", operator_);
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.json().at("message_count"), 2);
}

TEST_P(AdminOverMqttTest, ServiceUsersFromTheApi) {
  auto r = call("POST", "/api/v1/users", admin_,
                R"({"name":"svc","role":"service","password":"svc-password-1"})");
  ASSERT_EQ(r.status, 201u) << r.body;
  MqttTestClient service;
  ASSERT_EQ(connackCode("svc-1", "svc", "svc-password-1", &service), 0);
  ASSERT_TRUE(service.subscribe("device/#", 1).has_value());

  // No longer a service user: disconnected, and refused (not authorised) from then on.
  r = call("PATCH", "/api/v1/users/svc", admin_, R"({"role":"viewer"})");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_TRUE(service.waitClosed(20s));
  EXPECT_EQ(connackCode("svc-2", "svc", "svc-password-1"), 5);

  // A service user again, with a new password: only that one logs in.
  r = call("PATCH", "/api/v1/users/svc", admin_,
           R"({"role":"service","password":"svc-password-2"})");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(connackCode("svc-3", "svc", "svc-password-1"), 4);
  MqttTestClient again;
  ASSERT_EQ(connackCode("svc-4", "svc", "svc-password-2", &again), 0);

  // Removed: disconnected and gone; the user list shows who is left.
  EXPECT_EQ(call("DELETE", "/api/v1/users/svc", admin_).status, 204u);
  EXPECT_TRUE(again.waitClosed(20s));
  EXPECT_EQ(connackCode("svc-5", "svc", "svc-password-2"), 4);
  r = call("GET", "/api/v1/users", admin_);
  ASSERT_EQ(r.status, 200u) << r.body;
  const auto users = r.json();
  for (const auto& user : users.at("users").as_array()) EXPECT_NE(user.at("name"), "svc");
}

INSTANTIATE_TEST_SUITE_P(backends, AdminOverMqttTest, ::testing::Values("sqlite", "postgres"),
                         [](const ::testing::TestParamInfo<std::string>& param) {
                           return param.param;
                         });

}  // namespace
}  // namespace tern::test
