// Device management over HTTP: register (POST), change (PATCH), and the list's filters, sort
// orders and pages. The real server, a real SQLite store and auth store; roles by login.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <filesystem>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "api/http_server.h"
#include "auth/auth_service.h"
#include "auth/device_credentials.h"
#include "storage/sqlite/sqlite_auth_store.h"
#include "storage/sqlite/sqlite_store.h"
#include "unit/api/http_test_client.h"

namespace tern::api {
namespace {

namespace json = boost::json;
using testing::HttpTestClient;
using testing::HttpTestResponse;

constexpr std::int64_t kSecond = 1'000'000;

class DevicesApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device random;
    dir_ = std::filesystem::temp_directory_path() /
           ("tern_devices_api_" + std::to_string(random()) + std::to_string(random()));
    std::filesystem::create_directories(dir_);
    store_ = storage::sqlite::openSqliteStore({(dir_ / "tern.db").string()});
    authStore_ = storage::sqlite::openSqliteAuthStore((dir_ / "tern.db").string());
    auth_ = std::make_unique<auth::AuthService>(*authStore_, auth::AuthOptions{});
    for (const auto& [name, role] : {std::pair{"root", auth::Role::kAdmin},
                                     {"op", auth::Role::kOperator},
                                     {"view", auth::Role::kViewer}}) {
      ASSERT_TRUE(auth_->addUser(name, role, std::string(name) + "-password").ok());
    }
    ApiOptions api;
    api.listen = {"127.0.0.1", 0};
    api.nodeId = "node-devices";
    api.auth = auth_.get();
    credentials_ = std::make_unique<auth::DeviceCredentials>(*authStore_);
    api.deviceCredentials = credentials_.get();
    server_ = std::make_unique<HttpServer>(*store_, api);
    server_->start();
    operator_ = bearer("op");
    viewer_ = bearer("view");
  }
  void TearDown() override {
    server_.reset();
    credentials_.reset();
    auth_.reset();
    authStore_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  // A message from `device` at `second` (seconds after 2026-01-01).
  void ingest(const std::string& device, std::int64_t second) {
    storage::Record record;
    record.deviceId = device;
    record.serverTimeUs = (1'767'225'600 + second) * kSecond;
    record.nodeId = "n";
    record.topic = "device/" + device;
    record.payload = R"({"v":1})";
    record.payloadIsJson = true;
    record.fields = {{"v", std::int64_t{1}}};
    ASSERT_TRUE(store_->appendBatch(std::span(&record, 1)).ok());
  }

  HttpTestResponse call(std::string_view method, std::string_view target,
                        const std::string& authorization, std::string_view body = {}) {
    HttpTestClient client(server_->port(), authorization);
    return client.request(method, target, body);
  }
  std::string bearer(const std::string& name) {
    const auto r = call("POST", "/api/v1/auth/login", {},
                        R"({"name":")" + name + R"(","password":")" + name + R"(-password"})");
    EXPECT_EQ(r.status, 200u) << r.body;
    if (r.status != 200) return {};
    return "Bearer " + std::string(r.json().at("access_token").as_string());
  }
  static void expectProblem(const HttpTestResponse& r, unsigned status, std::string_view mention) {
    EXPECT_EQ(r.status, status) << r.body;
    EXPECT_EQ(r.header("content-type"), "application/problem+json");
    const auto body = r.json();
    if (!body.is_object()) return;
    EXPECT_EQ(body.at("status").to_number<unsigned>(), status);
    const std::string detail(body.at("detail").as_string());
    EXPECT_NE(detail.find(mention), std::string::npos) << detail << " should mention " << mention;
  }
  // Every page of the list from `query` (which must not hold a cursor), in order.
  std::vector<std::string> allPages(const std::string& query, std::size_t& pages) {
    std::vector<std::string> ids;
    std::string cursor;
    pages = 0;
    for (int guard = 0; guard < 100; ++guard) {
      std::string target = "/api/v1/devices?" + query;
      if (!cursor.empty()) target += "&cursor=" + cursor;
      const auto r = call("GET", target, viewer_);
      EXPECT_EQ(r.status, 200u) << r.body;
      if (r.status != 200) break;
      const auto body = r.json();
      ++pages;
      for (const auto& device : body.at("devices").as_array()) {
        ids.emplace_back(device.at("id").as_string());
      }
      if (body.at("next_cursor").is_null()) return ids;
      cursor = std::string(body.at("next_cursor").as_string());
    }
    ADD_FAILURE() << "no last page";
    return ids;
  }

  std::filesystem::path dir_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<storage::AuthStore> authStore_;
  std::unique_ptr<auth::AuthService> auth_;
  std::unique_ptr<auth::DeviceCredentials> credentials_;
  std::unique_ptr<HttpServer> server_;
  std::string operator_;
  std::string viewer_;
};

TEST_F(DevicesApiTest, PostRegistersADeviceOnce) {
  auto r = call("POST", "/api/v1/devices", operator_,
                R"({"id":"cold/7","tags":{"fleet":"east"},"attributes":{"model":"X1"}})");
  ASSERT_EQ(r.status, 201u) << r.body;
  EXPECT_EQ(r.header("location"), "/api/v1/devices/cold%2F7");
  auto body = r.json();
  EXPECT_EQ(body.at("id"), "cold/7");
  EXPECT_TRUE(body.at("first_seen").is_null());
  EXPECT_TRUE(body.at("last_seen").is_null());
  EXPECT_EQ(body.at("tags").at("fleet"), "east");
  EXPECT_EQ(body.at("attributes").at("model"), "X1");
  r = call("GET", "/api/v1/devices/cold%2F7", viewer_);
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.json().at("tags").at("fleet"), "east");
  EXPECT_EQ(body.at("name"), "");
  EXPECT_EQ(body.at("type"), "");
  r = call("POST", "/api/v1/devices", operator_,
           R"({"id":"reefer-1","name":"Kühlwagen 1","type":"reefer"})");
  ASSERT_EQ(r.status, 201u) << r.body;
  EXPECT_EQ(r.json().at("name"), "Kühlwagen 1");
  EXPECT_EQ(r.json().at("type"), "reefer");
  // Only the id is required.
  ASSERT_EQ(call("POST", "/api/v1/devices", operator_, R"({"id":"bare"})").status, 201u);
  // Once: a second POST is a conflict and changes nothing.
  expectProblem(call("POST", "/api/v1/devices", operator_, R"({"id":"cold/7","tags":{}})"), 409,
                "PATCH");
  EXPECT_EQ(call("GET", "/api/v1/devices/cold%2F7", viewer_).json().at("tags").at("fleet"), "east");
  // A device that sent messages exists too.
  ingest("sender", 1);
  expectProblem(call("POST", "/api/v1/devices", operator_, R"({"id":"sender"})"), 409, "sender");
}

TEST_F(DevicesApiTest, PostRejectsBadBodies) {
  const std::pair<const char*, const char*> cases[] = {
      {"", "JSON object"},
      {"[]", "JSON object"},
      {"{}", "'id': required"},
      {R"({"id":""})", "'id'"},
      {R"({"id":7})", "'id'"},
      {R"({"tags":{"a":"b"}})", "'id': required"},
      {R"({"id":"x","name":5})", "'name'"},
      {R"({"id":"x","type":null})", "'type'"},
      {R"({"id":"x","colour":"red"})", "'colour'"},
      {R"({"id":"x","tags":{"a:b":"c"}})", "'tags'"},
      {R"({"id":"x","tags":{"a":1}})", "tags"},
      {R"({"id":"x","attributes":[]})", "'attributes'"},
  };
  for (const auto& [body, mention] : cases) {
    SCOPED_TRACE(body);
    expectProblem(call("POST", "/api/v1/devices", operator_, body), 400, mention);
  }
  const std::string longId(257, 'x');
  expectProblem(call("POST", "/api/v1/devices", operator_,
                     R"({"id":"x","type":")" + std::string(65, 't') + "\"}"),
                400, "'type'");
  expectProblem(call("POST", "/api/v1/devices", operator_, R"({"id":")" + longId + "\"}"), 400,
                "'id'");
  expectProblem(call("POST", "/api/v1/devices?id=x", operator_, R"({"id":"x"})"), 400, "'id'");
  // Nothing was registered on the way.
  EXPECT_EQ(call("GET", "/api/v1/devices", viewer_).json().at("devices").as_array().size(), 0u);
}

