// Device MQTT credentials (/api/v1/devices/{id}/credentials, /tokens) and users
// (/api/v1/users) over HTTP: success, roles (401/403), bad input. The real server, a real SQLite
// store and auth store; roles by login. Both backends: test/integration/app/device_delete_test.
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
#include "auth/crypto.h"
#include "auth/device_credentials.h"
#include "storage/sqlite/sqlite_auth_store.h"
#include "storage/sqlite/sqlite_store.h"
#include "unit/api/http_test_client.h"

namespace tern::api {
namespace {

namespace json = boost::json;
using testing::HttpTestClient;
using testing::HttpTestResponse;

class AdminApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device random;
    dir_ = std::filesystem::temp_directory_path() /
           ("tern_admin_api_" + std::to_string(random()) + std::to_string(random()));
    std::filesystem::create_directories(dir_);
    store_ = storage::sqlite::openSqliteStore({(dir_ / "tern.db").string()});
    authStore_ = storage::sqlite::openSqliteAuthStore((dir_ / "tern.db").string());
    auth_ = std::make_unique<auth::AuthService>(*authStore_, auth::AuthOptions{});
    for (const auto& [name, role] : {std::pair{"root", auth::Role::kAdmin},
                                     {"op", auth::Role::kOperator},
                                     {"view", auth::Role::kViewer}}) {
      ASSERT_TRUE(auth_->addUser(name, role, std::string(name) + "-password").ok());
    }
    credentials_ = std::make_unique<auth::DeviceCredentials>(*authStore_);
    ApiOptions api;
    api.listen = {"127.0.0.1", 0};
    api.nodeId = "node-admin";
    api.auth = auth_.get();
    api.deviceCredentials = credentials_.get();
    server_ = std::make_unique<HttpServer>(*store_, api);
    server_->start();
    admin_ = bearer("root");
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

