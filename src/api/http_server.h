#pragma once
// HTTP API v1: health, devices, messages, series, positions, commands, login and API keys. Runs on
// its own thread(s) because store reads block. Every request but health/login/refresh needs a
// token or API key.
#include <boost/json/object.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/config.h"
#include "net/stream_listener.h"
#include "storage/store.h"

namespace tern::auth {
class AuthService;
class DeviceCredentials;
}  // namespace tern::auth

namespace tern::api {

class LiveFeed;

// Downlink commands live with the tracker gateway; the API reaches them through these hooks so
// it does not depend on that module. Unset hooks → the command endpoints answer 503.
struct CommandHooks {
  // Queues a command; returns it as JSON ({"id", "device", "type", "status", ...}).
  std::function<boost::json::object(const std::string& deviceId, const std::string& type,
                                    const std::string& text)>
      submit;
  std::function<boost::json::array(const std::string& deviceId)> list;
};

// Device summaries (GET /devices, /devices/{id}, /positions/latest and the 404 checks) come
// through these hooks when set — the app points them at the ingest module's latest-state cache,
// so they never read history — and from the store otherwise. Same contract as the Store methods.
struct DeviceHooks {
  std::function<core::Result<std::vector<storage::DeviceSummary>>()> list;
  std::function<core::Result<std::optional<storage::DeviceSummary>>(const std::string& deviceId)>
      get;
  // Called after a device write (POST, PUT, PATCH) or DELETE /api/v1/devices/{id} has changed
  // or removed a device in the store, so a cache behind `list`/`get` can take it over.
  std::function<core::Status(const std::string& deviceId)> updated;
};

// What the web app (/) learns from GET /api/v1/web/config (config keys web.*).
struct WebOptions {
  std::string tileUrl;  // empty: the map draws a plain graticule instead of tiles
  std::string tileAttribution;
  std::int64_t onlineWindowUs = 5LL * 60 * 1'000'000;
};

struct ApiOptions {
  core::HostPort listen{"127.0.0.1", 8080};
  std::string nodeId;
  unsigned threads = 1;
  // Extra health information from other components (e.g. "broker": {...}); merged into
  // GET /api/v1/health. Called on an API thread.
  std::function<boost::json::object()> healthInfo;
  // Open connections beyond this get a 503 and are closed, so clients cannot exhaust file
  // descriptors shared with the MQTT listener.
  std::size_t maxConnections = 1024;
  // How long a client may take to send a request's header (and body), and to stay idle between
  // keep-alive requests.
  std::chrono::milliseconds requestTimeout{30'000};
  CommandHooks commands;
  DeviceHooks devices;
  WebOptions web;
  // Checks every request except the public ones (health, login, refresh). Without it every
  // other request is refused with 401: the API never runs open by accident.
  auth::AuthService* auth = nullptr;
  // MQTT device credentials (passwords, tokens), on the same auth store. Unset → the credential
  // endpoints answer 503, and deleting a device leaves its credentials alone.
  auth::DeviceCredentials* deviceCredentials = nullptr;
  // WebSocket upgrade requests for `upgradePath` are not answered here: the connection (socket
  // and request) is handed to `upgrade`, on an API thread, and the API forgets it. This is how
  // MQTT over WebSocket shares the HTTP port without the API knowing the broker. Unset → such
  // requests are answered like any other request (404).
  std::string upgradePath;
  std::function<void(net::HttpUpgrade)> upgrade;
  // The live feed behind WebSocket /api/v1/live; it must outlive the server. Unset → 503.
  LiveFeed* live = nullptr;
};

class HttpServer {
 public:
  HttpServer(storage::Store& store, ApiOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts serving. Throws std::runtime_error if the address cannot be bound.
  void start();
  void stop();
  // The bound port (useful with port 0 in tests).
  std::uint16_t port() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tern::api
