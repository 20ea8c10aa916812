#include "api/router.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>
#include <cctype>
#include <charconv>
#include <cmath>
#include <exception>
#include <limits>
#include <map>
#include <span>
#include <variant>

#include "api/csv_out.h"
#include "api/encoding.h"
#include "api/json_out.h"
#include "api/list_page.h"
#include "api/live_feed.h"
#include "auth/device_credentials.h"
#include "core/time.h"

namespace tern::api {
namespace {

constexpr std::int64_t kSecondUs = 1'000'000;
constexpr std::int64_t kHourUs = 3600 * kSecondUs;
constexpr std::int64_t kDayUs = 24 * kHourUs;
constexpr std::uint32_t kDefaultLimit = 100;
constexpr std::uint32_t kMaxLimit = 10'000;
constexpr std::int64_t kMinBucketUs = kSecondUs;
constexpr std::int64_t kMaxBucketUs = 366 * kDayUs;
constexpr std::uint64_t kMaxBuckets = 100'000;
constexpr std::string_view kDefaultBucket = "1m";

ApiResponse jsonResponse(unsigned status, const boost::json::value& body) {
  ApiResponse response;
  response.status = status;
  response.body = toJsonText(body);
  return response;
}

ApiResponse storeError(std::string_view what, const core::Error& error) {
  // The store's message may reveal internals; it goes to the log, the client gets a summary.
  spdlog::error("http api: store failed while {}: {}", what, error.message);
  return problemResponse(
      500, "the store failed while " + std::string(what) + "; the server log has the details");
}

Problem badParam(std::string_view name, std::string_view expected, std::string_view got) {
  return Problem{400, "parameter '" + std::string(name) + "': expected " + std::string(expected) +
                          ", got " + quoteInput(got)};
}

// Reads an optional time parameter into `out` (left untouched when absent).
std::optional<Problem> timeParam(const QueryParams& params, std::string_view name,
                                 std::int64_t& out) {
  const auto text = params.get(name);
  if (!text) return std::nullopt;
  const auto parsed = core::parseTimeParam(*text);
  if (!parsed) {
    return badParam(name, "an RFC 3339 time or epoch seconds/milliseconds/microseconds", *text);
  }
  out = *parsed;
  return std::nullopt;
}

std::optional<Problem> timeRange(const QueryParams& params, std::int64_t& from, std::int64_t& to) {
  if (auto problem = timeParam(params, "from", from)) return problem;
  if (auto problem = timeParam(params, "to", to)) return problem;
  if (to <= from) {
    return Problem{400, "parameter 'to': must be later than 'from' (from " +
                            core::formatRfc3339Millis(from) + ", to " +
                            core::formatRfc3339Millis(to) + ")"};
  }
  return std::nullopt;
}

std::optional<Problem> limitParam(const QueryParams& params, std::uint32_t& out) {
  const auto text = params.get("limit");
  if (!text) return std::nullopt;
  std::uint32_t value = 0;
  const auto [end, ec] = std::from_chars(text->data(), text->data() + text->size(), value);
  if (ec != std::errc{} || end != text->data() + text->size() || value < 1 || value > kMaxLimit) {
    return badParam("limit", "an integer between 1 and " + std::to_string(kMaxLimit), *text);
  }
  out = value;
  return std::nullopt;
}

std::optional<Problem> tagParam(const QueryParams& params, storage::DeviceGroup& group);

// Device lists answered from a query (latest positions, fleet queries): sorted by device id (the
// default) or by last message, paged with a keyset cursor like the other lists.
std::optional<Problem> deviceListParams(const QueryParams& params, ListParams& list) {
  return parseListParams(params,
                         {{"id", false, false},
                          {"-id", false, true},
                          {"last_seen", true, false},
                          {"-last_seen", true, true}},
                         1000, kMaxLimit, list);
}

// `keep` filters before the page is cut. Entries need `deviceId` and `lastSeenUs`.
template <class T, class Keep>
boost::json::value pageDevices(std::vector<T>& all, const ListParams& list, Keep keep) {
  const auto next = pageOf(
      all, list,
      [](const T& device) {
        return ListKeyView{device.lastSeenUs, device.deviceId};
      },
      keep);
  return next ? boost::json::value(*next) : boost::json::value(nullptr);
}

template <class T>
boost::json::value pageDevices(std::vector<T>& all, const ListParams& list) {
  return pageDevices(all, list, [](const T&) { return true; });
}

std::optional<Problem> aggParam(const QueryParams& params, storage::Aggregate& out,
                                std::string& name) {
  const auto text = params.get("agg");
  if (!text) return std::nullopt;
  static constexpr std::pair<std::string_view, storage::Aggregate> kAggregates[] = {
      {"avg", storage::Aggregate::kAvg},     {"min", storage::Aggregate::kMin},
      {"max", storage::Aggregate::kMax},     {"sum", storage::Aggregate::kSum},
      {"count", storage::Aggregate::kCount}, {"first", storage::Aggregate::kFirst},
      {"last", storage::Aggregate::kLast}};
  for (const auto& [aggName, aggregate] : kAggregates) {
    if (*text == aggName) {
      out = aggregate;
      name = aggName;
      return std::nullopt;
    }
  }
  return badParam("agg", "one of avg, min, max, sum, count, first, last", *text);
}

struct CsvChoice {
  bool csv = false;
  std::optional<Problem> problem;
};

// ?format=csv|json wins; otherwise an Accept header that names text/csv (and not JSON before it)
// selects CSV. Anything else gets JSON, the API's default.
CsvChoice wantsCsv(const QueryParams& params, std::string_view accept) {
  if (const auto format = params.get("format")) {
    if (*format == "csv") return {true, std::nullopt};
    if (*format == "json") return {false, std::nullopt};
    return {false, badParam("format", "csv or json", *format)};
  }
  const auto csvAt = accept.find("text/csv");
  if (csvAt == std::string_view::npos) return {};
  const auto jsonAt = accept.find("application/json");
  return {jsonAt == std::string_view::npos || csvAt < jsonAt, std::nullopt};
}

std::string notFoundDevice(const std::string& deviceId) {
  return "no device with id " + quoteInput(deviceId, 256);
}

}  // namespace

Router::Router(storage::Store& store, ApiOptions options)
    : store_(store), options_(std::move(options)), startedMonotonicUs_(core::monotonicMicros()) {}

ApiResponse Router::handle(const ApiRequest& request) const noexcept {
  // The one place exceptions stop: a throwing handler (Boost.JSON allocation, a store that
  // throws despite its contract, a healthInfo callback) costs one 500, not the server.
  try {
    return authenticated(request);
  } catch (const std::exception& e) {
    spdlog::error("http api: {} {} failed: {}", request.method, quoteInput(request.target, 200),
                  e.what());
  } catch (...) {
    spdlog::error("http api: {} {} failed with a non-standard exception", request.method,
                  quoteInput(request.target, 200));
  }
  try {
    return problemResponse(500, "internal error; the server log has the details");
  } catch (...) {
    // Out of memory while building the problem: a body-less 500 still tells the client.
    ApiResponse response;
    response.status = 500;
    response.close = true;
    return response;
  }
}

// The route table: every (method, path pattern) the API serves, the query parameters each
// accepts (space-separated; anything else is a 400), and its handler. Table order is the order of
// the Allow header on a 405. The OpenAPI document (openapi.json) must list exactly these API
// routes; test/unit/api/openapi_test.cpp compares the two.
struct Router::Route {
  std::string_view method;
  std::string_view pattern;
  std::string_view query;
  ApiResponse (Router::*handler)(const Call&) const;
  bool api = true;
};

std::span<const Router::Route> Router::table() {
  using R = Router;
  static constexpr Route kRoutes[] = {
      {"GET", "/api/v1/health", "", &R::health},
      {"GET", "/api/v1/openapi.json", "", &R::openApi},
      {"POST", "/api/v1/auth/login", "", &R::login},
      {"POST", "/api/v1/auth/refresh", "", &R::refresh},
      {"POST", "/api/v1/auth/logout", "", &R::logout},
      {"GET", "/api/v1/auth/me", "", &R::me},
      {"GET", "/api/v1/live", "access_token", &R::live},
      {"GET", "/api/v1/api-keys", "role search sort limit cursor", &R::listApiKeys},
      {"POST", "/api/v1/api-keys", "", &R::createApiKey},
      {"DELETE", "/api/v1/api-keys/{id}", "", &R::revokeApiKey},
      {"GET", "/api/v1/users", "role search sort limit cursor", &R::listUsers},
      {"POST", "/api/v1/users", "", &R::createUser},
      {"GET", "/api/v1/users/{name}", "", &R::getUser},
      {"PATCH", "/api/v1/users/{name}", "", &R::patchUser},
      {"DELETE", "/api/v1/users/{name}", "", &R::deleteUser},
      {"GET", "/api/v1/devices", "tag search sort limit cursor", &R::devices},
      {"POST", "/api/v1/devices", "", &R::createDevice},
      {"GET", "/api/v1/devices/{id}", "", &R::getDevice},
      {"PUT", "/api/v1/devices/{id}", "", &R::putDevice},
      {"PATCH", "/api/v1/devices/{id}", "", &R::patchDevice},
      {"DELETE", "/api/v1/devices/{id}", "", &R::deleteDevice},
      {"GET", "/api/v1/devices/{id}/messages", "from to limit order cursor format",
       &R::messagesRoute},
      {"GET", "/api/v1/devices/{id}/series/{key}", "from to bucket agg format", &R::seriesRoute},
      {"GET", "/api/v1/devices/{id}/positions", "from to limit order cursor", &R::positions},
      {"GET", "/api/v1/devices/{id}/commands", "status type sort limit cursor", &R::listCommands},
      {"POST", "/api/v1/devices/{id}/commands", "", &R::submitCommand},
      {"GET", "/api/v1/devices/{id}/credentials", "", &R::getCredentials},
      {"PUT", "/api/v1/devices/{id}/credentials", "", &R::putCredentials},
      {"DELETE", "/api/v1/devices/{id}/credentials", "", &R::deleteCredentials},
      {"GET", "/api/v1/devices/{id}/tokens", "search sort limit cursor", &R::listDeviceTokens},
      {"POST", "/api/v1/devices/{id}/tokens", "", &R::createDeviceToken},
      {"DELETE", "/api/v1/devices/{id}/tokens", "", &R::revokeDeviceTokens},
      {"DELETE", "/api/v1/devices/{id}/tokens/{token_id}", "", &R::revokeDeviceToken},
      {"GET", "/api/v1/groups", "key search sort limit cursor", &R::listGroups},
      {"POST", "/api/v1/groups", "", &R::createGroup},
      {"GET", "/api/v1/groups/{tag}", "", &R::getGroup},
      {"PUT", "/api/v1/groups/{tag}", "", &R::putGroup},
      {"DELETE", "/api/v1/groups/{tag}", "", &R::deleteGroup},
      {"GET", "/api/v1/positions/latest", "tag search sort limit cursor", &R::latestPositions},
      {"GET", "/api/v1/fleet/latest", "tag keys sort limit cursor", &R::fleetLatest},
      {"GET", "/api/v1/fleet/threshold", "tag key below above sort limit cursor",
       &R::fleetThreshold},
      {"GET", "/api/v1/fleet/stationary", "tag key below above window from to sort limit cursor",
       &R::fleetStationary},
      {"GET", "/api/v1/fleet/daily", "tag key agg from to by", &R::fleetDaily},
      {"GET", "/api/v1/web/config", "", &R::webConfig},
      // Swagger UI: web assets, not part of the API description.
      {"GET", "/docs", "", &R::docsIndex, false},
      {"GET", "/docs/", "", &R::docsIndex, false},
      {"GET", "/docs/{file}", "", &R::docsAsset, false},
      // The operator web app: a page and its files, not part of the API description.
      {"GET", "/", "", &R::appIndex, false},
      {"GET", "/app/{file}", "", &R::appAsset, false},
  };
  return kRoutes;
}

namespace {

std::vector<std::string_view> splitWords(std::string_view text) {
  std::vector<std::string_view> words;
  while (!text.empty()) {
    const auto space = text.find(' ');
    if (space != 0) words.push_back(text.substr(0, space));
    if (space == std::string_view::npos) break;
    text.remove_prefix(space + 1);
  }
  return words;
}

// Matches request path segments against a pattern; {name} takes one non-empty segment.
bool matchPattern(std::string_view pattern, const std::vector<std::string>& segments,
                  std::vector<std::string>& args) {
  args.clear();
  pattern.remove_prefix(1);  // the leading '/'
  std::size_t i = 0;
  while (true) {
    const auto slash = pattern.find('/');
    const std::string_view part = pattern.substr(0, slash);
    if (i >= segments.size()) return false;
    if (part.size() >= 2 && part.front() == '{' && part.back() == '}') {
      if (segments[i].empty()) return false;
      args.push_back(segments[i]);
    } else if (segments[i] != part) {
      return false;
    }
    ++i;
    if (slash == std::string_view::npos) break;
    pattern.remove_prefix(slash + 1);
  }
  return i == segments.size();
}

}  // namespace

std::vector<RouteInfo> Router::routes() {
  std::vector<RouteInfo> out;
  for (const Route& route : table()) {
    out.push_back({route.method, route.pattern, splitWords(route.query), route.api});
  }
  return out;
}

ApiResponse Router::dispatch(const ApiRequest& request, const RequestTarget& target,
                             const auth::Principal* principal) const {
  std::string allowed;
  std::vector<std::string> args;
  for (const Route& route : table()) {
    if (!matchPattern(route.pattern, target.segments, args)) continue;
    if (route.method != request.method) {
      if (allowed.find(route.method) == std::string::npos) {
        if (!allowed.empty()) allowed += ", ";
        allowed += route.method;
      }
      continue;
    }
    const auto names = splitWords(route.query);
    QueryParams params;
    if (auto problem = QueryParams::make(target.params, names, params)) {
      return problemResponse(*problem);
    }
    return (this->*route.handler)(Call{request, std::move(args), params, principal});
  }
  if (allowed.empty()) {
    return problemResponse(404, "no such resource: " + quoteInput(request.target, 200));
  }
  ApiResponse response = problemResponse(
      405, "method " + quoteInput(request.method) + " is not allowed here; allowed: " + allowed);
  response.allow = std::move(allowed);
  return response;
}

ApiResponse Router::live(const Call& call) const {
  if (options_.live == nullptr) {
    return problemResponse(503, "the live feed is not enabled on this server");
  }
  if (!call.request.websocketUpgrade) {
    ApiResponse response = problemResponse(426,
                                           "the live feed is a WebSocket: send an upgrade request "
                                           "(Connection: Upgrade, Upgrade: websocket)");
    response.headers.emplace_back("Upgrade", "websocket");
    return response;
  }
  if (options_.live->stats().sessions >= options_.live->options().maxSessions) {
    ApiResponse response = problemResponse(503, "too many live connections; retry later");
    response.headers.emplace_back("Retry-After", "5");
    return response;
  }
  ApiResponse response;
  response.status = 101;
  response.liveUpgrade = true;
  return response;
}

ApiResponse Router::health(const Call& /*call*/) const {
  bool healthy = true;
  boost::json::object storageInfo;
  storageInfo["backend"] = store_.backendName();
  const core::Status status = store_.check();
  if (status.ok()) {
    storageInfo["status"] = "ok";
  } else {
    healthy = false;
    storageInfo["status"] = "error";
    storageInfo["error"] = toValidUtf8(status.message());
    spdlog::warn("http api: health check: store is not usable: {}", status.message());
  }

  boost::json::object body;
  body["status"] = "ok";  // placeholder to fix the member order; set below
  body["version"] = TERN_VERSION;
  body["node"] = toValidUtf8(options_.nodeId);
  body["uptime_s"] = (core::monotonicMicros() - startedMonotonicUs_) / kSecondUs;
  body["storage"] = std::move(storageInfo);

  if (options_.healthInfo) {
    boost::json::object extra;
    try {
      extra = options_.healthInfo();
    } catch (const std::exception& e) {
      // A broken reporter must not hide the rest of the health answer.
      healthy = false;
      spdlog::error("http api: health info callback failed: {}", e.what());
      body["health_info_error"] = toValidUtf8(e.what());
    }
    for (auto& member : extra) {
      // Core members are this endpoint's contract; a component cannot override them.
      if (!body.contains(member.key())) body[member.key()] = std::move(member.value());
    }
  }
  body["status"] = healthy ? "ok" : "degraded";
  return jsonResponse(healthy ? 200 : 503, body);
}

core::Result<std::vector<storage::DeviceSummary>> Router::readDevices() const {
  return options_.devices.list ? options_.devices.list() : store_.listDevices();
}

std::variant<ApiResponse, std::vector<storage::DeviceSummary>> Router::listedDevices(
    const QueryParams& params) const {
  core::Result<std::vector<storage::DeviceSummary>> devices = std::vector<storage::DeviceSummary>{};
  if (params.get("tag")) {
    storage::DeviceGroup group;
    if (auto problem = tagParam(params, group)) return problemResponse(*problem);
    devices = store_.listDevicesWithTag(group.tagKey, group.tagValue);
  } else {
    devices = readDevices();
  }
  if (!devices) return storeError("listing devices", devices.error());
  return std::move(*devices);
}

core::Result<std::optional<storage::DeviceSummary>> Router::readDevice(
    const std::string& deviceId) const {
  return options_.devices.get ? options_.devices.get(deviceId) : store_.getDevice(deviceId);
}

ApiResponse Router::getDevice(const Call& call) const {
  const std::string& deviceId = call.args[0];
  auto device = readDevice(deviceId);
  if (!device) return storeError("reading a device", device.error());
  if (!device->has_value()) return problemResponse(404, notFoundDevice(deviceId));
  return jsonResponse(200, deviceToJson(**device));
}

std::optional<ApiResponse> Router::unknownDevice(const std::string& deviceId) const {
  auto device = readDevice(deviceId);
  if (!device) return storeError("reading a device", device.error());
  if (!device->has_value()) return problemResponse(404, notFoundDevice(deviceId));
  return std::nullopt;
}

ApiResponse Router::messagesRoute(const Call& call) const {
  const auto csv = wantsCsv(call.params, call.request.accept);
  if (csv.problem) return problemResponse(*csv.problem);
  return messages(call.args[0], call.params, csv.csv);
}

ApiResponse Router::seriesRoute(const Call& call) const {
  const auto csv = wantsCsv(call.params, call.request.accept);
  if (csv.problem) return problemResponse(*csv.problem);
  return series(call.args[0], call.args[1], call.params, csv.csv);
}

ApiResponse Router::messages(const std::string& deviceId, const QueryParams& params,
                             bool csv) const {
  storage::MessageQuery query;
  query.deviceId = deviceId;
  query.fromUs = 0;
  // A day ahead: devices and nodes with fast clocks still show up.
  query.toUs = core::nowMicros() + kDayUs;
  if (auto problem = timeRange(params, query.fromUs, query.toUs)) {
    return problemResponse(*problem);
  }
  std::uint32_t limit = kDefaultLimit;
  if (auto problem = limitParam(params, limit)) return problemResponse(*problem);
  if (const auto order = params.get("order")) {
    if (*order == "desc") {
      query.descending = true;
    } else if (*order != "asc") {
      return problemResponse(badParam("order", "asc or desc", *order));
    }
  }
  if (const auto text = params.get("cursor")) {
    const auto cursor = decodeCursor(*text);
    if (!cursor) {
      return problemResponse(
          badParam("cursor", "a next_cursor value from a previous response", *text));
    }
    query.afterTimeUs = cursor->timeUs;
    query.afterId = cursor->id;
  }
  // One extra record tells whether another page exists, so a full last page gets no cursor.
  query.limit = limit + 1;

  auto result = store_.queryMessages(query);
  if (!result) return storeError("querying messages", result.error());
  std::vector<storage::StoredRecord>& records = *result;
  const bool more = records.size() > limit;
  if (more) records.resize(limit);
  if (records.empty()) {
    if (auto notFound = unknownDevice(deviceId)) return std::move(*notFound);
  }

  if (csv) {
    ApiResponse response;
    response.contentType = kCsvContentType;
    response.body = messagesToCsv(records);
    if (more) {
      const auto& last = records.back();
      response.headers.emplace_back("X-Next-Cursor",
                                    encodeCursor({last.record.serverTimeUs, last.id}));
    }
    return response;
  }
  boost::json::array list;
  list.reserve(records.size());
  for (const auto& record : records) list.push_back(messageToJson(record));
  boost::json::object body;
  body["device"] = toValidUtf8(deviceId);
  body["messages"] = std::move(list);
  if (more) {
    const auto& last = records.back();
    body["next_cursor"] = encodeCursor({last.record.serverTimeUs, last.id});
  } else {
    body["next_cursor"] = nullptr;
  }
  return jsonResponse(200, body);
}

ApiResponse Router::series(const std::string& deviceId, const std::string& key,
                           const QueryParams& params, bool csv) const {
  storage::SeriesQuery query;
  query.deviceId = deviceId;
  query.key = key;
  query.toUs = core::nowMicros();
  query.fromUs = query.toUs - kHourUs;
  if (auto problem = timeRange(params, query.fromUs, query.toUs)) {
    return problemResponse(*problem);
  }
  const std::string_view bucketText = params.get("bucket").value_or(kDefaultBucket);
  const auto bucketUs = core::parseDuration(bucketText);
  if (!bucketUs || *bucketUs < kMinBucketUs || *bucketUs > kMaxBucketUs) {
    return problemResponse(
        badParam("bucket", "a duration between 1s and 366d such as 30s, 5m, 1h or 1d", bucketText));
  }
  query.bucketUs = *bucketUs;
  // Unsigned: to > from, and the difference of any two int64 values fits in uint64.
  const std::uint64_t span =
      static_cast<std::uint64_t>(query.toUs) - static_cast<std::uint64_t>(query.fromUs);
  const auto bucketU = static_cast<std::uint64_t>(query.bucketUs);
  const std::uint64_t buckets = span / bucketU + (span % bucketU != 0 ? 1 : 0);
  if (buckets > kMaxBuckets) {
    return problemResponse(400, "parameter 'bucket': " + quoteInput(bucketText) +
                                    " over the requested range gives " + std::to_string(buckets) +
                                    " buckets, at most " + std::to_string(kMaxBuckets) +
                                    " are allowed; use a larger bucket or a shorter range");
  }
  std::string aggName = "avg";
  if (auto problem = aggParam(params, query.aggregate, aggName)) return problemResponse(*problem);

  auto result = store_.querySeries(query);
  if (!result) return storeError("querying a series", result.error());
  if (result->empty()) {
    if (auto notFound = unknownDevice(deviceId)) return std::move(*notFound);
  }

  if (csv) {
    ApiResponse response;
    response.contentType = kCsvContentType;
    response.body = seriesToCsv(*result);
    return response;
  }
  boost::json::array points;
  points.reserve(result->size());
  for (const auto& bucket : *result) {
    boost::json::object point;
    point["ts"] = core::formatRfc3339Millis(bucket.startUs);
    point["value"] = numberToJson(bucket.value);
    point["count"] = bucket.count;
    points.push_back(std::move(point));
  }
  boost::json::object body;
  body["device"] = toValidUtf8(deviceId);
  body["key"] = toValidUtf8(key);
  body["bucket"] = toValidUtf8(bucketText);
  body["agg"] = aggName;
  body["points"] = std::move(points);
  return jsonResponse(200, body);
}

namespace {

const storage::FieldValue* findField(const std::vector<storage::Field>& fields,
                                     std::string_view key) {
  for (const auto& field : fields) {
    if (field.key == key) return &field.value;
  }
  return nullptr;
}

std::optional<double> numberField(const std::vector<storage::Field>& fields, std::string_view key) {
  const storage::FieldValue* value = findField(fields, key);
  if (value == nullptr) return std::nullopt;
  if (const auto* d = std::get_if<double>(value)) return *d;
  if (const auto* i = std::get_if<std::int64_t>(value)) return static_cast<double>(*i);
  return std::nullopt;
}

// Whether fields carry a position (both coordinates): what positionJson needs, without building
// the object.
bool hasPosition(const std::vector<storage::Field>& fields) {
  return numberField(fields, "lat").has_value() && numberField(fields, "lon").has_value();
}

// The position fields of a tracker record (see trackers/position_record.cpp) as one object.
std::optional<boost::json::object> positionJson(const std::vector<storage::Field>& fields) {
  auto lat = numberField(fields, "lat");
  auto lon = numberField(fields, "lon");
  if (!lat || !lon) return std::nullopt;
  boost::json::object position;
  position["lat"] = numberToJson(*lat);
  position["lon"] = numberToJson(*lon);
  static constexpr std::string_view kMain[] = {"speed", "course", "altitude", "valid",
                                               "sat",   "hdop",   "protocol"};
  for (std::string_view key : kMain) {
    if (const auto* value = findField(fields, key)) position[key] = fieldValueToJson(*value);
  }
  boost::json::object attributes;
  for (const auto& field : fields) {
    bool main = field.key == "lat" || field.key == "lon";
    for (std::string_view key : kMain) main = main || field.key == key;
    if (!main) attributes[toValidUtf8(field.key)] = fieldValueToJson(field.value);
  }
  position["attributes"] = std::move(attributes);
  return position;
}

constexpr std::string_view kCommandTypes[] = {"engineStop", "engineResume", "positionSingle",
                                              "custom", "customHex"};

}  // namespace

ApiResponse Router::positions(const Call& call) const {
  const std::string& deviceId = call.args[0];
  const QueryParams& params = call.params;
  storage::MessageQuery query;
  query.deviceId = deviceId;
  query.toUs = core::nowMicros() + kDayUs;
  if (auto problem = timeRange(params, query.fromUs, query.toUs)) return problemResponse(*problem);
  std::uint32_t limit = kDefaultLimit;
  if (auto problem = limitParam(params, limit)) return problemResponse(*problem);
  if (const auto order = params.get("order")) {
    if (*order == "desc") {
      query.descending = true;
    } else if (*order != "asc") {
      return problemResponse(badParam("order", "asc or desc", *order));
    }
  }
  if (const auto text = params.get("cursor")) {
    const auto cursor = decodeCursor(*text);
    if (!cursor) {
      return problemResponse(
          badParam("cursor", "a next_cursor value from a previous response", *text));
    }
    query.afterTimeUs = cursor->timeUs;
    query.afterId = cursor->id;
  }
  // The limit applies to the records scanned: a page holds at most `limit` positions, fewer when
  // the device also sent records without coordinates. next_cursor continues the scan.
  query.limit = limit + 1;
  auto result = store_.queryMessages(query);
  if (!result) return storeError("querying positions", result.error());
  std::vector<storage::StoredRecord>& records = *result;
  const bool more = records.size() > limit;
  if (more) records.resize(limit);
  if (records.empty()) {
    if (auto notFound = unknownDevice(deviceId)) return std::move(*notFound);
  }
  boost::json::array list;
  for (const auto& stored : records) {
    auto position = positionJson(stored.record.fields);
    if (!position) continue;
    boost::json::object out;
    out["id"] = stored.id;
    out["ts"] = core::formatRfc3339Millis(stored.record.serverTimeUs);
    if (stored.record.deviceTimeUs) {
      out["device_time"] = core::formatRfc3339Millis(*stored.record.deviceTimeUs);
    }
    out["node"] = toValidUtf8(stored.record.nodeId);
    for (auto& member : *position) out[member.key()] = std::move(member.value());
    list.push_back(std::move(out));
  }
  boost::json::object body;
  body["device"] = toValidUtf8(deviceId);
  body["positions"] = std::move(list);
  if (more) {
    const auto& last = records.back();
    body["next_cursor"] = encodeCursor({last.record.serverTimeUs, last.id});
  } else {
    body["next_cursor"] = nullptr;
  }
  return jsonResponse(200, body);
}

ApiResponse Router::latestPositions(const Call& call) const {
  const QueryParams& params = call.params;
  ListParams page;
  if (auto problem = deviceListParams(params, page)) return problemResponse(*problem);
  // From the per-device latest values (the latest-state cache when the app wires it): no history
  // scan, however long the tracks are.
  auto listed = listedDevices(params);
  if (auto* problem = std::get_if<ApiResponse>(&listed)) return std::move(*problem);
  auto* devices = &std::get<std::vector<storage::DeviceSummary>>(listed);
  const auto search = params.get("search");
  const auto next = pageDevices(*devices, page, [&](const storage::DeviceSummary& device) {
    return hasPosition(device.latest) &&
           (!search || containsAsciiCaseless(device.deviceId, *search) ||
            containsAsciiCaseless(device.name, *search));
  });
  boost::json::array list;
  list.reserve(devices->size());
  for (const auto& device : *devices) {
    auto position = positionJson(device.latest);
    if (!position) continue;
    boost::json::object out;
    out["device"] = toValidUtf8(device.deviceId);
    out["last_seen"] = core::formatRfc3339Millis(device.lastSeenUs);
    for (auto& member : *position) out[member.key()] = std::move(member.value());
    list.push_back(std::move(out));
  }
  boost::json::object body;
  body["positions"] = std::move(list);
  body["next_cursor"] = next;
  return jsonResponse(200, body);
}

ApiResponse Router::submitCommand(const Call& call) const {
  const std::string& deviceId = call.args[0];
  const std::string_view body = call.request.body;
  if (!options_.commands.submit) {
    return problemResponse(503, "downlink commands need the tracker gateway, which is not running");
  }
  boost::system::error_code ec;
  boost::json::value parsed = boost::json::parse(body, ec);
  if (ec || !parsed.is_object()) {
    return problemResponse(400,
                           "request body: expected a JSON object like "
                           "{\"type\":\"engineStop\"}");
  }
  const auto& object = parsed.as_object();
  const auto* type = object.if_contains("type");
  if (type == nullptr || !type->is_string()) {
    return problemResponse(400,
                           "field 'type': required, one of engineStop, engineResume, "
                           "positionSingle, custom, customHex");
  }
  std::string typeName(type->as_string().c_str());
  bool known = false;
  for (std::string_view t : kCommandTypes) known = known || t == typeName;
  if (!known) {
    return problemResponse(400,
                           "field 'type': expected one of engineStop, engineResume, "
                           "positionSingle, custom, customHex, got " +
                               quoteInput(typeName));
  }
  std::string text;
  if (const auto* t = object.if_contains("text")) {
    if (!t->is_string()) return problemResponse(400, "field 'text': expected a string");
    text = t->as_string().c_str();
  }
  if ((typeName == "custom" || typeName == "customHex") && text.empty()) {
    return problemResponse(400, "field 'text': required for type " + typeName);
  }
  if (typeName == "customHex" &&
      (text.size() % 2 != 0 ||
       text.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos)) {
    return problemResponse(
        400, "field 'text': expected hex digits for customHex, got " + quoteInput(text));
  }
  boost::json::object command = options_.commands.submit(deviceId, typeName, text);
  return jsonResponse(202, command);
}

ApiResponse Router::listCommands(const Call& call) const {
  const std::string& deviceId = call.args[0];
  if (!options_.commands.list) {
    return problemResponse(503, "downlink commands need the tracker gateway, which is not running");
  }
  ListParams list;
  if (auto problem = parseListParams(call.params, {kById, kByIdDesc}, 1000, kMaxLimit, list)) {
    return problemResponse(*problem);
  }
  const auto status = call.params.get("status");
  const auto type = call.params.get("type");
  boost::json::array commands = options_.commands.list(deviceId);
  const auto next = pageObjectsById(commands, list, [&](const boost::json::object& command) {
    return (!status || command.at("status").as_string() == *status) &&
           (!type || command.at("type").as_string() == *type);
  });
  boost::json::object body;
  body["device"] = toValidUtf8(deviceId);
  body["commands"] = std::move(commands);
  body["next_cursor"] = next ? boost::json::value(*next) : boost::json::value(nullptr);
  return jsonResponse(200, body);
}

// --- device tags and attributes, fleet queries -------------------------------------------------

namespace {

constexpr std::size_t kMaxTags = 64;
constexpr std::size_t kMaxTagKeyBytes = 128;
constexpr std::size_t kMaxTagValueBytes = 256;
constexpr std::size_t kMaxFleetKeys = 100;
constexpr std::size_t kMaxDeviceIdBytes = 256;
constexpr std::size_t kMaxDeviceNameBytes = 256;
constexpr std::size_t kMaxDeviceTypeBytes = 64;
constexpr std::uint32_t kDefaultDeviceLimit = 1000;
constexpr std::int64_t kDefaultStationaryWindowUs = 10 * 60 * kSecondUs;
constexpr std::int64_t kMaxDailyRangeUs = 366 * kDayUs;
constexpr std::int64_t kDefaultDailyRangeUs = 7 * kDayUs;

// ?tag=key:value (split at the first ':'); absent: every device.
std::optional<Problem> tagParam(const QueryParams& params, storage::DeviceGroup& group) {
  const auto text = params.get("tag");
  if (!text) return std::nullopt;
  const auto colon = text->find(':');
  if (colon == std::string_view::npos || colon == 0) {
    return badParam("tag", "key:value, e.g. fleet:east", *text);
  }
  group.tagKey = std::string(text->substr(0, colon));
  group.tagValue = std::string(text->substr(colon + 1));
  return std::nullopt;
}

std::optional<Problem> keyParam(const QueryParams& params, std::string_view name, std::string& out,
                                std::optional<std::string_view> fallback) {
  const auto text = params.get(name);
  if (!text && !fallback) {
    return Problem{400, "parameter '" + std::string(name) + "': required (a field key)"};
  }
  const std::string_view key = text ? *text : *fallback;
  if (key.empty()) return badParam(name, "a field key", key);
  out = std::string(key);
  return std::nullopt;
}

std::optional<Problem> numberParam(std::string_view name, std::string_view text, double& out) {
  double value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size() || !std::isfinite(value)) {
    return badParam(name, "a number", text);
  }
  out = value;
  return std::nullopt;
}

// Exactly one of ?below= and ?above=; `fallbackBelow` when neither is given (nullopt: required).
std::optional<Problem> thresholdParam(const QueryParams& params, double& threshold, bool& below,
                                      std::optional<double> fallbackBelow) {
  const auto belowText = params.get("below");
  const auto aboveText = params.get("above");
  if (belowText && aboveText) {
    return Problem{400, "parameter 'above': give either 'below' or 'above', not both"};
  }
  if (belowText) {
    below = true;
    return numberParam("below", *belowText, threshold);
  }
  if (aboveText) {
    below = false;
    return numberParam("above", *aboveText, threshold);
  }
  if (!fallbackBelow) {
    return Problem{400, "parameter 'below': required, or 'above' (a number)"};
  }
  below = true;
  threshold = *fallbackBelow;
  return std::nullopt;
}

boost::json::value groupJson(const storage::DeviceGroup& group) {
  if (group.everyDevice()) return nullptr;
  return boost::json::value(toValidUtf8(group.tagKey + ":" + group.tagValue));
}

boost::json::object fleetBody(const storage::DeviceGroup& group) {
  boost::json::object body;
  body["tag"] = groupJson(group);
  return body;
}

std::string_view jsonKindName(const boost::json::value& value) {
  switch (value.kind()) {
    case boost::json::kind::null:
      return "null";
    case boost::json::kind::bool_:
      return "a boolean";
    case boost::json::kind::int64:
    case boost::json::kind::uint64:
    case boost::json::kind::double_:
      return "a number";
    case boost::json::kind::string:
      return "a string";
    case boost::json::kind::array:
      return "an array";
    case boost::json::kind::object:
      return "an object";
  }
  return "a value";
}

}  // namespace

