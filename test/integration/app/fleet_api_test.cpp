// Device tags and fleet queries through the whole server: devices registered and tagged over
// HTTP, data arriving over MQTT through the ingest pipeline, answers from the HTTP API.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <chrono>
#include <string>
#include <thread>

#include "support/mqtt_test_client.h"
#include "support/test_server.h"
#include "unit/api/http_test_client.h"

namespace tern {
namespace {

namespace json = boost::json;
using api::testing::HttpTestClient;

TEST(FleetApiIntegrationTest, TagsSetOverHttpGroupDevicesThatSendOverMqtt) {
  test::TestServer server;
  HttpTestClient http(server.httpPort(), server.authHeader("operator"));
  // Registered and tagged before they send anything.
  for (const char* id : {"truck-1", "truck-2"}) {
    const auto r = http.request("PUT", std::string("/api/v1/devices/") + id,
                                R"({"tags":{"fleet":"east"},"attributes":{"vin":"V1"}})");
    ASSERT_EQ(r.status, 201u) << r.body;
  }
  auto r = http.get("/api/v1/devices/truck-1");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.json().at("last_seen"), json::value(nullptr));

  test::MqttTestClient mqtt;
  ASSERT_TRUE(mqtt.connect(server.mqttPort(), "pub"));
  ASSERT_TRUE(
      mqtt.publish("device/truck-1", R"({"lat":52.5,"lon":13.4,"fuel":0.05,"speed":0})", 1));
  ASSERT_TRUE(
      mqtt.publish("device/truck-2", R"({"lat":48.1,"lon":11.6,"fuel":0.9,"speed":50})", 1));
  ASSERT_TRUE(mqtt.publish("device/truck-3", R"({"lat":40.4,"lon":-3.7,"fuel":0.01})", 1));

  // QoS 1 is acknowledged after commit; poll the API until both are visible (bounded).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  json::value latest;
  while (std::chrono::steady_clock::now() < deadline) {
    r = http.get("/api/v1/fleet/latest?tag=fleet:east&keys=lat,lon");
    ASSERT_EQ(r.status, 200u) << r.body;
    latest = r.json();
    if (latest.at("devices").as_array().size() == 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(latest.at("devices").as_array().size(), 2u) << json::serialize(latest);
  EXPECT_EQ(latest.at("devices").at(0).at("id"), "truck-1");
  EXPECT_DOUBLE_EQ(latest.at("devices").at(0).at("values").at("lat").as_double(), 52.5);

  // Device reads show the tags with the ingest summary, however they are served.
  r = http.get("/api/v1/devices/truck-1");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.json().at("message_count").as_int64(), 1);
  EXPECT_EQ(r.json().at("tags").at("fleet"), "east");
  EXPECT_EQ(r.json().at("attributes").at("vin"), "V1");
  r = http.get("/api/v1/devices");
  ASSERT_EQ(r.status, 200u) << r.body;
  const auto list = r.json();
  ASSERT_EQ(list.at("devices").as_array().size(), 3u);
  EXPECT_EQ(list.at("devices").at(1).at("tags").at("fleet"), "east");
  EXPECT_TRUE(list.at("devices").at(2).at("tags").as_object().empty());
  r = http.get("/api/v1/devices?tag=fleet:east");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.json().at("devices").as_array().size(), 2u);

  r = http.get("/api/v1/fleet/threshold?key=fuel&below=0.1");
  ASSERT_EQ(r.status, 200u) << r.body;
  ASSERT_EQ(r.json().at("devices").as_array().size(), 2u) << r.body;
  EXPECT_EQ(r.json().at("devices").at(1).at("id"), "truck-3");
  r = http.get("/api/v1/fleet/stationary?tag=fleet:east");
  ASSERT_EQ(r.status, 200u) << r.body;
  ASSERT_EQ(r.json().at("devices").as_array().size(), 1u) << r.body;
  EXPECT_EQ(r.json().at("devices").at(0).at("id"), "truck-1");
  r = http.get("/api/v1/fleet/daily?key=speed&by=fleet");
  ASSERT_EQ(r.status, 200u) << r.body;
  ASSERT_EQ(r.json().at("days").as_array().size(), 1u) << r.body;
  EXPECT_DOUBLE_EQ(r.json().at("days").at(0).at("value").as_double(), 25);
}

}  // namespace
}  // namespace tern
