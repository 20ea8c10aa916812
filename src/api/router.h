#pragma once
// Maps (method, target) to an API v1 handler and builds the response. Independent of Beast; the
// HTTP server calls handle() once per request from any of its threads.
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "api/http_server.h"
#include "api/problem.h"
#include "api/request_target.h"
#include "auth/auth_service.h"
#include "storage/store.h"

namespace tern::api {

// One request as the router sees it: what handlers and the authentication check need.
struct ApiRequest {
  std::string_view method;
  std::string_view target;
  std::string_view body;
  std::string_view accept;         // the Accept header (text/csv selects CSV where offered)
  std::string_view authorization;  // the Authorization header
  std::string_view apiKey;         // the X-API-Key header
  std::string clientAddress;       // the peer's IP address, for login rate limits and logs
  bool websocketUpgrade = false;   // a WebSocket upgrade request (GET /api/v1/live)
};

// One entry of the router's table: what it serves, for the OpenAPI consistency test and docs.
struct RouteInfo {
  std::string_view method;   // GET, POST, PUT, PATCH, DELETE
  std::string_view pattern;  // "/api/v1/devices/{id}/series/{key}": {name} matches one segment
  std::vector<std::string_view> query;  // the query parameters the route accepts
  bool api = true;  // false for web assets (/docs, /, /app), which the OpenAPI document omits
};

class Router {
 public:
  Router(storage::Store& store, ApiOptions options);

  // Never throws: anything escaping a handler becomes a 500 problem. Authentication and role
  // checks happen here, before any handler, for every route (see authenticated in
  // auth_routes.cpp).
  ApiResponse handle(const ApiRequest& request) const noexcept;

  // For a live feed connection, every so often: nullopt while the credentials it was opened
  // with still hold, else why not (expired, revoked, removed). Store failures count as holding.
  std::optional<std::string> recheckCredentials(std::string_view authorization,
                                                std::string_view apiKey) const;
  // Device summaries through ApiOptions::devices, or the store.
  core::Result<std::vector<storage::DeviceSummary>> readDevices() const;

  // Every route the router dispatches on, in table order.
  static std::vector<RouteInfo> routes();

  // A matched request: what a route's handler gets.
  struct Call {
    const ApiRequest& request;
    std::vector<std::string> args;     // the pattern's {parameters}, decoded, in pattern order
    const QueryParams& params;         // checked against the route's list
    const auth::Principal* principal;  // null on public routes
  };
  struct Route;

 private:
  static std::span<const Route> table();
  ApiResponse authenticated(const ApiRequest& request) const;
  // Finds the route for the method and path: 404 when no pattern matches, 405 when only the
  // method does not.
  ApiResponse dispatch(const ApiRequest& request, const RequestTarget& target,
                       const auth::Principal* principal) const;

  // Auth endpoints (auth_routes.cpp).
  ApiResponse login(const Call& call) const;
  ApiResponse refresh(const Call& call) const;
  ApiResponse logout(const Call& call) const;
  ApiResponse me(const Call& call) const;
  ApiResponse createApiKey(const Call& call) const;
  ApiResponse listApiKeys(const Call& call) const;
  ApiResponse revokeApiKey(const Call& call) const;

  // MQTT credentials of a device (device_credential_routes.cpp).
  ApiResponse getCredentials(const Call& call) const;
  ApiResponse putCredentials(const Call& call) const;
  ApiResponse deleteCredentials(const Call& call) const;
  ApiResponse listDeviceTokens(const Call& call) const;
  ApiResponse createDeviceToken(const Call& call) const;
  ApiResponse revokeDeviceTokens(const Call& call) const;
  ApiResponse revokeDeviceToken(const Call& call) const;
  // A device's credentials as JSON (metadata only); with `mustExist`, a 404 when neither the
  // credentials nor the store know the device.
  std::variant<boost::json::object, ApiResponse> credentialsJson(const std::string& deviceId,
                                                                 bool mustExist) const;

