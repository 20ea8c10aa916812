// The OpenAPI description against the router: every route the router serves is documented and
// every documented operation exists (the route table is the router's own dispatch table), with
// the same query parameters. Then the running server answers each documented operation with a
// status the document lists, asks for credentials exactly where the document says, and serves
// Swagger UI at /docs.
#include "api/openapi.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <boost/json.hpp>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "api/http_server.h"
#include "api/router.h"
#include "auth/auth_service.h"
#include "storage/sqlite/sqlite_auth_store.h"
#include "storage/sqlite/sqlite_store.h"
#include "unit/api/http_test_client.h"

namespace tern::api {
namespace {

namespace json = boost::json;
using testing::HttpTestClient;
using testing::HttpTestResponse;

constexpr std::int64_t kSecond = 1'000'000;
constexpr std::string_view kMethods[] = {"get", "put", "post", "delete", "patch"};

json::object document() {
  boost::system::error_code ec;
  json::value parsed = json::parse(openApiDocument(), ec);
  EXPECT_FALSE(ec) << "openapi.json is not JSON: " << ec.message();
  return parsed.is_object() ? parsed.as_object() : json::object{};
}

std::string upper(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

// Follows a local "$ref" ("#/components/parameters/from"); other values come back as they are.
const json::value& resolve(const json::object& doc, const json::value& value) {
  if (!value.is_object() || !value.as_object().contains("$ref")) return value;
  std::string_view ref = value.at("$ref").as_string();
  EXPECT_EQ(ref.substr(0, 2), "#/") << ref;
  const json::value* at = &doc.at("components");  // every ref points into components
  ref.remove_prefix(std::string_view("#/components/").size());
  while (!ref.empty()) {
    const auto slash = ref.find('/');
    at = &at->at(ref.substr(0, slash));
    if (slash == std::string_view::npos) break;
    ref.remove_prefix(slash + 1);
  }
  return *at;
}

struct Operation {
  std::string method;  // upper case
  std::string path;
  const json::object* op;
  std::vector<json::object> params;  // path-level and operation parameters, resolved
  bool isPublic = false;
};

std::vector<Operation> operations(const json::object& doc) {
  std::vector<Operation> out;
  for (const auto& [path, itemValue] : doc.at("paths").as_object()) {
    const auto& item = itemValue.as_object();
    for (const auto method : kMethods) {
      if (!item.contains(method)) continue;
      Operation op{upper(method), std::string(path), &item.at(method).as_object(), {}, false};
      for (const auto* list : {item.if_contains("parameters"), op.op->if_contains("parameters")}) {
        if (list == nullptr) continue;
        for (const auto& p : list->as_array()) op.params.push_back(resolve(doc, p).as_object());
      }
      const auto* security = op.op->if_contains("security");
      op.isPublic = security != nullptr && security->as_array().empty();
      out.push_back(std::move(op));
    }
  }
  return out;
}

std::set<std::string> paramNames(const Operation& op, std::string_view in) {
  std::set<std::string> names;
  for (const auto& p : op.params) {
    if (p.at("in").as_string() == in) names.emplace(p.at("name").as_string());
  }
  return names;
}

// Every "$ref" anywhere in the document.
void collectRefs(const json::value& value, std::vector<std::string>& refs) {
  if (value.is_object()) {
    for (const auto& [key, member] : value.as_object()) {
      if (key == "$ref" && member.is_string()) refs.emplace_back(member.as_string());
      collectRefs(member, refs);
    }
  } else if (value.is_array()) {
    for (const auto& element : value.as_array()) collectRefs(element, refs);
  }
}

TEST(OpenApiDocumentTest, IsOpenApi31WithResponsesForEveryOperation) {
  const json::object doc = document();
  ASSERT_FALSE(doc.empty());
  const std::string version(doc.at("openapi").as_string());
  EXPECT_EQ(version.rfind("3.1.", 0), 0u) << version;
  EXPECT_EQ(doc.at("info").at("version").as_string(), TERN_VERSION);
  const auto& schemes = doc.at("components").at("securitySchemes").as_object();
  EXPECT_EQ(schemes.at("bearerAuth").at("scheme"), "bearer");
  EXPECT_EQ(schemes.at("bearerAuth").at("bearerFormat"), "JWT");
  EXPECT_EQ(schemes.at("apiKeyAuth").at("name"), "X-API-Key");
  EXPECT_TRUE(doc.at("components").at("schemas").as_object().contains("Problem"));

  std::set<std::string> operationIds;
  const auto ops = operations(doc);
  EXPECT_GE(ops.size(), 20u);
  for (const auto& op : ops) {
    SCOPED_TRACE(op.method + " " + op.path);
    const auto* responses = op.op->if_contains("responses");
    ASSERT_NE(responses, nullptr);
    EXPECT_FALSE(responses->as_object().empty());
    // Every route checks its query parameters before anything else, so 400 is always possible.
    EXPECT_TRUE(responses->as_object().contains("400"));
    if (!op.isPublic) {
      EXPECT_TRUE(responses->as_object().contains("401"));
    }
    for (const auto& [status, response] : responses->as_object()) {
      const auto& resolved = resolve(doc, response).as_object();
      EXPECT_TRUE(resolved.contains("description")) << status;
      if (status.size() == 3 && (status[0] == '4' || status[0] == '5') && status != "503" &&
          op.path != "/api/v1/health") {
        EXPECT_TRUE(resolved.at("content").as_object().contains("application/problem+json"))
            << status;
      }
    }
    ASSERT_TRUE(op.op->contains("operationId"));
    EXPECT_TRUE(operationIds.emplace(op.op->at("operationId").as_string()).second)
        << "operationId used twice";
  }

  std::vector<std::string> refs;
  collectRefs(doc, refs);
  EXPECT_FALSE(refs.empty());
  for (const auto& ref : refs) {
    SCOPED_TRACE(ref);
    json::object holder{{"$ref", ref}};
    EXPECT_NO_THROW(resolve(doc, holder));
  }
}

TEST(OpenApiDocumentTest, DocumentsExactlyTheRoutesTheRouterServes) {
  const json::object doc = document();
  std::map<std::string, const RouteInfo*> served;
  const auto routes = Router::routes();
  for (const auto& route : routes) {
    if (!route.api) continue;
    const std::string key = std::string(route.method) + " " + std::string(route.pattern);
    EXPECT_TRUE(served.emplace(key, &route).second) << key << " twice in the route table";
  }
  std::set<std::string> documented;
  for (const auto& op : operations(doc)) {
    const std::string key = op.method + " " + op.path;
    documented.insert(key);
    SCOPED_TRACE(key);
    const auto it = served.find(key);
    EXPECT_TRUE(it != served.end()) << "documented, but the router has no such route";
    if (it == served.end()) continue;
    const RouteInfo& route = *it->second;
    // The same query parameters as the router accepts (others are a 400).
    const std::set<std::string> accepted(route.query.begin(), route.query.end());
    EXPECT_EQ(paramNames(op, "query"), accepted);
    // Path parameters: the pattern's {names}.
    std::set<std::string> inPattern;
    std::string_view rest = route.pattern;
    for (auto open = rest.find('{'); open != std::string_view::npos; open = rest.find('{')) {
      const auto close = rest.find('}', open);
      inPattern.emplace(rest.substr(open + 1, close - open - 1));
      rest.remove_prefix(close + 1);
    }
    EXPECT_EQ(paramNames(op, "path"), inPattern);
    // Bodies only where the method takes one.
    if (op.method == "GET" || op.method == "DELETE") {
      EXPECT_FALSE(op.op->contains("requestBody"));
    }
  }
  for (const auto& [key, route] : served) {
    EXPECT_TRUE(documented.contains(key)) << key << " is served but not in openapi.json";
  }
}

TEST(OpenApiDocumentTest, RouteTableCountsBothWays) {
  // The comparison above is only as good as its inputs: both sides must be non-trivial.
  std::size_t api = 0;
  std::size_t assets = 0;
  for (const auto& route : Router::routes()) (route.api ? api : assets)++;
  EXPECT_GE(api, 20u);
  EXPECT_GE(assets, 1u);
  EXPECT_EQ(api, operations(document()).size());
}

// The running server against the document.
class OpenApiServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device random;
    dir_ = std::filesystem::temp_directory_path() /
           ("tern_openapi_" + std::to_string(random()) + std::to_string(random()));
    std::filesystem::create_directories(dir_);
    store_ = storage::sqlite::openSqliteStore({(dir_ / "tern.db").string()});
    storage::Record record;
    record.deviceId = "sensor-1";
    record.serverTimeUs = 1'767'225'600 * kSecond;
    record.nodeId = "n";
    record.topic = "device/sensor-1";
    record.payload = R"({"temp":21.5,"lat":52.1,"lon":4.3})";
    record.payloadIsJson = true;
    record.fields = {{"temp", 21.5}, {"lat", 52.1}, {"lon", 4.3}};
    ASSERT_TRUE(store_->appendBatch(std::span(&record, 1)).ok());
    authStore_ = storage::sqlite::openSqliteAuthStore((dir_ / "tern.db").string());
    auth_ = std::make_unique<auth::AuthService>(*authStore_, auth::AuthOptions{});
    ASSERT_TRUE(auth_->addUser("root", auth::Role::kAdmin, "root-password").ok());
    ASSERT_TRUE(auth_->addUser("view", auth::Role::kViewer, "view-password").ok());
    ApiOptions api;
    api.listen = {"127.0.0.1", 0};
    api.nodeId = "node-openapi";
    api.auth = auth_.get();
    api.web.tileUrl = "https://tiles.example/{z}/{x}/{y}.png";
    api.web.onlineWindowUs = 90 * kSecond;
    server_ = std::make_unique<HttpServer>(*store_, api);
    server_->start();
    admin_ = bearer("root");
    viewer_ = bearer("view");
  }
  void TearDown() override {
    server_.reset();
    auth_.reset();
    authStore_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  HttpTestResponse call(std::string_view method, std::string_view target,
                        const std::string& authorization = {}, std::string_view body = {}) {
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
  // A concrete target for a documented path: an existing device, an API key id that is unused.
  static std::string sample(std::string path) {
    for (const auto& [name, value] :
         {std::pair<std::string, std::string>{"{id}", "sensor-1"}, {"{key}", "temp"}}) {
      const auto at = path.find(name);
      if (at == std::string::npos) continue;
      const bool apiKey = path.rfind("/api/v1/api-keys", 0) == 0;
      path.replace(at, name.size(), apiKey ? "999" : value);
    }
    return path;
  }
  static void expectProblem(const HttpTestResponse& r, unsigned status) {
    EXPECT_EQ(r.status, status) << r.body;
    EXPECT_EQ(r.header("content-type"), "application/problem+json");
    const auto body = r.json();
    if (!body.is_object()) return;
    EXPECT_EQ(body.at("status").to_number<unsigned>(), status);
    EXPECT_FALSE(body.at("detail").as_string().empty());
  }

  std::filesystem::path dir_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<storage::AuthStore> authStore_;
  std::unique_ptr<auth::AuthService> auth_;
  std::unique_ptr<HttpServer> server_;
  std::string admin_;
  std::string viewer_;
};

TEST_F(OpenApiServerTest, CredentialsAreAskedForExactlyWhereDocumented) {
  const json::object doc = document();
  for (const auto& op : operations(doc)) {
    SCOPED_TRACE(op.method + " " + op.path);
    const auto r = call(op.method, sample(op.path), {}, "[]");
    if (op.isPublic) {
      EXPECT_NE(r.status, 401u) << r.body;
    } else {
      expectProblem(r, 401);
      EXPECT_EQ(r.header("www-authenticate"), "Bearer realm=\"tern\"");
    }
  }
}

TEST_F(OpenApiServerTest, AnswersUseDocumentedStatusesAndMediaTypes) {
  const json::object doc = document();
  for (const auto& op : operations(doc)) {
    SCOPED_TRACE(op.method + " " + op.path);
    const auto& responses = op.op->at("responses").as_object();
    // GETs as they are; writes with a body that is not an object, so nothing changes.
    const bool read = op.method == "GET";
    const auto r = call(op.method, sample(op.path), admin_, read ? "" : "[]");
    EXPECT_TRUE(responses.contains(std::to_string(r.status)))
        << "undocumented status " << r.status << ": " << r.body;
    if (r.status >= 400) {
      expectProblem(r, r.status);
    } else if (r.status != 204 && responses.contains(std::to_string(r.status))) {
      const auto& response = resolve(doc, responses.at(std::to_string(r.status))).as_object();
      std::string type = r.header("content-type");
      EXPECT_TRUE(response.at("content").as_object().contains(type)) << type;
    }
    // An unknown query parameter is a documented 400 with a problem body naming it.
    const auto bad = call(op.method, sample(op.path) + "?no_such_parameter=1", admin_, "[]");
    expectProblem(bad, 400);
    EXPECT_NE(bad.body.find("no_such_parameter"), std::string::npos) << bad.body;
  }
}

TEST_F(OpenApiServerTest, UndocumentedMethodsAre405WithTheDocumentedAllow) {
  const json::object doc = document();
  std::map<std::string, std::vector<std::string>> methods;  // in route-table order
  for (const auto& route : Router::routes()) {
    if (route.api) methods[std::string(route.pattern)].emplace_back(route.method);
  }
  for (const auto& [path, item] : doc.at("paths").as_object()) {
    SCOPED_TRACE(std::string(path));
    std::string allow;
    for (const auto& m : methods[std::string(path)]) allow += (allow.empty() ? "" : ", ") + m;
    for (const auto method : kMethods) {
      if (item.as_object().contains(method)) continue;
      const auto r = call(upper(method), sample(std::string(path)), admin_, "{}");
      expectProblem(r, 405);
      EXPECT_EQ(r.header("allow"), allow);
      std::set<std::string> documented;
      for (const auto m : kMethods) {
        if (item.as_object().contains(m)) documented.insert(upper(m));
      }
      EXPECT_EQ(std::set<std::string>(methods[std::string(path)].begin(),
                                      methods[std::string(path)].end()),
                documented);
    }
  }
}

TEST_F(OpenApiServerTest, TheDocumentIsServedPubliclyAsJson) {
  const auto r = call("GET", "/api/v1/openapi.json");
  ASSERT_EQ(r.status, 200u) << r.body;
  EXPECT_EQ(r.header("content-type"), "application/json");
  EXPECT_EQ(r.body, openApiDocument());
  EXPECT_EQ(std::string_view(r.json().at("openapi").as_string()).substr(0, 4), "3.1.");
}

TEST_F(OpenApiServerTest, SwaggerUiIsServedAtDocs) {
  for (const char* path : {"/docs", "/docs/", "/docs/index.html"}) {
    SCOPED_TRACE(path);
    const auto r = call("GET", path);
    ASSERT_EQ(r.status, 200u) << r.body;
    EXPECT_EQ(r.header("content-type"), "text/html; charset=utf-8");
    EXPECT_NE(r.body.find("/docs/swagger-ui-bundle.js"), std::string::npos);
    EXPECT_NE(r.body.find("/docs/swagger-ui-standalone-preset.js"), std::string::npos);
    EXPECT_NE(r.body.find("/docs/swagger-ui.css"), std::string::npos);
    EXPECT_NE(r.body.find("\"/api/v1/openapi.json\""), std::string::npos);
  }
  const std::pair<const char*, const char*> assets[] = {
      {"/docs/swagger-ui-bundle.js", "application/javascript; charset=utf-8"},
      {"/docs/swagger-ui-standalone-preset.js", "application/javascript; charset=utf-8"},
      {"/docs/swagger-ui.css", "text/css; charset=utf-8"},
      {"/docs/favicon-32x32.png", "image/png"},
      {"/docs/favicon-16x16.png", "image/png"},
  };
  for (const auto& [path, type] : assets) {
    SCOPED_TRACE(path);
    const auto r = call("GET", path);
    ASSERT_EQ(r.status, 200u) << r.body.substr(0, 200);
    EXPECT_EQ(r.header("content-type"), type);
    EXPECT_GT(r.body.size(), 100u);
  }
  // The real bundle (megabytes), not a stub: it defines the constructor index.html calls.
  const auto bundle = call("GET", "/docs/swagger-ui-bundle.js");
  EXPECT_GT(bundle.body.size(), 500'000u);
  EXPECT_NE(bundle.body.find("SwaggerUIBundle"), std::string::npos);
  const auto png = call("GET", "/docs/favicon-32x32.png");
  EXPECT_EQ(png.body.substr(0, 8), "\x89PNG\r\n\x1a\n");

  expectProblem(call("GET", "/docs/no-such-file.js"), 404);
  expectProblem(call("GET", "/docs/a/b"), 401);  // deeper paths are not public, nor served
  const auto post = call("POST", "/docs", admin_, "{}");
  expectProblem(post, 405);
  EXPECT_EQ(post.header("allow"), "GET");
}

TEST_F(OpenApiServerTest, WebAppIsServedAtTheRoot) {
  const auto index = call("GET", "/");
  ASSERT_EQ(index.status, 200u) << index.body;
  EXPECT_EQ(index.header("content-type"), "text/html; charset=utf-8");
  EXPECT_NE(index.body.find("src=\"/app/main.js\""), std::string::npos);
  EXPECT_NE(index.header("content-security-policy").find("script-src 'self'"), std::string::npos);
  EXPECT_EQ(index.header("cache-control"), "no-cache");
  const std::pair<const char*, const char*> files[] = {
      {"/app/main.js", "import"},
      {"/app/live.js", "/api/v1/live"},
      {"/app/style.css", ".device-row"},
      {"/app/leaflet.js", "Leaflet"},
      {"/app/leaflet.markercluster.js", "MarkerClusterGroup"},
      {"/app/uPlot.iife.min.js", "uPlot"},
      {"/app/leaflet.css", ".leaflet-container"},
      {"/app/LICENSE.uplot.txt", "MIT"},
  };
  for (const auto& [path, needle] : files) {
    SCOPED_TRACE(path);
    const auto r = call("GET", path);
    ASSERT_EQ(r.status, 200u) << r.body.substr(0, 200);
    EXPECT_NE(r.body.find(needle), std::string::npos);
    EXPECT_EQ(r.header("x-content-type-options"), "nosniff");
  }
  EXPECT_EQ(call("GET", "/app/leaflet.js").header("cache-control"), "public, max-age=3600");
  EXPECT_EQ(call("GET", "/app/main.js").header("content-type"), "text/javascript; charset=utf-8");
  expectProblem(call("GET", "/app/no-such-file.js"), 404);
  expectProblem(call("GET", "/app/a/b"), 401);  // only /app/{file} is public
  expectProblem(call("GET", "/index.html"), 401);
  const auto post = call("POST", "/", admin_, "{}");
  expectProblem(post, 405);
  EXPECT_EQ(post.header("allow"), "GET");
}

TEST_F(OpenApiServerTest, WebConfigNeedsATokenAndReportsTheSettings) {
  expectProblem(call("GET", "/api/v1/web/config"), 401);
  const auto r = call("GET", "/api/v1/web/config", viewer_);
  ASSERT_EQ(r.status, 200u) << r.body;
  const auto body = r.json();
  EXPECT_EQ(body.at("tile_url").as_string(), "https://tiles.example/{z}/{x}/{y}.png");
  EXPECT_EQ(body.at("tile_attribution").as_string(), "");
  EXPECT_EQ(body.at("online_window_s").to_number<std::int64_t>(), 90);
}

}  // namespace
}  // namespace tern::api
