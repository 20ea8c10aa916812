#include "core/config.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <functional>
#include <sstream>

#include "core/ids.h"
#include "core/logging.h"
#include "core/time.h"

extern char** environ;  // NOLINT(readability-redundant-declaration): POSIX, not in a header

namespace tern::core {

namespace {

constexpr std::size_t kMaxQuotedValue = 200;

// Quotes a user-supplied value for an error message, shortened so a huge value cannot flood it.
std::string quoted(const std::string& value) {
  std::string out = "\"";
  const std::size_t n = std::min(value.size(), kMaxQuotedValue);
  for (std::size_t i = 0; i < n; ++i) {
    const auto c = static_cast<unsigned char>(value[i]);
    // Keep the message on one line whatever the value contains.
    out.push_back(c < 0x20 ? '?' : value[i]);
  }
  if (value.size() > n) {
    out += "...";
  }
  out += '"';
  return out;
}

[[noreturn]] void fail(const std::string& key, const std::string& what) {
  throw ConfigError("config: " + key + ": " + what);
}

[[noreturn]] void failExpected(const std::string& key, const std::string& expected,
                               const std::string& got) {
  fail(key, "expected " + expected + ", got " + quoted(got));
}

enum class Kind { kInteger, kString, kRoutes, kBool, kList, kAcl };

struct KeyDescriptor {
  const char* name;  // "section.key"
  Kind kind;
  std::uint64_t min = 0;  // integer keys only
  std::uint64_t max = 0;
  // Validates `text` and stores it; throws ConfigError naming the key.
  std::function<void(Config&, const KeyDescriptor&, const std::string&)> set;
};

std::string integerExpectation(const KeyDescriptor& key) {
  return "an integer between " + std::to_string(key.min) + " and " + std::to_string(key.max);
}

std::uint64_t parseInteger(const KeyDescriptor& key, const std::string& text) {
  std::uint64_t value = 0;
  const char* begin = text.data();
  const char* end = begin + text.size();
  const bool digitsOnly = !text.empty() && std::all_of(text.begin(), text.end(),
                                                       [](char c) { return c >= '0' && c <= '9'; });
  const auto [ptr, ec] = std::from_chars(begin, end, value);
  if (!digitsOnly || ec != std::errc{} || ptr != end || value < key.min || value > key.max) {
    failExpected(key.name, integerExpectation(key), text);
  }
  return value;
}

template <class T, class Section>
auto integerKey(const char* name, std::uint64_t min, std::uint64_t max, Section Config::*section,
                T Section::*field) {
  return KeyDescriptor{
      name, Kind::kInteger, min, max,
      [section, field](Config& c, const KeyDescriptor& key, const std::string& text) {
        (c.*section).*field = static_cast<T>(parseInteger(key, text));
      }};
}

template <class Section>
auto choiceKey(const char* name, std::vector<std::string> choices, Section Config::*section,
               std::string Section::*field) {
  return KeyDescriptor{name, Kind::kString, 0, 0,
                       [choices = std::move(choices), section, field](
                           Config& c, const KeyDescriptor& key, const std::string& text) {
                         if (std::find(choices.begin(), choices.end(), text) == choices.end()) {
                           std::string expected = choices.size() == 1 ? choices[0] : "one of ";
                           for (std::size_t i = 0; choices.size() > 1 && i < choices.size(); ++i) {
                             expected += (i ? "|" : "") + choices[i];
                           }
                           failExpected(key.name, expected, text);
                         }
                         (c.*section).*field = text;
                       }};
}

template <class Section>
auto hostPortKey(const char* name, Section Config::*section, HostPort Section::*field) {
  return KeyDescriptor{
      name, Kind::kString, 0, 0,
      [section, field](Config& c, const KeyDescriptor& key, const std::string& text) {
        (c.*section).*field = parseHostPort(key.name, text);
      }};
}

// A duration with a unit ("15m", "30d"; "90" alone is ambiguous), between min and max.
template <class Section>
auto durationKey(const char* name, std::int64_t minUs, std::int64_t maxUs, const char* range,
                 Section Config::*section, std::int64_t Section::*field) {
  return KeyDescriptor{
      name, Kind::kString, 0, 0, [=](Config& c, const KeyDescriptor& key, const std::string& text) {
        const auto us = text.empty() || std::isdigit(static_cast<unsigned char>(text.back()))
                            ? std::nullopt
                            : parseDuration(text);
        if (!us || *us < minUs || *us > maxUs) {
          failExpected(key.name, std::string("a duration between ") + range, text);
        }
        (c.*section).*field = *us;
      }};
}

// "" or "off" turns an optional listener off.
template <class Section>
auto optionalHostPortKey(const char* name, Section Config::*section,
                         std::optional<HostPort> Section::*field) {
  return KeyDescriptor{
      name, Kind::kString, 0, 0,
      [section, field](Config& c, const KeyDescriptor& key, const std::string& text) {
        if (text.empty() || text == "off") {
          (c.*section).*field = std::nullopt;
        } else {
          (c.*section).*field = parseHostPort(key.name, text);
        }
      }};
}

template <class Section>
auto fileKey(const char* name, Section Config::*section, std::string Section::*field) {
  return KeyDescriptor{
      name, Kind::kString, 0, 0,
      [section, field](Config& c, const KeyDescriptor& key, const std::string& text) {
        if (text.empty() || text.find_first_of("\r\n") != std::string::npos) {
          failExpected(key.name, "a file path", text);
        }
        (c.*section).*field = text;
      }};
}

// MQTT filter rules, checked here so a bad route fails at startup rather than matching nothing:
// '#' only as the whole last level, '+' only as a whole level.
bool validFilter(const std::string& filter) {
  if (filter.empty() || filter.find('\0') != std::string::npos) {
    return false;
  }
  std::size_t start = 0;
  while (true) {
    const std::size_t slash = filter.find('/', start);
    const std::string_view level = std::string_view(filter).substr(
        start, slash == std::string::npos ? std::string::npos : slash - start);
    const bool last = slash == std::string::npos;
    if (level.find('#') != std::string_view::npos && (level != "#" || !last)) {
      return false;
    }
    if (level.find('+') != std::string_view::npos && level != "+") {
      return false;
    }
    if (last) {
      return true;
    }
    start = slash + 1;
  }
}

// "topic:N" (N ≥ 1) or "json:NAME" (NAME may be a dotted path without empty parts).
bool validDeviceIdSource(const std::string& source) {
  if (source.rfind("topic:", 0) == 0) {
    const std::string n = source.substr(6);
    unsigned value = 0;
    const auto [ptr, ec] = std::from_chars(n.data(), n.data() + n.size(), value);
    return !n.empty() && n[0] != '+' && ec == std::errc{} && ptr == n.data() + n.size() &&
           value >= 1 && value <= 65535;
  }
  if (source.rfind("json:", 0) == 0) {
    const std::string path = source.substr(5);
    return !path.empty() && path.front() != '.' && path.back() != '.' &&
           path.find("..") == std::string::npos;
  }
  return false;
}

void validateRoute(const std::string& key, const IngestRoute& route) {
  if (!validFilter(route.filter)) {
    failExpected(key, "a non-empty MQTT topic filter", route.filter);
  }
  if (!validDeviceIdSource(route.deviceId)) {
    fail(key, "route " + quoted(route.filter) +
                  ": device_id: expected topic:N or json:FIELD, got " + quoted(route.deviceId));
  }
}

// "device/+=topic:2;sensors/#=json:uuid". Split at the last '=' since device id sources never
// contain one, while an MQTT filter may.
std::vector<IngestRoute> parseRoutes(const std::string& key, const std::string& text) {
  std::vector<IngestRoute> routes;
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t semi = text.find(';', start);
    const std::string item =
        text.substr(start, semi == std::string::npos ? std::string::npos : semi - start);
    start = semi == std::string::npos ? text.size() + 1 : semi + 1;
    if (item.empty()) {
      continue;  // tolerate "a=b;" and an empty list
    }
    const std::size_t eq = item.rfind('=');
    if (eq == std::string::npos) {
      failExpected(key, "FILTER=topic:N or FILTER=json:FIELD entries separated by ';'", item);
    }
    IngestRoute route{item.substr(0, eq), item.substr(eq + 1)};
    validateRoute(key, route);
    routes.push_back(std::move(route));
  }
  return routes;
}

bool parseBool(const KeyDescriptor& key, const std::string& text) {
  if (text == "true" || text == "1" || text == "yes") return true;
  if (text == "false" || text == "0" || text == "no") return false;
  failExpected(key.name, "true or false", text);
}

template <class Section>
auto boolKey(const char* name, Section Config::*section, bool Section::*field) {
  return KeyDescriptor{
      name, Kind::kBool, 0, 0,
      [section, field](Config& c, const KeyDescriptor& key, const std::string& text) {
        (c.*section).*field = parseBool(key, text);
      }};
}

const std::vector<KeyDescriptor>& keyTable() {
  static const std::vector<KeyDescriptor> table = [] {
    std::vector<KeyDescriptor> t;
    t.push_back({"server.data_dir", Kind::kString, 0, 0,
                 [](Config& c, const KeyDescriptor& key, const std::string& text) {
                   if (text.empty()) {
                     failExpected(key.name, "a directory path", text);
                   }
                   c.server.dataDir = text;
                 }});
    t.push_back({"server.node_id", Kind::kString, 0, 0,
                 [](Config& c, const KeyDescriptor& key, const std::string& text) {
                   // Node ids appear in $SYS topics, so MQTT-special characters are out.
                   if (text.find_first_of("/+#") != std::string::npos ||
                       std::any_of(text.begin(), text.end(),
                                   [](char ch) { return static_cast<unsigned char>(ch) <= ' '; })) {
                     failExpected(key.name, "a name without '/', '+', '#' or whitespace", text);
                   }
                   c.server.nodeId = text;
                 }});
    t.push_back(integerKey("server.threads", 0, 256, &Config::server, &ServerConfig::threads));
    t.push_back(choiceKey("server.log_format", {"text", "json"}, &Config::server,
                          &ServerConfig::logFormat));
    t.push_back({"server.log_level", Kind::kString, 0, 0,
                 [](Config& c, const KeyDescriptor&, const std::string& text) {
                   parseLogLevel(text);  // one list of level names, shared with logging
                   c.server.logLevel = text;
                 }});
    t.push_back(hostPortKey("mqtt.listen", &Config::mqtt, &MqttConfig::listen));
    t.push_back(integerKey("mqtt.max_packet_size", 16, 268'435'455, &Config::mqtt,
                           &MqttConfig::maxPacketSize));
    t.push_back(integerKey("mqtt.max_inflight", 1, 65535, &Config::mqtt, &MqttConfig::maxInflight));
    t.push_back(
        integerKey("mqtt.max_queued", 1, 10'000'000, &Config::mqtt, &MqttConfig::maxQueued));
    t.push_back(integerKey("mqtt.max_connections", 1, 1'000'000, &Config::mqtt,
                           &MqttConfig::maxConnections));
    t.push_back(
        integerKey("mqtt.sys_interval", 0, 86'400, &Config::mqtt, &MqttConfig::sysInterval));
    t.push_back(boolKey("mqtt.persistence", &Config::mqtt, &MqttConfig::persistence));
    t.push_back(integerKey("mqtt.server_keep_alive", 0, 65535, &Config::mqtt,
                           &MqttConfig::serverKeepAlive));
    t.push_back(
        integerKey("mqtt.receive_maximum", 1, 65535, &Config::mqtt, &MqttConfig::receiveMaximum));
    t.push_back(integerKey("mqtt.topic_alias_maximum", 0, 65535, &Config::mqtt,
                           &MqttConfig::topicAliasMaximum));
    t.push_back({"mqtt.proxy_protocol", Kind::kBool, 0, 0,
                 [](Config& c, const KeyDescriptor& key, const std::string& text) {
                   c.mqtt.proxyProtocol = parseBool(key, text);
                 }});
    t.push_back(hostPortKey("mqtt.tls_listen", &Config::mqtt, &MqttConfig::tlsListen));
    t.push_back(fileKey("mqtt.tls_cert", &Config::mqtt, &MqttConfig::tlsCert));
    t.push_back(fileKey("mqtt.tls_key", &Config::mqtt, &MqttConfig::tlsKey));
    t.push_back(fileKey("mqtt.tls_ca", &Config::mqtt, &MqttConfig::tlsCa));
    t.push_back(
        boolKey("mqtt.tls_require_client_cert", &Config::mqtt, &MqttConfig::tlsRequireClientCert));
    t.push_back(boolKey("mqtt.websocket", &Config::mqtt, &MqttConfig::websocket));
    t.push_back(optionalHostPortKey("mqtt.ws_listen", &Config::mqtt, &MqttConfig::wsListen));
    t.push_back(optionalHostPortKey("mqtt.wss_listen", &Config::mqtt, &MqttConfig::wssListen));
    t.push_back({"mqtt.allow_anonymous", Kind::kBool, 0, 0,
                 [](Config& c, const KeyDescriptor& key, const std::string& text) {
                   if (text.empty() || text == "auto") {
                     c.mqtt.allowAnonymous.reset();
                   } else {
                     c.mqtt.allowAnonymous = parseBool(key, text);
                   }
                 }});
    t.push_back(integerKey("mqtt.login_max_failures", 0, 1'000'000, &Config::mqtt,
                           &MqttConfig::loginMaxFailures));
    t.push_back(durationKey("mqtt.credential_check_interval", 1'000'000, 3'600'000'000LL,
                            "1s and 1h (5s)", &Config::mqtt, &MqttConfig::credentialCheckUs));
    t.push_back(
        {"mqtt.acl", Kind::kAcl, 0, 0, [](Config&, const KeyDescriptor& key, const std::string&) {
           fail(key.name, "set it in the TOML file ([[mqtt.acl]] entries)");
         }});
    t.push_back(hostPortKey("http.listen", &Config::http, &HttpConfig::listen));
    t.push_back(integerKey("http.threads", 1, 64, &Config::http, &HttpConfig::threads));
    t.push_back(durationKey("api.token_ttl", 1'000'000, 86'400'000'000LL, "1s and 1d (15m)",
                            &Config::api, &ApiConfig::tokenTtlUs));
    t.push_back(durationKey("api.refresh_ttl", 1'000'000, 366LL * 86'400'000'000LL,
                            "1s and 366d (30d)", &Config::api, &ApiConfig::refreshTtlUs));
    t.push_back(integerKey("api.login_max_failures", 0, 1'000'000, &Config::api,
                           &ApiConfig::loginMaxFailures));
    t.push_back(choiceKey("storage.backend", {"sqlite", "postgres"}, &Config::storage,
                          &StorageConfig::backend));
    t.push_back(
        choiceKey("storage.sync", {"normal", "full"}, &Config::storage, &StorageConfig::sync));
    t.push_back({"storage.url", Kind::kString, 0, 0,
                 [](Config& c, const KeyDescriptor& key, const std::string& text) {
                   // libpq takes a URL or "keyword=value ..."; anything else is a typo.
                   const bool url =
                       text.rfind("postgresql://", 0) == 0 || text.rfind("postgres://", 0) == 0;
                   if ((!url && text.find('=') == std::string::npos) ||
                       text.find_first_of("\r\n") != std::string::npos) {
                     failExpected(key.name, "a postgresql:// URL or a libpq keyword=value string",
                                  text);
                   }
                   c.storage.url = text;
                 }});
    t.push_back(durationKey("storage.partition", 60'000'000, 366 * 86'400'000'000LL, "1m and 366d",
                            &Config::storage, &StorageConfig::partitionUs));
    t.push_back(
        {"storage.retention", Kind::kString, 0, 0,
         [](Config& c, const KeyDescriptor& key, const std::string& text) {
           if (text == "0" || text == "forever") {
             c.storage.retentionUs = 0;
             return;
           }
           // A unit is required: "90" could mean seconds or days.
           const auto us = text.empty() || std::isdigit(static_cast<unsigned char>(text.back()))
                               ? std::nullopt
                               : parseDuration(text);
           if (!us || *us <= 0) {
             failExpected(key.name, "a duration such as 90d, 12h or 0 (keep forever)", text);
           }
           c.storage.retentionUs = *us;
         }});
    t.push_back(
        {"storage.retention_keys", Kind::kString, 0, 0,
         [](Config& c, const KeyDescriptor& key, const std::string& text) {
           std::vector<std::pair<std::string, std::int64_t>> keys;
           std::size_t start = 0;
           while (start <= text.size()) {
             std::size_t comma = text.find(',', start);
             std::string item =
                 text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
             start = comma == std::string::npos ? text.size() + 1 : comma + 1;
             if (item.empty()) continue;
             const std::size_t eq = item.rfind('=');
             const auto us = eq == std::string::npos || eq + 1 == item.size() ||
                                     std::isdigit(static_cast<unsigned char>(item.back()))
                                 ? std::nullopt
                                 : parseDuration(item.substr(eq + 1));
             if (eq == 0 || !us || *us <= 0 || item.find('"') != std::string::npos) {
               failExpected(key.name, "KEY=DURATION entries separated by ',' (rpm=7d)", item);
             }
             keys.emplace_back(item.substr(0, eq), *us);
           }
           c.storage.retentionKeys = std::move(keys);
         }});
    t.push_back({"storage.retention_schedule", Kind::kString, 0, 0,
                 [](Config& c, const KeyDescriptor& key, const std::string& text) {
                   // The full cron check is the scheduler's, at start; catch the obvious here.
                   if (text.empty())
                     failExpected(key.name, "a cron expression or @every DURATION", text);
                   c.storage.retentionSchedule = text;
                 }});
    t.push_back({"storage.rollups", Kind::kBool, 0, 0,
                 [](Config& c, const KeyDescriptor& key, const std::string& text) {
                   c.storage.rollups = parseBool(key, text);
                 }});
    t.push_back({"storage.rollup_schedule", Kind::kString, 0, 0,
                 [](Config& c, const KeyDescriptor& key, const std::string& text) {
                   if (text.empty())
                     failExpected(key.name, "a cron expression or @every DURATION", text);
                   c.storage.rollupSchedule = text;
                 }});
    t.push_back({"ingest.routes", Kind::kRoutes, 0, 0,
                 [](Config& c, const KeyDescriptor& key, const std::string& text) {
                   c.ingest.routes = parseRoutes(key.name, text);
                 }});
    t.push_back(
        integerKey("ingest.batch_size", 1, 1'000'000, &Config::ingest, &IngestConfig::batchSize));
    t.push_back(integerKey("ingest.batch_ms", 0, 10'000, &Config::ingest, &IngestConfig::batchMs));
    t.push_back(integerKey("ingest.queue_capacity", 100, 100'000'000, &Config::ingest,
                           &IngestConfig::queueCapacity));
    t.push_back({"ingest.spool", Kind::kBool, 0, 0,
                 [](Config& c, const KeyDescriptor& key, const std::string& text) {
                   c.ingest.spool = parseBool(key, text);
                 }});
    // At least 1 MiB: a quota below one batch would only ever refuse.
    t.push_back(integerKey("ingest.spool_max_bytes", 1'048'576, 1'000'000'000'000'000,
                           &Config::ingest, &IngestConfig::spoolMaxBytes));
    t.push_back(integerKey("ingest.latest_cache_devices", 0, 100'000'000, &Config::ingest,
                           &IngestConfig::latestCacheDevices));
    t.push_back(durationKey("ingest.latest_cache_sync", 0, 3'600'000'000LL, "0s (off) and 1h (2s)",
                            &Config::ingest, &IngestConfig::latestCacheSyncUs));
    t.push_back({"trackers.enabled", Kind::kList, 0, 0,
                 [](Config& c, const KeyDescriptor& key, const std::string& text) {
                   std::vector<std::string> names;
                   std::size_t start = 0;
                   while (start <= text.size()) {
                     std::size_t comma = text.find(',', start);
                     std::string name = text.substr(
                         start, comma == std::string::npos ? std::string::npos : comma - start);
                     start = comma == std::string::npos ? text.size() + 1 : comma + 1;
                     if (name.empty()) continue;
                     const auto& known = trackerProtocolNames();
                     if (std::find(known.begin(), known.end(), name) == known.end()) {
                       std::string expected = "protocol names from ";
                       for (std::size_t i = 0; i < known.size(); ++i) {
                         expected += (i ? "," : "") + known[i];
                       }
                       failExpected(key.name, expected, name);
                     }
                     names.push_back(name);
                   }
                   c.trackers.enabled = names;
                 }});
    t.push_back({"trackers.host", Kind::kString, 0, 0,
                 [](Config& c, const KeyDescriptor& key, const std::string& text) {
                   if (text.empty()) failExpected(key.name, "a host to listen on", text);
                   c.trackers.host = text;
                 }});
    t.push_back({"trackers.register_unknown", Kind::kBool, 0, 0,
                 [](Config& c, const KeyDescriptor& key, const std::string& text) {
                   c.trackers.registerUnknown = parseBool(key, text);
                 }});
    t.push_back({"trackers.proxy_protocol", Kind::kBool, 0, 0,
                 [](Config& c, const KeyDescriptor& key, const std::string& text) {
                   c.trackers.proxyProtocol = parseBool(key, text);
                 }});
    static const std::vector<std::string> portKeys = [] {
      std::vector<std::string> keys;
      for (const auto& name : trackerProtocolNames()) keys.push_back("trackers." + name + "_port");
      return keys;
    }();
    for (std::size_t i = 0; i < portKeys.size(); ++i) {
      const std::string protocol = trackerProtocolNames()[i];
      t.push_back({portKeys[i].c_str(), Kind::kInteger, 0, 65535,
                   [protocol](Config& c, const KeyDescriptor& key, const std::string& text) {
                     c.trackers.ports[protocol] =
                         static_cast<std::uint16_t>(parseInteger(key, text));
                   }});
    }
    t.push_back({"web.tile_url", Kind::kString, 0, 0,
                 [](Config& c, const KeyDescriptor& key, const std::string& text) {
                   // Leaflet fills in {z}/{x}/{y}; a browser fetches it, so http(s) only.
                   if (!text.empty() && text.rfind("https://", 0) != 0 &&
                       text.rfind("http://", 0) != 0 && text.front() != '/') {
                     failExpected(key.name,
                                  "an http(s):// or /path tile URL with {z}, {x}, {y}, or empty",
                                  text);
                   }
                   c.web.tileUrl = text;
                 }});
    t.push_back({"web.tile_attribution", Kind::kString, 0, 0,
                 [](Config& c, const KeyDescriptor& key, const std::string& text) {
                   // One line of text (Leaflet shows it as HTML: it comes from the operator).
                   if (std::any_of(text.begin(), text.end(),
                                   [](char ch) { return static_cast<unsigned char>(ch) < ' '; })) {
                     failExpected(key.name, "one line of text", text);
                   }
                   c.web.tileAttribution = text;
                 }});
    t.push_back(durationKey("web.online_window", 1'000'000, 30LL * 86'400'000'000LL,
                            "1s and 30d (5m)", &Config::web, &WebConfig::onlineWindowUs));
    return t;
  }();
  return table;
}

const KeyDescriptor* findKey(std::string_view name) {
  for (const auto& key : keyTable()) {
    if (name == key.name) {
      return &key;
    }
  }
  return nullptr;
}

std::string envName(std::string_view dottedKey) {
  std::string out = "TERN_";
  for (const char c : dottedKey) {
    out.push_back(c == '.' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  }
  return out;
}

// Environment names that belong to the CLI rather than to a config key.
bool reservedEnvName(const std::string& name) {
  return name == "TERN_CONFIG";
}

std::string describeTomlValue(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::string:
      return "string " + quoted(node.as_string()->get());
    case toml::node_type::integer:
      return "integer " + std::to_string(node.as_integer()->get());
    case toml::node_type::floating_point: {
      std::ostringstream s;
      s << node.as_floating_point()->get();
      return "float " + s.str();
    }
    case toml::node_type::boolean:
      return node.as_boolean()->get() ? "true" : "false";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    default:
      return "a date/time";
  }
}

// Routes as an array of tables: [[ingest.routes]] filter = "device/+" device_id = "topic:2".
std::vector<IngestRoute> routesFromToml(const KeyDescriptor& key, const toml::node& node) {
  const toml::array* array = node.as_array();
  if (array == nullptr) {
    fail(key.name, std::string("expected an array of tables ([[ingest.routes]]), got ") +
                       describeTomlValue(node));
  }
  std::vector<IngestRoute> routes;
  for (std::size_t i = 0; i < array->size(); ++i) {
    const std::string itemKey = std::string(key.name) + "[" + std::to_string(i) + "]";
    const toml::table* table = (*array)[i].as_table();
    if (table == nullptr) {
      fail(itemKey,
           "expected a table with filter and device_id, got " + describeTomlValue((*array)[i]));
    }
    IngestRoute route;
    bool haveFilter = false;
    bool haveDeviceId = false;
    for (const auto& [k, v] : *table) {
      const std::string field(k.str());
      std::string* target = nullptr;
      if (field == "filter") {
        target = &route.filter;
        haveFilter = true;
      } else if (field == "device_id") {
        target = &route.deviceId;
        haveDeviceId = true;
      } else {
        fail(itemKey + "." + field, "unknown key (expected filter and device_id)");
      }
      if (!v.is_string()) {
        fail(itemKey + "." + field, "expected a string, got " + describeTomlValue(v));
      }
      *target = v.as_string()->get();
    }
    if (!haveFilter || !haveDeviceId) {
      fail(itemKey, std::string("missing ") + (haveFilter ? "device_id" : "filter"));
    }
    validateRoute(itemKey, route);
    routes.push_back(std::move(route));
  }
  return routes;
}

// Checks an ACL entry however it was built: a topic filter once %u/%c are substituted, no
// other '%', a known role.
void validateAclEntry(const std::string& key, const MqttAclEntry& entry) {
  std::string probe;
  for (std::size_t i = 0; i < entry.topic.size(); ++i) {
    if (entry.topic[i] != '%') {
      probe.push_back(entry.topic[i]);
      continue;
    }
    if (i + 1 < entry.topic.size() && (entry.topic[i + 1] == 'u' || entry.topic[i + 1] == 'c')) {
      probe.push_back('x');
      ++i;
      continue;
    }
    fail(key + ".topic",
         "only %u (user) and %c (client id) may follow '%', got " + quoted(entry.topic));
  }
  if (!validFilter(probe)) failExpected(key + ".topic", "an MQTT topic filter", entry.topic);
  if (!entry.role.empty() && entry.role != "device" && entry.role != "service") {
    failExpected(key + ".role", "device or service", entry.role);
  }
  if (entry.access < 1 || entry.access > 3) {
    fail(key + ".access", "expected read, write or readwrite");
  }
}

std::vector<MqttAclEntry> aclFromToml(const toml::node& node) {
  const toml::array* array = node.as_array();
  if (array == nullptr) {
    fail("mqtt.acl", "expected an array of tables ([[mqtt.acl]]), got " + describeTomlValue(node));
  }
  std::vector<MqttAclEntry> entries;
  for (std::size_t i = 0; i < array->size(); ++i) {
    const std::string itemKey = "mqtt.acl[" + std::to_string(i) + "]";
    const toml::table* table = (*array)[i].as_table();
    if (table == nullptr) fail(itemKey, "expected a table, got " + describeTomlValue((*array)[i]));
    MqttAclEntry entry;
    bool haveTopic = false;
    for (const auto& item : *table) {
      const std::string field(item.first.str());
      const toml::node& v = item.second;
      if (!v.is_string()) {
        fail(itemKey + "." + field, "expected a string, got " + describeTomlValue(v));
      }
      const std::string text = v.as_string()->get();
      if (field == "user") {
        if (text.empty()) failExpected(itemKey + ".user", "a device id or user name", text);
        entry.user = text;
      } else if (field == "role") {
        entry.role = text;
      } else if (field == "access") {
        if (text == "read") {
          entry.access = 1;
        } else if (text == "write") {
          entry.access = 2;
        } else if (text == "readwrite") {
          entry.access = 3;
        } else {
          failExpected(itemKey + ".access", "read, write or readwrite", text);
        }
      } else if (field == "topic") {
        entry.topic = text;
        haveTopic = true;
      } else {
        fail(itemKey + "." + field, "unknown key (expected user, role, access, topic)");
      }
    }
    if (!haveTopic) fail(itemKey, "missing topic");
    validateAclEntry(itemKey, entry);
    entries.push_back(std::move(entry));
  }
  return entries;
}

// A [[sources]] entry: the checks that apply however it was built (file or code).
void validateSource(const std::string& key, const SourceConfig& source) {
  const auto printable = [](const std::string& text) {
    return !text.empty() && std::none_of(text.begin(), text.end(), [](char c) {
      return static_cast<unsigned char>(c) <= ' ';
    });
  };
  if (!printable(source.name))
    failExpected(key + ".name", "a name without whitespace", source.name);
  if (!printable(source.host)) failExpected(key + ".host", "a host name or address", source.host);
  if (source.port == 0) failExpected(key + ".port", "an integer between 1 and 65535", "0");
  if (source.password && !source.username) {
    fail(key + ".password", "needs a username (MQTT 3.1.1 has no password without one)");
  }
  if (source.topics.empty()) fail(key + ".topics", "expected at least one topic filter");
  for (const auto& filter : source.topics) {
    if (!validFilter(filter)) failExpected(key + ".topics", "MQTT topic filters", filter);
  }
  if (source.qos > 1) {
    // Max QoS 1 keeps the ack after commit simple; QoS 2 publishes are downgraded by the broker.
    failExpected(key + ".qos", "0 or 1", std::to_string(source.qos));
  }
  if (!source.tls && (!source.tlsCa.empty() || !source.tlsCert.empty() || !source.tlsKey.empty() ||
                      !source.tlsVerify)) {
    fail(key + ".tls", "tls_ca, tls_cert, tls_key and tls_verify need tls = true");
  }
  if (source.tlsCert.empty() != source.tlsKey.empty()) {
    fail(key + (source.tlsCert.empty() ? ".tls_cert" : ".tls_key"),
         "a client certificate needs both tls_cert and tls_key");
  }
  for (const auto& [field, path] :
       {std::pair{".tls_ca", &source.tlsCa}, std::pair{".tls_cert", &source.tlsCert},
        std::pair{".tls_key", &source.tlsKey}}) {
    if (!path->empty() && !std::ifstream(*path).good()) {
      failExpected(key + field, "a readable file", *path);
    }
  }
}

std::vector<SourceConfig> sourcesFromToml(const toml::node& node) {
  const toml::array* array = node.as_array();
  if (array == nullptr) {
    fail("sources", "expected an array of tables ([[sources]]), got " + describeTomlValue(node));
  }
  std::vector<SourceConfig> sources;
  for (std::size_t i = 0; i < array->size(); ++i) {
    const std::string itemKey = "sources[" + std::to_string(i) + "]";
    const toml::table* table = (*array)[i].as_table();
    if (table == nullptr) {
      fail(itemKey, "expected a table, got " + describeTomlValue((*array)[i]));
    }
    SourceConfig source;
    bool haveName = false;
    bool haveHost = false;
    bool haveTopics = false;
    // Not a structured binding: the lambdas below capture `v`, which clang before 16 refuses.
    for (const auto& entry : *table) {
      const auto& k = entry.first;
      const auto& v = entry.second;
      const std::string field(k.str());
      const std::string fieldKey = itemKey + "." + field;
      const auto text = [&]() -> std::string {
        if (!v.is_string()) fail(fieldKey, "expected a string, got " + describeTomlValue(v));
        return v.as_string()->get();
      };
      const auto integer = [&](std::int64_t lo, std::int64_t hi) -> std::int64_t {
        const std::string expected =
            "an integer between " + std::to_string(lo) + " and " + std::to_string(hi);
        if (!v.is_integer())
          fail(fieldKey, "expected " + expected + ", got " + describeTomlValue(v));
        const std::int64_t value = v.as_integer()->get();
        if (value < lo || value > hi) failExpected(fieldKey, expected, std::to_string(value));
        return value;
      };
      const auto boolean = [&]() -> bool {
        if (!v.is_boolean()) fail(fieldKey, "expected true or false, got " + describeTomlValue(v));
        return v.as_boolean()->get();
      };
      if (field == "name") {
        source.name = text();
        haveName = true;
      } else if (field == "host") {
        source.host = text();
        haveHost = true;
      } else if (field == "port") {
        source.port = static_cast<std::uint16_t>(integer(1, 65535));
      } else if (field == "username") {
        source.username = text();
      } else if (field == "password") {
        source.password = text();
      } else if (field == "client_id") {
        source.clientId = text();
        if (source.clientId.empty() || source.clientId.size() > 65535) {
          failExpected(fieldKey, "a non-empty client id", source.clientId);
        }
      } else if (field == "topics") {
        const toml::array* topics = v.as_array();
        if (topics == nullptr)
          fail(fieldKey, "expected an array of strings, got " + describeTomlValue(v));
        for (std::size_t j = 0; j < topics->size(); ++j) {
          if (!(*topics)[j].is_string()) {
            fail(fieldKey, "expected an array of strings, got " + describeTomlValue((*topics)[j]));
          }
          source.topics.push_back((*topics)[j].as_string()->get());
        }
        haveTopics = true;
      } else if (field == "qos") {
        source.qos = static_cast<std::uint8_t>(integer(0, 1));
      } else if (field == "clean_session") {
        source.cleanSession = boolean();
      } else if (field == "keep_alive") {
        source.keepAlive = static_cast<std::uint16_t>(integer(0, 65535));
      } else if (field == "tls") {
        source.tls = boolean();
      } else if (field == "tls_ca") {
        source.tlsCa = text();
      } else if (field == "tls_cert") {
        source.tlsCert = text();
      } else if (field == "tls_key") {
        source.tlsKey = text();
      } else if (field == "tls_verify") {
        source.tlsVerify = boolean();
      } else {
        fail(fieldKey,
             "unknown key (expected name, host, port, username, password, client_id, "
             "topics, qos, clean_session, keep_alive, tls, tls_ca, tls_cert, tls_key, "
             "tls_verify)");
      }
    }
    if (!haveName || !haveHost || !haveTopics) {
      fail(itemKey, std::string("missing ") + (!haveName ? "name" : !haveHost ? "host" : "topics"));
    }
    validateSource(itemKey, source);
    sources.push_back(std::move(source));
  }
  return sources;
}

void applyTomlValue(Config& config, const KeyDescriptor& key, const toml::node& node) {
  switch (key.kind) {
    case Kind::kRoutes:
      config.ingest.routes = routesFromToml(key, node);
      return;
    case Kind::kAcl:
      config.mqtt.acl = aclFromToml(node);
      return;
    case Kind::kInteger:
      if (!node.is_integer()) {
        fail(key.name, "expected " + integerExpectation(key) + ", got " + describeTomlValue(node));
      }
      if (node.as_integer()->get() < 0) {
        failExpected(key.name, integerExpectation(key), std::to_string(node.as_integer()->get()));
      }
      key.set(config, key, std::to_string(node.as_integer()->get()));
      return;
    case Kind::kBool:
      if (!node.is_boolean()) {
        fail(key.name, "expected true or false, got " + describeTomlValue(node));
      }
      key.set(config, key, node.as_boolean()->get() ? "true" : "false");
      return;
    case Kind::kList: {
      const toml::array* array = node.as_array();
      if (array == nullptr) {
        fail(key.name, "expected an array of strings, got " + describeTomlValue(node));
      }
      std::string joined;
      for (std::size_t i = 0; i < array->size(); ++i) {
        if (!(*array)[i].is_string()) {
          fail(key.name, "expected an array of strings, got " + describeTomlValue((*array)[i]));
        }
        joined += (i ? "," : "") + (*array)[i].as_string()->get();
      }
      // An empty array disables every listener.
      key.set(config, key, joined);
      return;
    }
    case Kind::kString:
      if (!node.is_string()) {
        fail(key.name, "expected a string, got " + describeTomlValue(node));
      }
      key.set(config, key, node.as_string()->get());
      return;
  }
}

}  // namespace

const std::vector<std::string>& trackerProtocolNames() {
  static const std::vector<std::string> names{"gt06",  "teltonika", "h02",     "tk103", "gps103",
                                              "gl200", "meitrack",  "ruptela", "osmand"};
  return names;
}

std::string HostPort::toString() const {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

HostPort parseHostPort(const std::string& key, const std::string& text) {
  HostPort out;
  std::string portText;
  if (!text.empty() && text[0] == '[') {
    const std::size_t close = text.find(']');
    if (close == std::string::npos || close == 1 || close + 1 >= text.size() ||
        text[close + 1] != ':') {
      failExpected(key, "HOST:PORT", text);
    }
    out.host = text.substr(1, close - 1);
    portText = text.substr(close + 2);
  } else {
    const std::size_t colon = text.rfind(':');
    // A bare IPv6 address is ambiguous without brackets.
    if (colon == std::string::npos || colon == 0 || text.find(':') != colon) {
      failExpected(key, "HOST:PORT", text);
    }
    out.host = text.substr(0, colon);
    portText = text.substr(colon + 1);
  }
  if (std::any_of(out.host.begin(), out.host.end(),
                  [](char c) { return static_cast<unsigned char>(c) <= ' '; })) {
    failExpected(key, "HOST:PORT", text);
  }
  unsigned port = 0;
  const auto [ptr, ec] = std::from_chars(portText.data(), portText.data() + portText.size(), port);
  const bool digitsOnly =
      !portText.empty() &&
      std::all_of(portText.begin(), portText.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digitsOnly) {
    failExpected(key, "HOST:PORT", text);
  }
  if (ec != std::errc{} || ptr != portText.data() + portText.size() || port > 65535) {
    failExpected(key, "HOST:PORT with a port between 0 and 65535", text);
  }
  out.port = static_cast<std::uint16_t>(port);
  return out;
}

void Config::finalize() {
  if (server.nodeId.empty()) {
    server.nodeId = hostName();
  }
  for (std::size_t i = 0; i < ingest.routes.size(); ++i) {
    const IngestRoute& route = ingest.routes[i];
    const std::string key = "ingest.routes[" + std::to_string(i) + "]";
    validateRoute(key, route);
    // A topic level beyond the filter's depth can only exist after a '#'.
    if (route.deviceId.rfind("topic:", 0) == 0 && route.filter.back() != '#') {
      const auto levels =
          static_cast<unsigned long>(std::count(route.filter.begin(), route.filter.end(), '/')) + 1;
      const unsigned long wanted = std::stoul(route.deviceId.substr(6));
      if (wanted > levels) {
        fail(key, "route " + quoted(route.filter) + " has " + std::to_string(levels) +
                      " topic levels, so device_id " + quoted(route.deviceId) + " can never match");
      }
    }
  }
  for (std::size_t i = 0; i < sources.size(); ++i) {
    SourceConfig& source = sources[i];
    const std::string key = "sources[" + std::to_string(i) + "]";
    validateSource(key, source);
    for (std::size_t j = 0; j < i; ++j) {
      if (sources[j].name == source.name)
        fail(key + ".name", "duplicate source name " + quoted(source.name));
    }
    if (source.clientId.empty()) {
      source.clientId = "tern-";
      source.clientId += server.nodeId;
      source.clientId += "-";
      source.clientId += source.name;
    }
  }
  if (mqtt.tlsCert.empty() != mqtt.tlsKey.empty()) {
    fail(mqtt.tlsCert.empty() ? "mqtt.tls_cert" : "mqtt.tls_key",
         "TLS needs both mqtt.tls_cert and mqtt.tls_key");
  }
  if (!mqtt.tlsCa.empty() && mqtt.tlsCert.empty()) {
    fail("mqtt.tls_ca", "client certificates need TLS: set mqtt.tls_cert and mqtt.tls_key");
  }
  if (mqtt.tlsRequireClientCert && mqtt.tlsCa.empty()) {
    fail("mqtt.tls_require_client_cert",
         "needs mqtt.tls_ca (the CA client certificates are checked against)");
  }
  if (mqtt.wssListen && mqtt.tlsCert.empty()) {
    fail("mqtt.wss_listen", "needs mqtt.tls_cert and mqtt.tls_key");
  }
  for (std::size_t i = 0; i < mqtt.acl.size(); ++i) {
    validateAclEntry("mqtt.acl[" + std::to_string(i) + "]", mqtt.acl[i]);
  }
  if (storage.backend == "postgres" && storage.url.empty()) {
    fail("storage.url", "required when storage.backend is postgres");
  }
  const auto wildcard = [](const std::string& host) {
    return host == "0.0.0.0" || host == "::" || host.empty();
  };
  if (mqtt.listen.port != 0 && mqtt.listen.port == http.listen.port &&
      (mqtt.listen.host == http.listen.host || wildcard(mqtt.listen.host) ||
       wildcard(http.listen.host))) {
    fail("http.listen",
         "port " + std::to_string(http.listen.port) + " is also used by mqtt.listen");
  }
}

void applyConfigValue(Config& config, const std::string& dottedKey, const std::string& value) {
  const KeyDescriptor* key = findKey(dottedKey);
  if (key == nullptr) {
    throw ConfigError("config: unknown key " + quoted(dottedKey));
  }
  key->set(config, *key, value);
}

void applyConfigFile(Config& config, const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw ConfigError("config: cannot read " + path);
  }
  std::ostringstream contents;
  contents << in.rdbuf();
  toml::table root;
  try {
    root = toml::parse(contents.str(), path);
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    std::string description(e.description());
    std::replace(description.begin(), description.end(), '\n', ' ');
    throw ConfigError("config: " + path + ":" + std::to_string(where.line) + ":" +
                      std::to_string(where.column) + ": " + description);
  }
  // Validate into a copy so a bad file leaves `config` untouched.
  Config updated = config;
  for (const auto& [sectionName, sectionNode] : root) {
    const std::string section(sectionName.str());
    if (section == "sources") {
      updated.sources = sourcesFromToml(sectionNode);
      continue;
    }
    const toml::table* table = sectionNode.as_table();
    if (table == nullptr) {
      throw ConfigError("config: " + path + ": unknown key " + quoted(section) +
                        " (settings belong in a [section])");
    }
    for (const auto& [name, node] : *table) {
      const std::string dotted = section + "." + std::string(name.str());
      const KeyDescriptor* key = findKey(dotted);
      if (key == nullptr) {
        throw ConfigError("config: " + path + ": unknown key " + quoted(dotted));
      }
      applyTomlValue(updated, *key, node);
    }
  }
  config = std::move(updated);
}

void applyConfigEnv(Config& config, const std::map<std::string, std::string>& env) {
  Config updated = config;
  for (const auto& [name, value] : env) {
    if (name.rfind("TERN_", 0) != 0 || reservedEnvName(name)) {
      continue;
    }
    const KeyDescriptor* match = nullptr;
    for (const auto& key : keyTable()) {
      if (envName(key.name) == name) {
        match = &key;
        break;
      }
    }
    if (match == nullptr) {
      throw ConfigError("config: unknown environment variable " + name);
    }
    match->set(updated, *match, value);
  }
  config = std::move(updated);
}

std::map<std::string, std::string> ternEnvironment() {
  std::map<std::string, std::string> out;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const std::string_view entry(*e);
    if (entry.rfind("TERN_", 0) != 0) {
      continue;
    }
    const std::size_t eq = entry.find('=');
    if (eq == std::string_view::npos) {
      continue;
    }
    out.emplace(std::string(entry.substr(0, eq)), std::string(entry.substr(eq + 1)));
  }
  return out;
}

std::vector<std::string> configKeys() {
  std::vector<std::string> keys;
  for (const auto& key : keyTable()) {
    keys.emplace_back(key.name);
  }
  return keys;
}

}  // namespace tern::core
