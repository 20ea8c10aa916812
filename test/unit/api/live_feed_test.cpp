// The live feed (/api/v1/live): the subscription protocol on its own, the fan-out with its
// bounds, and WebSocket clients against the real HTTP server fed by the real ingest pipeline
// over a real SQLite store, with a hand-driven clock for token expiry.
#include "api/live_feed.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>

#include "api/http_server.h"
#include "auth/auth_service.h"
#include "ingest/pipeline.h"
#include "storage/sqlite/sqlite_auth_store.h"
#include "storage/sqlite/sqlite_store.h"
#include "unit/api/http_test_client.h"

namespace tern::api {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
namespace json = boost::json;
using namespace std::chrono_literals;

constexpr std::int64_t kSecond = 1'000'000;

json::object parseObject(const std::string& text) {
  boost::system::error_code ec;
  json::value value = json::parse(text, ec);
  EXPECT_FALSE(ec) << text;
  EXPECT_TRUE(value.is_object()) << text;
  return value.is_object() ? value.as_object() : json::object();
}

LiveEventPtr event(std::string device, std::int64_t value, std::string key = "value") {
  auto out = std::make_shared<LiveEvent>();
  out->device = std::move(device);
  out->serverTimeUs = 1'767'225'600 * kSecond + value;
  out->topic = "device/" + out->device;
  out->node = "n1";
  out->fields = {{std::move(key), value}, {"other", std::string("x")}};
  return out;
}

// --- the subscription protocol -------------------------------------------------------------

TEST(LiveFilter, SubscribeUnsubscribeAndReplies) {
  LiveFilter filter;
  EXPECT_FALSE(filter.matches(*event("d1", 1)));
  auto reply = parseObject(filter.apply(R"({"op":"subscribe","devices":["d1","d2"]})"));
  EXPECT_EQ(reply.at("type"), "subscribed");
  EXPECT_EQ(reply.at("devices"), (json::array{"d1", "d2"}));
  EXPECT_EQ(reply.at("all"), false);
  EXPECT_TRUE(filter.matches(*event("d1", 1)));
  EXPECT_FALSE(filter.matches(*event("d3", 1)));
  reply = parseObject(filter.apply(R"({"op":"unsubscribe","devices":["d1"]})"));
  EXPECT_EQ(reply.at("devices"), (json::array{"d2"}));
  EXPECT_FALSE(filter.matches(*event("d1", 1)));
  filter.apply(R"({"op":"subscribe","all":true})");
  EXPECT_TRUE(filter.matches(*event("d9", 1)));
  filter.apply(R"({"op":"unsubscribe","all":true})");
  EXPECT_FALSE(filter.matches(*event("d9", 1)));
}

TEST(LiveFilter, BadMessagesGetAnErrorAndChangeNothing) {
  LiveFilter filter;
  filter.apply(R"({"op":"subscribe","devices":["d1"]})");
  for (const std::string bad :
       {"not json", "[1,2]", R"({"op":"watch"})", R"({"devices":["d2"]})",
        R"({"op":"subscribe","devices":"d2"})", R"({"op":"subscribe","devices":[2]})",
        R"({"op":"subscribe","devices":[""]})", R"({"op":"subscribe","groups":["nocolon"]})",
        R"({"op":"subscribe","all":"yes"})", R"({"op":"subscribe","device":["d2"]})"}) {
    const auto reply = parseObject(filter.apply(bad));
    EXPECT_EQ(reply.at("type"), "error") << bad;
    EXPECT_FALSE(reply.at("detail").as_string().empty()) << bad;
  }
  EXPECT_TRUE(filter.matches(*event("d1", 1)));
  EXPECT_FALSE(filter.matches(*event("d2", 1)));
}

TEST(LiveFilter, LimitsAreEnforcedWithoutPartialChanges) {
  LiveFilter filter;
  json::array devices;
  for (std::size_t i = 0; i <= LiveFilter::kMaxDevices; ++i) {
    std::string id = std::to_string(i);
    id.insert(0, 1, 'd');
    devices.emplace_back(id);
  }
  const auto reply = parseObject(
      filter.apply(json::serialize(json::object{{"op", "subscribe"}, {"devices", devices}})));
  EXPECT_EQ(reply.at("type"), "error");
  EXPECT_FALSE(filter.matches(*event("d0", 1)));
}

TEST(LiveFilter, GroupsFollowTheDeviceTags) {
  LiveFilter filter;
  filter.apply(R"({"op":"subscribe","groups":["fleet:north"]})");
  EXPECT_TRUE(filter.hasGroups());
  storage::DeviceSummary north;
  north.deviceId = "truck1";
  north.tags = {{"fleet", "north"}};
  storage::DeviceSummary south;
  south.deviceId = "truck2";
  south.tags = {{"fleet", "south"}};
  filter.resolveGroups({north, south});
  EXPECT_TRUE(filter.matches(*event("truck1", 1)));
  EXPECT_FALSE(filter.matches(*event("truck2", 1)));
  south.tags["fleet"] = "north";
  filter.resolveGroups({north, south});
  EXPECT_TRUE(filter.matches(*event("truck2", 1)));
}

TEST(LiveFilter, KeysRestrictTheFieldsAndSkipRecordsWithoutThem) {
  LiveFilter filter;
  filter.apply(R"({"op":"subscribe","all":true,"keys":["value"]})");
  auto rendered = filter.render(*event("d1", 7));
  ASSERT_TRUE(rendered.has_value());
  EXPECT_EQ(rendered->at("fields"), (json::object{{"value", 7}}));
  EXPECT_EQ(rendered->at("device"), "d1");
  EXPECT_EQ(rendered->at("topic"), "device/d1");
  EXPECT_EQ(rendered->at("node"), "n1");
  EXPECT_EQ(rendered->at("ts"), "2026-01-01T00:00:00.000Z");
  EXPECT_FALSE(filter.render(*event("d1", 7, "temperature")).has_value());
  const std::vector<LiveEventPtr> events{event("d1", 1, "temperature")};
  EXPECT_EQ(filter.recordsMessage(events, false), "");  // nothing to send
  filter.apply(R"({"op":"unsubscribe","keys":["value"]})");
  rendered = filter.render(*event("d1", 7));
  ASSERT_TRUE(rendered.has_value());
  EXPECT_EQ(rendered->at("fields").as_object().size(), 2U);
}

TEST(LiveFilter, CoalesceKeepsTheNewestPerDeviceInOrder) {
  std::vector<LiveEventPtr> events{event("a", 1), event("b", 2), event("a", 3), event("c", 4),
                                   event("b", 5)};
  coalesceLatest(events);
  ASSERT_EQ(events.size(), 3U);
  EXPECT_EQ(events[0]->device, "a");
  EXPECT_EQ(std::get<std::int64_t>(events[0]->fields[0].value), 3);
  EXPECT_EQ(events[1]->device, "c");
  EXPECT_EQ(events[2]->device, "b");
  EXPECT_EQ(std::get<std::int64_t>(events[2]->fields[0].value), 5);
}

// --- the fan-out ---------------------------------------------------------------------------

class RecordingSink : public LiveSink {
 public:
  void deliver(const LiveBatch& batch) override { batches.push_back(batch); }
  std::vector<LiveBatch> batches;
};

std::vector<storage::Record> records(const std::string& device, std::int64_t from,
                                     std::int64_t count) {
  std::vector<storage::Record> out;
  for (std::int64_t i = from; i < from + count; ++i) {
    storage::Record record;
    record.deviceId = device;
    record.serverTimeUs = i;
    record.nodeId = "n1";
    record.topic = "device/" + device;
    record.payload = "{}";
    record.fields = {{"value", i}};
    out.push_back(std::move(record));
  }
  return out;
}

std::int64_t valueOf(const LiveEventPtr& e) {
  return std::get<std::int64_t>(e->fields.at(0).value);
}

TEST(LiveFeed, NothingIsCopiedWhileNobodyListens) {
  LiveFeed feed;
  const auto batch = records("d1", 0, 10);
  feed.publish(batch);
  EXPECT_EQ(feed.stats().published, 0U);
}

TEST(LiveFeed, DeliversCommittedBatchesInOrderToEverySink) {
  LiveFeed feed;
  asio::io_context ioc;
  feed.bind(ioc.get_executor());
  auto first = std::make_shared<RecordingSink>();
  auto second = std::make_shared<RecordingSink>();
  ASSERT_TRUE(feed.attach(first));
  ASSERT_TRUE(feed.attach(second));
  feed.publish(records("d1", 0, 3));
  feed.publish(records("d2", 3, 2));
  ioc.run();
  ASSERT_EQ(first->batches.size(), 1U);  // one flush took both
  ASSERT_EQ(first->batches[0]->size(), 5U);
  for (std::size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(valueOf((*first->batches[0])[i]), static_cast<std::int64_t>(i));
  }
  EXPECT_EQ(second->batches, first->batches);  // shared, not copied per sink
  EXPECT_EQ(feed.stats().published, 5U);
  feed.unbind();
  feed.detach();
  feed.detach();
}

TEST(LiveFeed, ABehindFanOutKeepsTheLatestPerDevice) {
  LiveFeedOptions options;
  options.inboxEvents = 10;
  LiveFeed feed(options);
  auto sink = std::make_shared<RecordingSink>();
  ASSERT_TRUE(feed.attach(sink));
  // Not bound yet: nothing flushes, as when every API thread is busy.
  feed.publish(records("a", 0, 100));
  feed.publish(records("b", 100, 100));
  asio::io_context ioc;
  feed.bind(ioc.get_executor());
  feed.publish(records("c", 200, 1));
  ioc.run();
  ASSERT_EQ(sink->batches.size(), 1U);
  std::map<std::string, std::int64_t> latest;
  for (const auto& e : *sink->batches[0]) latest[e->device] = valueOf(e);
  EXPECT_EQ(sink->batches[0]->size(), 3U);
  EXPECT_EQ(latest, (std::map<std::string, std::int64_t>{{"a", 99}, {"b", 199}, {"c", 200}}));
  EXPECT_EQ(feed.stats().inboxOverflows, 1U);
  feed.unbind();
  feed.detach();
}

TEST(LiveFeed, RefusesSessionsBeyondTheLimit) {
  LiveFeedOptions options;
  options.maxSessions = 1;
  LiveFeed feed(options);
  auto sink = std::make_shared<RecordingSink>();
  EXPECT_TRUE(feed.attach(sink));
  EXPECT_FALSE(feed.attach(sink));
  feed.detach();
  EXPECT_TRUE(feed.attach(sink));
  feed.detach();
}

// --- WebSocket clients against the real server ----------------------------------------------

// A WebSocket client whose reads wait at most a bounded time.
class WsClient {
 public:
  // The handshake's HTTP status (101 when upgraded).
  unsigned connect(std::uint16_t port, const std::string& target,
                   const std::string& authorization = {}, int receiveBuffer = 0) {
    auto& socket = ws_.next_layer();
    socket.open(asio::ip::tcp::v4());
    if (receiveBuffer > 0) socket.set_option(asio::socket_base::receive_buffer_size(receiveBuffer));
    socket.connect({asio::ip::make_address("127.0.0.1"), port});
    ws_.set_option(websocket::stream_base::decorator([authorization](websocket::request_type& r) {
      if (!authorization.empty()) r.set(http::field::authorization, authorization);
    }));
    websocket::response_type response;
    beast::error_code ec;
    ws_.handshake(response, "127.0.0.1", target, ec);
    return response.result_int();
  }