  HttpTestResponse call(std::string_view method, std::string_view target,
                        const std::string& authorization, std::string_view body = {}) {
    HttpTestClient client(server_->port(), authorization);
    return client.request(method, target, body);
  }
  HttpTestResponse login(const std::string& name, const std::string& password) {
    return call("POST", "/api/v1/auth/login", {},
                R"({"name":")" + name + R"(","password":")" + password + R"("})");
  }
  std::string bearer(const std::string& name, std::string password = {}) {
    if (password.empty()) password = name + "-password";
    const auto r = login(name, password);
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

  std::filesystem::path dir_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<storage::AuthStore> authStore_;
  std::unique_ptr<auth::AuthService> auth_;
  std::unique_ptr<auth::DeviceCredentials> credentials_;
  std::unique_ptr<HttpServer> server_;
  std::string admin_;
  std::string operator_;
  std::string viewer_;
};

// --- device credentials -------------------------------------------------------------------------

TEST_F(AdminApiTest, CredentialsNeedOperatorEvenToRead) {
  for (const auto& [method, path] : {std::pair{"GET", "/api/v1/devices/d1/credentials"},
                                     {"PUT", "/api/v1/devices/d1/credentials"},
                                     {"DELETE", "/api/v1/devices/d1/credentials"},
                                     {"GET", "/api/v1/devices/d1/tokens"},
                                     {"POST", "/api/v1/devices/d1/tokens"},
                                     {"DELETE", "/api/v1/devices/d1/tokens"},
                                     {"DELETE", "/api/v1/devices/d1/tokens/1"}}) {
    SCOPED_TRACE(std::string(method) + " " + path);
    expectProblem(call(method, path, viewer_, R"({"password":"abcdefgh"})"), 403, "operator");
    expectProblem(call(method, path, {}, R"({"password":"abcdefgh"})"), 401, "authentication");
  }
  EXPECT_FALSE(authStore_->findDevice("d1")->has_value()) << "nothing was created on the way";
}

TEST_F(AdminApiTest, DeviceTokenListIsSortedAndPaged) {
  std::vector<std::pair<std::int64_t, std::string>> made;  // (id, prefix), oldest first
  for (int i = 0; i < 3; ++i) {
    const auto r = call("POST", "/api/v1/devices/dev-t/tokens", operator_);
    ASSERT_EQ(r.status, 201u) << r.body;
    const auto body = r.json();
    made.emplace_back(body.at("id").as_int64(), std::string(body.at("prefix").as_string()));
  }
  // Every page, one token at a time, as ids.
  const auto ids = [&](const std::string& query) {
    std::vector<std::int64_t> out;
    std::string cursor;
    for (int page = 0; page < 10; ++page) {
      std::string target = "/api/v1/devices/dev-t/tokens?limit=1&" + query;
      if (!cursor.empty()) target += "&cursor=" + cursor;
      const auto r = call("GET", target, operator_);
      EXPECT_EQ(r.status, 200u) << r.body;
      if (r.status != 200) break;
      const auto body = r.json();
      EXPECT_EQ(body.at("device"), "dev-t");
      for (const auto& token : body.at("tokens").as_array()) {
        out.push_back(token.at("id").as_int64());
      }
      if (body.at("next_cursor").is_null()) return out;
      cursor = std::string(body.at("next_cursor").as_string());
    }
    ADD_FAILURE() << "no last page";
    return out;
  };
  using Ids = std::vector<std::int64_t>;
  EXPECT_EQ(ids(""), (Ids{made[0].first, made[1].first, made[2].first}));
  EXPECT_EQ(ids("sort=-id"), (Ids{made[2].first, made[1].first, made[0].first}));
  EXPECT_EQ(ids("search=" + made[1].second), (Ids{made[1].first}));
  expectProblem(call("GET", "/api/v1/devices/dev-t/tokens?sort=prefix", operator_), 400, "'sort'");
  expectProblem(call("GET", "/api/v1/devices/dev-t/tokens?limit=0", operator_), 400, "'limit'");
}

TEST_F(AdminApiTest, PasswordIsSetReplacedAndRemovedButNeverShown) {
  auto r = call("PUT", "/api/v1/devices/dev-1/credentials", operator_,
                R"({"password":"first-password"})");
  ASSERT_EQ(r.status, 201u) << r.body;
  EXPECT_EQ(r.json().at("device"), "dev-1");
  EXPECT_EQ(r.json().at("password"), true);
  EXPECT_TRUE(r.json().at("tokens").as_array().empty());
  EXPECT_TRUE(r.json().at("created").is_string());
  EXPECT_EQ(r.body.find("first-password"), std::string::npos);
  EXPECT_EQ(r.body.find("argon2"), std::string::npos);
  auto stored = authStore_->findDevice("dev-1");
  ASSERT_TRUE(stored.ok() && stored->has_value());
  EXPECT_TRUE(auth::verifyPassword("first-password", (*stored)->passwordHash));

  r = call("PUT", "/api/v1/devices/dev-1/credentials", bearer("root"),
           R"({"password":"second-password"})");
  ASSERT_EQ(r.status, 200u) << r.body;
  stored = authStore_->findDevice("dev-1");
  EXPECT_TRUE(auth::verifyPassword("second-password", (*stored)->passwordHash));
  r = call("GET", "/api/v1/devices/dev-1/credentials", operator_);
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.json().at("password"), true);
  EXPECT_EQ(r.body.find("argon2"), std::string::npos);

  r = call("PUT", "/api/v1/devices/dev-1/credentials", operator_, R"({"password":null})");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.json().at("password"), false);
  EXPECT_EQ((*authStore_->findDevice("dev-1"))->passwordHash, "");

  // Bad input changes nothing.
  const std::pair<const char*, const char*> cases[] = {
      {"", "JSON object"},
      {"[]", "JSON object"},
      {"{}", "'password': required"},
      {R"({"password":"short"})", "'password'"},
      {R"({"password":7})", "'password'"},
      {R"({"password":"long-enough","user":"x"})", "'user'"},
  };
  for (const auto& [body, mention] : cases) {
    SCOPED_TRACE(body);
    expectProblem(call("PUT", "/api/v1/devices/dev-1/credentials", operator_, body), 400, mention);
  }
  // Ids a device cannot log in with.
  expectProblem(
      call("PUT", "/api/v1/devices/a%2Fb/credentials", operator_, R"({"password":"long-enough"})"),
      400, "device id");
  expectProblem(call("POST", "/api/v1/devices/tdev_x/tokens", operator_), 400, "device id");
  expectProblem(call("PUT", "/api/v1/devices/dev-1/credentials?x=1", operator_,
                     R"({"password":"long-enough"})"),
                400, "'x'");
}

