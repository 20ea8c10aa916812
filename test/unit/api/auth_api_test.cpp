// Authentication over HTTP: the real server, a real SQLite auth store and a hand-driven clock
// (expiry without waiting). Every protected route refuses a request without valid credentials.
#include <gtest/gtest.h>

#include <atomic>
#include <boost/json.hpp>
#include <filesystem>
#include <memory>
#include <random>
#include <string>

#include "api/http_server.h"
#include "auth/auth_service.h"
#include "auth/crypto.h"
#include "storage/sqlite/sqlite_auth_store.h"
#include "storage/sqlite/sqlite_store.h"
#include "unit/api/http_test_client.h"

namespace tern::api {
namespace {

namespace json = boost::json;
using testing::HttpTestClient;
using testing::HttpTestResponse;

constexpr std::int64_t kSecond = 1'000'000;

class AuthApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device random;
    dir_ = std::filesystem::temp_directory_path() /
           ("tern_auth_api_" + std::to_string(random()) + std::to_string(random()));
    std::filesystem::create_directories(dir_);
    store_ = storage::sqlite::openSqliteStore({(dir_ / "tern.db").string()});
    storage::Record record;
    record.deviceId = "dev1";
    record.serverTimeUs = 1'767'225'600 * kSecond;
    record.nodeId = "n";
    record.topic = "device/dev1";
    record.payload = "{\"v\":1}";
    record.payloadIsJson = true;
    record.fields = {{"v", std::int64_t{1}}};
    ASSERT_TRUE(store_->appendBatch(std::span(&record, 1)).ok());
    authStore_ = storage::sqlite::openSqliteAuthStore((dir_ / "tern.db").string());
    auth::AuthOptions options;
    options.tokenTtlUs = 60 * kSecond;
    options.refreshTtlUs = 3600 * kSecond;
    options.nowUs = [this] { return now_.load(); };
    auth_ = std::make_unique<auth::AuthService>(*authStore_, options);
    for (const auto& [name, role] : {std::pair{"root", auth::Role::kAdmin},
                                     {"op", auth::Role::kOperator},
                                     {"view", auth::Role::kViewer},
                                     {"svc", auth::Role::kService}}) {
      ASSERT_TRUE(auth_->addUser(name, role, std::string(name) + "-password").ok());
    }
    ApiOptions api;
    api.listen = {"127.0.0.1", 0};
    api.nodeId = "node-auth";
    api.auth = auth_.get();
    server_ = std::make_unique<HttpServer>(*store_, api);
    server_->start();
  }
  void TearDown() override {
    server_.reset();
    auth_.reset();
    authStore_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  HttpTestResponse call(std::string_view method, std::string_view target,
                        const std::string& authorization = {}, std::string_view body = {},
                        const std::map<std::string, std::string>& headers = {}) {
    HttpTestClient client(server_->port(), authorization);
    return client.request(method, target, body, headers);
  }

  json::object loginAs(const std::string& name) {
    const auto r = call("POST", "/api/v1/auth/login", {},
                        R"({"name":")" + name + R"(","password":")" + name + R"(-password"})");
    EXPECT_EQ(r.status, 200u) << r.body;
    const auto body = r.json();
    return body.is_object() ? body.as_object() : json::object{};
  }
  std::string bearerFor(const std::string& name) {
    return "Bearer " + std::string(loginAs(name)["access_token"].as_string());
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
  static void expect401(const HttpTestResponse& r, std::string_view mention) {
    expectProblem(r, 401, mention);
    EXPECT_EQ(r.header("www-authenticate").rfind("Bearer realm=\"tern\"", 0), 0u)
        << r.header("www-authenticate");
  }

  std::filesystem::path dir_;
  std::atomic<std::int64_t> now_{1'767'225'600 * kSecond};
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<storage::AuthStore> authStore_;
  std::unique_ptr<auth::AuthService> auth_;
  std::unique_ptr<HttpServer> server_;
};

TEST_F(AuthApiTest, HealthLoginAndRefreshArePublic) {
  EXPECT_EQ(call("GET", "/api/v1/health").status, 200u);
  EXPECT_EQ(call("POST", "/api/v1/auth/login", {}, "{}").status, 400u);
  EXPECT_EQ(call("POST", "/api/v1/auth/refresh", {}, "{}").status, 400u);
  // The MQTT-over-WebSocket path is the broker's to authenticate: no API token asked for.
  EXPECT_NE(call("GET", "/mqtt").status, 401u);
}

TEST_F(AuthApiTest, EveryOtherRouteNeedsCredentials) {
  const std::pair<const char*, const char*> routes[] = {
      {"GET", "/api/v1/devices"},
      {"GET", "/api/v1/devices/dev1"},
      {"GET", "/api/v1/devices/dev1/messages"},
      {"GET", "/api/v1/devices/dev1/series/v"},
      {"GET", "/api/v1/devices/dev1/positions"},
      {"GET", "/api/v1/positions/latest"},
      {"GET", "/api/v1/devices/dev1/commands"},
      {"POST", "/api/v1/devices/dev1/commands"},
      {"PUT", "/api/v1/devices/dev1"},
      {"DELETE", "/api/v1/devices/dev1"},
      {"GET", "/api/v1/api-keys"},
      {"POST", "/api/v1/api-keys"},
      {"DELETE", "/api/v1/api-keys/1"},
      {"GET", "/api/v1/auth/me"},
      {"POST", "/api/v1/auth/logout"},
      {"GET", "/api/v1/users"},
      {"GET", "/api/v1/fleet/anything"},
      {"GET", "/api/v1/no-such-route"},
      // The web app's page (/) and files (/app/{file}) are public; nothing else near them is.
      {"GET", "/index.html"},
      {"GET", "/app"},
      {"GET", "/app/a/b.js"},
  };
  for (const auto& [method, path] : routes) {
    SCOPED_TRACE(std::string(method) + " " + path);
    const auto r = call(method, path, {}, "{}");
    expect401(r, "authentication required");
    EXPECT_EQ(r.header("www-authenticate"), "Bearer realm=\"tern\"");
  }
}

TEST_F(AuthApiTest, LoginReturnsATokenPairThatWorks) {
  const auto body = loginAs("op");
  EXPECT_EQ(body.at("token_type"), "Bearer");
  EXPECT_EQ(body.at("expires_in").as_int64(), 60);
  EXPECT_EQ(body.at("refresh_expires_in").as_int64(), 3600);
  EXPECT_EQ(body.at("user").at("name"), "op");
  EXPECT_EQ(body.at("user").at("role"), "operator");
  EXPECT_FALSE(body.at("refresh_token").as_string().empty());
  const std::string bearer = "Bearer " + std::string(body.at("access_token").as_string());
  const auto devices = call("GET", "/api/v1/devices", bearer);
  ASSERT_EQ(devices.status, 200u) << devices.body;
  EXPECT_EQ(devices.json().at("devices").as_array().size(), 1u);
  const auto me = call("GET", "/api/v1/auth/me", bearer);
  ASSERT_EQ(me.status, 200u);
  EXPECT_EQ(me.json().at("name"), "op");
  EXPECT_EQ(me.json().at("kind"), "user");
}

TEST_F(AuthApiTest, BadLoginsAreRefused) {
  expect401(call("POST", "/api/v1/auth/login", {}, R"({"name":"op","password":"nope"})"),
            "wrong user name or password");
  expect401(call("POST", "/api/v1/auth/login", {}, R"({"name":"ghost","password":"x"})"),
            "wrong user name or password");
  expectProblem(call("POST", "/api/v1/auth/login", {}, "not json"), 400, "JSON object");
  expectProblem(call("POST", "/api/v1/auth/login", {}, R"({"password":"x"})"), 400, "'name'");
  expectProblem(call("POST", "/api/v1/auth/login", {}, R"({"name":"op"})"), 400, "'password'");
  expectProblem(call("POST", "/api/v1/auth/login", {}, R"({"name":1,"password":"x"})"), 400,
                "'name'");
  const auto get = call("GET", "/api/v1/auth/login");
  expectProblem(get, 405, "GET");
  EXPECT_EQ(get.header("allow"), "POST");
}

TEST_F(AuthApiTest, ExpiredForgedAlgNoneAndMalformedTokensGet401) {
  const auto body = loginAs("view");
  const std::string token(body.at("access_token").as_string());
  // Forged: a valid-looking token signed with another key.
  const auto dot2 = token.rfind('.');
  const std::string input = token.substr(0, dot2);
  const std::string forged = input + "." + auth::base64UrlEncode(auth::hmacSha256("guess", input));
  auto r = call("GET", "/api/v1/devices", "Bearer " + forged);
  expect401(r, "bad token signature");
  EXPECT_NE(r.header("www-authenticate").find("error=\"invalid_token\""), std::string::npos);
  // alg none: same claims, no signature.
  const std::string payload = token.substr(token.find('.') + 1, dot2 - token.find('.') - 1);
  const std::string none =
      auth::base64UrlEncode(R"({"alg":"none","typ":"JWT"})") + "." + payload + ".";
  expect401(call("GET", "/api/v1/devices", "Bearer " + none), "algorithm");
  for (const std::string bad : {"abc", "a.b.c", "...", "tern_"}) {
    SCOPED_TRACE(bad);
    EXPECT_EQ(call("GET", "/api/v1/devices", "Bearer " + bad).status, 401u);
  }
  expect401(call("GET", "/api/v1/devices", "Basic cm9vdDp4"), "Bearer");
  // Still good now; expired once the clock passes exp.
  EXPECT_EQ(call("GET", "/api/v1/devices", "Bearer " + token).status, 200u);
  now_ += 60 * kSecond;
  expect401(call("GET", "/api/v1/devices", "Bearer " + token), "expired");
}

TEST_F(AuthApiTest, RefreshRotatesAndReuseRevokesTheSession) {
  const auto first = loginAs("op");
  const std::string refresh1(first.at("refresh_token").as_string());
  const auto r2 =
      call("POST", "/api/v1/auth/refresh", {}, R"({"refresh_token":")" + refresh1 + "\"}");
  ASSERT_EQ(r2.status, 200u) << r2.body;
  const auto second = r2.json().as_object();
  const std::string refresh2(second.at("refresh_token").as_string());
  const std::string bearer2 = "Bearer " + std::string(second.at("access_token").as_string());
  EXPECT_NE(refresh2, refresh1);
  EXPECT_EQ(call("GET", "/api/v1/devices", bearer2).status, 200u);

  // Reusing refresh1: 401 and the whole session is gone, refresh2 and its access token too.
  expect401(call("POST", "/api/v1/auth/refresh", {}, R"({"refresh_token":")" + refresh1 + "\"}"),
            "already used");
  expect401(call("GET", "/api/v1/devices", bearer2), "revoked");
  expect401(call("POST", "/api/v1/auth/refresh", {}, R"({"refresh_token":")" + refresh2 + "\"}"),
            "revoked");
  expect401(call("POST", "/api/v1/auth/refresh", {}, R"({"refresh_token":"made-up"})"),
            "invalid refresh token");
  expectProblem(call("POST", "/api/v1/auth/refresh", {}, R"({"refresh_token":5})"), 400,
                "refresh_token");
}

