#pragma once
// Maps (method, target) to an API v1 handler and builds the response. Independent of Beast; the
// HTTP server calls handle() once per request from any of its threads.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

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
};

class Router {
 public:
  Router(storage::Store& store, ApiOptions options);

  // Never throws: anything escaping a handler becomes a 500 problem. Authentication and role
  // checks happen here, before any handler, for every route (see authorize in router.cpp).
  ApiResponse handle(const ApiRequest& request) const noexcept;

 private:
  ApiResponse authenticated(const ApiRequest& request) const;
  // /api/v1/auth/..., /api/v1/api-keys...; nullopt when the path is not one of them.
  std::optional<ApiResponse> authRoute(const ApiRequest& request, const RequestTarget& target,
                                       const auth::Principal* principal) const;
  ApiResponse login(const ApiRequest& request) const;
  ApiResponse refresh(std::string_view body) const;
  ApiResponse logout(const auth::Principal& principal, std::string_view body) const;
  ApiResponse me(const auth::Principal& principal) const;
  ApiResponse createApiKey(const auth::Principal& principal, std::string_view body) const;
  ApiResponse listApiKeys() const;
  ApiResponse revokeApiKey(const std::string& id) const;

  ApiResponse route(std::string_view method, std::string_view target, std::string_view body,
                    std::string_view accept) const;
  ApiResponse health(const QueryParams& params) const;
  ApiResponse listDevices(const QueryParams& params) const;
  ApiResponse getDevice(const std::string& deviceId, const QueryParams& params) const;
  ApiResponse messages(const std::string& deviceId, const QueryParams& params, bool csv) const;
  ApiResponse series(const std::string& deviceId, const std::string& key, const QueryParams& params,
                     bool csv) const;
  ApiResponse positions(const std::string& deviceId, const QueryParams& params) const;
  ApiResponse latestPositions(const QueryParams& params) const;
  ApiResponse submitCommand(const std::string& deviceId, std::string_view body) const;
  ApiResponse listCommands(const std::string& deviceId) const;
  // Device summaries through ApiOptions::devices, or the store.
  core::Result<std::vector<storage::DeviceSummary>> readDevices() const;
  core::Result<std::optional<storage::DeviceSummary>> readDevice(const std::string& deviceId) const;
  // Device tags and attributes (the API's first write), and fleet queries over a tag group.
  ApiResponse putDevice(const std::string& deviceId, std::string_view body) const;
  ApiResponse listDevicesWithTag(const QueryParams& params) const;
  ApiResponse fleetLatest(const QueryParams& params) const;
  ApiResponse fleetThreshold(const QueryParams& params) const;
  ApiResponse fleetStationary(const QueryParams& params) const;
  ApiResponse fleetDaily(const QueryParams& params) const;
  // For an empty result: 404 when the device does not exist, else nullopt.
  std::optional<ApiResponse> unknownDevice(const std::string& deviceId) const;

  storage::Store& store_;
  ApiOptions options_;
  std::int64_t startedMonotonicUs_;
};

}  // namespace tern::api