namespace {

// The body of POST /devices (with `id`, `create`), PUT and PATCH /devices/{id}: the members
// to change, checked; a problem response names the first bad one.
std::optional<ApiResponse> parseDeviceBody(std::string_view body, bool create, std::string& id,
                                           storage::DeviceUpdate& update) {
  boost::system::error_code ec;
  boost::json::value parsed = boost::json::parse(body, ec);
  if (ec || !parsed.is_object()) {
    return problemResponse(400,
                           "request body: expected a JSON object like "
                           "{\"tags\":{\"fleet\":\"east\"},\"attributes\":{}}");
  }
  const auto& object = parsed.as_object();
  for (const auto& member : object) {
    const std::string_view name = member.key();
    const boost::json::value& value = member.value();
    if (create && name == "id") {
      if (!value.is_string() || value.as_string().empty() ||
          value.as_string().size() > kMaxDeviceIdBytes) {
        return problemResponse(400, "field 'id': expected a string of 1 to " +
                                        std::to_string(kMaxDeviceIdBytes) + " bytes");
      }
      id = std::string(value.as_string());
    } else if (name == "name" || name == "type") {
      const std::size_t maxBytes = name == "name" ? kMaxDeviceNameBytes : kMaxDeviceTypeBytes;
      if (!value.is_string() || value.as_string().size() > maxBytes) {
        return problemResponse(400, "field '" + std::string(name) +
                                        "': expected a string of at most " +
                                        std::to_string(maxBytes) + " bytes");
      }
      (name == "name" ? update.name : update.type) = std::string(value.as_string());
    } else if (name == "tags") {
      if (!value.is_object()) {
        return problemResponse(400, "field 'tags': expected an object of strings, got " +
                                        std::string(jsonKindName(value)));
      }
      std::map<std::string, std::string> tags;
      for (const auto& tag : value.as_object()) {
        const std::string_view key = tag.key();
        if (key.empty() || key.size() > kMaxTagKeyBytes || key.find(':') != std::string::npos) {
          return problemResponse(400, "field 'tags': tag name " + quoteInput(key) +
                                          " must be 1 to " + std::to_string(kMaxTagKeyBytes) +
                                          " bytes without ':'");
        }
        if (!tag.value().is_string()) {
          return problemResponse(400, "field 'tags." + quoteInput(key).substr(1) +
                                          ": expected a string, got " +
                                          std::string(jsonKindName(tag.value())));
        }
        const std::string_view text = tag.value().as_string();
        if (text.size() > kMaxTagValueBytes) {
          return problemResponse(400, "field 'tags." + quoteInput(key).substr(1) + ": at most " +
                                          std::to_string(kMaxTagValueBytes) + " bytes");
        }
        tags.emplace(std::string(key), std::string(text));
      }
      if (tags.size() > kMaxTags) {
        return problemResponse(400, "field 'tags': at most " + std::to_string(kMaxTags) +
                                        " tags, got " + std::to_string(tags.size()));
      }
      update.tags = std::move(tags);
    } else if (name == "attributes") {
      if (!value.is_object()) {
        return problemResponse(
            400, "field 'attributes': expected an object, got " + std::string(jsonKindName(value)));
      }
      // Stored in this canonical form, so both backends give back the same text.
      update.attributes = toJsonText(value);
    } else {
      return problemResponse(400, "field " + quoteInput(name) + ": unknown; expected " +
                                      (create ? "'id', " : "") +
                                      "'name', 'type', 'tags' or 'attributes'");
    }
  }
  if (create && id.empty()) return problemResponse(400, "field 'id': required");
  if (!create && !update.tags && !update.attributes && !update.name && !update.type) {
    return problemResponse(400, "request body: expected 'name', 'type', 'tags' or 'attributes'");
  }
  return std::nullopt;
}

}  // namespace

