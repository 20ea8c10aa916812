// Authentication for every request (the one place it happens), and the endpoints that manage
// it: /api/v1/auth/{login,refresh,logout,me} and /api/v1/api-keys.
#include <spdlog/spdlog.h>

#include <boost/json.hpp>
#include <charconv>
#include <variant>

#include "api/encoding.h"
#include "api/json_out.h"
#include "api/list_page.h"
#include "api/router.h"
#include "core/time.h"

namespace tern::api {
namespace {

namespace json = boost::json;
using auth::AuthError;
using auth::Failure;
using auth::Principal;
using auth::Role;

constexpr std::int64_t kSecondUs = 1'000'000;

// Reachable without credentials. Everything else — every route added later included — needs a
// token or API key; a new public path must be added here on purpose. /mqtt is the
// MQTT-over-WebSocket upgrade: the broker authenticates MQTT clients itself. The API description
// and Swagger UI (/docs) are public so a browser can load them before it has a token; so are the
// web app's page (/) and files (/app/{file}), which hold no data: what they show comes from the
// API with the token the login page gets.
bool publicPath(const std::vector<std::string>& s) {
  if (s.size() == 1 && (s[0] == "mqtt" || s[0].empty())) return true;
  if (s.size() == 2 && s[0] == "app") return true;
  if (!s.empty() && s[0] == "docs" && s.size() <= 2) return true;
  if (s.size() < 3 || s[0] != "api" || s[1] != "v1") return false;
  if (s.size() == 3 && (s[2] == "health" || s[2] == "openapi.json")) return true;
  return s.size() == 4 && s[2] == "auth" && (s[3] == "login" || s[3] == "refresh");
}

int rank(Role role) {
  switch (role) {
    case Role::kAdmin:
      return 2;
    case Role::kOperator:
      return 1;
    case Role::kViewer:
    case Role::kService:
      return 0;
  }
  return 0;
}

// The role a request needs: reads need any role, writes need operator, managing users and API
// keys needs admin. A device's MQTT credentials are secrets' metadata: operator, also to read.
// New routes fall under these rules without further code.
Role requiredRole(std::string_view method, const std::vector<std::string>& s) {
  if (s.size() >= 3 && s[0] == "api" && s[1] == "v1" && (s[2] == "users" || s[2] == "api-keys")) {
    return Role::kAdmin;
  }
  if (s.size() >= 5 && s[0] == "api" && s[1] == "v1" && s[2] == "devices" &&
      (s[4] == "credentials" || s[4] == "tokens")) {
    return Role::kOperator;
  }
  if (s.size() >= 3 && s[0] == "api" && s[1] == "v1" && s[2] == "auth") return Role::kViewer;
  if (method == "GET" || method == "HEAD") return Role::kViewer;
  return Role::kOperator;
}

ApiResponse jsonResponse(unsigned status, const json::value& body) {
  ApiResponse response;
  response.status = status;
  response.body = toJsonText(body);
  return response;
}

// 401 with the RFC 6750 challenge; `presented` says whether the client sent a credential.
ApiResponse unauthorized(std::string_view detail, bool presented) {
  ApiResponse response = problemResponse(401, detail);
  std::string challenge = "Bearer realm=\"tern\"";
  if (presented) {
    challenge += ", error=\"invalid_token\", error_description=\"";
    for (const char c : detail) challenge += (c == '"' || c == '\\') ? '\'' : c;
    challenge += '"';
  }
  response.headers.emplace_back("WWW-Authenticate", std::move(challenge));
  return response;
}

ApiResponse authErrorResponse(const AuthError& e, bool presented) {
  switch (e.failure) {
    case Failure::kRateLimited: {
      ApiResponse response = problemResponse(429, e.detail);
      response.headers.emplace_back("Retry-After", std::to_string(e.retryAfterSeconds));
      return response;
    }
    case Failure::kStoreError:
      return problemResponse(503, e.detail);
    case Failure::kMissing:
      return unauthorized(e.detail, false);
    default:
      return unauthorized(e.detail, presented);
  }
}

// The request body as a JSON object, or a 400 naming what was expected.
std::variant<json::object, ApiResponse> bodyObject(std::string_view body,
                                                   std::string_view example) {
  boost::system::error_code ec;
  json::value parsed = json::parse(body, ec);
  if (ec || !parsed.is_object()) {
    return problemResponse(400,
                           "request body: expected a JSON object like " + std::string(example));
  }
  return std::move(parsed.as_object());
}

// A string member; nullopt when absent, a problem when not a string.
std::variant<std::optional<std::string>, ApiResponse> stringField(const json::object& object,
                                                                  std::string_view name) {
  const auto* value = object.if_contains(name);
  if (value == nullptr) return std::optional<std::string>();
  if (!value->is_string()) {
    return problemResponse(400, "field '" + std::string(name) + "': expected a string");
  }
  return std::optional<std::string>(std::string(value->as_string()));
}

json::object tokenPairJson(const auth::TokenPair& pair) {
  json::object out;
  out["access_token"] = pair.accessToken;
  out["token_type"] = "Bearer";
  out["expires_in"] = pair.expiresInSeconds;
  out["refresh_token"] = pair.refreshToken;
  out["refresh_expires_in"] = pair.refreshExpiresInSeconds;
  out["user"] = json::object{{"name", pair.user}, {"role", auth::roleName(pair.role)}};
  return out;
}

json::object apiKeyJson(const storage::ApiKeyRecord& key) {
  json::object out;
  out["id"] = key.id;
  out["name"] = toValidUtf8(key.name);
  out["role"] = key.role;
  out["prefix"] = key.prefix;
  out["created"] = core::formatRfc3339Millis(key.createdUs);
  out["created_by"] = toValidUtf8(key.createdBy);
  out["revoked"] = key.revokedUs != 0 ? json::value(core::formatRfc3339Millis(key.revokedUs))
                                      : json::value(nullptr);
  return out;
}

ApiResponse storeProblem(std::string_view what, const core::Error& error) {
  spdlog::error("http api: auth store failed while {}: {}", what, error.message);
  return problemResponse(
      503, "the user store failed while " + std::string(what) + "; the server log has the details");
}

}  // namespace

ApiResponse Router::authenticated(const ApiRequest& request) const {
  RequestTarget parsed;
  if (auto problem = parseRequestTarget(request.target, parsed)) return problemResponse(*problem);
  std::optional<Principal> principal;
  if (!publicPath(parsed.segments)) {
    if (options_.auth == nullptr) {
      return unauthorized("authentication is not configured on this server", false);
    }
    const bool presented = !request.authorization.empty() || !request.apiKey.empty();
    auto outcome = options_.auth->authenticate(request.authorization, request.apiKey);
    if (const auto* e = std::get_if<AuthError>(&outcome)) {
      spdlog::debug("http api: {} {} from {}: 401: {}", request.method,
                    quoteInput(request.target, 200), request.clientAddress, e->detail);
      return authErrorResponse(*e, presented);
    }
    principal = std::get<Principal>(std::move(outcome));
    const Role needed = requiredRole(request.method, parsed.segments);
    if (rank(principal->role) < rank(needed)) {
      return problemResponse(
          403, "role '" + std::string(auth::roleName(principal->role)) + "' of " +
                   (principal->kind == Principal::Kind::kApiKey ? "API key " : "user ") +
                   quoteInput(principal->name) + " may not " + std::string(request.method) +
                   " this resource; it needs role '" + std::string(auth::roleName(needed)) +
                   "' or higher");
    }
  }
  return dispatch(request, parsed, principal ? &*principal : nullptr);
}

std::optional<std::string> Router::recheckCredentials(std::string_view authorization,
                                                      std::string_view apiKey) const {
  if (options_.auth == nullptr) return "authentication is not configured on this server";
  auto outcome = options_.auth->authenticate(authorization, apiKey);
  const auto* e = std::get_if<AuthError>(&outcome);
  // A store hiccup or a rate limit says nothing about the credentials: keep the connection.
  if (e == nullptr || e->failure == Failure::kStoreError || e->failure == Failure::kRateLimited) {
    return std::nullopt;
  }
  return e->detail;
}

ApiResponse Router::login(const Call& call) const {
  if (options_.auth == nullptr) {
    return problemResponse(503, "authentication is not configured on this server");
  }
  const ApiRequest& request = call.request;
  auto object = bodyObject(request.body, "{\"name\":\"admin\",\"password\":\"...\"}");
  if (auto* problem = std::get_if<ApiResponse>(&object)) return std::move(*problem);
  const auto& body = std::get<json::object>(object);
  auto name = stringField(body, "name");
  if (auto* problem = std::get_if<ApiResponse>(&name)) return std::move(*problem);
  auto password = stringField(body, "password");
  if (auto* problem = std::get_if<ApiResponse>(&password)) return std::move(*problem);
  const auto& n = std::get<std::optional<std::string>>(name);
  const auto& p = std::get<std::optional<std::string>>(password);
  if (!n || n->empty()) return problemResponse(400, "field 'name': required");
  if (!p) return problemResponse(400, "field 'password': required");
  auto outcome = options_.auth->login(*n, *p, request.clientAddress);
  if (const auto* e = std::get_if<AuthError>(&outcome)) return authErrorResponse(*e, false);
  return jsonResponse(200, tokenPairJson(std::get<auth::TokenPair>(outcome)));
}

ApiResponse Router::refresh(const Call& call) const {
  if (options_.auth == nullptr) {
    return problemResponse(503, "authentication is not configured on this server");
  }
  const std::string_view bodyText = call.request.body;
  auto object = bodyObject(bodyText, "{\"refresh_token\":\"...\"}");
  if (auto* problem = std::get_if<ApiResponse>(&object)) return std::move(*problem);
  auto token = stringField(std::get<json::object>(object), "refresh_token");
  if (auto* problem = std::get_if<ApiResponse>(&token)) return std::move(*problem);
  const auto& t = std::get<std::optional<std::string>>(token);
  if (!t || t->empty()) return problemResponse(400, "field 'refresh_token': required");
  auto outcome = options_.auth->refresh(*t);
  if (const auto* e = std::get_if<AuthError>(&outcome)) return authErrorResponse(*e, true);
  return jsonResponse(200, tokenPairJson(std::get<auth::TokenPair>(outcome)));
}

ApiResponse Router::logout(const Call& call) const {
  const Principal& principal = *call.principal;
  const std::string_view bodyText = call.request.body;
  std::string refreshToken;
  if (!bodyText.empty()) {
    auto object = bodyObject(bodyText, "{\"refresh_token\":\"...\"} or no body");
    if (auto* problem = std::get_if<ApiResponse>(&object)) return std::move(*problem);
    auto token = stringField(std::get<json::object>(object), "refresh_token");
    if (auto* problem = std::get_if<ApiResponse>(&token)) return std::move(*problem);
    refreshToken = std::get<std::optional<std::string>>(token).value_or("");
  }
  if (principal.kind == Principal::Kind::kApiKey && refreshToken.empty()) {
    return problemResponse(400,
                           "an API key has no session to log out of; revoke it with "
                           "DELETE /api/v1/api-keys/{id}");
  }
  if (auto status = options_.auth->logout(principal, refreshToken); !status.ok()) {
    return storeProblem("logging out", core::Error{status.message()});
  }
  ApiResponse response;
  response.status = 204;
  return response;
}

ApiResponse Router::me(const Call& call) const {
  const Principal& principal = *call.principal;
  json::object out;
  out["name"] = toValidUtf8(principal.name);
  out["role"] = auth::roleName(principal.role);
  out["kind"] = principal.kind == Principal::Kind::kApiKey ? "api_key" : "user";
  return jsonResponse(200, out);
}

ApiResponse Router::createApiKey(const Call& call) const {
  const Principal& principal = *call.principal;
  const std::string_view bodyText = call.request.body;
  auto object = bodyObject(bodyText, "{\"name\":\"exporter\",\"role\":\"viewer\"}");
  if (auto* problem = std::get_if<ApiResponse>(&object)) return std::move(*problem);
  const auto& body = std::get<json::object>(object);
  for (const auto& member : body) {
    if (member.key() != "name" && member.key() != "role") {
      return problemResponse(
          400, "field " + quoteInput(member.key()) + ": unknown (expected name and role)");
    }
  }
  auto name = stringField(body, "name");
  if (auto* problem = std::get_if<ApiResponse>(&name)) return std::move(*problem);
  auto roleText = stringField(body, "role");
  if (auto* problem = std::get_if<ApiResponse>(&roleText)) return std::move(*problem);
  const auto& n = std::get<std::optional<std::string>>(name);
  const auto& r = std::get<std::optional<std::string>>(roleText);
  if (!n || n->empty()) return problemResponse(400, "field 'name': required");
  if (!r) {
    return problemResponse(400, "field 'role': required, one of " + std::string(auth::roleNames()));
  }
  const auto role = auth::parseRole(*r);
  if (!role) {
    return problemResponse(400, "field 'role': expected one of " + std::string(auth::roleNames()) +
                                    ", got " + quoteInput(*r));
  }
  const std::string createdBy =
      (principal.kind == Principal::Kind::kApiKey ? "api-key:" : "") + principal.name;
  auto created = options_.auth->createApiKey(*n, *role, createdBy);
  if (!created) {
    if (created.error().message.rfind("name:", 0) == 0) {
      return problemResponse(400, "field 'name': " + created.error().message.substr(6));
    }
    return storeProblem("creating an API key", created.error());
  }
  spdlog::info("auth: API key {} '{}' (role {}) created by {}", created->record.id,
               created->record.name, created->record.role, createdBy);
  json::object out = apiKeyJson(created->record);
  out["key"] = created->key;
  ApiResponse response = jsonResponse(201, out);
  response.headers.emplace_back("Location",
                                "/api/v1/api-keys/" + std::to_string(created->record.id));
  return response;
}

ApiResponse Router::listApiKeys(const Call& call) const {
  ListParams list;
  if (auto problem = parseListParams(
          call.params, {kById, kByIdDesc, {"name", false, false}, {"-name", false, true}}, 1000,
          10'000, list)) {
    return problemResponse(*problem);
  }
  if (auto problem = checkRoleParam(call.params)) return problemResponse(*problem);
  const auto role = call.params.get("role");
  const auto search = call.params.get("search");
  auto keys = options_.auth->listApiKeys();
  if (!keys) return storeProblem("listing API keys", keys.error());
  // Ids are unique, so (id, name) identifies a key in either order.
  const auto keyOf = [](const storage::ApiKeyRecord& key) { return ListKeyView{key.id, key.name}; };
  const auto next = pageOf(*keys, list, keyOf, [&](const storage::ApiKeyRecord& key) {
    return (!role || key.role == *role) && (!search || containsAsciiCaseless(key.name, *search));
  });
  json::array out;
  for (const auto& key : *keys) out.push_back(apiKeyJson(key));
  json::object body;
  body["api_keys"] = std::move(out);
  body["next_cursor"] = next ? json::value(*next) : json::value(nullptr);
  return jsonResponse(200, body);
}

ApiResponse Router::revokeApiKey(const Call& call) const {
  const std::string& idText = call.args[0];
  std::int64_t id = 0;
  const auto [end, ec] = std::from_chars(idText.data(), idText.data() + idText.size(), id);
  if (ec != std::errc{} || end != idText.data() + idText.size() || id <= 0) {
    return problemResponse(400,
                           "API key id: expected a positive integer, got " + quoteInput(idText));
  }
  auto revoked = options_.auth->revokeApiKey(id);
  if (!revoked) return storeProblem("revoking an API key", revoked.error());
  if (!*revoked) return problemResponse(404, "no active API key with id " + std::to_string(id));
  spdlog::info("auth: API key {} revoked", id);
  ApiResponse response;
  response.status = 204;
  return response;
}

}  // namespace tern::api