TEST_F(DevicesApiTest, WritesNeedOperatorAndCredentials) {
  expectProblem(call("POST", "/api/v1/devices", viewer_, R"({"id":"a"})"), 403, "operator");
  expectProblem(call("POST", "/api/v1/devices", {}, R"({"id":"a"})"), 401, "authentication");
  ASSERT_EQ(call("POST", "/api/v1/devices", operator_, R"({"id":"a"})").status, 201u);
  expectProblem(call("PATCH", "/api/v1/devices/a", viewer_, R"({"tags":{}})"), 403, "operator");
  expectProblem(call("PATCH", "/api/v1/devices/a", {}, R"({"tags":{}})"), 401, "authentication");
  expectProblem(call("GET", "/api/v1/devices?sort=-id", {}), 401, "authentication");
  // An admin may write too.
  EXPECT_EQ(call("PATCH", "/api/v1/devices/a", bearer("root"), R"({"tags":{"x":"y"}})").status,
            200u);
}

TEST_F(DevicesApiTest, PatchChangesOnlyExistingDevices) {
  ASSERT_EQ(call("POST", "/api/v1/devices", operator_,
                 R"({"id":"p1","tags":{"fleet":"east"},"attributes":{"a":1}})")
                .status,
            201u);
  auto r = call("PATCH", "/api/v1/devices/p1", operator_, R"({"tags":{"fleet":"west"}})");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.json().at("tags").at("fleet"), "west");
  EXPECT_EQ(r.json().at("attributes").at("a"), 1);  // left out: kept
  r = call("PATCH", "/api/v1/devices/p1", operator_, R"({"name":"Pump 1","type":"pump"})");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.json().at("name"), "Pump 1");
  EXPECT_EQ(r.json().at("type"), "pump");
  EXPECT_EQ(r.json().at("tags").at("fleet"), "west");
  EXPECT_EQ(call("GET", "/api/v1/devices/p1", viewer_).json().at("name"), "Pump 1");
  expectProblem(call("PATCH", "/api/v1/devices/ghost", operator_, R"({"tags":{}})"), 404, "ghost");
  EXPECT_EQ(call("GET", "/api/v1/devices/ghost", viewer_).status, 404u);  // not registered
  expectProblem(call("PATCH", "/api/v1/devices/p1", operator_, "{}"), 400, "'tags'");
  expectProblem(call("PATCH", "/api/v1/devices/p1", operator_, R"({"id":"p2"})"), 400, "'id'");
  expectProblem(call("PATCH", "/api/v1/devices/p1", operator_, "nope"), 400, "JSON object");
}