// Writes a device and tells the device cache; the store's answer, or a problem.
std::variant<storage::DeviceSummary, ApiResponse> Router::writeDevice(
    const std::string& deviceId, const storage::DeviceUpdate& update) const {
  auto device = store_.updateDevice(deviceId, update);
  if (!device) return storeError("updating a device", device.error());
  if (options_.devices.updated) {
    // The store has it; a stale cache would only delay it in device reads, so log and go on.
    if (auto status = options_.devices.updated(deviceId); !status.ok()) {
      spdlog::warn("http api: device {} updated, but not in the device cache: {}",
                   quoteInput(deviceId, 200), status.message());
    }
  }
  return std::move(*device);
}

ApiResponse Router::putDevice(const Call& call) const {
  const std::string& deviceId = call.args[0];
  std::string unused;
  storage::DeviceUpdate update;
  if (auto problem = parseDeviceBody(call.request.body, false, unused, update)) {
    return std::move(*problem);
  }
  auto existing = store_.getDevice(deviceId);
  if (!existing) return storeError("reading a device", existing.error());
  auto device = writeDevice(deviceId, update);
  if (auto* problem = std::get_if<ApiResponse>(&device)) return std::move(*problem);
  return jsonResponse(existing->has_value() ? 200 : 201,
                      deviceToJson(std::get<storage::DeviceSummary>(device)));
}