TEST_F(AuthApiTest, LogoutRevokesTheTokens) {
  const auto body = loginAs("view");
  const std::string bearer = "Bearer " + std::string(body.at("access_token").as_string());
  const std::string refresh(body.at("refresh_token").as_string());
  const auto out = call("POST", "/api/v1/auth/logout", bearer);
  EXPECT_EQ(out.status, 204u) << out.body;
  EXPECT_TRUE(out.body.empty());
  expect401(call("GET", "/api/v1/devices", bearer), "revoked");
  expect401(call("POST", "/api/v1/auth/refresh", {}, R"({"refresh_token":")" + refresh + "\"}"),
            "revoked");
  // Logging out again with the revoked token is itself unauthorised.
  EXPECT_EQ(call("POST", "/api/v1/auth/logout", bearer).status, 401u);
}

TEST_F(AuthApiTest, RolesDecideWhatMayBeWritten) {
  const std::string viewer = bearerFor("view");
  const std::string service = bearerFor("svc");
  const std::string oper = bearerFor("op");
  const std::string admin = bearerFor("root");
  for (const auto& bearer : {viewer, service, oper, admin}) {
    EXPECT_EQ(call("GET", "/api/v1/devices/dev1", bearer).status, 200u);
  }
  const std::string command = R"({"type":"engineStop"})";
  expectProblem(call("POST", "/api/v1/devices/dev1/commands", viewer, command), 403, "'viewer'");
  expectProblem(call("POST", "/api/v1/devices/dev1/commands", service, command), 403, "'service'");
  expectProblem(call("PUT", "/api/v1/devices/dev1", viewer, "{}"), 403, "operator");
  // Operators get past the role check (no tracker gateway here: 503).
  EXPECT_EQ(call("POST", "/api/v1/devices/dev1/commands", oper, command).status, 503u);
  expectProblem(call("GET", "/api/v1/api-keys", oper), 403, "'admin'");
  expectProblem(call("POST", "/api/v1/api-keys", oper, R"({"name":"x","role":"viewer"})"), 403,
                "'admin'");
  expectProblem(call("GET", "/api/v1/users", viewer), 403, "'admin'");
  EXPECT_EQ(call("GET", "/api/v1/api-keys", admin).status, 200u);
}