TEST_F(DevicesApiTest, DeleteRemovesTheDeviceItsHistoryAndCredentials) {
  ingest("del-1", 1);
  ingest("del-1", 2);
  ingest("keep", 3);
  ASSERT_EQ(
      call("PATCH", "/api/v1/devices/del-1", operator_, R"({"tags":{"fleet":"east"}})").status,
      200u);
  ASSERT_TRUE(credentials_->addDevice("del-1", "del-1-password").ok());
  ASSERT_TRUE(credentials_->createToken("del-1").ok());

  expectProblem(call("DELETE", "/api/v1/devices/del-1", viewer_), 403, "operator");
  expectProblem(call("DELETE", "/api/v1/devices/del-1", {}), 401, "authentication");
  expectProblem(call("DELETE", "/api/v1/devices/del-1?force=1", operator_), 400, "'force'");
  EXPECT_EQ(call("GET", "/api/v1/devices/del-1", viewer_).json().at("message_count"), 2);

  const auto r = call("DELETE", "/api/v1/devices/del-1", operator_);
  ASSERT_EQ(r.status, 204u) << r.body;
  expectProblem(call("GET", "/api/v1/devices/del-1", viewer_), 404, "del-1");
  expectProblem(call("GET", "/api/v1/devices/del-1/messages", viewer_), 404, "del-1");
  EXPECT_TRUE(call("GET", "/api/v1/devices?tag=fleet:east", viewer_)
                  .json()
                  .at("devices")
                  .as_array()
                  .empty());
  auto credential = authStore_->findDevice("del-1");
  ASSERT_TRUE(credential.ok());
  EXPECT_FALSE(credential->has_value());
  auto tokens = authStore_->listDeviceTokens();
  ASSERT_TRUE(tokens.ok());
  EXPECT_TRUE(tokens->empty());
  EXPECT_EQ(call("GET", "/api/v1/devices/keep", viewer_).json().at("message_count"), 1);

  expectProblem(call("DELETE", "/api/v1/devices/del-1", operator_), 404, "del-1");
  expectProblem(call("DELETE", "/api/v1/devices/nobody", operator_), 404, "nobody");
  // Any id the store may hold, percent-encoded in the path.
  ASSERT_EQ(call("POST", "/api/v1/devices", operator_, R"({"id":"a/b c"})").status, 201u);
  EXPECT_EQ(call("DELETE", "/api/v1/devices/a%2Fb%20c", bearer("root")).status, 204u);
  EXPECT_EQ(call("GET", "/api/v1/devices/a%2Fb%20c", viewer_).status, 404u);
}