ApiResponse Router::patchDevice(const Call& call) const {
  const std::string& deviceId = call.args[0];
  std::string unused;
  storage::DeviceUpdate update;
  if (auto problem = parseDeviceBody(call.request.body, false, unused, update)) {
    return std::move(*problem);
  }
  // PATCH changes a device that exists; PUT (and POST /devices) register one.
  auto existing = store_.getDevice(deviceId);
  if (!existing) return storeError("reading a device", existing.error());
  if (!existing->has_value()) return problemResponse(404, notFoundDevice(deviceId));
  auto device = writeDevice(deviceId, update);
  if (auto* problem = std::get_if<ApiResponse>(&device)) return std::move(*problem);
  return jsonResponse(200, deviceToJson(std::get<storage::DeviceSummary>(device)));
}

ApiResponse Router::createDevice(const Call& call) const {
  std::string deviceId;
  storage::DeviceUpdate update;
  if (auto problem = parseDeviceBody(call.request.body, true, deviceId, update)) {
    return std::move(*problem);
  }
  // Two concurrent creates of one id may both pass this check; the second then updates.
  auto existing = store_.getDevice(deviceId);
  if (!existing) return storeError("reading a device", existing.error());
  if (existing->has_value()) {
    return problemResponse(409, "field 'id': a device with id " + quoteInput(deviceId, 256) +
                                    " exists; change it with PATCH /api/v1/devices/{id}");
  }
  auto device = writeDevice(deviceId, update);
  if (auto* problem = std::get_if<ApiResponse>(&device)) return std::move(*problem);
  ApiResponse response = jsonResponse(201, deviceToJson(std::get<storage::DeviceSummary>(device)));
  response.headers.emplace_back("Location", "/api/v1/devices/" + percentEncode(deviceId));
  return response;
}