TEST_F(AuthApiTest, ApiKeyListIsFilteredSortedAndPaged) {
  const std::string admin = bearerFor("root");
  for (const auto& [name, role] : {std::pair{"exporter", "viewer"},
                                   {"Grafana", "viewer"},
                                   {"ingest-job", "operator"},
                                   {"backup", "admin"}}) {
    ASSERT_EQ(call("POST", "/api/v1/api-keys", admin,
                   R"({"name":")" + std::string(name) + R"(","role":")" + role + R"("})")
                  .status,
              201u);
  }
  // Every page, two keys at a time, as names.
  const auto names = [&](const std::string& query) {
    std::vector<std::string> out;
    std::string cursor;
    for (int page = 0; page < 20; ++page) {
      std::string target = "/api/v1/api-keys?limit=2&" + query;
      if (!cursor.empty()) target += "&cursor=" + cursor;
      const auto r = call("GET", target, admin);
      EXPECT_EQ(r.status, 200u) << r.body;
      if (r.status != 200) break;
      const auto body = r.json();
      for (const auto& key : body.at("api_keys").as_array()) {
        out.emplace_back(key.at("name").as_string());
      }
      if (body.at("next_cursor").is_null()) return out;
      cursor = std::string(body.at("next_cursor").as_string());
    }
    ADD_FAILURE() << "no last page";
    return out;
  };
  using Names = std::vector<std::string>;
  EXPECT_EQ(names(""), (Names{"exporter", "Grafana", "ingest-job", "backup"}));  // by id
  EXPECT_EQ(names("sort=-id"), (Names{"backup", "ingest-job", "Grafana", "exporter"}));
  EXPECT_EQ(names("sort=name"), (Names{"Grafana", "backup", "exporter", "ingest-job"}));
  EXPECT_EQ(names("role=viewer&sort=-name"), (Names{"exporter", "Grafana"}));
  EXPECT_EQ(names("search=GR"), (Names{"Grafana"}));
  expectProblem(call("GET", "/api/v1/api-keys?sort=created", admin), 400, "'sort'");
  expectProblem(call("GET", "/api/v1/api-keys?role=boss", admin), 400, "'role'");
  expectProblem(call("GET", "/api/v1/api-keys?limit=0", admin), 400, "'limit'");
  expectProblem(call("GET", "/api/v1/api-keys?cursor=!!", admin), 400, "'cursor'");
}