TEST_F(DevicesApiTest, ListPagesThroughEveryDeviceExactlyOnceInEachOrder) {
  const std::vector<std::string> ids = {"d-a", "d-b", "d-c", "d-d", "d-e", "x-1", "x-2"};
  for (const auto& id : ids) {
    ASSERT_EQ(call("POST", "/api/v1/devices", operator_, R"({"id":")" + id + "\"}").status, 201u);
  }
  // Three senders, last seen in the order d-c, x-1, d-a (two with equal times order by id).
  ingest("d-c", 10);
  ingest("x-1", 20);
  ingest("d-a", 30);
  ingest("d-e", 20);

  std::size_t pages = 0;
  EXPECT_EQ(allPages("limit=2", pages), ids);
  EXPECT_EQ(pages, 4u);
  std::vector<std::string> reversed(ids.rbegin(), ids.rend());
  EXPECT_EQ(allPages("sort=-id&limit=3", pages), reversed);
  EXPECT_EQ(pages, 3u);
  // Never seen first (oldest), then by last message time; ties by id.
  const std::vector<std::string> byLastSeen = {"d-b", "d-d", "x-2", "d-c", "d-e", "x-1", "d-a"};
  EXPECT_EQ(allPages("sort=last_seen&limit=2", pages), byLastSeen);
  std::vector<std::string> newestFirst(byLastSeen.rbegin(), byLastSeen.rend());
  EXPECT_EQ(allPages("sort=-last_seen&limit=1", pages), newestFirst);
  EXPECT_EQ(pages, 7u);
  // One page when everything fits.
  EXPECT_EQ(allPages("sort=-last_seen", pages), newestFirst);
  EXPECT_EQ(pages, 1u);
}