ApiResponse Router::deleteDevice(const Call& call) const {
  const std::string& deviceId = call.args[0];
  auto existing = store_.getDevice(deviceId);
  if (!existing) return storeError("reading a device", existing.error());
  bool hadCredentials = false;
  if (options_.deviceCredentials != nullptr) {
    // First, so the device cannot log in again while its history goes. Removing credentials
    // raises the credentials generation: the broker disconnects its connected clients at its
    // next check (mqtt.credential_check_interval).
    auto removed = options_.deviceCredentials->removeDevice(deviceId);
    if (!removed) return storeError("removing a device's credentials", removed.error());
    hadCredentials = *removed;
  }
  if (!existing->has_value() && !hadCredentials) {
    return problemResponse(404, notFoundDevice(deviceId));
  }
  if (existing->has_value()) {
    auto deleted = store_.deleteDevice(deviceId);
    if (!deleted) return storeError("deleting a device", deleted.error());
  }
  if (options_.devices.updated) {
    // The store no longer has it; a stale cache entry would only show it until the next change.
    if (auto status = options_.devices.updated(deviceId); !status.ok()) {
      spdlog::warn("http api: device {} deleted, but not from the device cache: {}",
                   quoteInput(deviceId, 200), status.message());
    }
  }
  spdlog::info("http api: device {} deleted", quoteInput(deviceId, 200));
  ApiResponse response;
  response.status = 204;
  return response;
}