TEST_F(AdminApiTest, TokensAreShownOnceListedAndRevoked) {
  auto r = call("POST", "/api/v1/devices/trk-1/tokens", operator_);
  ASSERT_EQ(r.status, 201u) << r.body;
  const auto first = r.json();
  const std::string token(first.at("token").as_string());
  EXPECT_EQ(token.rfind("tdev_", 0), 0u);
  EXPECT_EQ(first.at("device"), "trk-1");
  EXPECT_EQ(std::string(first.at("prefix").as_string()), token.substr(0, 12));
  const std::int64_t id1 = first.at("id").as_int64();
  EXPECT_EQ(r.header("location"), "/api/v1/devices/trk-1/tokens/" + std::to_string(id1));
  auto found = authStore_->findDeviceToken(auth::sha256Hex(token));
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->id, id1);

  r = call("POST", "/api/v1/devices/trk-1/tokens", operator_, "{}");
  ASSERT_EQ(r.status, 201u) << r.body;
  const std::int64_t id2 = r.json().at("id").as_int64();
  expectProblem(call("POST", "/api/v1/devices/trk-1/tokens", operator_, R"({"ttl":1})"), 400,
                "body");

  r = call("GET", "/api/v1/devices/trk-1/tokens", operator_);
  ASSERT_EQ(r.status, 200u) << r.body;
  const auto list = r.json();
  ASSERT_EQ(list.at("tokens").as_array().size(), 2u);
  EXPECT_EQ(list.at("tokens").at(0).at("id"), id1);
  EXPECT_EQ(list.at("tokens").at(1).at("id"), id2);
  EXPECT_EQ(r.body.find(token), std::string::npos) << "a token is shown only once";
  r = call("GET", "/api/v1/devices/trk-1/credentials", operator_);
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.json().at("password"), false);
  EXPECT_EQ(r.json().at("tokens").as_array().size(), 2u);

  EXPECT_EQ(call("DELETE", "/api/v1/devices/trk-1/tokens/" + std::to_string(id1), operator_).status,
            204u);
  EXPECT_FALSE(authStore_->findDeviceToken(auth::sha256Hex(token))->has_value());
  expectProblem(call("DELETE", "/api/v1/devices/trk-1/tokens/" + std::to_string(id1), operator_),
                404, std::to_string(id1));
  expectProblem(call("DELETE", "/api/v1/devices/other/tokens/" + std::to_string(id2), operator_),
                404, "other");
  expectProblem(call("DELETE", "/api/v1/devices/trk-1/tokens/abc", operator_), 400, "token id");
  expectProblem(call("DELETE", "/api/v1/devices/trk-1/tokens/0", operator_), 400, "token id");

  r = call("DELETE", "/api/v1/devices/trk-1/tokens", operator_);
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.json().at("revoked"), 1);
  EXPECT_TRUE(call("GET", "/api/v1/devices/trk-1/tokens", operator_)
                  .json()
                  .at("tokens")
                  .as_array()
                  .empty());
}

TEST_F(AdminApiTest, RemovingCredentialsAndUnknownDevices) {
  ASSERT_EQ(
      call("PUT", "/api/v1/devices/gone/credentials", operator_, R"({"password":"gone-password"})")
          .status,
      201u);
  ASSERT_EQ(call("POST", "/api/v1/devices/gone/tokens", operator_).status, 201u);
  EXPECT_EQ(call("DELETE", "/api/v1/devices/gone/credentials", operator_).status, 204u);
  EXPECT_FALSE(authStore_->findDevice("gone")->has_value());
  EXPECT_TRUE(authStore_->deviceTokens("gone")->empty());
  expectProblem(call("DELETE", "/api/v1/devices/gone/credentials", operator_), 404, "gone");
  // Known to nobody: 404; known to the store only: no credentials.
  expectProblem(call("GET", "/api/v1/devices/gone/credentials", operator_), 404, "gone");
  expectProblem(call("GET", "/api/v1/devices/gone/tokens", operator_), 404, "gone");
  ASSERT_EQ(call("POST", "/api/v1/devices", operator_, R"({"id":"plain"})").status, 201u);
  const auto r = call("GET", "/api/v1/devices/plain/credentials", operator_);
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.json().at("password"), false);
  EXPECT_TRUE(r.json().at("created").is_null());
  EXPECT_TRUE(r.json().at("tokens").as_array().empty());
}

