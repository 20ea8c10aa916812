// MQTT credentials of a device through the API: its password and access tokens, what
// `tern device add|token|remove` does on the command line. Secrets go one way: a password is
// only ever set, a token is shown once when created; reads give metadata only.
#include <spdlog/spdlog.h>

#include <boost/json.hpp>
#include <charconv>

#include "api/encoding.h"
#include "api/json_out.h"
#include "api/list_page.h"
#include "api/router.h"
#include "auth/device_credentials.h"
#include "core/time.h"

namespace tern::api {
namespace {

namespace json = boost::json;

ApiResponse jsonResponse(unsigned status, const json::value& body) {
  ApiResponse response;
  response.status = status;
  response.body = toJsonText(body);
  return response;
}

ApiResponse noContent() {
  ApiResponse response;
  response.status = 204;
  return response;
}

ApiResponse credentialStoreProblem(std::string_view what, const core::Error& error) {
  spdlog::error("http api: auth store failed while {}: {}", what, error.message);
  return problemResponse(503, "the credential store failed while " + std::string(what) +
                                  "; the server log has the details");
}

ApiResponse notConfigured() {
  return problemResponse(503, "device credentials are not available on this server");
}

// Only ids a device can log in with (no '/', '+', '#': they go into topic rules).
std::optional<ApiResponse> checkDeviceId(const std::string& deviceId) {
  if (auth::validDeviceId(deviceId)) return std::nullopt;
  return problemResponse(400, "device id " + quoteInput(deviceId, 256) +
                                  ": MQTT credentials need 1 to 128 characters from A-Z a-z 0-9 "
                                  ". _ : @ - (not starting with - or " +
                                  std::string(auth::kDeviceTokenPrefix) + ")");
}

json::object tokenJson(const storage::DeviceToken& token) {
  json::object out;
  out["id"] = token.id;
  out["prefix"] = token.prefix;
  out["created"] = core::formatRfc3339Millis(token.createdUs);
  return out;
}

}  // namespace

std::variant<json::object, ApiResponse> Router::credentialsJson(const std::string& deviceId,
                                                                bool mustExist) const {
  auto credential = options_.deviceCredentials->find(deviceId);
  if (!credential)
    return credentialStoreProblem("reading a device's credentials", credential.error());
  auto tokens = options_.deviceCredentials->tokens(deviceId);
  if (!tokens) return credentialStoreProblem("reading a device's tokens", tokens.error());
  if (mustExist && !credential->has_value()) {
    // A device the store knows has (no) credentials; an id nobody knows is a 404.
    auto device = readDevice(deviceId);
    if (!device) {
      spdlog::error("http api: store failed while reading a device: {}", device.error().message);
      return problemResponse(500, "the store failed while reading a device");
    }
    if (!device->has_value()) {
      return problemResponse(404, "no device with id " + quoteInput(deviceId, 256));
    }
  }
  json::object out;
  out["device"] = toValidUtf8(deviceId);
  const bool password = credential->has_value() && !(*credential)->passwordHash.empty();
  out["password"] = password;
  out["created"] = credential->has_value()
                       ? json::value(core::formatRfc3339Millis((*credential)->createdUs))
                       : json::value(nullptr);
  json::array list;
  for (const auto& token : *tokens) list.push_back(tokenJson(token));
  out["tokens"] = std::move(list);
  return out;
}

ApiResponse Router::getCredentials(const Call& call) const {
  if (options_.deviceCredentials == nullptr) return notConfigured();
  auto out = credentialsJson(call.args[0], true);
  if (auto* problem = std::get_if<ApiResponse>(&out)) return std::move(*problem);
  return jsonResponse(200, std::get<json::object>(out));
}

ApiResponse Router::putCredentials(const Call& call) const {
  if (options_.deviceCredentials == nullptr) return notConfigured();
  const std::string& deviceId = call.args[0];
  if (auto problem = checkDeviceId(deviceId)) return std::move(*problem);
  boost::system::error_code ec;
  json::value parsed = json::parse(call.request.body, ec);
  if (ec || !parsed.is_object()) {
    return problemResponse(400, "request body: expected a JSON object like {\"password\":\"...\"}");
  }
  const auto& body = parsed.as_object();
  for (const auto& member : body) {
    if (member.key() != "password") {
      return problemResponse(
          400, "field " + quoteInput(member.key()) + ": unknown (expected 'password')");
    }
  }
  const auto* password = body.if_contains("password");
  if (password == nullptr) {
    return problemResponse(400, "field 'password': required (a string, or null to remove it)");
  }
  bool created = false;
  if (password->is_null()) {
    auto cleared = options_.deviceCredentials->clearPassword(deviceId);
    if (!cleared) return credentialStoreProblem("removing a device password", cleared.error());
    if (*cleared)
      spdlog::info("http api: password of device {} removed", quoteInput(deviceId, 200));
  } else {
    if (!password->is_string() || password->as_string().size() < 8 ||
        password->as_string().size() > 1024) {
      return problemResponse(400, "field 'password': expected a string of 8 to 1024 bytes");
    }
    auto set =
        options_.deviceCredentials->setPassword(deviceId, std::string(password->as_string()));
    if (!set) return credentialStoreProblem("setting a device password", set.error());
    created = *set;
    spdlog::info("http api: password of device {} {}", quoteInput(deviceId, 200),
                 created ? "set" : "replaced");
  }
  auto out = credentialsJson(deviceId, false);
  if (auto* problem = std::get_if<ApiResponse>(&out)) return std::move(*problem);
  return jsonResponse(created ? 201 : 200, std::get<json::object>(out));
}

ApiResponse Router::deleteCredentials(const Call& call) const {
  if (options_.deviceCredentials == nullptr) return notConfigured();
  const std::string& deviceId = call.args[0];
  auto removed = options_.deviceCredentials->removeDevice(deviceId);
  if (!removed) return credentialStoreProblem("removing a device's credentials", removed.error());
  if (!*removed) {
    return problemResponse(404, "device " + quoteInput(deviceId, 256) + " has no credentials");
  }
  spdlog::info("http api: credentials of device {} removed", quoteInput(deviceId, 200));
  return noContent();
}

ApiResponse Router::listDeviceTokens(const Call& call) const {
  if (options_.deviceCredentials == nullptr) return notConfigured();
  ListParams list;
  if (auto problem = parseListParams(call.params, {kById, kByIdDesc}, 1000, 10'000, list)) {
    return problemResponse(*problem);
  }
  const auto search = call.params.get("search");
  auto out = credentialsJson(call.args[0], true);
  if (auto* problem = std::get_if<ApiResponse>(&out)) return std::move(*problem);
  auto& object = std::get<json::object>(out);
  json::array tokens = std::move(object["tokens"].as_array());
  const auto next = pageObjectsById(tokens, list, [&](const json::object& token) {
    return !search || containsAsciiCaseless(token.at("prefix").as_string(), *search);
  });
  json::object body;
  body["device"] = std::move(object["device"]);
  body["tokens"] = std::move(tokens);
  body["next_cursor"] = next ? json::value(*next) : json::value(nullptr);
  return jsonResponse(200, body);
}

ApiResponse Router::createDeviceToken(const Call& call) const {
  if (options_.deviceCredentials == nullptr) return notConfigured();
  const std::string& deviceId = call.args[0];
  if (auto problem = checkDeviceId(deviceId)) return std::move(*problem);
  if (!call.request.body.empty()) {
    boost::system::error_code ec;
    json::value parsed = json::parse(call.request.body, ec);
    if (ec || !parsed.is_object() || !parsed.as_object().empty()) {
      return problemResponse(400, "request body: expected none or {}");
    }
  }
  auto token = options_.deviceCredentials->createToken(deviceId);
  if (!token) return credentialStoreProblem("creating a device token", token.error());
  spdlog::info("http api: token {} ({}) created for device {}", token->record.id,
               token->record.prefix, deviceId);
  json::object out = tokenJson(token->record);
  out["device"] = toValidUtf8(deviceId);
  out["token"] = token->token;
  ApiResponse response = jsonResponse(201, out);
  response.headers.emplace_back("Location", "/api/v1/devices/" + percentEncode(deviceId) +
                                                "/tokens/" + std::to_string(token->record.id));
  return response;
}

ApiResponse Router::revokeDeviceTokens(const Call& call) const {
  if (options_.deviceCredentials == nullptr) return notConfigured();
  const std::string& deviceId = call.args[0];
  auto revoked = options_.deviceCredentials->revokeTokens(deviceId);
  if (!revoked) return credentialStoreProblem("revoking device tokens", revoked.error());
  spdlog::info("http api: {} token(s) of device {} revoked", *revoked, quoteInput(deviceId, 200));
  return jsonResponse(200, json::object{{"device", toValidUtf8(deviceId)}, {"revoked", *revoked}});
}

ApiResponse Router::revokeDeviceToken(const Call& call) const {
  if (options_.deviceCredentials == nullptr) return notConfigured();
  const std::string& deviceId = call.args[0];
  const std::string& idText = call.args[1];
  std::int64_t id = 0;
  const auto [end, ec] = std::from_chars(idText.data(), idText.data() + idText.size(), id);
  if (ec != std::errc{} || end != idText.data() + idText.size() || id <= 0) {
    return problemResponse(400, "token id: expected a positive integer, got " + quoteInput(idText));
  }
  auto revoked = options_.deviceCredentials->revokeToken(deviceId, id);
  if (!revoked) return credentialStoreProblem("revoking a device token", revoked.error());
  if (!*revoked) {
    return problemResponse(404, "device " + quoteInput(deviceId, 256) +
                                    " has no active token with id " + std::to_string(id));
  }
  spdlog::info("http api: token {} of device {} revoked", id, quoteInput(deviceId, 200));
  return noContent();
}

}  // namespace tern::api