  void send(const std::string& text) { ws_.write(asio::buffer(text)); }
  void sendBinary(const std::string& bytes) {
    ws_.binary(true);
    ws_.write(asio::buffer(bytes));
    ws_.text(true);
  }

  // The next message; nullopt on close or error (see lastError/closeCode), a failure on timeout.
  std::optional<std::string> read(std::chrono::seconds wait = 20s) {
    beast::flat_buffer buffer;
    std::optional<beast::error_code> result;
    ws_.async_read(buffer, [&](beast::error_code ec, std::size_t) { result = ec; });
    ioc_.restart();
    ioc_.run_for(wait);
    if (!result) {
      ADD_FAILURE() << "no message within " << wait.count() << " s";
      beast::error_code ignored;
      ws_.next_layer().close(ignored);
      ioc_.restart();
      ioc_.run();
      return std::nullopt;
    }
    if (*result) {
      lastError = *result;
      return std::nullopt;
    }
    return beast::buffers_to_string(buffer.data());
  }

  json::object readObject() {
    auto text = read();
    return text ? parseObject(*text) : json::object();
  }

  // Reads "records" messages until `done` says enough; false when the connection ends first or
  // after `maxMessages`.
  template <class Done>
  bool readRecordsUntil(Done done, int maxMessages = 100'000) {
    for (int i = 0; i < maxMessages; ++i) {
      auto text = read();
      if (!text) return false;
      auto message = parseObject(*text);
      if (message.at("type") != "records") continue;
      if (done(message)) return true;
    }
    return false;
  }