// --- users --------------------------------------------------------------------------------------

TEST_F(AdminApiTest, UsersNeedAdmin) {
  for (const auto& [method, path] : {std::pair{"GET", "/api/v1/users"},
                                     {"POST", "/api/v1/users"},
                                     {"GET", "/api/v1/users/op"},
                                     {"PATCH", "/api/v1/users/op"},
                                     {"DELETE", "/api/v1/users/op"}}) {
    SCOPED_TRACE(std::string(method) + " " + path);
    expectProblem(call(method, path, operator_, R"({"role":"admin"})"), 403, "admin");
    expectProblem(call(method, path, viewer_, R"({"role":"admin"})"), 403, "admin");
    expectProblem(call(method, path, {}, R"({"role":"admin"})"), 401, "authentication");
  }
  EXPECT_EQ((*authStore_->findUser("op"))->role, "operator");
}

TEST_F(AdminApiTest, UsersAreFilteredAndSortedAcrossPages) {
  // root (admin), op (operator) and view (viewer) were created first, in that order.
  for (const auto& [name, role] :
       {std::pair{"zed", "operator"}, {"alice", "viewer"}, {"Bob", "viewer"}}) {
    const auto r = call("POST", "/api/v1/users", admin_,
                        R"({"name":")" + std::string(name) + R"(","role":")" + role +
                            R"(","password":"a-good-password"})");
    ASSERT_EQ(r.status, 201u) << r.body;
  }
  // Every page, two users at a time.
  const auto names = [&](const std::string& query) {
    std::vector<std::string> out;
    std::string cursor;
    for (int page = 0; page < 20; ++page) {
      std::string target = "/api/v1/users?limit=2&" + query;
      if (!cursor.empty()) target += "&cursor=" + cursor;
      const auto r = call("GET", target, admin_);
      EXPECT_EQ(r.status, 200u) << r.body;
      if (r.status != 200) break;
      const auto body = r.json();
      for (const auto& user : body.at("users").as_array()) {
        out.emplace_back(user.at("name").as_string());
      }
      if (body.at("next_cursor").is_null()) return out;
      cursor = std::string(body.at("next_cursor").as_string());
    }
    ADD_FAILURE() << "no last page";
    return out;
  };
  using Names = std::vector<std::string>;
  EXPECT_EQ(names("sort=created"), (Names{"root", "op", "view", "zed", "alice", "Bob"}));
  EXPECT_EQ(names("sort=-created"), (Names{"Bob", "alice", "zed", "view", "op", "root"}));
  EXPECT_EQ(names("sort=-name"), (Names{"zed", "view", "root", "op", "alice", "Bob"}));
  EXPECT_EQ(names("role=viewer"), (Names{"Bob", "alice", "view"}));
  EXPECT_EQ(names("role=operator&sort=-created"), (Names{"zed", "op"}));
  EXPECT_EQ(names("search=E"), (Names{"alice", "view", "zed"}));
  EXPECT_TRUE(names("role=service").empty());
  // A cursor continues only the sort it came from.
  const auto first = call("GET", "/api/v1/users?limit=1&sort=created", admin_);
  ASSERT_EQ(first.status, 200u) << first.body;
  const std::string cursor(first.json().at("next_cursor").as_string());
  expectProblem(call("GET", "/api/v1/users?sort=name&cursor=" + cursor, admin_), 400, "same sort");
}