TEST_F(DevicesApiTest, ListSortsByNameWithTiesByIdAcrossPages) {
  // Byte order of names, no name (empty) first; equal names by id. Names may hold any text.
  for (const char* body :
       {R"({"id":"a","name":"Pump"})", R"({"id":"b","name":"Boiler"})",
        R"({"id":"c","name":"Pump"})", R"({"id":"d"})", R"({"id":"e","name":"Line\nbreak"})",
        R"({"id":"f","name":"\u00c4rger"})", R"({"id":"g","name":"Pump"})"}) {
    ASSERT_EQ(call("POST", "/api/v1/devices", operator_, body).status, 201u) << body;
  }
  const std::vector<std::string> byName = {"d", "b", "e", "a", "c", "g", "f"};
  std::size_t pages = 0;
  for (const char* limit : {"1", "2", "3", "100"}) {
    SCOPED_TRACE(limit);
    EXPECT_EQ(allPages(std::string("sort=name&limit=") + limit, pages), byName);
    EXPECT_EQ(allPages(std::string("sort=-name&limit=") + limit, pages),
              std::vector<std::string>(byName.rbegin(), byName.rend()));
  }
  // A device renamed between two pages moves; the pages still never repeat one.
  const auto first = call("GET", "/api/v1/devices?sort=name&limit=3", viewer_);
  ASSERT_EQ(first.status, 200u);
  ASSERT_EQ(call("PATCH", "/api/v1/devices/a", operator_, R"({"name":"Aaa"})").status, 200u);
  const auto rest = call("GET",
                         "/api/v1/devices?sort=name&limit=100&cursor=" +
                             std::string(first.json().at("next_cursor").as_string()),
                         viewer_);
  ASSERT_EQ(rest.status, 200u) << rest.body;
  std::vector<std::string> restIds;
  const auto restBody = rest.json();
  for (const auto& device : restBody.at("devices").as_array()) {
    restIds.emplace_back(device.at("id").as_string());
  }
  // After (Line\nbreak, e): a (now "Aaa") sorts before the cursor and is not repeated.
  EXPECT_EQ(restIds, (std::vector<std::string>{"c", "g", "f"}));
  // A name cursor continues only a name sort, in the same direction.
  const std::string cursor(first.json().at("next_cursor").as_string());
  expectProblem(call("GET", "/api/v1/devices?sort=-name&cursor=" + cursor, viewer_), 400,
                "same sort");
  expectProblem(call("GET", "/api/v1/devices?sort=id&cursor=" + cursor, viewer_), 400, "same sort");
}

TEST_F(DevicesApiTest, ListFiltersBySearchAndTag) {
  for (const char* body : {R"({"id":"Truck-1","tags":{"fleet":"east"}})",
                           R"({"id":"truck-2","tags":{"fleet":"west"}})",
                           R"({"id":"van-1","name":"Blue van","tags":{"fleet":"east"}})"}) {
    ASSERT_EQ(call("POST", "/api/v1/devices", operator_, body).status, 201u);
  }
  std::size_t pages = 0;
  EXPECT_EQ(allPages("search=TRUCK", pages), (std::vector<std::string>{"Truck-1", "truck-2"}));
  EXPECT_EQ(allPages("search=-1", pages), (std::vector<std::string>{"Truck-1", "van-1"}));
  EXPECT_EQ(allPages("tag=fleet:east", pages), (std::vector<std::string>{"Truck-1", "van-1"}));
  EXPECT_EQ(allPages("tag=fleet:east&search=van&sort=-id", pages),
            (std::vector<std::string>{"van-1"}));
  EXPECT_EQ(allPages("tag=fleet:east&limit=1", pages),
            (std::vector<std::string>{"Truck-1", "van-1"}));
  EXPECT_EQ(pages, 2u);
  EXPECT_TRUE(allPages("search=nothing", pages).empty());
  // The name counts too.
  EXPECT_EQ(allPages("search=blue", pages), (std::vector<std::string>{"van-1"}));
}