TEST_F(AuthApiTest, ApiKeysAreShownOnceAndRevocable) {
  const std::string admin = bearerFor("root");
  const auto created =
      call("POST", "/api/v1/api-keys", admin, R"({"name":"exporter","role":"viewer"})");
  ASSERT_EQ(created.status, 201u) << created.body;
  const auto body = created.json().as_object();
  const std::string key(body.at("key").as_string());
  const auto id = body.at("id").as_int64();
  EXPECT_EQ(created.header("location"), "/api/v1/api-keys/" + std::to_string(id));
  EXPECT_EQ(body.at("name"), "exporter");
  EXPECT_EQ(body.at("role"), "viewer");
  EXPECT_EQ(body.at("created_by"), "root");
  EXPECT_EQ(std::string(body.at("prefix").as_string()), key.substr(0, 12));

  // Both ways of sending it work, with the key's role.
  EXPECT_EQ(call("GET", "/api/v1/devices", "Bearer " + key).status, 200u);
  EXPECT_EQ(call("GET", "/api/v1/devices", {}, {}, {{"X-API-Key", key}}).status, 200u);
  const auto me = call("GET", "/api/v1/auth/me", {}, {}, {{"X-API-Key", key}});
  EXPECT_EQ(me.json().at("kind"), "api_key");
  expectProblem(call("POST", "/api/v1/devices/dev1/commands", {}, R"({"type":"engineStop"})",
                     {{"X-API-Key", key}}),
                403, "viewer");
  expectProblem(call("POST", "/api/v1/auth/logout", "Bearer " + key), 400, "API key");

  // The list never shows a secret.
  const auto list = call("GET", "/api/v1/api-keys", admin);
  ASSERT_EQ(list.status, 200u);
  EXPECT_EQ(list.body.find(key), std::string::npos);
  EXPECT_EQ(list.body.find(auth::sha256Hex(key)), std::string::npos);
  const json::value listBody = list.json();
  const auto& keys = listBody.at("api_keys").as_array();
  ASSERT_EQ(keys.size(), 1u);
  EXPECT_FALSE(keys[0].as_object().contains("key"));
  EXPECT_TRUE(keys[0].at("revoked").is_null());

  const auto del = call("DELETE", "/api/v1/api-keys/" + std::to_string(id), admin);
  EXPECT_EQ(del.status, 204u) << del.body;
  expect401(call("GET", "/api/v1/devices", "Bearer " + key), "invalid or revoked API key");
  expect401(call("GET", "/api/v1/devices", {}, {}, {{"X-API-Key", key}}), "revoked");
  expectProblem(call("DELETE", "/api/v1/api-keys/" + std::to_string(id), admin), 404, "no active");
  EXPECT_FALSE(
      call("GET", "/api/v1/api-keys", admin).json().at("api_keys").at(0).at("revoked").is_null());
  expectProblem(call("DELETE", "/api/v1/api-keys/abc", admin), 400, "positive integer");
  expectProblem(call("POST", "/api/v1/api-keys", admin, R"({"name":"x","role":"root"})"), 400,
                "role");
  expectProblem(call("POST", "/api/v1/api-keys", admin, R"({"name":"x"})"), 400, "role");
  expectProblem(call("POST", "/api/v1/api-keys", admin, R"({"role":"viewer"})"), 400, "name");
  expectProblem(call("POST", "/api/v1/api-keys", admin, R"({"name":"x","role":"viewer","z":1})"),
                400, "unknown");
  expectProblem(call("PUT", "/api/v1/api-keys", admin, "{}"), 405, "PUT");
}