TEST_F(AdminApiTest, UsersAreListedInPagesWithoutSecrets) {
  for (const char* name : {"zed", "alice", "Bob", "carol.k", "dave@x"}) {
    const auto r = call(
        "POST", "/api/v1/users", admin_,
        R"({"name":")" + std::string(name) + R"(","role":"viewer","password":"a-good-password"})");
    ASSERT_EQ(r.status, 201u) << r.body;
  }
  const std::vector<std::string> expected = {"Bob", "alice", "carol.k", "dave@x",
                                             "op",  "root",  "view",    "zed"};
  for (const char* limit : {"1", "3", "100"}) {
    SCOPED_TRACE(limit);
    std::vector<std::string> names;
    std::string cursor;
    for (int page = 0; page < 20; ++page) {
      std::string target = std::string("/api/v1/users?limit=") + limit;
      if (!cursor.empty()) target += "&cursor=" + cursor;
      const auto r = call("GET", target, admin_);
      ASSERT_EQ(r.status, 200u) << r.body;
      EXPECT_EQ(r.body.find("argon2"), std::string::npos);
      EXPECT_EQ(r.body.find("password"), std::string::npos);
      const auto body = r.json();
      for (const auto& user : body.at("users").as_array()) {
        names.emplace_back(user.at("name").as_string());
        EXPECT_TRUE(user.at("id").is_int64());
        EXPECT_TRUE(user.at("created").is_string());
      }
      if (body.at("next_cursor").is_null()) break;
      cursor = std::string(body.at("next_cursor").as_string());
    }
    EXPECT_EQ(names, expected);
  }
  expectProblem(call("GET", "/api/v1/users?limit=0", admin_), 400, "'limit'");
  expectProblem(call("GET", "/api/v1/users?limit=x", admin_), 400, "'limit'");
  expectProblem(call("GET", "/api/v1/users?cursor=!!", admin_), 400, "'cursor'");
  expectProblem(call("GET", "/api/v1/users?sort=title", admin_), 400, "'sort'");
  expectProblem(call("GET", "/api/v1/users?role=root", admin_), 400, "'role'");
  const auto one = call("GET", "/api/v1/users/alice", admin_);
  ASSERT_EQ(one.status, 200u) << one.body;
  EXPECT_EQ(one.json().at("role"), "viewer");
  expectProblem(call("GET", "/api/v1/users/nobody", admin_), 404, "nobody");
}

TEST_F(AdminApiTest, CreatingAUserLetsItLogIn) {
  auto r = call("POST", "/api/v1/users", admin_,
                R"({"name":"alice","role":"operator","password":"alice-password"})");
  ASSERT_EQ(r.status, 201u) << r.body;
  EXPECT_EQ(r.header("location"), "/api/v1/users/alice");
  EXPECT_EQ(r.json().at("name"), "alice");
  EXPECT_EQ(r.json().at("role"), "operator");
  EXPECT_EQ(r.body.find("alice-password"), std::string::npos);
  const std::string alice = bearer("alice");
  EXPECT_EQ(call("POST", "/api/v1/devices", alice, R"({"id":"by-alice"})").status, 201u);

  expectProblem(call("POST", "/api/v1/users", admin_,
                     R"({"name":"alice","role":"viewer","password":"other-password"})"),
                409, "alice");
  const std::pair<const char*, const char*> cases[] = {
      {"", "JSON object"},
      {"{}", "'name': required"},
      {R"({"name":"-x","role":"viewer","password":"long-enough"})", "'name'"},
      {R"({"name":"a b","role":"viewer","password":"long-enough"})", "'name'"},
      {R"({"name":"bob","role":"boss","password":"long-enough"})", "'role'"},
      {R"({"name":"bob","password":"long-enough"})", "'role': required"},
      {R"({"name":"bob","role":"viewer"})", "'password': required"},
      {R"({"name":"bob","role":"viewer","password":"short"})", "'password'"},
      {R"({"name":"bob","role":"viewer","password":"long-enough","id":3})", "'id'"},
  };
  for (const auto& [body, mention] : cases) {
    SCOPED_TRACE(body);
    expectProblem(call("POST", "/api/v1/users", admin_, body), 400, mention);
  }
  EXPECT_FALSE(authStore_->findUser("bob")->has_value());
}