TEST_F(DevicesApiTest, ListRejectsBadParameters) {
  ASSERT_EQ(call("POST", "/api/v1/devices", operator_, R"({"id":"a"})").status, 201u);
  ASSERT_EQ(call("POST", "/api/v1/devices", operator_, R"({"id":"b"})").status, 201u);
  expectProblem(call("GET", "/api/v1/devices?sort=title", viewer_), 400, "'sort'");
  expectProblem(call("GET", "/api/v1/devices?sort=+name", viewer_), 400, "'sort'");
  expectProblem(call("GET", "/api/v1/devices?limit=0", viewer_), 400, "'limit'");
  expectProblem(call("GET", "/api/v1/devices?limit=10001", viewer_), 400, "'limit'");
  expectProblem(call("GET", "/api/v1/devices?limit=x", viewer_), 400, "'limit'");
  expectProblem(call("GET", "/api/v1/devices?cursor=!!", viewer_), 400, "'cursor'");
  expectProblem(call("GET", "/api/v1/devices?tag=fleet", viewer_), 400, "'tag'");
  expectProblem(call("GET", "/api/v1/devices?order=asc", viewer_), 400, "'order'");
  // A cursor only continues the order it came from.
  const auto first = call("GET", "/api/v1/devices?limit=1", viewer_);
  ASSERT_EQ(first.status, 200u);
  const std::string cursor(first.json().at("next_cursor").as_string());
  EXPECT_EQ(call("GET", "/api/v1/devices?limit=1&cursor=" + cursor, viewer_).status, 200u);
  expectProblem(call("GET", "/api/v1/devices?sort=-last_seen&cursor=" + cursor, viewer_), 400,
                "same sort");
}

// --- groups ------------------------------------------------------------------------------------

TEST_F(DevicesApiTest, GroupsAreCreatedReadChangedAndDeleted) {
  for (const char* body : {R"({"id":"a"})", R"({"id":"b","tags":{"model":"x"}})",
                           R"({"id":"c","tags":{"fleet":"west","model":"y"}})"}) {
    ASSERT_EQ(call("POST", "/api/v1/devices", operator_, body).status, 201u);
  }
  const auto tagsOf = [&](const std::string& id) {
    const auto r = call("GET", "/api/v1/devices/" + id, viewer_);
    EXPECT_EQ(r.status, 200u) << r.body;
    return r.status == 200 ? r.json().at("tags").as_object() : json::object{};
  };
  const auto membersOf = [&](const std::string& tag) {
    std::vector<std::string> ids;
    const auto r = call("GET", "/api/v1/groups/" + tag, viewer_);
    if (r.status != 200) return ids;
    const auto body = r.json();
    EXPECT_EQ(body.at("size").as_int64(),
              static_cast<std::int64_t>(body.at("devices").as_array().size()));
    for (const auto& id : body.at("devices").as_array()) ids.emplace_back(id.as_string());
    return ids;
  };

  // Create: the listed devices get the tag (repeats count once); other tags stay.
  auto r =
      call("POST", "/api/v1/groups", operator_, R"({"tag":"fleet:east","devices":["b","a","b"]})");
  ASSERT_EQ(r.status, 201u) << r.body;
  EXPECT_EQ(r.header("location"), "/api/v1/groups/fleet%3Aeast");
  EXPECT_EQ(r.json().at("tag").as_string(), "fleet:east");
  EXPECT_EQ(r.json().at("key").as_string(), "fleet");
  EXPECT_EQ(r.json().at("value").as_string(), "east");
  EXPECT_EQ(r.json().at("size").as_int64(), 2);
  EXPECT_EQ(membersOf("fleet:east"), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(membersOf("fleet%3Aeast"), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(tagsOf("b"), (json::object{{"fleet", "east"}, {"model", "x"}}));
  // The group is the tag: the device list and the fleet queries see it.
  std::size_t pages = 0;
  EXPECT_EQ(allPages("tag=fleet:east", pages), (std::vector<std::string>{"a", "b"}));
  expectProblem(
      call("POST", "/api/v1/groups", operator_, R"({"tag":"fleet:east","devices":["c"]})"), 409,
      "exists");

  // Set the members: c moves over from fleet:west (its other tag stays), a leaves.
  r = call("PUT", "/api/v1/groups/fleet:east", operator_, R"({"devices":["b","c"]})");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.json().at("size").as_int64(), 2);
  EXPECT_EQ(membersOf("fleet:east"), (std::vector<std::string>{"b", "c"}));
  EXPECT_EQ(tagsOf("a"), json::object{});
  EXPECT_EQ(tagsOf("c"), (json::object{{"fleet", "east"}, {"model", "y"}}));
  expectProblem(call("GET", "/api/v1/groups/fleet:west", viewer_), 404, "fleet:west");

  // PUT makes a group that did not exist (201), and an empty list ends one.
  r = call("PUT", "/api/v1/groups/site:north", operator_, R"({"devices":["a"]})");
  ASSERT_EQ(r.status, 201u) << r.body;
  EXPECT_EQ(r.header("location"), "/api/v1/groups/site%3Anorth");
  r = call("PUT", "/api/v1/groups/site:north", operator_, R"({"devices":[]})");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.json().at("size").as_int64(), 0);
  expectProblem(call("GET", "/api/v1/groups/site:north", viewer_), 404, "site:north");

  // A bad list changes nothing.
  expectProblem(call("PUT", "/api/v1/groups/fleet:east", operator_, R"({"devices":["a","zz"]})"),
                400, "zz");
  EXPECT_EQ(membersOf("fleet:east"), (std::vector<std::string>{"b", "c"}));

  // Delete takes the tag from every member; the devices stay.
  r = call("DELETE", "/api/v1/groups/fleet:east", operator_);
  ASSERT_EQ(r.status, 204u) << r.body;
  EXPECT_TRUE(membersOf("fleet:east").empty());
  EXPECT_EQ(tagsOf("b"), (json::object{{"model", "x"}}));
  EXPECT_EQ(tagsOf("c"), (json::object{{"model", "y"}}));
  expectProblem(call("DELETE", "/api/v1/groups/fleet:east", operator_), 404, "fleet:east");
}

