#include "core/config.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>
#include <map>

#include "core/ids.h"

namespace tern::core {
namespace {

// Writes `contents` to a fresh file under the gtest temp dir and returns its path.
std::string writeTemp(const std::string& name, const std::string& contents) {
  const std::string path = ::testing::TempDir() + "tern_config_test_" + name + ".toml";
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
  return path;
}

// Runs `f`, expects a ConfigError, returns its message.
template <class F>
std::string errorOf(F&& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no ConfigError thrown";
  return {};
}

TEST(ConfigTest, Defaults) {
  Config c;
  EXPECT_EQ(c.server.dataDir, "./data");
  EXPECT_EQ(c.mqtt.listen.toString(), "0.0.0.0:1883");
  EXPECT_EQ(c.http.listen.toString(), "127.0.0.1:8080");
  EXPECT_EQ(c.http.threads, 4u);
  ASSERT_EQ(c.ingest.routes.size(), 1u);
  EXPECT_EQ(c.ingest.routes[0].filter, "device/+");
  EXPECT_TRUE(c.ingest.spool);
  EXPECT_EQ(c.ingest.spoolMaxBytes, 1024ull * 1024 * 1024);
  EXPECT_EQ(c.ingest.latestCacheDevices, 1'000'000u);
  EXPECT_EQ(c.ingest.latestCacheSyncUs, 2'000'000);
  EXPECT_EQ(c.api.tokenTtlUs, 15LL * 60 * 1'000'000);
  EXPECT_EQ(c.api.refreshTtlUs, 30LL * 86'400 * 1'000'000);
  EXPECT_EQ(c.api.loginMaxFailures, 5u);
  EXPECT_EQ(c.web.tileUrl, "");
  EXPECT_EQ(c.web.onlineWindowUs, 5LL * 60 * 1'000'000);
  EXPECT_NO_THROW(c.finalize());
  EXPECT_EQ(c.server.nodeId, hostName());
}

TEST(ConfigTest, ListsAllKeys) {
  const std::vector<std::string> expected{"server.data_dir",
                                          "server.node_id",
                                          "server.threads",
                                          "server.log_format",
                                          "server.log_level",
                                          "mqtt.listen",
                                          "mqtt.max_packet_size",
                                          "mqtt.max_inflight",
                                          "mqtt.max_queued",
                                          "mqtt.max_connections",
                                          "mqtt.sys_interval",
                                          "mqtt.persistence",
                                          "mqtt.server_keep_alive",
                                          "mqtt.receive_maximum",
                                          "mqtt.topic_alias_maximum",
                                          "mqtt.proxy_protocol",
                                          "mqtt.tls_listen",
                                          "mqtt.tls_cert",
                                          "mqtt.tls_key",
                                          "mqtt.tls_ca",
                                          "mqtt.tls_require_client_cert",
                                          "mqtt.websocket",
                                          "mqtt.ws_listen",
                                          "mqtt.wss_listen",
                                          "mqtt.allow_anonymous",
                                          "mqtt.login_max_failures",
                                          "mqtt.credential_check_interval",
                                          "mqtt.acl",
                                          "http.listen",
                                          "http.threads",
                                          "api.token_ttl",
                                          "api.refresh_ttl",
                                          "api.login_max_failures",
                                          "storage.backend",
                                          "storage.sync",
                                          "storage.url",
                                          "storage.partition",
                                          "storage.retention",
                                          "storage.retention_keys",
                                          "storage.retention_schedule",
                                          "storage.rollups",
                                          "storage.rollup_schedule",
                                          "ingest.routes",
                                          "ingest.batch_size",
                                          "ingest.batch_ms",
                                          "ingest.queue_capacity",
                                          "ingest.spool",
                                          "ingest.spool_max_bytes",
                                          "ingest.latest_cache_devices",
                                          "ingest.latest_cache_sync",
                                          "trackers.enabled",
                                          "trackers.host",
                                          "trackers.register_unknown",
                                          "trackers.proxy_protocol",
                                          "trackers.gt06_port",
                                          "trackers.teltonika_port",
                                          "trackers.h02_port",
                                          "trackers.tk103_port",
                                          "trackers.gps103_port",
                                          "trackers.gl200_port",
                                          "trackers.meitrack_port",
                                          "trackers.ruptela_port",
                                          "trackers.osmand_port",
                                          "web.tile_url",
                                          "web.tile_attribution",
                                          "web.online_window"};
  EXPECT_EQ(configKeys(), expected);
}

TEST(ConfigTest, AppliesEveryKeyFromText) {
  Config c;
  applyConfigValue(c, "server.data_dir", "/var/lib/tern");
  applyConfigValue(c, "server.node_id", "node-1");
  applyConfigValue(c, "server.threads", "4");
  applyConfigValue(c, "server.log_format", "json");
  applyConfigValue(c, "server.log_level", "debug");
  applyConfigValue(c, "mqtt.listen", "[::1]:1884");
  applyConfigValue(c, "mqtt.max_packet_size", "16");
  applyConfigValue(c, "mqtt.max_inflight", "65535");
  applyConfigValue(c, "mqtt.max_queued", "10000000");
  applyConfigValue(c, "mqtt.max_connections", "1000000");
  applyConfigValue(c, "mqtt.sys_interval", "0");
  applyConfigValue(c, "mqtt.persistence", "false");
  applyConfigValue(c, "mqtt.server_keep_alive", "30");
  applyConfigValue(c, "mqtt.receive_maximum", "100");
  applyConfigValue(c, "mqtt.topic_alias_maximum", "0");
  applyConfigValue(c, "mqtt.tls_listen", "127.0.0.1:8884");
  applyConfigValue(c, "mqtt.tls_cert", "/etc/tern/cert.pem");
  applyConfigValue(c, "mqtt.tls_key", "/etc/tern/key.pem");
  applyConfigValue(c, "mqtt.tls_ca", "/etc/tern/ca.pem");
  applyConfigValue(c, "mqtt.tls_require_client_cert", "true");
  applyConfigValue(c, "mqtt.websocket", "false");
  applyConfigValue(c, "mqtt.ws_listen", "0.0.0.0:8083");
  applyConfigValue(c, "mqtt.wss_listen", "0.0.0.0:8084");
  applyConfigValue(c, "http.listen", "localhost:0");
  applyConfigValue(c, "http.threads", "2");
  applyConfigValue(c, "api.token_ttl", "1s");
  applyConfigValue(c, "api.refresh_ttl", "7d");
  applyConfigValue(c, "api.login_max_failures", "0");
  applyConfigValue(c, "storage.backend", "sqlite");
  applyConfigValue(c, "storage.sync", "full");
  applyConfigValue(c, "storage.url", "postgresql://tern@db:5432/tern");
  applyConfigValue(c, "storage.partition", "1h");
  applyConfigValue(c, "storage.retention", "90d");
  applyConfigValue(c, "storage.retention_keys", "rpm=7d,can.dtcs=12h");
  applyConfigValue(c, "storage.retention_schedule", "@hourly");
  applyConfigValue(c, "storage.rollups", "false");
  applyConfigValue(c, "storage.rollup_schedule", "*/5 * * * *");
  applyConfigValue(c, "ingest.routes", "a/+=topic:2;b/#=json:meta.id");
  applyConfigValue(c, "ingest.batch_size", "1");
  applyConfigValue(c, "ingest.batch_ms", "10000");
  applyConfigValue(c, "ingest.queue_capacity", "100");
  applyConfigValue(c, "ingest.spool", "false");
  applyConfigValue(c, "ingest.spool_max_bytes", "1048576");
  applyConfigValue(c, "ingest.latest_cache_devices", "0");
  applyConfigValue(c, "ingest.latest_cache_sync", "500ms");
  applyConfigValue(c, "web.tile_url", "https://tiles.example/{z}/{x}/{y}.png");
  applyConfigValue(c, "web.tile_attribution", "© Example");
  applyConfigValue(c, "web.online_window", "90s");
  EXPECT_EQ(c.server.dataDir, "/var/lib/tern");
  EXPECT_EQ(c.server.nodeId, "node-1");
  EXPECT_EQ(c.server.threads, 4u);
  EXPECT_EQ(c.server.logFormat, "json");
  EXPECT_EQ(c.server.logLevel, "debug");
  EXPECT_EQ(c.mqtt.listen.host, "::1");
  EXPECT_EQ(c.mqtt.listen.port, 1884);
  EXPECT_EQ(c.mqtt.listen.toString(), "[::1]:1884");
  EXPECT_EQ(c.mqtt.maxPacketSize, 16u);
  EXPECT_EQ(c.mqtt.maxInflight, 65535u);
  EXPECT_EQ(c.mqtt.maxQueued, 10'000'000u);
  EXPECT_EQ(c.mqtt.maxConnections, 1'000'000u);
  EXPECT_EQ(c.mqtt.sysInterval, 0u);
  EXPECT_EQ(c.mqtt.serverKeepAlive, 30u);
  EXPECT_EQ(c.mqtt.receiveMaximum, 100u);
  EXPECT_EQ(c.mqtt.topicAliasMaximum, 0u);
  EXPECT_EQ(c.mqtt.tlsListen.toString(), "127.0.0.1:8884");
  EXPECT_EQ(c.mqtt.tlsCert, "/etc/tern/cert.pem");
  EXPECT_EQ(c.mqtt.tlsKey, "/etc/tern/key.pem");
  EXPECT_EQ(c.mqtt.tlsCa, "/etc/tern/ca.pem");
  EXPECT_TRUE(c.mqtt.tlsRequireClientCert);
  EXPECT_FALSE(c.mqtt.websocket);
  EXPECT_FALSE(c.mqtt.persistence);
  ASSERT_TRUE(c.mqtt.wsListen);
  EXPECT_EQ(c.mqtt.wsListen->port, 8083);
  ASSERT_TRUE(c.mqtt.wssListen);
  EXPECT_EQ(c.mqtt.wssListen->port, 8084);
  EXPECT_EQ(c.http.listen.toString(), "localhost:0");
  EXPECT_EQ(c.http.threads, 2u);
  EXPECT_EQ(c.api.tokenTtlUs, 1'000'000);
  EXPECT_EQ(c.api.refreshTtlUs, 7LL * 86'400'000'000);
  EXPECT_EQ(c.api.loginMaxFailures, 0u);
  EXPECT_EQ(c.storage.sync, "full");
  EXPECT_EQ(c.storage.url, "postgresql://tern@db:5432/tern");
  EXPECT_EQ(c.storage.partitionUs, 3'600'000'000);
  EXPECT_EQ(c.storage.retentionUs, 90LL * 86'400'000'000);
  ASSERT_EQ(c.storage.retentionKeys.size(), 2u);
  EXPECT_EQ(c.storage.retentionKeys[1].first, "can.dtcs");
  EXPECT_EQ(c.storage.retentionKeys[1].second, 12LL * 3'600'000'000);
  EXPECT_EQ(c.storage.retentionSchedule, "@hourly");
  EXPECT_FALSE(c.storage.rollups);
  EXPECT_EQ(c.storage.rollupSchedule, "*/5 * * * *");
  EXPECT_EQ(c.web.tileUrl, "https://tiles.example/{z}/{x}/{y}.png");
  EXPECT_EQ(c.web.tileAttribution, "© Example");
  EXPECT_EQ(c.web.onlineWindowUs, 90'000'000);
  ASSERT_EQ(c.ingest.routes.size(), 2u);
  EXPECT_EQ(c.ingest.routes[1].filter, "b/#");
  EXPECT_EQ(c.ingest.routes[1].deviceId, "json:meta.id");
  EXPECT_EQ(c.ingest.batchSize, 1u);
  EXPECT_EQ(c.ingest.batchMs, 10'000u);
  EXPECT_EQ(c.ingest.queueCapacity, 100u);
  EXPECT_EQ(c.ingest.latestCacheSyncUs, 500'000);
  EXPECT_FALSE(c.ingest.spool);
  EXPECT_EQ(c.ingest.spoolMaxBytes, 1'048'576u);
  EXPECT_EQ(c.ingest.latestCacheDevices, 0u);
  EXPECT_NO_THROW(c.finalize());
}

TEST(ConfigTest, EveryErrorNamesTheKey) {
  const std::map<std::string, std::vector<std::string>> bad{
      {"server.data_dir", {""}},
      {"server.node_id", {"a/b", "has space"}},
      {"server.threads", {"257", "-1", "abc", "", "4 "}},
      {"server.log_format", {"xml", ""}},
      {"server.log_level", {"loud", "INFO"}},
      {"mqtt.listen",
       {"foo", "1883", ":1883", "host:", "host:65536", "host:x", "::1:1883", "[::1]1883", "[]:1"}},
      {"mqtt.max_packet_size", {"15", "268435456", "1e6"}},
      {"mqtt.max_inflight", {"0", "65536", "abc", "+5", "0x10"}},
      {"mqtt.max_queued", {"0", "10000001"}},
      {"mqtt.max_connections", {"0", "1000001"}},
      {"mqtt.sys_interval", {"86401", "1.5"}},
      {"mqtt.persistence", {"yes please"}},
      {"mqtt.server_keep_alive", {"65536", "x"}},
      {"mqtt.receive_maximum", {"0", "65536"}},
      {"mqtt.topic_alias_maximum", {"65536", "-1"}},
      {"http.listen", {"foo", "localhost:99999"}},
      {"http.threads", {"0", "65", "-1", "two", ""}},
      {"api.token_ttl", {"", "15", "0s", "2d", "soon", "-1m"}},
      {"api.refresh_ttl", {"", "30", "500ms", "367d"}},
      {"web.tile_url", {"tiles.example/{z}/{x}/{y}.png", "javascript:alert(1)"}},
      {"web.tile_attribution", {"line\nbreak"}},
      {"web.online_window", {"", "300", "0s", "31d"}},
      {"api.login_max_failures", {"-1", "x", "1000001"}},
      {"storage.backend", {"mysql", ""}},
      {"storage.sync", {"off"}},
      {"storage.url", {"", "localhost", "mysql://db/tern", "host=db\ndbname=x"}},
      {"storage.partition", {"", "1", "59s", "367d", "0h"}},
      {"storage.retention", {"", "90", "-1d", "soon", "0s"}},
      {"storage.retention_keys", {"rpm", "rpm=", "=7d", "rpm=7", "rpm=7d,x=y", "a\"b=1d"}},
      {"storage.retention_schedule", {""}},
      {"storage.rollups", {"maybe", ""}},
      {"storage.rollup_schedule", {""}},
      {"ingest.routes",
       {"nofilter", "=topic:1", "a/+=topic:0", "a/+=topic:x", "a/+=json:", "a/+=json:.x",
        "a/+=mqtt:1", "a/#/b=topic:1", "a/b+=topic:1"}},
      {"ingest.batch_size", {"0", "1000001"}},
      {"ingest.batch_ms", {"10001"}},
      {"ingest.queue_capacity", {"99", "100000001", "99999999999999999999999"}},
      {"ingest.spool", {"maybe", ""}},
      {"ingest.spool_max_bytes", {"1048575", "1GiB", "-1", "1000000000000000001"}},
      {"ingest.latest_cache_devices", {"-1", "100000001", "1e6", ""}},
      {"ingest.latest_cache_sync", {"", "2", "-1s", "2h"}},
      {"mqtt.proxy_protocol", {"maybe", "2", ""}},
      {"mqtt.tls_listen", {"", "8883", "host:65536"}},
      {"mqtt.tls_cert", {"", "a\nb"}},
      {"mqtt.tls_key", {""}},
      {"mqtt.tls_ca", {""}},
      {"mqtt.tls_require_client_cert", {"maybe"}},
      {"mqtt.websocket", {"on"}},
      {"mqtt.ws_listen", {"foo", "[::1]"}},
      {"mqtt.wss_listen", {"1.2.3.4:x"}},
      {"mqtt.allow_anonymous", {"maybe", "2"}},
      {"mqtt.login_max_failures", {"-1", "x", "1000001"}},
      {"mqtt.credential_check_interval", {"", "5", "0s", "2h"}},
      {"mqtt.acl", {"", "role=device"}},
      {"trackers.enabled", {"gt06,unknown", "GT06"}},
      {"trackers.host", {""}},
      {"trackers.register_unknown", {"maybe"}},
      {"trackers.proxy_protocol", {"on"}},
      {"trackers.gt06_port", {"65536", "-1", "x"}},
      {"trackers.teltonika_port", {"99999"}},
      {"trackers.h02_port", {"abc"}},
      {"trackers.tk103_port", {"1.5"}},
      {"trackers.gps103_port", {"70000"}},
      {"trackers.gl200_port", {""}},
      {"trackers.meitrack_port", {"0x10"}},
      {"trackers.ruptela_port", {"+5"}},
      {"trackers.osmand_port", {"65536"}},
  };
  ASSERT_EQ(bad.size(), configKeys().size());
  for (const auto& [key, values] : bad) {
    for (const auto& value : values) {
      Config c;
      const std::string msg = errorOf([&] { applyConfigValue(c, key, value); });
      EXPECT_EQ(msg.rfind("config: " + key, 0), 0u) << key << "=" << value << " → " << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    }
  }
}

TEST(ConfigTest, ErrorMessagesReadWell) {
  Config c;
  EXPECT_EQ(errorOf([&] { applyConfigValue(c, "mqtt.max_inflight", "abc"); }),
            R"(config: mqtt.max_inflight: expected an integer between 1 and 65535, got "abc")");
  EXPECT_EQ(errorOf([&] { applyConfigValue(c, "http.listen", "foo"); }),
            R"(config: http.listen: expected HOST:PORT, got "foo")");
  EXPECT_EQ(errorOf([&] { applyConfigValue(c, "storage.sync", "off"); }),
            R"(config: storage.sync: expected one of normal|full, got "off")");
  EXPECT_EQ(errorOf([&] { applyConfigValue(c, "storage.backend", "pg"); }),
            R"(config: storage.backend: expected one of sqlite|postgres, got "pg")");
  EXPECT_EQ(errorOf([&] { applyConfigValue(c, "mqtt.nope", "1"); }),
            R"(config: unknown key "mqtt.nope")");
}

TEST(ConfigTest, ParsesHostPort) {
  EXPECT_EQ(parseHostPort("k", "0.0.0.0:1883").toString(), "0.0.0.0:1883");
  const HostPort v6 = parseHostPort("k", "[::]:0");
  EXPECT_EQ(v6.host, "::");
  EXPECT_EQ(v6.port, 0);
  const HostPort named = parseHostPort("k", "example.com:65535");
  EXPECT_EQ(named.host, "example.com");
  EXPECT_EQ(named.port, 65535);
  EXPECT_THROW(parseHostPort("k", "[::1"), ConfigError);
  EXPECT_THROW(parseHostPort("k", "a b:1"), ConfigError);
  EXPECT_THROW(parseHostPort("k", "host:-1"), ConfigError);
}

TEST(ConfigTest, LoadsTomlFile) {
  const std::string path = writeTemp("full", R"(
[server]
data_dir = "/srv/tern"
threads = 8
log_format = "json"

[mqtt]
listen = "127.0.0.1:11883"
max_inflight = 10

[storage]
sync = "full"

[[ingest.routes]]
filter = "device/+"
device_id = "topic:2"

[[ingest.routes]]
filter = "sensors/#"
device_id = "json:uuid"

[ingest]
batch_ms = 5
)");
  Config c;
  applyConfigFile(c, path);
  EXPECT_EQ(c.server.dataDir, "/srv/tern");
  EXPECT_EQ(c.server.threads, 8u);
  EXPECT_EQ(c.server.logFormat, "json");
  EXPECT_EQ(c.mqtt.listen.port, 11883);
  EXPECT_EQ(c.mqtt.maxInflight, 10u);
  EXPECT_EQ(c.storage.sync, "full");
  EXPECT_EQ(c.ingest.batchMs, 5u);
  ASSERT_EQ(c.ingest.routes.size(), 2u);
  EXPECT_EQ(c.ingest.routes[1].filter, "sensors/#");
  EXPECT_EQ(c.ingest.routes[1].deviceId, "json:uuid");
}

TEST(ConfigTest, TomlErrorsNameKeyFileOrLine) {
  struct Case {
    const char* toml;
    const char* expectedPrefix;
  };
  const Case cases[] = {
      {"[mqtt]\nmax_inflight = \"10\"\n", "config: mqtt.max_inflight: expected an integer"},
      {"[mqtt]\nmax_inflight = 0\n",
       "config: mqtt.max_inflight: expected an integer between 1 and 65535, got \"0\""},
      {"[mqtt]\nmax_inflight = -3\n", "config: mqtt.max_inflight:"},
      {"[mqtt]\nmax_inflight = 1.5\n", "config: mqtt.max_inflight:"},
      {"[mqtt]\nlisten = 1883\n", "config: mqtt.listen: expected a string, got integer 1883"},
      {"[server]\nthreads = true\n", "config: server.threads:"},
      {"[ingest]\nroutes = \"a=topic:1\"\n", "config: ingest.routes:"},
      {"[[ingest.routes]]\nfilter = \"a/+\"\n", "config: ingest.routes[0]: missing device_id"},
      {"[[ingest.routes]]\nfilter = \"a/+\"\ndevice_id = \"topic:2\"\n[[ingest.routes]]\nfilter = "
       "\"b\"\ndevice_id = \"x\"\n",
       "config: ingest.routes[1]:"},
      {"[[ingest.routes]]\nfilter = \"a/+\"\ndevice_id = \"topic:2\"\nqos = 1\n",
       "config: ingest.routes[0].qos:"},
  };
  for (const auto& tc : cases) {
    Config c;
    const std::string path = writeTemp("bad", tc.toml);
    const std::string msg = errorOf([&] { applyConfigFile(c, path); });
    EXPECT_EQ(msg.rfind(tc.expectedPrefix, 0), 0u) << tc.toml << " → " << msg;
  }

  Config c;
  const std::string unknown = writeTemp("unknown", "[mqtt]\nmax_infilght = 3\n");
  EXPECT_NE(errorOf([&] { applyConfigFile(c, unknown); }).find("\"mqtt.max_infilght\""),
            std::string::npos);
  const std::string unknownSection = writeTemp("unknown_section", "[mqqt]\nlisten = \"a:1\"\n");
  EXPECT_NE(errorOf([&] { applyConfigFile(c, unknownSection); }).find("\"mqqt.listen\""),
            std::string::npos);
  const std::string topLevel = writeTemp("top_level", "threads = 3\n");
  EXPECT_NE(errorOf([&] { applyConfigFile(c, topLevel); }).find("\"threads\""), std::string::npos);

  const std::string syntax = writeTemp("syntax", "[mqtt]\nlisten = \"a:1\"\nmax_inflight = = 3\n");
  const std::string msg = errorOf([&] { applyConfigFile(c, syntax); });
  EXPECT_EQ(msg.rfind("config: " + syntax + ":3:", 0), 0u) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos);

  const std::string missing = ::testing::TempDir() + "tern_config_test_does_not_exist.toml";
  EXPECT_NE(errorOf([&] { applyConfigFile(c, missing); }).find(missing), std::string::npos);
}

TEST(ConfigTest, BadFileLeavesConfigUntouched) {
  Config c;
  const std::string path = writeTemp("partial", "[mqtt]\nmax_inflight = 7\nmax_queued = 0\n");
  EXPECT_THROW(applyConfigFile(c, path), ConfigError);
  EXPECT_EQ(c.mqtt.maxInflight, 64u);
}

TEST(ConfigTest, AppliesEnvironment) {
  Config c;
  applyConfigEnv(c, {{"TERN_SERVER_DATA_DIR", "/env"},
                     {"TERN_MQTT_LISTEN", "127.0.0.1:1999"},
                     {"TERN_HTTP_LISTEN", "127.0.0.1:8999"},
                     {"TERN_MQTT_MAX_PACKET_SIZE", "4096"},
                     {"TERN_INGEST_ROUTES", "device/+=topic:2;sensors/#=json:uuid"},
                     {"TERN_CONFIG", "/ignored/by/config.toml"}});
  EXPECT_EQ(c.server.dataDir, "/env");
  EXPECT_EQ(c.mqtt.listen.port, 1999);
  EXPECT_EQ(c.http.listen.port, 8999);
  EXPECT_EQ(c.mqtt.maxPacketSize, 4096u);
  ASSERT_EQ(c.ingest.routes.size(), 2u);
  EXPECT_EQ(c.ingest.routes[1].deviceId, "json:uuid");

  EXPECT_EQ(errorOf([&] {
              applyConfigEnv(c, {{"TERN_MQTT_MAX_INFLIHGT", "3"}});
            }),
            "config: unknown environment variable TERN_MQTT_MAX_INFLIHGT");
  EXPECT_EQ(errorOf([&] {
              applyConfigEnv(c, {{"TERN_MQTT_MAX_INFLIGHT", "x"}});
            }).rfind("config: mqtt.max_inflight:", 0),
            0u);
  // Names outside the TERN_ prefix are not ours to judge.
  EXPECT_NO_THROW(applyConfigEnv(c, {{"HOME", "/root"}, {"TERNARY", "1"}}));
}

TEST(ConfigTest, EnvCanEmptyTheRoutes) {
  Config c;
  applyConfigEnv(c, {{"TERN_INGEST_ROUTES", ""}});
  EXPECT_TRUE(c.ingest.routes.empty());
}

TEST(ConfigTest, PrecedenceFileThenEnvThenExplicit) {
  const std::string path = writeTemp("precedence", R"(
[mqtt]
max_inflight = 10
max_queued = 20
max_connections = 30
)");
  Config c;
  applyConfigFile(c, path);
  applyConfigEnv(c, {{"TERN_MQTT_MAX_QUEUED", "200"}, {"TERN_MQTT_MAX_CONNECTIONS", "300"}});
  applyConfigValue(c, "mqtt.max_connections", "3000");
  c.finalize();
  EXPECT_EQ(c.mqtt.maxInflight, 10u);       // file only
  EXPECT_EQ(c.mqtt.maxQueued, 200u);        // env beats file
  EXPECT_EQ(c.mqtt.maxConnections, 3000u);  // explicit beats env
  EXPECT_EQ(c.mqtt.sysInterval, 10u);       // default untouched
}

TEST(ConfigTest, ReadsProcessEnvironment) {
  ::setenv("TERN_TEST_ONLY_VARIABLE", "v=1", 1);
  const auto env = ternEnvironment();
  ::unsetenv("TERN_TEST_ONLY_VARIABLE");
  ASSERT_EQ(env.count("TERN_TEST_ONLY_VARIABLE"), 1u);
  EXPECT_EQ(env.at("TERN_TEST_ONLY_VARIABLE"), "v=1");
  for (const auto& [name, value] : env) {
    EXPECT_EQ(name.rfind("TERN_", 0), 0u);
  }
}

TEST(ConfigTest, FinalizeChecksCrossFieldRules) {
  {
    Config c;
    c.server.nodeId = "given";
    c.finalize();
    EXPECT_EQ(c.server.nodeId, "given");
  }
  {
    Config c;
    c.ingest.routes = {{"device/+", "topic:3"}};
    EXPECT_EQ(errorOf([&] { c.finalize(); }).rfind("config: ingest.routes[0]:", 0), 0u);
    c.ingest.routes = {{"device/#", "topic:3"}};  // '#' can supply deeper levels
    EXPECT_NO_THROW(c.finalize());
    c.ingest.routes = {{"", "topic:1"}};
    EXPECT_EQ(errorOf([&] { c.finalize(); }).rfind("config: ingest.routes[0]:", 0), 0u);
    c.ingest.routes = {{"a", "json:"}};
    EXPECT_EQ(errorOf([&] { c.finalize(); }).rfind("config: ingest.routes[0]:", 0), 0u);
  }
  {
    Config c;
    applyConfigValue(c, "http.listen", "127.0.0.1:1883");
    EXPECT_EQ(errorOf([&] { c.finalize(); }).rfind("config: http.listen:", 0), 0u);
    applyConfigValue(c, "http.listen", "127.0.0.1:0");
    applyConfigValue(c, "mqtt.listen", "127.0.0.1:0");
    EXPECT_NO_THROW(c.finalize());  // two ephemeral ports never collide
  }
  {
    Config c;
    applyConfigValue(c, "storage.backend", "postgres");
    EXPECT_EQ(errorOf([&] { c.finalize(); }),
              "config: storage.url: required when storage.backend is postgres");
    applyConfigValue(c, "storage.url", "host=127.0.0.1 port=5432 dbname=tern");
    EXPECT_NO_THROW(c.finalize());
  }
  {
    Config c;
    applyConfigValue(c, "mqtt.tls_cert", "cert.pem");
    EXPECT_EQ(errorOf([&] { c.finalize(); }).rfind("config: mqtt.tls_key:", 0), 0u);
    applyConfigValue(c, "mqtt.tls_key", "key.pem");
    EXPECT_NO_THROW(c.finalize());
    applyConfigValue(c, "mqtt.tls_require_client_cert", "true");
    EXPECT_EQ(errorOf([&] { c.finalize(); }).rfind("config: mqtt.tls_require_client_cert:", 0), 0u);
    applyConfigValue(c, "mqtt.tls_ca", "ca.pem");
    EXPECT_NO_THROW(c.finalize());
  }
  {
    Config c;
    applyConfigValue(c, "mqtt.wss_listen", "127.0.0.1:0");
    EXPECT_EQ(errorOf([&] { c.finalize(); }).rfind("config: mqtt.wss_listen:", 0), 0u);
    applyConfigValue(c, "mqtt.wss_listen", "off");
    applyConfigValue(c, "mqtt.tls_ca", "ca.pem");
    EXPECT_EQ(errorOf([&] { c.finalize(); }).rfind("config: mqtt.tls_ca:", 0), 0u);
  }
}

TEST(ConfigTest, LoadsSources) {
  const std::string path = writeTemp("sources", R"(
[server]
node_id = "gw-1"

[[sources]]
name = "plant"
host = "broker.example"
port = 8883
username = "tern"
password = "secret"
client_id = "tern-plant"
topics = ["device/+", "sensors/#"]
qos = 1
clean_session = true
keep_alive = 30

[[sources]]
name = "lab"
host = "10.0.0.2"
topics = ["lab/#"]
)");
  Config c;
  applyConfigFile(c, path);
  c.finalize();
  ASSERT_EQ(c.sources.size(), 2u);
  const SourceConfig& plant = c.sources[0];
  EXPECT_EQ(plant.name, "plant");
  EXPECT_EQ(plant.host, "broker.example");
  EXPECT_EQ(plant.port, 8883);
  EXPECT_EQ(plant.username, "tern");
  EXPECT_EQ(plant.password, "secret");
  EXPECT_EQ(plant.clientId, "tern-plant");
  EXPECT_EQ(plant.topics, (std::vector<std::string>{"device/+", "sensors/#"}));
  EXPECT_TRUE(plant.cleanSession);
  EXPECT_EQ(plant.keepAlive, 30);
  const SourceConfig& lab = c.sources[1];
  EXPECT_EQ(lab.port, 1883);
  EXPECT_EQ(lab.qos, 1);
  EXPECT_FALSE(lab.cleanSession);  // QoS 1 messages queue at the source while Tern is down
  EXPECT_FALSE(lab.username.has_value());
  EXPECT_EQ(lab.clientId, "tern-gw-1-lab");
}

TEST(ConfigTest, SourceErrorsNameTheKey) {
  // One valid entry plus `extra` (appended: GCC 12 warns falsely on "literal" + std::string).
  const auto entry = [](const char* extra) {
    std::string text = "[[sources]]\nname = \"a\"\nhost = \"h\"\ntopics = [\"t/#\"]\n";
    text += extra;
    return text;
  };
  struct Case {
    std::string toml;
    const char* expectedPrefix;
  };
  const Case cases[] = {
      {entry("port = 70000\n"),
       "config: sources[0].port: expected an integer between 1 and 65535, got \"70000\""},
      {entry("port = \"1883\"\n"), "config: sources[0].port: expected an integer"},
      {entry("qos = 2\n"), "config: sources[0].qos: expected an integer between 0 and 1"},
      {entry("tls_ca = \"/etc/hostname\"\n"),
       "config: sources[0].tls: tls_ca, tls_cert, tls_key and tls_verify need tls = true"},
      {entry("tls = true\ntls_ca = \"/nonexistent/ca.pem\"\n"),
       "config: sources[0].tls_ca: expected a readable file"},
      {entry("password = \"p\"\n"), "config: sources[0].password: needs a username"},
      {entry("topic = \"x\"\n"), "config: sources[0].topic: unknown key"},
      {"[[sources]]\nname = \"a\"\nhost = \"h\"\ntopics = [\"a/#/b\"]\n",
       "config: sources[0].topics: expected MQTT topic filters, got \"a/#/b\""},
      {"[[sources]]\nname = \"a\"\nhost = \"h\"\ntopics = []\n",
       "config: sources[0].topics: expected at least one topic filter"},
      {"[[sources]]\nname = \"a\"\ntopics = [\"t\"]\n", "config: sources[0]: missing host"},
      {entry("[[sources]]\nname = \"b\"\nhost = \"\"\ntopics = [\"t\"]\n"),
       "config: sources[1].host: expected a host name or address"},
      {"sources = 3\n", "config: sources: expected an array of tables"},
  };
  for (const auto& tc : cases) {
    Config c;
    const std::string path = writeTemp("bad_source", tc.toml);
    const std::string msg = errorOf([&] { applyConfigFile(c, path); });
    EXPECT_EQ(msg.rfind(tc.expectedPrefix, 0), 0u) << tc.toml << " → " << msg;
    EXPECT_TRUE(c.sources.empty());
  }
  Config c;
  SourceConfig same;
  same.name = std::string(4, 's');  // built, not assigned from literals: GCC 12 -Wrestrict
  same.host = std::string(1, 'h');
  same.topics.emplace_back(1, 't');
  c.sources = {same, same};
  EXPECT_EQ(errorOf([&] { c.finalize(); }).rfind("config: sources[1].name: duplicate", 0), 0u);
}

}  // namespace
}  // namespace tern::core

namespace tern::core {
namespace {

TEST(ConfigTest, MqttAuthenticationKeys) {
  Config c;
  EXPECT_FALSE(c.mqtt.allowAnonymous.has_value()) << "unset: decided by the listeners";
  EXPECT_EQ(c.mqtt.loginMaxFailures, 10u);
  EXPECT_EQ(c.mqtt.credentialCheckUs, 5'000'000);
  applyConfigValue(c, "mqtt.allow_anonymous", "true");
  EXPECT_EQ(c.mqtt.allowAnonymous, std::optional<bool>(true));
  applyConfigValue(c, "mqtt.allow_anonymous", "auto");
  EXPECT_FALSE(c.mqtt.allowAnonymous.has_value());
  applyConfigValue(c, "mqtt.login_max_failures", "0");
  EXPECT_EQ(c.mqtt.loginMaxFailures, 0u);
  applyConfigValue(c, "mqtt.credential_check_interval", "2s");
  EXPECT_EQ(c.mqtt.credentialCheckUs, 2'000'000);
  EXPECT_NE(errorOf([&] {
              applyConfigValue(c, "mqtt.allow_anonymous", "maybe");
            }).find("mqtt.allow_anonymous"),
            std::string::npos);
  EXPECT_NE(errorOf([&] {
              applyConfigValue(c, "mqtt.credential_check_interval", "0s");
            }).find("mqtt.credential_check_interval"),
            std::string::npos);
  EXPECT_NE(errorOf([&] { applyConfigValue(c, "mqtt.acl", "x"); }).find("[[mqtt.acl]]"),
            std::string::npos);

  const std::string path = writeTemp("acl", R"(
[mqtt]
allow_anonymous = false

[[mqtt.acl]]
role = "device"
access = "read"
topic = "broadcast/#"

[[mqtt.acl]]
user = "gateway-2"
topic = "clients/%c/%u/#"
)");
  Config f;
  applyConfigFile(f, path);
  EXPECT_EQ(f.mqtt.allowAnonymous, std::optional<bool>(false));
  ASSERT_EQ(f.mqtt.acl.size(), 2u);
  EXPECT_EQ(f.mqtt.acl[0].role, "device");
  EXPECT_EQ(f.mqtt.acl[0].access, 1);
  EXPECT_EQ(f.mqtt.acl[0].topic, "broadcast/#");
  EXPECT_EQ(f.mqtt.acl[1].user, "gateway-2");
  EXPECT_EQ(f.mqtt.acl[1].access, 3) << "readwrite by default";

  const std::vector<std::pair<std::string, std::string>> bad{
      {"[[mqtt.acl]]\ntopic = \"a/#/b\"\n", "mqtt.acl[0].topic"},
      {"[[mqtt.acl]]\ntopic = \"a/%x\"\n", "mqtt.acl[0].topic"},
      {"[[mqtt.acl]]\nrole = \"admin\"\ntopic = \"a\"\n", "mqtt.acl[0].role"},
      {"[[mqtt.acl]]\naccess = \"all\"\ntopic = \"a\"\n", "mqtt.acl[0].access"},
      {"[[mqtt.acl]]\naccess = \"read\"\n", "mqtt.acl[0]"},
      {"[[mqtt.acl]]\ntopic = \"a\"\nwho = \"x\"\n", "mqtt.acl[0].who"},
      {"[mqtt]\nacl = \"a\"\n", "mqtt.acl"},
  };
  for (const auto& [toml, key] : bad) {
    const std::string file = writeTemp("bad-acl", toml);
    Config b;
    const std::string message = errorOf([&] { applyConfigFile(b, file); });
    EXPECT_NE(message.find(key), std::string::npos) << toml << " → " << message;
  }
}

}  // namespace
}  // namespace tern::core