namespace {

enum class DeviceSort { kId, kIdDesc, kLastSeen, kLastSeenDesc, kName, kNameDesc };
constexpr std::pair<std::string_view, DeviceSort> kDeviceSorts[] = {
    {"id", DeviceSort::kId},
    {"-id", DeviceSort::kIdDesc},
    {"last_seen", DeviceSort::kLastSeen},
    {"-last_seen", DeviceSort::kLastSeenDesc},
    {"name", DeviceSort::kName},
    {"-name", DeviceSort::kNameDesc}};

// A device's place in the list's order: the sort key (a time or a name) and then the id.
struct SortKey {
  std::int64_t time = 0;  // last_seen sorts; a device that never sent anything is the oldest
  std::string_view name;  // name sorts: byte order, no name (empty) first
  std::string_view id;
};

SortKey sortKey(DeviceSort sort, const storage::DeviceSummary& device) {
  SortKey key;
  key.id = device.deviceId;
  if (sort == DeviceSort::kLastSeen || sort == DeviceSort::kLastSeenDesc) {
    key.time = device.neverSeen() ? std::numeric_limits<std::int64_t>::min() : device.lastSeenUs;
  } else if (sort == DeviceSort::kName || sort == DeviceSort::kNameDesc) {
    key.name = device.name;
  }
  return key;
}

// Whether a comes before b in the list's order.
bool sortsBefore(DeviceSort sort, const SortKey& a, const SortKey& b) {
  const bool descending = sort == DeviceSort::kIdDesc || sort == DeviceSort::kLastSeenDesc ||
                          sort == DeviceSort::kNameDesc;
  if (a.time != b.time) return descending ? a.time > b.time : a.time < b.time;
  if (a.name != b.name) return descending ? a.name > b.name : a.name < b.name;
  return descending ? a.id > b.id : a.id < b.id;
}

// The cursor is the last device of a page: "<sort>\n<time>\n<id>", or for name sorts
// "<sort>\n<name length>\n<name><id>" (names and ids may hold any byte), base64url-encoded.
std::string encodeDeviceCursor(std::string_view sortName, DeviceSort sort, const SortKey& key) {
  const bool byName = sort == DeviceSort::kName || sort == DeviceSort::kNameDesc;
  std::string text(sortName);
  text += '\n';
  text += std::to_string(byName ? static_cast<std::int64_t>(key.name.size()) : key.time);
  text += '\n';
  if (byName) text += key.name;
  text += key.id;
  return base64UrlEncode(text);
}

struct DeviceCursor {
  std::int64_t time = 0;
  std::string name;
  std::string id;
};

std::optional<DeviceCursor> decodeDeviceCursor(std::string_view text, std::string_view sortName,
                                               DeviceSort sort) {
  const auto decoded = base64UrlDecode(text);
  if (!decoded) return std::nullopt;
  const auto first = decoded->find('\n');
  if (first == std::string::npos || decoded->substr(0, first) != sortName) return std::nullopt;
  const auto second = decoded->find('\n', first + 1);
  if (second == std::string::npos) return std::nullopt;
  std::int64_t number = 0;
  const char* begin = decoded->data() + first + 1;
  const char* end = decoded->data() + second;
  const auto [ptr, ec] = std::from_chars(begin, end, number);
  if (ec != std::errc{} || ptr != end) return std::nullopt;
  DeviceCursor cursor;
  std::string rest = decoded->substr(second + 1);
  if (sort == DeviceSort::kName || sort == DeviceSort::kNameDesc) {
    if (number < 0 || static_cast<std::uint64_t>(number) > rest.size()) return std::nullopt;
    cursor.name = rest.substr(0, static_cast<std::size_t>(number));
    cursor.id = rest.substr(static_cast<std::size_t>(number));
  } else {
    cursor.time = number;
    cursor.id = std::move(rest);
  }
  return cursor;
}

}  // namespace

ApiResponse Router::devices(const Call& call) const {
  const QueryParams& params = call.params;
  DeviceSort sort = DeviceSort::kId;
  std::string_view sortName = "id";
  if (const auto text = params.get("sort")) {
    bool known = false;
    for (const auto& [name, value] : kDeviceSorts) {
      if (*text == name) {
        sort = value;
        sortName = name;
        known = true;
      }
    }
    if (!known) {
      return problemResponse(
          badParam("sort", "id, -id, last_seen, -last_seen, name or -name", *text));
    }
  }
  std::uint32_t limit = kDefaultDeviceLimit;
  if (auto problem = limitParam(params, limit)) return problemResponse(*problem);
  // The cursor is the last device of the previous page: its sort key and id.
  std::optional<DeviceCursor> after;
  if (const auto text = params.get("cursor")) {
    after = decodeDeviceCursor(*text, sortName, sort);
    if (!after) {
      return problemResponse(badParam(
          "cursor", "a next_cursor value from a previous response with the same sort", *text));
    }
  }
  auto listed = listedDevices(params);
  if (auto* problem = std::get_if<ApiResponse>(&listed)) return std::move(*problem);
  std::vector<storage::DeviceSummary>& all = std::get<std::vector<storage::DeviceSummary>>(listed);
  if (const auto search = params.get("search")) {
    std::erase_if(all, [&](const storage::DeviceSummary& device) {
      return !containsAsciiCaseless(device.deviceId, *search) &&
             !containsAsciiCaseless(device.name, *search);
    });
  }
  if (after) {
    const SortKey last{after->time, after->name, after->id};
    std::erase_if(all, [&](const storage::DeviceSummary& device) {
      return !sortsBefore(sort, last, sortKey(sort, device));
    });
  }
  std::sort(all.begin(), all.end(), [&](const auto& a, const auto& b) {
    return sortsBefore(sort, sortKey(sort, a), sortKey(sort, b));
  });
  const bool more = all.size() > limit;
  if (more) all.resize(limit);
  boost::json::array list;
  list.reserve(all.size());
  for (const auto& device : all) list.push_back(deviceToJson(device));
  boost::json::object body;
  body["devices"] = std::move(list);
  if (more) {
    body["next_cursor"] = encodeDeviceCursor(sortName, sort, sortKey(sort, all.back()));
  } else {
    body["next_cursor"] = nullptr;
  }
  return jsonResponse(200, body);
}

// --- groups: the devices that carry one tag (key:value) ---------------------------------------

namespace {

constexpr std::size_t kMaxGroupDevices = 10'000;

// A group's name, "key:value", as the tag rules of device bodies allow it.
std::optional<std::string> parseGroupTag(std::string_view text, storage::DeviceGroup& group) {
  const auto colon = text.find(':');
  if (colon == std::string_view::npos || colon == 0 || colon > kMaxTagKeyBytes ||
      text.size() - colon - 1 > kMaxTagValueBytes) {
    return "a tag key:value, e.g. fleet:east (key 1 to " + std::to_string(kMaxTagKeyBytes) +
           " bytes, value at most " + std::to_string(kMaxTagValueBytes) + ")";
  }
  group.tagKey = std::string(text.substr(0, colon));
  group.tagValue = std::string(text.substr(colon + 1));
  return std::nullopt;
}

boost::json::object groupObject(const storage::DeviceGroup& group, std::size_t size) {
  boost::json::object out;
  out["tag"] = toValidUtf8(group.tagKey + ":" + group.tagValue);
  out["key"] = toValidUtf8(group.tagKey);
  out["value"] = toValidUtf8(group.tagValue);
  out["size"] = static_cast<std::int64_t>(size);
  return out;
}

// The body of POST /groups (`tag` and `devices`) and PUT /groups/{tag} (`devices`): the
// members, sorted, without repeats.
std::optional<ApiResponse> parseGroupBody(std::string_view body, bool create,
                                          storage::DeviceGroup& group,
                                          std::vector<std::string>& devices) {
  boost::system::error_code ec;
  boost::json::value parsed = boost::json::parse(body, ec);
  const char* example = create ? R"({"tag":"fleet:east","devices":["truck-1","truck-2"]})"
                               : R"({"devices":["truck-1","truck-2"]})";
  if (ec || !parsed.is_object()) {
    return problemResponse(400,
                           std::string("request body: expected a JSON object like ") + example);
  }
  bool haveDevices = false;
  bool haveTag = false;
  for (const auto& member : parsed.as_object()) {
    const std::string_view name = member.key();
    const boost::json::value& value = member.value();
    if (create && name == "tag") {
      if (!value.is_string()) {
        return problemResponse(
            400, "field 'tag': expected a string, got " + std::string(jsonKindName(value)));
      }
      if (auto expected = parseGroupTag(value.as_string(), group)) {
        return problemResponse(
            400, "field 'tag': expected " + *expected + ", got " + quoteInput(value.as_string()));
      }
      haveTag = true;
    } else if (name == "devices") {
      if (!value.is_array()) {
        return problemResponse(400, "field 'devices': expected an array of device ids, got " +
                                        std::string(jsonKindName(value)));
      }
      const auto& array = value.as_array();
      if (array.size() > kMaxGroupDevices) {
        return problemResponse(400, "field 'devices': at most " + std::to_string(kMaxGroupDevices) +
                                        " devices, got " + std::to_string(array.size()));
      }
      for (const auto& id : array) {
        if (!id.is_string() || id.as_string().empty() ||
            id.as_string().size() > kMaxDeviceIdBytes) {
          return problemResponse(400,
                                 "field 'devices': each must be a device id (a string of 1 "
                                 "to " +
                                     std::to_string(kMaxDeviceIdBytes) + " bytes)");
        }
        devices.emplace_back(id.as_string());
      }
      haveDevices = true;
    } else {
      return problemResponse(400, "field " + quoteInput(name) + ": unknown; expected " +
                                      (create ? "'tag' and 'devices'" : "'devices'"));
    }
  }
  if (create && !haveTag) return problemResponse(400, "field 'tag': required");
  if (!haveDevices) return problemResponse(400, "field 'devices': required");
  if (create && devices.empty()) {
    return problemResponse(400, "field 'devices': a group needs at least one device");
  }
  std::sort(devices.begin(), devices.end());
  devices.erase(std::unique(devices.begin(), devices.end()), devices.end());
  return std::nullopt;
}

}  // namespace