TEST_F(DevicesApiTest, GroupListCountsFiltersSortsAndPages) {
  for (const char* body : {R"({"id":"a","tags":{"fleet":"east","model":"x"}})",
                           R"({"id":"b","tags":{"fleet":"east","model":"y"}})",
                           R"({"id":"c","tags":{"fleet":"East-2","model":"x"}})",
                           R"({"id":"d","tags":{"fleet":"east"}})", R"({"id":"e"})"}) {
    ASSERT_EQ(call("POST", "/api/v1/devices", operator_, body).status, 201u);
  }
  // Every page of a query, as (tag, size) pairs.
  const auto list = [&](const std::string& query) {
    std::vector<std::pair<std::string, std::int64_t>> out;
    std::string cursor;
    for (int guard = 0; guard < 20; ++guard) {
      std::string target = "/api/v1/groups?" + query;
      if (!cursor.empty()) target += "&cursor=" + cursor;
      const auto r = call("GET", target, viewer_);
      EXPECT_EQ(r.status, 200u) << r.body;
      if (r.status != 200) break;
      const auto body = r.json();
      for (const auto& g : body.at("groups").as_array()) {
        out.emplace_back(g.at("tag").as_string(), g.at("size").as_int64());
      }
      if (body.at("next_cursor").is_null()) return out;
      cursor = std::string(body.at("next_cursor").as_string());
    }
    ADD_FAILURE() << "no last page";
    return out;
  };
  using Groups = std::vector<std::pair<std::string, std::int64_t>>;
  const Groups byTag{{"fleet:East-2", 1}, {"fleet:east", 3}, {"model:x", 2}, {"model:y", 1}};
  EXPECT_EQ(list(""), byTag);
  EXPECT_EQ(list("limit=1"), byTag);
  EXPECT_EQ(list("sort=-tag&limit=3"), Groups(byTag.rbegin(), byTag.rend()));
  EXPECT_EQ(list("sort=size&limit=1"),
            (Groups{{"fleet:East-2", 1}, {"model:y", 1}, {"model:x", 2}, {"fleet:east", 3}}));
  EXPECT_EQ(list("sort=-size&limit=2"),
            (Groups{{"fleet:east", 3}, {"model:x", 2}, {"model:y", 1}, {"fleet:East-2", 1}}));
  EXPECT_EQ(list("key=model"), (Groups{{"model:x", 2}, {"model:y", 1}}));
  EXPECT_EQ(list("search=EAST"), (Groups{{"fleet:East-2", 1}, {"fleet:east", 3}}));
  EXPECT_TRUE(list("key=site").empty());
}

