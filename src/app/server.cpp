#include "app/server.h"

#include <pthread.h>
#include <spdlog/spdlog.h>

#include <boost/asio/ip/address.hpp>
#include <boost/json.hpp>
#include <csignal>
#include <cstdio>
#include <filesystem>

#include "api/http_server.h"
#include "api/live_feed.h"
#include "auth/auth_service.h"
#include "auth/device_credentials.h"
#include "auth/mqtt_authenticator.h"
#include "bridge/source_client.h"
#include "broker/broker.h"
#include "broker/state_store.h"
#include "core/time.h"
#include "ingest/latest_cache.h"
#include "ingest/normalizer.h"
#include "ingest/pipeline.h"
#include "net/event_loop_pool.h"
#include "scheduler/job_runner.h"
#include "storage/postgres/postgres_auth_store.h"
#include "storage/postgres/postgres_store.h"
#include "storage/sqlite/sqlite_auth_store.h"
#include "storage/sqlite/sqlite_store.h"
#include "trackers/osmand_server.h"
#include "trackers/tracker_server.h"

namespace tern::app {

namespace {

std::unique_ptr<storage::Store> openStore(const core::Config& config) {
  if (config.storage.backend == "postgres") {
    storage::postgres::PostgresOptions options;
    options.url = config.storage.url;
    options.partitionUs = config.storage.partitionUs;
    return storage::postgres::openPostgresStore(options);
  }
  if (config.storage.backend != "sqlite") {
    throw core::ConfigError("config: storage.backend: unsupported backend '" +
                            config.storage.backend + "'");
  }
  std::filesystem::create_directories(config.server.dataDir);
  storage::sqlite::SqliteOptions options;
  options.path = (std::filesystem::path(config.server.dataDir) / "tern.db").string();
  options.syncFull = config.storage.sync == "full";
  return storage::sqlite::openSqliteStore(options);
}

// Shows the generated admin password exactly once: as a log line (on stderr) when warnings are
// logged, else as a plain stderr line, so a quiet log level cannot swallow it.
void announceAdminPassword(const std::string& password) {
  const std::string text =
      "first start: created user 'admin' (role admin) with password " + password +
      " (shown only this once; log in with POST /api/v1/auth/login, add users with "
      "'tern user add')";
  if (spdlog::default_logger()->should_log(spdlog::level::warn)) {
    spdlog::warn("{}", text);
  } else {
    std::fprintf(stderr, "tern: %s\n", text.c_str());
  }
}

boost::json::object commandToJson(const trackers::CommandRecord& record) {
  boost::json::object out;
  out["id"] = record.id;
  out["device"] = record.deviceId;
  out["type"] = record.typeName;
  if (!record.command.text.empty()) out["text"] = record.command.text;
  out["status"] = trackers::commandStatusName(record.status);
  out["created"] = core::formatRfc3339Millis(record.createdUs);
  if (record.sentUs != 0) out["sent"] = core::formatRfc3339Millis(record.sentUs);
  if (!record.protocol.empty()) out["protocol"] = record.protocol;
  if (record.status == trackers::CommandStatus::kAnswered) {
    out["answered"] = core::formatRfc3339Millis(record.answeredUs);
    out["answer"] = record.answer;
  }
  return out;
}

codec::trackers::CommandType commandType(const std::string& name) {
  using codec::trackers::CommandType;
  if (name == "engineStop") return CommandType::kEngineStop;
  if (name == "engineResume") return CommandType::kEngineResume;
  if (name == "positionSingle") return CommandType::kPositionSingle;
  if (name == "customHex") return CommandType::kCustomHex;
  return CommandType::kCustom;
}

bool loopbackHost(const std::string& host) {
  if (host == "localhost") return true;
  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(host, ec);
  return !ec && address.is_loopback();
}

}  // namespace

std::vector<std::string> exposedMqttListeners(const core::Config& config) {
  std::vector<std::string> exposed;
  const auto note = [&](const char* key, const core::HostPort& listen) {
    if (!loopbackHost(listen.host)) exposed.push_back(std::string(key) + "=" + listen.toString());
  };
  const core::MqttConfig& mqtt = config.mqtt;
  note("mqtt.listen", mqtt.listen);
  if (!mqtt.tlsCert.empty()) note("mqtt.tls_listen", mqtt.tlsListen);
  if (mqtt.wsListen) note("mqtt.ws_listen", *mqtt.wsListen);
  if (mqtt.wssListen) note("mqtt.wss_listen", *mqtt.wssListen);
  if (mqtt.websocket) note("http.listen", config.http.listen);
  return exposed;
}

std::unique_ptr<storage::AuthStore> openAuthStore(const core::Config& config) {
  if (config.storage.backend == "postgres") {
    return storage::postgres::openPostgresAuthStore(config.storage.url);
  }
  std::filesystem::create_directories(config.server.dataDir);
  return storage::sqlite::openSqliteAuthStore(
      (std::filesystem::path(config.server.dataDir) / "tern.db").string());
}

auth::AuthOptions authOptions(const core::Config& config) {
  auth::AuthOptions options;
  options.tokenTtlUs = config.api.tokenTtlUs;
  options.refreshTtlUs = config.api.refreshTtlUs;
  options.loginMaxFailures = config.api.loginMaxFailures;
  return options;
}

Server::Server(core::Config config) : config_(std::move(config)) {
  config_.finalize();
  store_ = openStore(config_);
  authStore_ = openAuthStore(config_);
  auth_ = std::make_unique<auth::AuthService>(*authStore_, authOptions(config_));
  deviceCredentials_ = std::make_unique<auth::DeviceCredentials>(*authStore_);
  if (auto password = auth_->bootstrapAdmin(); !password) {
    throw std::runtime_error("auth: cannot create the first user: " + password.error().message);
  } else if (password->has_value()) {
    announceAdminPassword(**password);
  }
  normalizer_ = std::make_unique<ingest::Normalizer>(config_.ingest.routes, config_.server.nodeId);
  ingest::PipelineOptions pipelineOptions;
  pipelineOptions.batchSize = config_.ingest.batchSize;
  pipelineOptions.batchMs = config_.ingest.batchMs;
  pipelineOptions.queueCapacity = config_.ingest.queueCapacity;
  if (config_.ingest.spool) {
    pipelineOptions.spoolDir = (std::filesystem::path(config_.server.dataDir) / "spool").string();
    pipelineOptions.syncFull = config_.storage.sync == "full";
    pipelineOptions.spoolMaxBytes = config_.ingest.spoolMaxBytes;
  }
  latest_ = std::make_unique<ingest::LatestCache>(
      *store_, static_cast<std::size_t>(config_.ingest.latestCacheDevices));
  // Before the writer starts (it replays a leftover spool first), so no batch is missed.
  if (auto status = latest_->load(); !status.ok()) throw std::runtime_error(status.message());
  if (!latest_->stats().complete) {
    spdlog::warn(
        "latest cache: the store has more than {} devices (ingest.latest_cache_devices); "
        "the rest are read from the store",
        config_.ingest.latestCacheDevices);
  }
  live_ = std::make_unique<api::LiveFeed>();
  pipelineOptions.onCommitted = [live = live_.get()](std::span<const storage::Record> records) {
    live->publish(records);
  };
  pipeline_ =
      std::make_unique<ingest::Pipeline>(*store_, std::move(pipelineOptions), latest_.get());
  pool_ = std::make_unique<net::EventLoopPool>(config_.server.threads);
  if (config_.mqtt.persistence) {
    // Local to this node even with storage.backend = "postgres": these are its own sessions.
    std::filesystem::create_directories(config_.server.dataDir);
    broker::StateStoreOptions stateOptions;
    stateOptions.path = (std::filesystem::path(config_.server.dataDir) / "broker.db").string();
    stateOptions.syncFull = config_.storage.sync == "full";
    brokerState_ = std::make_unique<broker::StateStore>(std::move(stateOptions));
  }
  broker_ = std::make_unique<broker::Broker>(*pool_, config_.mqtt, pipeline_.get(),
                                             normalizer_.get(), brokerState_.get());
  {
    const std::vector<std::string> exposed = exposedMqttListeners(config_);
    std::string where;
    for (const auto& listener : exposed) where += (where.empty() ? "" : ", ") + listener;
    auth::MqttAuthOptions mqttAuth;
    mqttAuth.allowAnonymous = config_.mqtt.allowAnonymous.value_or(exposed.empty());
    if (mqttAuth.allowAnonymous && !exposed.empty()) {
      spdlog::warn(
          "mqtt: anonymous clients are allowed (mqtt.allow_anonymous = true) while MQTT listens "
          "beyond loopback ({}): anyone who reaches it may publish and subscribe to everything",
          where);
    } else if (!mqttAuth.allowAnonymous && !config_.mqtt.allowAnonymous) {
      spdlog::info(
          "mqtt: clients must log in (device credentials: 'tern device'): {} is beyond loopback; "
          "mqtt.allow_anonymous = true lets anonymous clients in",
          where);
    }
    mqttAuth.loginMaxFailures = config_.mqtt.loginMaxFailures;
    mqttAuth.credentialCheckUs = config_.mqtt.credentialCheckUs;
    mqttAuth.acl = config_.mqtt.acl;
    mqttAuth_ = std::make_unique<auth::MqttAuthenticator>(*authStore_, std::move(mqttAuth));
    broker_->setAuthenticator(mqttAuth_.get());
  }
  for (const auto& source : config_.sources) {
    sources_.push_back(std::make_shared<bridge::SourceClient>(pool_->next(), source, *pipeline_,
                                                              *normalizer_, broker_.get(),
                                                              config_.mqtt.maxPacketSize));
  }

  trackers::TrackerOptions trackerOptions;
  trackerOptions.host = config_.trackers.host;
  trackerOptions.ports = config_.trackers.ports;
  trackerOptions.registerUnknown = config_.trackers.registerUnknown;
  trackerOptions.proxyProtocol = config_.trackers.proxyProtocol;
  trackerOptions.nodeId = config_.server.nodeId;
  bool osmand = false;
  for (const auto& name : config_.trackers.enabled) {
    if (name == "osmand") {
      osmand = true;
    } else {
      trackerOptions.enabled.push_back(name);
    }
  }
  if (!trackerOptions.enabled.empty()) {
    trackers_ = std::make_unique<trackers::TrackerServer>(
        *pool_, *pipeline_, trackerOptions, [this](const std::string& id) {
          auto device = latest_->getDevice(id);
          return device.ok() && device->has_value();
        });
  }
  if (osmand) {
    osmand_ = std::make_unique<trackers::OsmandServer>(*pool_, *pipeline_, config_.server.nodeId,
                                                       config_.trackers.proxyProtocol);
  }

  jobs_ = std::make_unique<scheduler::JobRunner>();
  addRetentionJob();
  addRollupJob();
  addLatestSyncJob();

  api::ApiOptions apiOptions;
  apiOptions.listen = config_.http.listen;
  apiOptions.threads = config_.http.threads;
  apiOptions.nodeId = config_.server.nodeId;
  apiOptions.auth = auth_.get();
  apiOptions.deviceCredentials = deviceCredentials_.get();
  apiOptions.web = {config_.web.tileUrl, config_.web.tileAttribution, config_.web.onlineWindowUs};
  apiOptions.healthInfo = [this] {
    broker::BrokerStats b = broker_->stats();
    ingest::PipelineStats p = pipeline_->stats();
    boost::json::object out;
    out["broker"] = boost::json::object{
        {"status", "ok"},
        {"clients_connected", b.clientsConnected},
        {"messages_received", b.messagesReceived},
        {"messages_sent", b.messagesSent},
        {"messages_dropped", b.messagesDropped},
        {"protocol_errors", b.protocolErrors},
        {"denied", b.denied},
        {"subscriptions", b.subscriptions},
        {"retained", b.retained},
    };
    if (trackers_) {
      trackers::TrackerStats t = trackers_->stats();
      out["trackers"] = boost::json::object{
          {"connections", t.connections},
          {"frames", t.frames},
          {"positions", t.positions},
          {"bad_checksums", t.badChecksums},
          {"bad_lengths", t.badLengths},
          {"skipped_bytes", t.skippedBytes},
          {"refused_devices", t.refusedDevices},
          {"closed_oversize", t.closedOversize},
      };
    }
    boost::json::array jobs;
    for (const auto& job : jobs_->status()) {
      boost::json::object j{{"name", job.name},
                            {"schedule", job.schedule},
                            {"runs", job.runs},
                            {"failures", job.failures}};
      j["next_run"] = job.nextRunUs ? boost::json::value(core::formatRfc3339Millis(job.nextRunUs))
                                    : boost::json::value(nullptr);
      if (job.lastRunUs) j["last_run"] = core::formatRfc3339Millis(job.lastRunUs);
      if (!job.lastError.empty()) j["last_error"] = job.lastError;
      jobs.push_back(std::move(j));
    }
    out["jobs"] = std::move(jobs);
    boost::json::array sources;
    for (const auto& s : sourceStats()) {
      sources.push_back(boost::json::object{{"name", s.name},
                                            {"connected", s.connected},
                                            {"received", s.received},
                                            {"acked", s.acked},
                                            {"reconnects", s.reconnects}});
    }
    out["sources"] = std::move(sources);
    api::LiveFeedStats lv = live_->stats();
    out["live"] = boost::json::object{{"sessions", lv.sessions},
                                      {"published", lv.published},
                                      {"inbox_overflows", lv.inboxOverflows}};
    ingest::LatestCacheStats l = latest_->stats();
    out["latest_cache"] = boost::json::object{
        {"devices", l.devices},     {"complete", l.complete}, {"store_reads", l.storeReads},
        {"refreshes", l.refreshes}, {"syncs", l.syncs},       {"forgotten", l.forgotten}};
    if (brokerState_) {
      broker::StateStoreStats st = brokerState_->stats();
      out["broker_state"] = boost::json::object{{"writes", st.writes},
                                                {"commits", st.commits},
                                                {"commit_failures", st.commitFailures},
                                                {"queued", st.queued}};
    }
    out["ingest"] = boost::json::object{
        {"submitted", p.submitted},
        {"committed", p.committed},
        {"queued", p.queued},
        {"batches", p.batches},
        {"commit_failures", p.commitFailures},
        {"read_pauses", b.readPauses},
        {"spooled", p.spooled},
        {"replayed", p.replayed},
        {"spool_bytes", p.spoolBytes},
    };
    return out;
  };
  if (trackers_) {
    apiOptions.commands.submit = [this](const std::string& deviceId, const std::string& type,
                                        const std::string& text) {
      codec::trackers::Command command{commandType(type), text, 1};
      return commandToJson(trackers_->submitCommand(deviceId, std::move(command), type));
    };
    apiOptions.commands.list = [this](const std::string& deviceId) {
      boost::json::array list;
      for (const auto& record : trackers_->commands(deviceId))
        list.push_back(commandToJson(record));
      return list;
    };
  }
  apiOptions.devices.list = [this] { return latest_->listDevices(); };
  apiOptions.devices.get = [this](const std::string& id) { return latest_->getDevice(id); };
  apiOptions.devices.updated = [this](const std::string& id) { return latest_->deviceUpdated(id); };
  apiOptions.live = live_.get();
  if (config_.mqtt.websocket) {
    // MQTT over WebSocket on the HTTP port: the API hands the upgrade to the broker.
    apiOptions.upgradePath = broker::Broker::kWebSocketPath;
    apiOptions.upgrade = [this](net::HttpUpgrade upgrade) {
      broker_->acceptWebSocketUpgrade(std::move(upgrade));
    };
  }
  http_ = std::make_unique<api::HttpServer>(*store_, apiOptions);
}

Server::~Server() {
  stop();
}

void Server::addRetentionJob() {
  const auto& storage = config_.storage;
  if (storage.retentionUs == 0 && storage.retentionKeys.empty()) return;
  auto schedule = scheduler::Schedule::parse(storage.retentionSchedule);
  if (!schedule) {
    throw core::ConfigError("config: storage.retention_schedule: " + schedule.error().message);
  }
  // A failed run may have deleted some messages: the next run refreshes the cache regardless.
  jobs_->add(
      "retention", std::move(*schedule), [this, refreshDue = false]() mutable -> core::Status {
        const auto& s = config_.storage;
        const std::int64_t now = core::nowMicros();
        if (s.retentionUs > 0) {
          auto deleted = store_->deleteBefore(now - s.retentionUs);
          if (!deleted) {
            refreshDue = true;
            return deleted.error();
          }
          if (*deleted > 0) spdlog::info("retention: deleted {} messages", *deleted);
          if (*deleted > 0 || refreshDue) {
            // Counts and first-seen times changed in the store; the cache takes them over.
            refreshDue = true;
            if (auto status = latest_->refreshAfterRetention(now - s.retentionUs); !status.ok()) {
              return status;
            }
            refreshDue = false;
          }
        }
        for (const auto& [key, us] : s.retentionKeys) {
          auto changed = store_->dropKeyBefore(key, now - us);
          if (!changed) return changed.error();
          if (*changed > 0) spdlog::info("retention: removed '{}' from {} messages", key, *changed);
        }
        return {};
      });
}

void Server::addLatestSyncJob() {
  // Only a shared database has writers this node does not see; SQLite has one node.
  if (config_.storage.backend != "postgres" || config_.ingest.latestCacheSyncUs == 0) return;
  auto schedule = scheduler::Schedule::parse(
      "@every " + std::to_string(config_.ingest.latestCacheSyncUs / 1000) + "ms");
  if (!schedule) {
    throw core::ConfigError("config: ingest.latest_cache_sync: " + schedule.error().message);
  }
  jobs_->add("latest-sync", std::move(*schedule),
             [this, runs = std::uint64_t{0}, sinceUs = std::int64_t{0}]() mutable -> core::Status {
               // Every 30th run reads every device: tags, names and attributes set through
               // another node's API change no last-seen time.
               const bool full = runs++ % 30 == 0;
               // Other nodes stamp last_seen with their own clocks and commit a batch up to
               // its group-commit time later: a generous overlap costs only re-reading a few
               // devices.
               const std::int64_t startUs = core::nowMicros();
               auto status = latest_->syncFromStore(full ? std::nullopt
                                                         : std::optional<std::int64_t>(sinceUs));
               if (!status.ok()) return status;
               sinceUs = startUs - config_.ingest.latestCacheSyncUs - 30'000'000;
               return {};
             });
}

void Server::addRollupJob() {
  if (!config_.storage.rollups) return;
  auto schedule = scheduler::Schedule::parse(config_.storage.rollupSchedule);
  if (!schedule) {
    throw core::ConfigError("config: storage.rollup_schedule: " + schedule.error().message);
  }
  jobs_->add("rollup", std::move(*schedule), [this]() -> core::Status {
    // Minutes older than 30 s: records of the last seconds may still be on their way to the
    // store and would only make their minute dirty (correct, but redone next run).
    auto run = store_->rollup(core::nowMicros() - 30'000'000);
    if (!run) return run.error();
    if (run->dirtyMinutes > 0) {
      spdlog::info("rollup: redid {} minutes that received late records", run->dirtyMinutes);
    }
    return {};
  });
}

void Server::start() {
  if (auto status = pipeline_->start(); !status.ok()) throw std::runtime_error(status.message());
  pool_->start();
  broker_->start();
  for (auto& source : sources_) source->start();
  if (trackers_) trackers_->start();
  if (osmand_) {
    std::uint16_t port = 5055;
    if (auto it = config_.trackers.ports.find("osmand"); it != config_.trackers.ports.end()) {
      port = it->second;
    }
    osmand_->start(core::HostPort{config_.trackers.host, port});
  }
  http_->start();
  jobs_->start();
  started_ = true;
  spdlog::info("tern {} serving: node '{}', data in {}, mqtt port {}, http port {}", TERN_VERSION,
               config_.server.nodeId, config_.server.dataDir, mqttPort(), httpPort());
}

void Server::stop() {
  if (stopped_) return;
  stopped_ = true;
  jobs_->stop();  // a running retention pass finishes its chunk first
  if (started_) {
    broker_->stopAccepting();
    if (trackers_) trackers_->stopAccepting();
    if (osmand_) osmand_->stopAccepting();
    for (auto& source : sources_) source->stopReading(std::chrono::milliseconds(1000));
    // Commit what is queued while the loops still run, so its acknowledgements go out.
    pipeline_->stop();
    for (auto& source : sources_) source->shutdown(std::chrono::milliseconds(1000));
    broker_->shutdown(std::chrono::milliseconds(2000));
    if (trackers_) trackers_->shutdown(std::chrono::milliseconds(1000));
    http_->stop();
    pool_->stop();
    // Last: the sessions detached by the shutdown above are written before the file closes.
    if (brokerState_) brokerState_->stop();
  } else {
    pipeline_->stop();
  }
  // The loops are stopped: no connection asks it anything any more, and its checker must not
  // call into the broker being destroyed.
  mqttAuth_.reset();
  sources_.clear();  // before the loops their sockets belong to
  broker_.reset();
  brokerState_.reset();
  trackers_.reset();
  osmand_.reset();
  http_.reset();
  jobs_.reset();
  pool_.reset();
  pipeline_.reset();
  latest_.reset();
  auth_.reset();
  authStore_.reset();
  store_.reset();  // closes the database
  spdlog::info("tern stopped");
}

std::map<std::string, std::uint16_t> Server::trackerPorts() const {
  std::map<std::string, std::uint16_t> ports;
  if (trackers_) ports = trackers_->ports();
  if (osmand_) ports["osmand"] = osmand_->port();
  return ports;
}

std::vector<bridge::SourceStats> Server::sourceStats() const {
  std::vector<bridge::SourceStats> out;
  for (const auto& source : sources_) out.push_back(source->stats());
  return out;
}

std::uint16_t Server::mqttPort() const {
  return broker_->port();
}
std::uint16_t Server::httpPort() const {
  return http_->port();
}

int runServe(const core::Config& config) {
  // Block the stop signals in every thread we start; the main thread waits for them below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  Server server(config);
  server.start();
  int signal = 0;
  sigwait(&signals, &signal);
  spdlog::info("received {}, stopping", signal == SIGINT ? "SIGINT" : "SIGTERM");
  server.stop();
  return 0;
}

}  // namespace tern::app