  // Users, admin only (user_routes.cpp).
  ApiResponse listUsers(const Call& call) const;
  ApiResponse getUser(const Call& call) const;
  ApiResponse createUser(const Call& call) const;
  ApiResponse patchUser(const Call& call) const;
  ApiResponse deleteUser(const Call& call) const;

  // The API description and Swagger UI (docs_routes.cpp).
  ApiResponse openApi(const Call& call) const;
  ApiResponse docsIndex(const Call& call) const;
  ApiResponse docsAsset(const Call& call) const;
  // The web app and its settings (web_routes.cpp).
  ApiResponse appIndex(const Call& call) const;
  ApiResponse appAsset(const Call& call) const;
  ApiResponse webConfig(const Call& call) const;

  ApiResponse health(const Call& call) const;
  // GET /api/v1/live: the WebSocket live feed (the upgrade itself is the HTTP server's).
  ApiResponse live(const Call& call) const;
  // Device management: the list (filter, sort, pages), create, change (PUT registers, PATCH
  // needs an existing device).
  ApiResponse devices(const Call& call) const;
  ApiResponse createDevice(const Call& call) const;
  ApiResponse patchDevice(const Call& call) const;
  // Removes a device: credentials, history, tags and attributes, the cache entry.
  ApiResponse deleteDevice(const Call& call) const;
  ApiResponse getDevice(const Call& call) const;
  ApiResponse messagesRoute(const Call& call) const;
  ApiResponse messages(const std::string& deviceId, const QueryParams& params, bool csv) const;
  ApiResponse seriesRoute(const Call& call) const;
  ApiResponse series(const std::string& deviceId, const std::string& key, const QueryParams& params,
                     bool csv) const;
  ApiResponse positions(const Call& call) const;
  ApiResponse latestPositions(const Call& call) const;
  ApiResponse submitCommand(const Call& call) const;
  ApiResponse listCommands(const Call& call) const;
  core::Result<std::optional<storage::DeviceSummary>> readDevice(const std::string& deviceId) const;
  // The devices of `?tag=key:value` (one range of the store's tag index), or every device; a
  // problem response for a bad tag or a store failure.
  std::variant<ApiResponse, std::vector<storage::DeviceSummary>> listedDevices(
      const QueryParams& params) const;
  // Device tags and attributes (the API's first write), and fleet queries over a tag group.
  ApiResponse putDevice(const Call& call) const;
  // Writes through the store and tells the device cache.
  std::variant<storage::DeviceSummary, ApiResponse> writeDevice(
      const std::string& deviceId, const storage::DeviceUpdate& update) const;
  // Groups: the devices carrying one tag (key:value). A group exists while a device carries its
  // tag; writes change the members' tags, one device per transaction.
  ApiResponse listGroups(const Call& call) const;
  ApiResponse getGroup(const Call& call) const;
  ApiResponse createGroup(const Call& call) const;
  ApiResponse putGroup(const Call& call) const;
  ApiResponse deleteGroup(const Call& call) const;
  // The ids of the devices carrying the group's tag, sorted.
  core::Result<std::vector<std::string>> groupMembers(const storage::DeviceGroup& group) const;
  // Gives every `wanted` device (sorted) the group's tag, and with `removeOthers` takes it from
  // the `members` (sorted) not wanted. Checks every wanted device exists before changing any.
  std::optional<ApiResponse> setGroupMembers(const storage::DeviceGroup& group,
                                             const std::vector<std::string>& members,
                                             const std::vector<std::string>& wanted,
                                             bool removeOthers) const;
  ApiResponse fleetLatest(const Call& call) const;
  ApiResponse fleetThreshold(const Call& call) const;
  ApiResponse fleetStationary(const Call& call) const;
  ApiResponse fleetDaily(const Call& call) const;
  // For an empty result: 404 when the device does not exist, else nullopt.
  std::optional<ApiResponse> unknownDevice(const std::string& deviceId) const;

  storage::Store& store_;
  ApiOptions options_;
  std::int64_t startedMonotonicUs_;
};

}  // namespace tern::api
