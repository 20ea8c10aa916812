// Users through the API (admin only, see requiredRole in auth_routes.cpp): what `tern user
// add|list|remove` does on the command line, plus role and password changes. Passwords go one
// way; a list never shows a hash.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/json.hpp>
#include <charconv>

#include "api/encoding.h"
#include "api/json_out.h"
#include "api/list_page.h"
#include "api/router.h"
#include "core/time.h"

namespace tern::api {
namespace {

namespace json = boost::json;

constexpr std::uint32_t kDefaultUserLimit = 100;
constexpr std::uint32_t kMaxUserLimit = 10'000;

ApiResponse jsonResponse(unsigned status, const json::value& body) {
  ApiResponse response;
  response.status = status;
  response.body = toJsonText(body);
  return response;
}

ApiResponse userStoreProblem(std::string_view what, const core::Error& error) {
  spdlog::error("http api: auth store failed while {}: {}", what, error.message);
  return problemResponse(
      503, "the user store failed while " + std::string(what) + "; the server log has the details");
}

json::object userJson(const storage::UserRecord& user) {
  json::object out;
  out["id"] = user.id;
  out["name"] = toValidUtf8(user.name);
  out["role"] = toValidUtf8(user.role);
  out["created"] = core::formatRfc3339Millis(user.createdUs);
  return out;
}

std::string notFoundUser(std::string_view name) {
  return "no user named " + quoteInput(name);
}

// The body of POST (with name, role and password required) and PATCH (role and/or password).
struct UserBody {
  std::optional<std::string> name;
  std::optional<auth::Role> role;
  std::optional<std::string> password;
};

std::variant<UserBody, ApiResponse> parseUserBody(std::string_view text, bool create) {
  boost::system::error_code ec;
  json::value parsed = json::parse(text, ec);
  if (ec || !parsed.is_object()) {
    return problemResponse(400, create ? "request body: expected a JSON object like "
                                         "{\"name\":\"alice\",\"role\":\"operator\","
                                         "\"password\":\"...\"}"
                                       : "request body: expected a JSON object like "
                                         "{\"role\":\"viewer\"} or {\"password\":\"...\"}");
  }
  UserBody body;
  for (const auto& member : parsed.as_object()) {
    const std::string_view key = member.key();
    const json::value& value = member.value();
    if (key == "name" && create) {
      if (!value.is_string() || !auth::validUserName(value.as_string())) {
        return problemResponse(400,
                               "field 'name': expected 1 to 64 characters from A-Z a-z 0-9 . _ "
                               "@ - (not starting with -)");
      }
      body.name = std::string(value.as_string());
    } else if (key == "role") {
      const auto role = value.is_string() ? auth::parseRole(value.as_string()) : std::nullopt;
      if (!role) {
        return problemResponse(
            400, "field 'role': expected one of " + std::string(auth::roleNames()) +
                     (value.is_string() ? ", got " + quoteInput(value.as_string()) : ""));
      }
      body.role = *role;
    } else if (key == "password") {
      if (!value.is_string() || value.as_string().size() < 8 || value.as_string().size() > 1024) {
        return problemResponse(400, "field 'password': expected a string of 8 to 1024 bytes");
      }
      body.password = std::string(value.as_string());
    } else {
      return problemResponse(
          400, "field " + quoteInput(key) + ": unknown; expected " +
                   (create ? "'name', 'role' and 'password'" : "'role' and/or 'password'"));
    }
  }
  if (create) {
    if (!body.name) return problemResponse(400, "field 'name': required");
    if (!body.role) {
      return problemResponse(400,
                             "field 'role': required, one of " + std::string(auth::roleNames()));
    }
    if (!body.password) return problemResponse(400, "field 'password': required");
  } else if (!body.role && !body.password) {
    return problemResponse(400, "request body: expected 'role' and/or 'password'");
  }
  return body;
}

// An error of AuthService that is the client's doing: the last admin (409) or a bad value (400).
std::optional<ApiResponse> clientError(const core::Error& error) {
  if (error.message.find("last admin") != std::string::npos) {
    return problemResponse(409, error.message);
  }
  if (error.message.rfind("password:", 0) == 0) {
    return problemResponse(400, "field 'password': " + error.message.substr(10));
  }
  return std::nullopt;
}

}  // namespace

ApiResponse Router::listUsers(const Call& call) const {
  static constexpr ListSort kByName{"name", false, false};
  ListParams list;
  if (auto problem = parseListParams(
          call.params,
          {kByName, {"-name", false, true}, {"created", true, false}, {"-created", true, true}},
          kDefaultUserLimit, kMaxUserLimit, list)) {
    return problemResponse(*problem);
  }
  if (auto problem = checkRoleParam(call.params)) return problemResponse(*problem);
  const auto role = call.params.get("role");
  const auto search = call.params.get("search");
  auto users = options_.auth->listUsers();
  if (!users) return userStoreProblem("listing users", users.error());
  // Names are unique, so (created, name) and (name) both identify a user; byte order on every
  // backend.
  const auto keyOf = [](const storage::UserRecord& user) {
    return ListKeyView{user.createdUs, user.name};
  };
  const auto next = pageOf(*users, list, keyOf, [&](const storage::UserRecord& user) {
    return (!role || user.role == *role) && (!search || containsAsciiCaseless(user.name, *search));
  });
  json::array out;
  for (const auto& user : *users) out.push_back(userJson(user));
  json::object body;
  body["users"] = std::move(out);
  body["next_cursor"] = next ? json::value(*next) : json::value(nullptr);
  return jsonResponse(200, body);
}

ApiResponse Router::getUser(const Call& call) const {
  auto user = options_.auth->findUser(call.args[0]);
  if (!user) return userStoreProblem("reading a user", user.error());
  if (!user->has_value()) return problemResponse(404, notFoundUser(call.args[0]));
  return jsonResponse(200, userJson(**user));
}

ApiResponse Router::createUser(const Call& call) const {
  auto parsed = parseUserBody(call.request.body, true);
  if (auto* problem = std::get_if<ApiResponse>(&parsed)) return std::move(*problem);
  const UserBody& body = std::get<UserBody>(parsed);
  auto existing = options_.auth->findUser(*body.name);
  if (!existing) return userStoreProblem("reading a user", existing.error());
  if (existing->has_value()) {
    return problemResponse(409, "field 'name': a user named " + quoteInput(*body.name) + " exists");
  }
  auto added = options_.auth->addUser(*body.name, *body.role, *body.password);
  if (!added) {
    if (auto problem = clientError(added.error())) return std::move(*problem);
    // Created by someone else in between: the store refuses the duplicate.
    if (added.error().message.find("exists") != std::string::npos) {
      return problemResponse(409,
                             "field 'name': a user named " + quoteInput(*body.name) + " exists");
    }
    return userStoreProblem("adding a user", added.error());
  }
  spdlog::info("auth: user '{}' (role {}) created by {}", *body.name, auth::roleName(*body.role),
               call.principal->name);
  auto user = options_.auth->findUser(*body.name);
  if (!user || !user->has_value()) {
    return userStoreProblem("reading a user",
                            user ? core::Error{"the new user vanished"} : user.error());
  }
  ApiResponse response = jsonResponse(201, userJson(**user));
  response.headers.emplace_back("Location", "/api/v1/users/" + percentEncode(*body.name));
  return response;
}

ApiResponse Router::patchUser(const Call& call) const {
  const std::string& name = call.args[0];
  auto parsed = parseUserBody(call.request.body, false);
  if (auto* problem = std::get_if<ApiResponse>(&parsed)) return std::move(*problem);
  const UserBody& body = std::get<UserBody>(parsed);
  auto updated = options_.auth->updateUser(name, body.role, body.password);
  if (!updated) {
    if (auto problem = clientError(updated.error())) return std::move(*problem);
    return userStoreProblem("changing a user", updated.error());
  }
  if (!*updated) return problemResponse(404, notFoundUser(name));
  spdlog::info("auth: user '{}' changed ({}{}) by {}", name,
               body.role ? "role " + std::string(auth::roleName(*body.role)) : "",
               body.password ? (body.role ? ", password" : "password") : "", call.principal->name);
  auto user = options_.auth->findUser(name);
  if (!user) return userStoreProblem("reading a user", user.error());
  if (!user->has_value()) return problemResponse(404, notFoundUser(name));
  return jsonResponse(200, userJson(**user));
}

ApiResponse Router::deleteUser(const Call& call) const {
  const std::string& name = call.args[0];
  auto removed = options_.auth->removeUser(name);
  if (!removed) {
    if (auto problem = clientError(removed.error())) return std::move(*problem);
    return userStoreProblem("removing a user", removed.error());
  }
  if (!*removed) return problemResponse(404, notFoundUser(name));
  spdlog::info("auth: user '{}' removed by {}", name, call.principal->name);
  ApiResponse response;
  response.status = 204;
  return response;
}

}  // namespace tern::api