ApiResponse Router::listGroups(const Call& call) const {
  // Tags are unique, so (size, tag) identifies a group in either order.
  static constexpr ListSort kByTag{"tag", false, false};
  ListParams list;
  if (auto problem = parseListParams(
          call.params,
          {kByTag, {"-tag", false, true}, {"size", true, false}, {"-size", true, true}},
          kDefaultDeviceLimit, kMaxLimit, list)) {
    return problemResponse(*problem);
  }
  const auto key = call.params.get("key");
  const auto search = call.params.get("search");
  auto devices = readDevices();
  if (!devices) return storeError("listing groups", devices.error());
  std::map<std::string, std::int64_t> sizes;
  for (const auto& device : *devices) {
    for (const auto& [tagKey, tagValue] : device.tags) {
      if (key && tagKey != *key) continue;
      std::string tag = tagKey + ":" + tagValue;
      if (search && !containsAsciiCaseless(tag, *search)) continue;
      ++sizes[std::move(tag)];
    }
  }
  std::vector<ListKey> groups;
  groups.reserve(sizes.size());
  for (auto& [tag, size] : sizes) groups.push_back(ListKey{size, tag});
  const auto next = pageOf(
      groups, list, [](const ListKey& entry) { return ListKeyView(entry); },
      [](const ListKey&) { return true; });
  boost::json::array out;
  out.reserve(groups.size());
  for (const auto& entry : groups) {
    storage::DeviceGroup group;
    (void)parseGroupTag(entry.text, group);  // made from a key without ':' above
    out.push_back(groupObject(group, static_cast<std::size_t>(entry.number)));
  }
  boost::json::object body;
  body["groups"] = std::move(out);
  body["next_cursor"] = next ? boost::json::value(*next) : boost::json::value(nullptr);
  return jsonResponse(200, body);
}

namespace {

// A group and its members' ids (sorted), as GET /groups/{tag} and the writes answer.
boost::json::object groupWithDevices(const storage::DeviceGroup& group,
                                     const std::vector<std::string>& members) {
  boost::json::object out = groupObject(group, members.size());
  boost::json::array ids;
  ids.reserve(members.size());
  for (const auto& id : members) ids.emplace_back(toValidUtf8(id));
  out["devices"] = std::move(ids);
  return out;
}

// The group named by a route's {tag}, or a 400 problem.
std::optional<ApiResponse> groupArg(const std::string& text, storage::DeviceGroup& group) {
  if (auto expected = parseGroupTag(text, group)) {
    return problemResponse(400, "group: expected " + *expected + ", got " + quoteInput(text));
  }
  return std::nullopt;
}

std::string notFoundGroup(const storage::DeviceGroup& group) {
  return "no device carries the tag " + quoteInput(group.tagKey + ":" + group.tagValue, 256);
}

}  // namespace

core::Result<std::vector<std::string>> Router::groupMembers(
    const storage::DeviceGroup& group) const {
  auto devices = store_.listDevicesWithTag(group.tagKey, group.tagValue);
  if (!devices) return devices.error();
  std::vector<std::string> ids;
  ids.reserve(devices->size());
  for (const auto& device : *devices) ids.push_back(device.deviceId);
  std::sort(ids.begin(), ids.end());
  return ids;
}

std::optional<ApiResponse> Router::setGroupMembers(const storage::DeviceGroup& group,
                                                   const std::vector<std::string>& members,
                                                   const std::vector<std::string>& wanted,
                                                   bool removeOthers) const {
  // Every wanted device first, so a bad list changes nothing.
  std::vector<storage::DeviceSummary> joining;
  for (const auto& id : wanted) {
    if (std::binary_search(members.begin(), members.end(), id)) continue;
    auto device = store_.getDevice(id);
    if (!device) return storeError("reading a device", device.error());
    if (!device->has_value()) {
      return problemResponse(400, "field 'devices': " + notFoundDevice(id) +
                                      "; register it with POST /api/v1/devices first");
    }
    if (!(*device)->tags.contains(group.tagKey) && (*device)->tags.size() >= kMaxTags) {
      return problemResponse(400, "field 'devices': device " + quoteInput(id, 256) + " has " +
                                      std::to_string(kMaxTags) +
                                      " tags already, the most a device may have");
    }
    joining.push_back(std::move(**device));
  }
  // Each device changes in its own transaction: a device's other tags stay as they are, and a
  // tag with the same key but another value (the device's previous group of that key) goes.
  for (auto& device : joining) {
    device.tags[group.tagKey] = group.tagValue;
    storage::DeviceUpdate update;
    update.tags = std::move(device.tags);
    auto written = writeDevice(device.deviceId, update);
    if (auto* problem = std::get_if<ApiResponse>(&written)) return std::move(*problem);
  }
  if (!removeOthers) return std::nullopt;
  for (const auto& id : members) {
    if (std::binary_search(wanted.begin(), wanted.end(), id)) continue;
    auto device = store_.getDevice(id);
    if (!device) return storeError("reading a device", device.error());
    if (!device->has_value()) continue;  // deleted meanwhile
    storage::DeviceUpdate update;
    update.tags = std::move((*device)->tags);
    update.tags->erase(group.tagKey);
    auto written = writeDevice(id, update);
    if (auto* problem = std::get_if<ApiResponse>(&written)) return std::move(*problem);
  }
  return std::nullopt;
}

ApiResponse Router::getGroup(const Call& call) const {
  storage::DeviceGroup group;
  if (auto problem = groupArg(call.args[0], group)) return std::move(*problem);
  auto members = groupMembers(group);
  if (!members) return storeError("reading a group", members.error());
  if (members->empty()) return problemResponse(404, notFoundGroup(group));
  return jsonResponse(200, groupWithDevices(group, *members));
}

ApiResponse Router::createGroup(const Call& call) const {
  storage::DeviceGroup group;
  std::vector<std::string> wanted;
  if (auto problem = parseGroupBody(call.request.body, true, group, wanted)) {
    return std::move(*problem);
  }
  auto members = groupMembers(group);
  if (!members) return storeError("reading a group", members.error());
  const std::string tag = group.tagKey + ":" + group.tagValue;
  if (!members->empty()) {
    return problemResponse(409, "field 'tag': the group " + quoteInput(tag, 256) +
                                    " exists; change its devices with PUT /api/v1/groups/{tag}");
  }
  if (auto problem = setGroupMembers(group, *members, wanted, false)) return std::move(*problem);
  spdlog::info("http api: group {} created with {} devices", quoteInput(tag, 200), wanted.size());
  ApiResponse response = jsonResponse(201, groupWithDevices(group, wanted));
  response.headers.emplace_back("Location", "/api/v1/groups/" + percentEncode(tag));
  return response;
}

ApiResponse Router::putGroup(const Call& call) const {
  storage::DeviceGroup group;
  if (auto problem = groupArg(call.args[0], group)) return std::move(*problem);
  std::vector<std::string> wanted;
  if (auto problem = parseGroupBody(call.request.body, false, group, wanted)) {
    return std::move(*problem);
  }
  auto members = groupMembers(group);
  if (!members) return storeError("reading a group", members.error());
  if (auto problem = setGroupMembers(group, *members, wanted, true)) return std::move(*problem);
  const bool created = members->empty() && !wanted.empty();
  ApiResponse response = jsonResponse(created ? 201 : 200, groupWithDevices(group, wanted));
  if (created) {
    response.headers.emplace_back(
        "Location", "/api/v1/groups/" + percentEncode(group.tagKey + ":" + group.tagValue));
  }
  return response;
}

