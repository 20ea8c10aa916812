#pragma once
// Tern's configuration: one plain struct per section, filled from defaults, a TOML file,
// TERN_<SECTION>_<KEY> environment variables and command-line flags, in rising precedence.
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace tern::core {

// A bad configuration value. The message names the key and what is wrong; the CLI prints it
// on one line and exits with status 2.
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct HostPort {
  std::string host;
  std::uint16_t port = 0;
  std::string toString() const;
};
// "0.0.0.0:1883", "[::1]:8080", "localhost:0". Throws ConfigError naming `key`.
HostPort parseHostPort(const std::string& key, const std::string& text);

struct ServerConfig {
  std::string dataDir = "./data";
  std::string nodeId;              // empty → host name
  unsigned threads = 0;            // event loops; 0 → one per core
  std::string logFormat = "text";  // text | json
  std::string logLevel = "info";
};

// One [[mqtt.acl]] entry: an allow rule for MQTT clients, on top of the built-in ones (a device:
// device/<id> and device/<id>/#; a service user: everything).
struct MqttAclEntry {
  std::string user;         // applies to this device id or user name only (empty: any)
  std::string role;         // "device" or "service" (empty: any authenticated client)
  std::uint8_t access = 3;  // 1 read (subscribe), 2 write (publish), 3 both
  std::string topic;        // a topic filter; %u = the device id / user name, %c = the client id
};

struct MqttConfig {
  HostPort listen{"0.0.0.0", 1883};
  std::uint32_t maxPacketSize = 1024 * 1024;  // bytes, whole packet
  std::uint32_t maxInflight = 64;             // outgoing QoS 1/2 messages awaiting ack, per client
  std::uint32_t maxQueued = 1000;  // messages waiting for a client beyond the in-flight window
  std::uint32_t maxConnections = 10000;
  std::uint32_t sysInterval = 10;  // seconds between $SYS updates; 0 disables
  bool proxyProtocol = false;      // expect a PROXY protocol v1/v2 header first (behind HAProxy)
  // Persistent sessions and retained messages kept in <data_dir>/broker.db across restarts.
  bool persistence = true;
  // MQTT 5 (announced in CONNACK):
  std::uint32_t serverKeepAlive = 0;     // seconds imposed on MQTT 5 clients; 0 = the client's own
  std::uint32_t receiveMaximum = 65535;  // QoS 1/2 publishes a client may have unacknowledged
  std::uint32_t topicAliasMaximum = 10;  // topic aliases a client may use towards us
  // TLS: the listener runs when both tlsCert and tlsKey are set (PEM files).
  HostPort tlsListen{"0.0.0.0", 8883};
  std::string tlsCert;
  std::string tlsKey;
  std::string tlsCa;  // client certificates from these CAs are verified; their CN is the device id
  bool tlsRequireClientCert = false;  // with tlsCa: no verified certificate, no connection
  bool websocket = true;              // MQTT over WebSocket at /mqtt on the HTTP listener
  std::optional<HostPort> wsListen;   // a dedicated WebSocket listener (path /mqtt)
  std::optional<HostPort> wssListen;  // a dedicated WebSocket-over-TLS listener (tlsCert/tlsKey)
  // Clients without credentials. Unset: allowed only when every MQTT listener (the HTTP port's
  // /mqtt included) is on loopback.
  std::optional<bool> allowAnonymous;
  std::uint32_t loginMaxFailures = 10;  // failed MQTT logins per client address per minute; 0 = off
  // How often a running server checks whether credentials of connected clients were removed or
  // revoked (by `tern device`/`tern user`, possibly in another process).
  std::int64_t credentialCheckUs = 5'000'000;
  std::vector<MqttAclEntry> acl;
};

struct HttpConfig {
  HostPort listen{"127.0.0.1", 8080};
  // Threads serving the API. Handlers wait on the database (a device delete, a long export), so
  // more than one keeps the rest of the API and the live feed answering meanwhile.
  unsigned threads = 4;
};

// Authentication of the HTTP API.
struct ApiConfig {
  std::int64_t tokenTtlUs = 15LL * 60 * 1'000'000;        // access token (JWT) lifetime
  std::int64_t refreshTtlUs = 30LL * 86'400 * 1'000'000;  // refresh token lifetime
  std::uint32_t loginMaxFailures = 5;  // failed logins per client address per minute; 0 = off
};

// The operator web app served at / (web/app).
struct WebConfig {
  // Leaflet tile URL template for the live map ("https://tile.example/{z}/{x}/{y}.png"); empty =
  // no tiles, a plain graticule that works offline.
  std::string tileUrl;
  std::string tileAttribution;  // shown on the map next to the tiles (their licence asks for it)
  // A device counts as online when it sent something within this window.
  std::int64_t onlineWindowUs = 5LL * 60 * 1'000'000;
};

struct StorageConfig {
  std::string backend = "sqlite";  // sqlite | postgres
  std::string sync = "normal";     // normal | full (sqlite)
  // postgres: a postgresql:// URL or a libpq keyword string; required for that backend.
  std::string url;
  // postgres: the length of a messages partition, fixed when the database is created.
  std::int64_t partitionUs = 86'400'000'000;
  std::int64_t retentionUs = 0;  // messages older than this are deleted; 0 keeps them forever
  // Per key: the key is removed from messages older than its duration (e.g. rpm=7d).
  std::vector<std::pair<std::string, std::int64_t>> retentionKeys;
  std::string retentionSchedule = "*/10 * * * *";  // when retention runs (cron, UTC)
  // 1 min / 1 h rollups for series queries, kept by a periodic job.
  bool rollups = true;
  std::string rollupSchedule = "@every 1m";
};

// Where the device id of a routed message comes from.
struct IngestRoute {
  std::string filter;  // MQTT topic filter, e.g. "device/+"
  // "topic:N" (1-based topic level) or "json:FIELD" (a top-level payload field, or a dotted path)
  std::string deviceId;
};

struct IngestConfig {
  std::vector<IngestRoute> routes{{"device/+", "topic:2"}};
  std::uint32_t batchSize = 5000;        // commit when this many records are waiting...
  std::uint32_t batchMs = 2;             // ...or this long after the first one arrived
  std::uint32_t queueCapacity = 100000;  // records waiting for the writer before back-pressure
  // While the store refuses writes, records go to a durable spool in the data dir (and are
  // acknowledged from there), up to this many bytes on disk; then back-pressure.
  bool spool = true;
  std::uint64_t spoolMaxBytes = 1024ull * 1024 * 1024;
  // Devices held in the in-memory latest-state cache; beyond it, the store answers for the rest.
  std::uint64_t latestCacheDevices = 1'000'000;
  // With storage.backend = "postgres" (several nodes may share the database): how often the
  // cache takes over what other nodes wrote (devices seen since the last run, and every device
  // every 30th run). 0: never (a single node).
  std::int64_t latestCacheSyncUs = 2'000'000;
};

// Vehicle trackers over raw TCP, one listener per enabled protocol (plus OsmAnd over HTTP).
struct TrackersConfig {
  std::vector<std::string> enabled{"gt06",  "teltonika", "h02",     "tk103", "gps103",
                                   "gl200", "meitrack",  "ruptela", "osmand"};
  std::string host = "0.0.0.0";
  // protocol → port; a protocol not listed here listens on its usual port.
  std::map<std::string, std::uint16_t> ports;
  bool registerUnknown = true;  // false: only devices already known are accepted
  bool proxyProtocol = false;   // every tracker listener expects a PROXY protocol header first
};

// The protocols that have a trackers.<name>_port key (their usual ports are in the registry).
const std::vector<std::string>& trackerProtocolNames();

// An external MQTT broker Tern subscribes to as a client ([[sources]] in the TOML file only).
struct SourceConfig {
  std::string name;  // for logs and health; unique
  std::string host;
  std::uint16_t port = 1883;
  std::optional<std::string> username;
  std::optional<std::string> password;  // only with a username (MQTT 3.1.1)
  std::string clientId;                 // empty → "tern-<node id>-<name>"
  std::vector<std::string> topics;      // filters to subscribe to, at least one
  std::uint8_t qos = 1;                 // 0 or 1: the maximum QoS asked for
  // false keeps the session at the external broker, so QoS 1 messages queue there while Tern
  // is down.
  bool cleanSession = false;
  std::uint16_t keepAlive = 60;  // seconds
  // TLS to the source: its certificate is verified against tlsCa (or the system's CAs) and
  // must name `host`.
  bool tls = false;
  std::string tlsCa;    // PEM file; empty: the system's trusted CAs
  std::string tlsCert;  // a client certificate (PEM), with tlsKey
  std::string tlsKey;
  bool tlsVerify = true;  // false: no verification at all (tests only; warned about at start)
};

struct Config {
  ServerConfig server;
  MqttConfig mqtt;
  HttpConfig http;
  ApiConfig api;
  StorageConfig storage;
  IngestConfig ingest;
  TrackersConfig trackers;
  WebConfig web;
  std::vector<SourceConfig> sources;

  // Fills in derived defaults (node id) and checks cross-field rules. Throws ConfigError.
  void finalize();
};

// Applies one "section.key" = value given as text (from env or a flag). Throws ConfigError.
void applyConfigValue(Config& config, const std::string& dottedKey, const std::string& value);
// Loads a TOML file on top of `config`. Throws ConfigError.
void applyConfigFile(Config& config, const std::string& path);
// Applies every TERN_<SECTION>_<KEY> variable from `env` (name → value). Unknown TERN_ names
// are errors, so a typo does not silently do nothing.
void applyConfigEnv(Config& config, const std::map<std::string, std::string>& env);
// The current process environment, filtered to TERN_ names.
std::map<std::string, std::string> ternEnvironment();
// All known keys, "section.key", for help text and tests.
std::vector<std::string> configKeys();

}  // namespace tern::core