TEST_F(AuthApiTest, FailedLoginsAreRateLimitedWithRetryAfter) {
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(call("POST", "/api/v1/auth/login", {}, R"({"name":"op","password":"wrong"})").status,
              401u);
  }
  const auto limited =
      call("POST", "/api/v1/auth/login", {}, R"({"name":"op","password":"op-password"})");
  expectProblem(limited, 429, "too many failed logins");
  EXPECT_EQ(limited.header("retry-after"), "60");
  now_ += 60 * kSecond;
  EXPECT_EQ(
      call("POST", "/api/v1/auth/login", {}, R"({"name":"op","password":"op-password"})").status,
      200u);
}

TEST(AuthApiUnconfiguredTest, WithoutAnAuthServiceEverythingButHealthIs401) {
  std::random_device random;
  const auto dir =
      std::filesystem::temp_directory_path() / ("tern_auth_none_" + std::to_string(random()));
  std::filesystem::create_directories(dir);
  {
    auto store = storage::sqlite::openSqliteStore({(dir / "tern.db").string()});
    ApiOptions api;
    api.listen = {"127.0.0.1", 0};
    HttpServer server(*store, api);
    server.start();
    HttpTestClient client(server.port(), "Bearer whatever");
    EXPECT_EQ(client.get("/api/v1/health").status, 200u);
    EXPECT_EQ(client.get("/api/v1/devices").status, 401u);
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace tern::api