TEST_F(AdminApiTest, PatchingAUserChangesRoleAtOnceAndPasswordEndsSessions) {
  ASSERT_EQ(call("POST", "/api/v1/users", admin_,
                 R"({"name":"alice","role":"operator","password":"alice-password"})")
                .status,
            201u);
  const std::string alice = bearer("alice");
  const auto pair = login("alice", "alice-password");
  ASSERT_EQ(pair.status, 200u);
  const std::string refresh(pair.json().at("refresh_token").as_string());

  // A role: applies to the running session at once.
  auto r = call("PATCH", "/api/v1/users/alice", admin_, R"({"role":"viewer"})");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.json().at("role"), "viewer");
  expectProblem(call("POST", "/api/v1/devices", alice, R"({"id":"x"})"), 403, "viewer");
  EXPECT_EQ(call("GET", "/api/v1/auth/me", alice).json().at("role"), "viewer");

  // A password: every session ends (access and refresh tokens); only the new one logs in.
  const auto before = authStore_->findUser("alice");
  r = call("PATCH", "/api/v1/users/alice", admin_, R"({"password":"alice-new-password"})");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_NE(r.json().at("id").as_int64(), (*before)->id);
  expectProblem(call("GET", "/api/v1/auth/me", alice), 401, "");
  EXPECT_EQ(
      call("POST", "/api/v1/auth/refresh", {}, R"({"refresh_token":")" + refresh + "\"}").status,
      401u);
  EXPECT_EQ(login("alice", "alice-password").status, 401u);
  EXPECT_EQ(call("GET", "/api/v1/auth/me", bearer("alice", "alice-new-password")).json().at("role"),
            "viewer");

  expectProblem(call("PATCH", "/api/v1/users/nobody", admin_, R"({"role":"viewer"})"), 404,
                "nobody");
  expectProblem(call("PATCH", "/api/v1/users/alice", admin_, "{}"), 400, "'role'");
  expectProblem(call("PATCH", "/api/v1/users/alice", admin_, R"({"name":"bob"})"), 400, "'name'");
  expectProblem(call("PATCH", "/api/v1/users/alice", admin_, R"({"role":"boss"})"), 400, "'role'");
  expectProblem(call("PATCH", "/api/v1/users/alice", admin_, R"({"password":"short"})"), 400,
                "'password'");
  // The last admin keeps the role.
  expectProblem(call("PATCH", "/api/v1/users/root", admin_, R"({"role":"operator"})"), 409,
                "last admin");
  EXPECT_EQ((*authStore_->findUser("root"))->role, "admin");
  EXPECT_EQ(call("PATCH", "/api/v1/users/root", admin_, R"({"role":"admin"})").status, 200u);
}

TEST_F(AdminApiTest, DeletingAUserEndsItsSessionsButNotTheLastAdmin) {
  ASSERT_EQ(call("POST", "/api/v1/users", admin_,
                 R"({"name":"alice","role":"admin","password":"alice-password"})")
                .status,
            201u);
  const auto pair = login("alice", "alice-password");
  ASSERT_EQ(pair.status, 200u);
  const std::string alice = "Bearer " + std::string(pair.json().at("access_token").as_string());
  const std::string refresh(pair.json().at("refresh_token").as_string());
  EXPECT_EQ(call("GET", "/api/v1/users", alice).status, 200u);

  EXPECT_EQ(call("DELETE", "/api/v1/users/alice", admin_).status, 204u);
  expectProblem(call("GET", "/api/v1/users", alice), 401, "");
  EXPECT_EQ(
      call("POST", "/api/v1/auth/refresh", {}, R"({"refresh_token":")" + refresh + "\"}").status,
      401u);
  EXPECT_EQ(login("alice", "alice-password").status, 401u);
  expectProblem(call("DELETE", "/api/v1/users/alice", admin_), 404, "alice");
  expectProblem(call("DELETE", "/api/v1/users/root", admin_), 409, "last admin");
  // With another admin, the first may go, even by its own hand.
  ASSERT_EQ(call("PATCH", "/api/v1/users/op", admin_, R"({"role":"admin"})").status, 200u);
  EXPECT_EQ(call("DELETE", "/api/v1/users/root", admin_).status, 204u);
  EXPECT_FALSE(authStore_->findUser("root")->has_value());
}

}  // namespace
}  // namespace tern::api
