#pragma once
// The composition root: turns a Config into running parts and wires them together. The only
// place that names concrete storage backends.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/config.h"

namespace tern::storage {
class Store;
class AuthStore;
}  // namespace tern::storage
namespace tern::auth {
class AuthService;
struct AuthOptions;
class DeviceCredentials;
class MqttAuthenticator;
}  // namespace tern::auth
namespace tern::ingest {
class Pipeline;
class Normalizer;
class LatestCache;
}  // namespace tern::ingest
namespace tern::broker {
class Broker;
class StateStore;
}  // namespace tern::broker
namespace tern::net {
class EventLoopPool;
}
namespace tern::api {
class HttpServer;
class LiveFeed;
}  // namespace tern::api
namespace tern::scheduler {
class JobRunner;
}
namespace tern::trackers {
class TrackerServer;
class OsmandServer;
}  // namespace tern::trackers
namespace tern::bridge {
class SourceClient;
struct SourceStats;
}  // namespace tern::bridge

namespace tern::app {

class Server {
 public:
  // Opens the store (creating the data dir). Throws on start-up failure.
  explicit Server(core::Config config);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds every listener and starts the loops. Throws when an address cannot be bound.
  void start();
  // Graceful stop: stop accepting, commit and acknowledge what is queued, close connections,
  // close the store. Idempotent.
  void stop();

  std::uint16_t mqttPort() const;
  std::uint16_t httpPort() const;
  const core::Config& config() const { return config_; }
  storage::Store& store() { return *store_; }
  auth::AuthService& auth() { return *auth_; }
  auth::MqttAuthenticator& mqttAuth() { return *mqttAuth_; }
  broker::Broker& broker() { return *broker_; }
  ingest::Pipeline& pipeline() { return *pipeline_; }
  ingest::LatestCache& latest() { return *latest_; }
  // Null when no TCP tracker protocol is enabled.
  trackers::TrackerServer* trackers() { return trackers_.get(); }
  // protocol → bound port, "osmand" included.
  std::map<std::string, std::uint16_t> trackerPorts() const;
  // One entry per [[sources]] broker, in config order.
  std::vector<bridge::SourceStats> sourceStats() const;
  // Periodic jobs (retention, rollups); tests drive it with runDue().
  scheduler::JobRunner& jobs() { return *jobs_; }

 private:
  void addRetentionJob();
  void addRollupJob();
  void addLatestSyncJob();

  core::Config config_;
  std::unique_ptr<storage::Store> store_;
  std::unique_ptr<storage::AuthStore> authStore_;
  std::unique_ptr<auth::AuthService> auth_;
  std::unique_ptr<auth::DeviceCredentials> deviceCredentials_;  // for the API
  std::unique_ptr<ingest::Normalizer> normalizer_;
  std::unique_ptr<api::LiveFeed> live_;          // outlives the pipeline and the API
  std::unique_ptr<ingest::LatestCache> latest_;  // before pipeline_ (destroyed after it)
  std::unique_ptr<ingest::Pipeline> pipeline_;
  std::unique_ptr<auth::MqttAuthenticator> mqttAuth_;  // outlives the broker's connections
  std::unique_ptr<net::EventLoopPool> pool_;
  std::unique_ptr<broker::StateStore> brokerState_;  // outlives broker_
  std::unique_ptr<broker::Broker> broker_;
  std::unique_ptr<trackers::TrackerServer> trackers_;
  std::unique_ptr<trackers::OsmandServer> osmand_;
  std::vector<std::shared_ptr<bridge::SourceClient>> sources_;
  std::unique_ptr<api::HttpServer> http_;
  std::unique_ptr<scheduler::JobRunner> jobs_;
  bool started_ = false;
  bool stopped_ = false;
};

// The users/keys store of the configured backend (the same database as the messages). Throws on
// start-up failure. Used by the server and by `tern user ...`.
std::unique_ptr<storage::AuthStore> openAuthStore(const core::Config& config);
// The auth settings from the config (token lifetimes, login rate limit).
auth::AuthOptions authOptions(const core::Config& config);

// The MQTT listeners (the HTTP port's /mqtt included) that are not on loopback, as
// "key=host:port"; anonymous MQTT clients are allowed by default only when there are none.
std::vector<std::string> exposedMqttListeners(const core::Config& config);

// `tern serve`: starts a Server and runs it until SIGINT or SIGTERM. Returns the exit status.
int runServe(const core::Config& config);

}  // namespace tern::app