ApiResponse Router::deleteGroup(const Call& call) const {
  storage::DeviceGroup group;
  if (auto problem = groupArg(call.args[0], group)) return std::move(*problem);
  auto members = groupMembers(group);
  if (!members) return storeError("reading a group", members.error());
  if (members->empty()) return problemResponse(404, notFoundGroup(group));
  if (auto problem = setGroupMembers(group, *members, {}, true)) return std::move(*problem);
  spdlog::info("http api: group {} deleted ({} devices untagged)",
               quoteInput(group.tagKey + ":" + group.tagValue, 200), members->size());
  ApiResponse response;
  response.status = 204;
  return response;
}

ApiResponse Router::fleetLatest(const Call& call) const {
  const QueryParams& params = call.params;
  storage::FleetLatestQuery query;
  if (auto problem = tagParam(params, query.group)) return problemResponse(*problem);
  ListParams page;
  if (auto problem = deviceListParams(params, page)) return problemResponse(*problem);
  if (const auto text = params.get("keys")) {
    std::string_view rest = *text;
    while (true) {
      const auto comma = rest.find(',');
      const std::string_view key = rest.substr(0, comma);
      if (key.empty())
        return problemResponse(badParam("keys", "field keys separated by commas", *text));
      query.keys.emplace_back(key);
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
    if (query.keys.size() > kMaxFleetKeys) {
      return problemResponse(400, "parameter 'keys': at most " + std::to_string(kMaxFleetKeys) +
                                      " keys, got " + std::to_string(query.keys.size()));
    }
  }
  auto devices = store_.fleetLatest(query);
  if (!devices) return storeError("querying the fleet", devices.error());
  const auto next = pageDevices(*devices, page);
  boost::json::array list;
  list.reserve(devices->size());
  for (const auto& device : *devices) {
    boost::json::object out;
    out["id"] = toValidUtf8(device.deviceId);
    out["last_seen"] = core::formatRfc3339Millis(device.lastSeenUs);
    boost::json::object values;
    // In the order asked for, so every backend answers alike.
    for (const auto& key : query.keys) {
      for (const auto& field : device.values) {
        if (field.key == key) values[toValidUtf8(key)] = fieldValueToJson(field.value);
      }
    }
    if (query.keys.empty()) values = fieldsToJson(device.values);
    out["values"] = std::move(values);
    list.push_back(std::move(out));
  }
  boost::json::object body = fleetBody(query.group);
  body["devices"] = std::move(list);
  body["next_cursor"] = next;
  return jsonResponse(200, body);
}

ApiResponse Router::fleetThreshold(const Call& call) const {
  const QueryParams& params = call.params;
  storage::FleetThresholdQuery query;
  if (auto problem = tagParam(params, query.group)) return problemResponse(*problem);
  ListParams page;
  if (auto problem = deviceListParams(params, page)) return problemResponse(*problem);
  if (auto problem = keyParam(params, "key", query.key, std::nullopt)) {
    return problemResponse(*problem);
  }
  if (auto problem = thresholdParam(params, query.threshold, query.below, std::nullopt)) {
    return problemResponse(*problem);
  }
  auto devices = store_.fleetThreshold(query);
  if (!devices) return storeError("querying the fleet", devices.error());
  const auto next = pageDevices(*devices, page);
  boost::json::array list;
  list.reserve(devices->size());
  for (const auto& device : *devices) {
    boost::json::object out;
    out["id"] = toValidUtf8(device.deviceId);
    out["last_seen"] = core::formatRfc3339Millis(device.lastSeenUs);
    out["value"] = numberToJson(device.value);
    list.push_back(std::move(out));
  }
  boost::json::object body = fleetBody(query.group);
  body["key"] = toValidUtf8(query.key);
  body[query.below ? "below" : "above"] = query.threshold;
  body["devices"] = std::move(list);
  body["next_cursor"] = next;
  return jsonResponse(200, body);
}

ApiResponse Router::fleetStationary(const Call& call) const {
  const QueryParams& params = call.params;
  storage::FleetWindowQuery query;
  if (auto problem = tagParam(params, query.group)) return problemResponse(*problem);
  ListParams page;
  if (auto problem = deviceListParams(params, page)) return problemResponse(*problem);
  // Tracker positions carry `speed` (km/h): by default, devices averaging under 1 km/h.
  if (auto problem = keyParam(params, "key", query.key, "speed")) return problemResponse(*problem);
  if (auto problem = thresholdParam(params, query.threshold, query.below, 1.0)) {
    return problemResponse(*problem);
  }
  const auto window = params.get("window");
  if (window && (params.get("from") || params.get("to"))) {
    return problemResponse(400,
                           "parameter 'window': give either 'window' or 'from'/'to', not both");
  }
  if (params.get("from") || params.get("to")) {
    query.toUs = core::nowMicros();
    query.fromUs = query.toUs - kDefaultStationaryWindowUs;
    if (auto problem = timeRange(params, query.fromUs, query.toUs)) {
      return problemResponse(*problem);
    }
  } else {
    std::int64_t windowUs = kDefaultStationaryWindowUs;
    if (window) {
      const auto parsed = core::parseDuration(*window);
      if (!parsed || *parsed < kSecondUs || *parsed > kMaxDailyRangeUs) {
        return problemResponse(
            badParam("window", "a duration between 1s and 366d such as 10m or 1h", *window));
      }
      windowUs = *parsed;
    }
    query.toUs = core::nowMicros();
    query.fromUs = query.toUs - windowUs;
  }
  auto devices = store_.fleetWindowAverage(query);
  if (!devices) return storeError("querying the fleet", devices.error());
  const auto next = pageDevices(*devices, page);
  boost::json::array list;
  list.reserve(devices->size());
  for (const auto& device : *devices) {
    boost::json::object out;
    out["id"] = toValidUtf8(device.deviceId);
    out["last_seen"] = core::formatRfc3339Millis(device.lastSeenUs);
    out["average"] = numberToJson(device.value);
    out["count"] = device.count;
    list.push_back(std::move(out));
  }
  boost::json::object body = fleetBody(query.group);
  body["key"] = toValidUtf8(query.key);
  body[query.below ? "below" : "above"] = query.threshold;
  body["from"] = core::formatRfc3339Millis(query.fromUs);
  body["to"] = core::formatRfc3339Millis(query.toUs);
  body["devices"] = std::move(list);
  body["next_cursor"] = next;
  return jsonResponse(200, body);
}

ApiResponse Router::fleetDaily(const Call& call) const {
  const QueryParams& params = call.params;
  storage::FleetDailyQuery query;
  if (auto problem = tagParam(params, query.group)) return problemResponse(*problem);
  if (auto problem = keyParam(params, "key", query.key, std::nullopt)) {
    return problemResponse(*problem);
  }
  std::string aggName = "avg";
  if (auto problem = aggParam(params, query.aggregate, aggName)) return problemResponse(*problem);
  if (query.aggregate == storage::Aggregate::kFirst ||
      query.aggregate == storage::Aggregate::kLast) {
    return problemResponse(badParam("agg", "one of avg, min, max, sum, count", aggName));
  }
  // Whole UTC days: the default range is the last 7 days, today included.
  const std::int64_t now = core::nowMicros();
  query.toUs = now - now % kDayUs + kDayUs;
  query.fromUs = query.toUs - kDefaultDailyRangeUs;
  if (auto problem = timeRange(params, query.fromUs, query.toUs)) return problemResponse(*problem);
  if (static_cast<std::uint64_t>(query.toUs) - static_cast<std::uint64_t>(query.fromUs) >
      static_cast<std::uint64_t>(kMaxDailyRangeUs)) {
    return problemResponse(400, "parameter 'from': the range may span at most 366 days");
  }
  if (const auto by = params.get("by")) {
    if (by->empty() || by->find(':') != std::string_view::npos) {
      return problemResponse(badParam("by", "a tag name such as fleet", *by));
    }
    query.byTag = std::string(*by);
  }
  auto rows = store_.fleetDaily(query);
  if (!rows) return storeError("querying the fleet", rows.error());
  boost::json::array list;
  list.reserve(rows->size());
  for (const auto& row : *rows) {
    boost::json::object out;
    out["day"] = core::formatRfc3339Millis(row.dayUs).substr(0, 10);
    if (!query.byTag.empty()) {
      out["group"] =
          row.group ? boost::json::value(toValidUtf8(*row.group)) : boost::json::value(nullptr);
    }
    out["value"] = numberToJson(row.value);
    out["count"] = row.count;
    list.push_back(std::move(out));
  }
  boost::json::object body = fleetBody(query.group);
  body["key"] = toValidUtf8(query.key);
  body["agg"] = aggName;
  body["by"] = query.byTag.empty() ? boost::json::value(nullptr)
                                   : boost::json::value(toValidUtf8(query.byTag));
  body["from"] = core::formatRfc3339Millis(query.fromUs);
  body["to"] = core::formatRfc3339Millis(query.toUs);
  body["days"] = std::move(list);
  return jsonResponse(200, body);
}

}  // namespace tern::api