TEST_F(DevicesApiTest, GroupWritesRejectBadInputAndNeedOperator) {
  ASSERT_EQ(call("POST", "/api/v1/devices", operator_, R"({"id":"a"})").status, 201u);
  for (const auto& [body, mention] : std::vector<std::pair<std::string, std::string>>{
           {"[]", "JSON object"},
           {R"({"devices":["a"]})", "'tag': required"},
           {R"({"tag":"fleet:east"})", "'devices': required"},
           {R"({"tag":"fleet","devices":["a"]})", "'tag'"},
           {R"({"tag":":east","devices":["a"]})", "'tag'"},
           {R"({"tag":7,"devices":["a"]})", "'tag'"},
           {R"({"tag":"fleet:east","devices":"a"})", "'devices'"},
           {R"({"tag":"fleet:east","devices":[7]})", "'devices'"},
           {R"({"tag":"fleet:east","devices":[""]})", "'devices'"},
           {R"({"tag":"fleet:east","devices":[]})", "at least one"},
           {R"({"tag":"fleet:east","devices":["a","nobody"]})", "nobody"},
           {R"({"tag":"fleet:east","devices":["a"],"color":"red"})", "'color'"}}) {
    expectProblem(call("POST", "/api/v1/groups", operator_, body), 400, mention);
  }
  std::size_t pages = 0;
  EXPECT_TRUE(allPages("tag=fleet:east", pages).empty());  // nothing half-done
  expectProblem(call("PUT", "/api/v1/groups/fleet:east", operator_,
                     R"({"tag":"fleet:east","devices":["a"]})"),
                400, "'tag'");
  expectProblem(call("GET", "/api/v1/groups/fleet", viewer_), 400, "key:value");
  expectProblem(call("DELETE", "/api/v1/groups/:east", operator_), 400, "key:value");
  expectProblem(call("GET", "/api/v1/groups?sort=name", viewer_), 400, "'sort'");
  expectProblem(call("GET", "/api/v1/groups?limit=0", viewer_), 400, "'limit'");
  expectProblem(call("GET", "/api/v1/groups?cursor=!!", viewer_), 400, "'cursor'");
  // Viewers read, operators write.
  const std::string body = R"({"tag":"fleet:east","devices":["a"]})";
  expectProblem(call("POST", "/api/v1/groups", viewer_, body), 403, "operator");
  expectProblem(call("POST", "/api/v1/groups", {}, body), 401, "authentication");
  expectProblem(call("GET", "/api/v1/groups", {}), 401, "authentication");
  ASSERT_EQ(call("POST", "/api/v1/groups", operator_, body).status, 201u);
  EXPECT_EQ(call("GET", "/api/v1/groups/fleet:east", viewer_).status, 200u);
  expectProblem(call("PUT", "/api/v1/groups/fleet:east", viewer_, R"({"devices":[]})"), 403,
                "operator");
  expectProblem(call("DELETE", "/api/v1/groups/fleet:east", viewer_), 403, "operator");
  EXPECT_EQ(call("DELETE", "/api/v1/groups/fleet:east", bearer("root")).status, 204u);
}

}  // namespace
}  // namespace tern::api