  std::uint16_t closeCode() const { return ws_.reason().code; }
  std::string closeReason() const {
    return std::string(ws_.reason().reason.data(), ws_.reason().reason.size());
  }

  beast::error_code lastError;

 private:
  asio::io_context ioc_;
  websocket::stream<asio::ip::tcp::socket> ws_{ioc_};
};

class LiveApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device random;
    dir_ = std::filesystem::temp_directory_path() /
           ("tern_live_api_" + std::to_string(random()) + std::to_string(random()));
    std::filesystem::create_directories(dir_);
    store_ = storage::sqlite::openSqliteStore({(dir_ / "tern.db").string()});
    authStore_ = storage::sqlite::openSqliteAuthStore((dir_ / "tern.db").string());
    auth::AuthOptions authOptions;
    authOptions.tokenTtlUs = 60 * kSecond;
    authOptions.refreshTtlUs = 3600 * kSecond;
    authOptions.nowUs = [this] { return now_.load(); };
    auth_ = std::make_unique<auth::AuthService>(*authStore_, authOptions);
    ASSERT_TRUE(auth_->addUser("viewer", auth::Role::kViewer, "viewer-password").ok());
    LiveFeedOptions liveOptions;
    liveOptions.recheckMs = 50;
    liveOptions.sessionEvents = 100;
    live_ = std::make_unique<LiveFeed>(liveOptions);
    ingest::PipelineOptions pipelineOptions;
    pipelineOptions.onCommitted = [this](std::span<const storage::Record> batch) {
      live_->publish(batch);
    };
    pipeline_ = std::make_unique<ingest::Pipeline>(*store_, pipelineOptions);
    ASSERT_TRUE(pipeline_->start().ok());
    ApiOptions api;
    api.listen = {"127.0.0.1", 0};
    api.nodeId = "node-live";
    api.auth = auth_.get();
    api.live = live_.get();
    server_ = std::make_unique<HttpServer>(*store_, api);
    server_->start();
    token_ = login();
  }
  void TearDown() override {
    server_.reset();
    if (pipeline_) pipeline_->stop();
    pipeline_.reset();
    live_.reset();
    auth_.reset();
    authStore_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::string login() {
    testing::HttpTestClient client(server_->port());
    const auto r = client.request("POST", "/api/v1/auth/login",
                                  R"({"name":"viewer","password":"viewer-password"})");
    EXPECT_EQ(r.status, 200U) << r.body;
    const auto body = r.json();
    return body.is_object() ? std::string(body.at("access_token").as_string()) : std::string();
  }

  // Submits records through the pipeline and waits until they are committed.
  void ingest(const std::string& device, std::vector<storage::Field> fields) {
    storage::Record record;
    record.deviceId = device;
    record.serverTimeUs = ++clock_;
    record.nodeId = "node-live";
    record.topic = "device/" + device;
    record.payload = "{}";
    record.payloadIsJson = true;
    record.fields = std::move(fields);
    std::promise<void> done;
    pipeline_->submit(std::move(record), [&done] { done.set_value(); });
    ASSERT_EQ(done.get_future().wait_for(20s), std::future_status::ready);
  }

  std::string liveTarget() const { return "/api/v1/live?access_token=" + token_; }

  std::filesystem::path dir_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<storage::AuthStore> authStore_;
  std::atomic<std::int64_t> now_{1'767'225'600 * kSecond};
  std::unique_ptr<auth::AuthService> auth_;
  std::unique_ptr<LiveFeed> live_;
  std::unique_ptr<ingest::Pipeline> pipeline_;
  std::unique_ptr<HttpServer> server_;
  std::string token_;
  std::int64_t clock_ = 1'767'225'600 * kSecond;
};

TEST_F(LiveApiTest, RefusesMissingAndForgedCredentialsBeforeTheUpgrade) {
  WsClient anonymous;
  EXPECT_EQ(anonymous.connect(server_->port(), "/api/v1/live"), 401U);
  WsClient forged;
  EXPECT_EQ(forged.connect(server_->port(), "/api/v1/live?access_token=" + token_ + "x"), 401U);
  WsClient header;
  EXPECT_EQ(header.connect(server_->port(), "/api/v1/live", "Bearer " + token_), 101U);
}

TEST_F(LiveApiTest, APlainRequestGets426) {
  testing::HttpTestClient client(server_->port(), "Bearer " + token_);
  const auto r = client.get("/api/v1/live");
  EXPECT_EQ(r.status, 426U);
  EXPECT_EQ(r.header("upgrade"), "websocket");
  EXPECT_EQ(r.header("content-type"), "application/problem+json");
}

TEST_F(LiveApiTest, SubscribedDevicesArriveAsTheyAreStored) {
  WsClient client;
  ASSERT_EQ(client.connect(server_->port(), liveTarget()), 101U);
  client.send(R"({"op":"subscribe","devices":["d1"]})");
  const auto reply = client.readObject();
  EXPECT_EQ(reply.at("type"), "subscribed");
  ingest("d2", {{"value", std::int64_t{1}}});  // not subscribed
  ingest("d1", {{"value", std::int64_t{23}}, {"unit", std::string("C")}});
  const auto message = client.readObject();
  ASSERT_EQ(message.at("type"), "records") << json::serialize(message);
  const auto& list = message.at("records").as_array();
  ASSERT_EQ(list.size(), 1U);
  const auto& record = list[0].as_object();
  EXPECT_EQ(record.at("device"), "d1");
  EXPECT_EQ(record.at("fields"), (json::object{{"value", 23}, {"unit", "C"}}));
  EXPECT_EQ(record.at("node"), "node-live");
  EXPECT_EQ(message.at("coalesced"), false);
}

TEST_F(LiveApiTest, KeysAndGroupsFilterWhatIsSent) {
  storage::DeviceUpdate update;
  update.tags = std::map<std::string, std::string>{{"fleet", "north"}};
  ASSERT_TRUE(store_->updateDevice("truck1", update).ok());
  WsClient client;
  ASSERT_EQ(client.connect(server_->port(), liveTarget()), 101U);
  client.send(R"({"op":"subscribe","groups":["fleet:north"],"keys":["fuel"]})");
  EXPECT_EQ(client.readObject().at("groups"), (json::array{"fleet:north"}));
  ingest("truck2", {{"fuel", 5.0}});                    // not in the group
  ingest("truck1", {{"speed", 50.0}});                  // no subscribed key
  ingest("truck1", {{"fuel", 12.5}, {"speed", 40.0}});  // sent, fuel only
  const auto message = client.readObject();
  ASSERT_EQ(message.at("type"), "records") << json::serialize(message);
  const auto& list = message.at("records").as_array();
  ASSERT_EQ(list.size(), 1U) << json::serialize(message);
  EXPECT_EQ(list[0].at("device"), "truck1");
  EXPECT_EQ(list[0].at("fields"), (json::object{{"fuel", 12.5}}));
}

TEST_F(LiveApiTest, ABadMessageGetsAnErrorAndTheConnectionStays) {
  WsClient client;
  ASSERT_EQ(client.connect(server_->port(), liveTarget()), 101U);
  client.send("{\"op\":");
  const auto error = client.readObject();
  EXPECT_EQ(error.at("type"), "error");
  client.send(R"({"op":"subscribe","all":true})");
  EXPECT_EQ(client.readObject().at("all"), true);
  ingest("any", {{"value", std::int64_t{1}}});
  EXPECT_EQ(client.readObject().at("type"), "records");
}

TEST_F(LiveApiTest, ABinaryMessageClosesWith1003) {
  WsClient client;
  ASSERT_EQ(client.connect(server_->port(), liveTarget()), 101U);
  client.sendBinary("\x01\x02");
  EXPECT_FALSE(client.read().has_value());
  EXPECT_EQ(client.lastError, websocket::error::closed);
  EXPECT_EQ(client.closeCode(), 1003U);
}

TEST_F(LiveApiTest, AnExpiredTokenClosesWith1008) {
  WsClient client;
  ASSERT_EQ(client.connect(server_->port(), liveTarget()), 101U);
  client.send(R"({"op":"subscribe","all":true})");
  EXPECT_EQ(client.readObject().at("type"), "subscribed");
  now_ += 61 * kSecond;  // past the 60 s token lifetime; the session re-checks every 50 ms
  EXPECT_FALSE(client.read().has_value());
  EXPECT_EQ(client.lastError, websocket::error::closed);
  EXPECT_EQ(client.closeCode(), 1008U);
  EXPECT_NE(client.closeReason().find("expired"), std::string::npos) << client.closeReason();
}

TEST_F(LiveApiTest, ARevokedTokenClosesWith1008) {
  WsClient client;
  ASSERT_EQ(client.connect(server_->port(), liveTarget()), 101U);
  testing::HttpTestClient http(server_->port(), "Bearer " + token_);
  const auto r = http.request("POST", "/api/v1/auth/logout", "{}");
  ASSERT_EQ(r.status, 204U) << r.body;
  EXPECT_FALSE(client.read().has_value());
  EXPECT_EQ(client.closeCode(), 1008U);
}

TEST_F(LiveApiTest, ASlowClientGetsTheLatestPerDeviceAndEndsCurrent) {
  WsClient client;
  // A small receive window so the server's writes back up quickly.
  ASSERT_EQ(client.connect(server_->port(), liveTarget(), {}, 4096), 101U);
  client.send(R"({"op":"subscribe","all":true})");
  EXPECT_EQ(client.readObject().at("type"), "subscribed");
  // Far more than any socket buffer holds, straight into the feed as commits would be.
  constexpr std::int64_t kPerDevice = 50'000;
  const std::vector<std::string> devices{"a", "b", "c"};
  for (std::int64_t i = 0; i < kPerDevice; i += 1000) {
    for (const auto& device : devices) live_->publish(records(device, i, 1000));
  }
  bool sawCoalesced = false;
  std::map<std::string, std::int64_t> latest;
  const bool current = client.readRecordsUntil([&](const json::object& message) {
    if (message.at("coalesced").as_bool()) sawCoalesced = true;
    for (const auto& record : message.at("records").as_array()) {
      latest[std::string(record.at("device").as_string())] =
          record.at("fields").at("value").as_int64();
    }
    return latest.size() == devices.size() &&
           std::all_of(latest.begin(), latest.end(),
                       [](const auto& entry) { return entry.second == kPerDevice - 1; });
  });
  EXPECT_TRUE(current);
  EXPECT_TRUE(sawCoalesced);
}

}  // namespace
}  // namespace tern::api
