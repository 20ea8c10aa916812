// The `tern` command: serve, user, sim. Start-up code, so exceptions are fine here; a bad value is
// one clear line naming the key, and exit status 2.
#include <spdlog/spdlog.h>
#include <termios.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <optional>
#include <string>

#include "app/server.h"
#include "auth/auth_service.h"
#include "auth/crypto.h"
#include "auth/device_credentials.h"
#include "core/config.h"
#include "core/logging.h"
#include "core/time.h"
#include "storage/auth_store.h"
#include "tools/sim_mqtt.h"
#include "tools/sim_tracker.h"
#include "tools/tracker_frames/tracker_frames.h"

namespace {

constexpr int kUsageError = 2;

struct ServeFlags {
  std::string configFile;
  // Each flag maps to one config key; only the ones given override file and environment.
  std::vector<std::pair<std::string, std::string>> values;
};

void addValueFlag(CLI::App* app, ServeFlags& flags, const std::string& name, const std::string& key,
                  const std::string& help) {
  app->add_option_function<std::string>(
      name, [&flags, key](const std::string& value) { flags.values.emplace_back(key, value); },
      help + " (" + key + ")");
}

tern::core::Config buildConfig(const ServeFlags& flags) {
  tern::core::Config config;
  if (!flags.configFile.empty()) tern::core::applyConfigFile(config, flags.configFile);
  tern::core::applyConfigEnv(config, tern::core::ternEnvironment());
  for (const auto& [key, value] : flags.values) tern::core::applyConfigValue(config, key, value);
  config.finalize();
  return config;
}

// Reads one line from the terminal without echo.
std::string readHidden(const char* prompt) {
  std::cerr << prompt << std::flush;
  termios old{};
  const bool tty = ::tcgetattr(STDIN_FILENO, &old) == 0;
  if (tty) {
    termios quiet = old;
    quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    ::tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
  }
  std::string line;
  std::getline(std::cin, line);
  if (tty) ::tcsetattr(STDIN_FILENO, TCSANOW, &old);
  std::cerr << "\n";
  return line;
}

struct UserFlags {
  ServeFlags store;  // --config, --data-dir: which database
  std::string name;
  std::string role = "viewer";
  bool passwordStdin = false;
};

// `tern user add|list|remove`: works on the configured store directly (a running server sees
// the change at once: the users live in the database).
int runUserCommand(const std::string& action, const UserFlags& flags) {
  tern::core::Config config = buildConfig(flags.store);
  auto store = tern::app::openAuthStore(config);
  tern::auth::AuthService service(*store, tern::app::authOptions(config));
  if (action == "add") {
    const auto role = tern::auth::parseRole(flags.role);
    if (!role) {
      std::cerr << "tern user add: --role: expected one of " << tern::auth::roleNames() << ", got '"
                << flags.role << "'\n";
      return kUsageError;
    }
    std::string password;
    bool generated = false;
    if (flags.passwordStdin) {
      std::getline(std::cin, password);
      if (!password.empty() && password.back() == '\r') password.pop_back();
    } else if (::isatty(STDIN_FILENO) != 0) {
      password = readHidden("Password (empty: generate one): ");
      if (!password.empty() && readHidden("Repeat: ") != password) {
        std::cerr << "tern user add: the passwords differ\n";
        return 1;
      }
    }
    if (password.empty()) {
      password = tern::auth::generatePassword();
      generated = true;
    }
    auto id = service.addUser(flags.name, *role, password);
    if (!id) {
      std::cerr << "tern user add: " << id.error().message << "\n";
      return 1;
    }
    std::cout << "created user '" << flags.name << "' (role " << tern::auth::roleName(*role) << ")";
    if (generated) std::cout << " with password " << password;
    std::cout << std::endl;
    return 0;
  }
  if (action == "remove") {
    auto removed = service.removeUser(flags.name);
    if (!removed) {
      std::cerr << "tern user remove: " << removed.error().message << "\n";
      return 1;
    }
    if (!*removed) {
      std::cerr << "tern user remove: no user named '" << flags.name << "'\n";
      return 1;
    }
    std::cout << "removed user '" << flags.name << "' and signed out its sessions" << std::endl;
    return 0;
  }
  auto users = service.listUsers();
  if (!users) {
    std::cerr << "tern user list: " << users.error().message << "\n";
    return 1;
  }
  std::printf("%-32s %-9s %s\n", "NAME", "ROLE", "CREATED");
  for (const auto& user : *users) {
    std::printf("%-32s %-9s %s\n", user.name.c_str(), user.role.c_str(),
                tern::core::formatRfc3339Millis(user.createdUs).c_str());
  }
  return 0;
}

struct DeviceFlags {
  ServeFlags store;  // --config, --data-dir: which database
  std::string id;
  std::optional<std::string> password;
  bool passwordStdin = false;
  bool revoke = false;
};

// `tern device add|token|remove|list`: MQTT device credentials, on the configured store. A
// running server notices removals and revocations within mqtt.credential_check_interval and
// disconnects the clients concerned.
int runDeviceCommand(const std::string& action, const DeviceFlags& flags) {
  tern::core::Config config = buildConfig(flags.store);
  auto store = tern::app::openAuthStore(config);
  tern::auth::DeviceCredentials devices(*store);
  if (action == "add") {
    std::string password;
    bool generated = false;
    if (flags.password) {
      password = *flags.password;
    } else if (flags.passwordStdin) {
      std::getline(std::cin, password);
      if (!password.empty() && password.back() == '\r') password.pop_back();
    } else if (::isatty(STDIN_FILENO) != 0) {
      password = readHidden("Password (empty: generate one): ");
      if (!password.empty() && readHidden("Repeat: ") != password) {
        std::cerr << "tern device add: the passwords differ\n";
        return 1;
      }
    }
    if (password.empty()) {
      password = tern::auth::generatePassword();
      generated = true;
    }
    auto id = devices.addDevice(flags.id, password);
    if (!id) {
      std::cerr << "tern device add: " << id.error().message << "\n";
      return 1;
    }
    std::cout << "added device '" << flags.id << "'";
    if (generated) std::cout << " with password " << password;
    std::cout << std::endl;
    return 0;
  }
  if (action == "token") {
    if (flags.revoke) {
      auto revoked = devices.revokeTokens(flags.id);
      if (!revoked) {
        std::cerr << "tern device token: " << revoked.error().message << "\n";
        return 1;
      }
      std::cout << "revoked " << *revoked << " token(s) of device '" << flags.id << "'"
                << std::endl;
      return 0;
    }
    auto token = devices.createToken(flags.id);
    if (!token) {
      std::cerr << "tern device token: " << token.error().message << "\n";
      return 1;
    }
    // Only the token on stdout, so scripts can capture it; the note goes to stderr.
    std::cerr << "new token for device '" << flags.id
              << "' (shown only this once; use it as the MQTT username with an empty password):\n";
    std::cout << token->token << std::endl;
    return 0;
  }
  if (action == "remove") {
    auto removed = devices.removeDevice(flags.id);
    if (!removed) {
      std::cerr << "tern device remove: " << removed.error().message << "\n";
      return 1;
    }
    if (!*removed) {
      std::cerr << "tern device remove: no credentials for device '" << flags.id << "'\n";
      return 1;
    }
    std::cout << "removed device '" << flags.id << "' (password and tokens)" << std::endl;
    return 0;
  }
  auto list = devices.listDevices();
  if (!list) {
    std::cerr << "tern device list: " << list.error().message << "\n";
    return 1;
  }
  std::printf("%-40s %-8s %-6s %s\n", "DEVICE", "PASSWORD", "TOKENS", "CREATED");
  for (const auto& device : *list) {
    std::printf("%-40s %-8s %-6lld %s\n", device.deviceId.c_str(),
                device.passwordHash.empty() ? "no" : "yes",
                static_cast<long long>(device.activeTokens),
                tern::core::formatRfc3339Millis(device.createdUs).c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Tern: an IoT platform server (MQTT broker, ingest, storage, API) in one binary"};
  app.set_version_flag("--version", std::string("tern ") + TERN_VERSION);
  app.require_subcommand(1);

  ServeFlags serveFlags;
  CLI::App* serve = app.add_subcommand("serve", "Run the server");
  serve->add_option("--config", serveFlags.configFile, "TOML configuration file")
      ->check(CLI::ExistingFile);
  addValueFlag(serve, serveFlags, "--data-dir", "server.data_dir", "Data directory [./data]");
  addValueFlag(serve, serveFlags, "--mqtt-listen", "mqtt.listen",
               "MQTT listen address [0.0.0.0:1883]");
  addValueFlag(serve, serveFlags, "--http-listen", "http.listen",
               "HTTP listen address [127.0.0.1:8080]");
  addValueFlag(serve, serveFlags, "--node-id", "server.node_id", "Node id [host name]");
  addValueFlag(serve, serveFlags, "--threads", "server.threads",
               "Event loops, 0 = one per core [0]");
  addValueFlag(serve, serveFlags, "--log-format", "server.log_format", "text or json [text]");
  addValueFlag(serve, serveFlags, "--log-level", "server.log_level", "trace..error [info]");
  serve->footer(
      "Every setting can also come from the TOML file or a TERN_<SECTION>_<KEY> environment\n"
      "variable (e.g. TERN_MQTT_MAX_INFLIGHT=32); flags > environment > file > defaults.");

  UserFlags userFlags;
  CLI::App* user = app.add_subcommand("user", "Manage API users (in the configured database)");
  user->require_subcommand(1);
  const auto storeFlags = [&](CLI::App* command) {
    command->add_option("--config", userFlags.store.configFile, "TOML configuration file")
        ->check(CLI::ExistingFile);
    addValueFlag(command, userFlags.store, "--data-dir", "server.data_dir",
                 "Data directory [./data]");
  };
  CLI::App* userAdd = user->add_subcommand("add", "Add a user");
  userAdd->add_option("name", userFlags.name, "User name")->required();
  userAdd->add_option("--role", userFlags.role, "admin, operator, viewer or service")
      ->capture_default_str();
  userAdd->add_flag("--password-stdin", userFlags.passwordStdin,
                    "Read the password from the first line of stdin (else: prompt on a terminal, "
                    "or generate and print one)");
  storeFlags(userAdd);
  CLI::App* userList = user->add_subcommand("list", "List users");
  storeFlags(userList);
  CLI::App* userRemove = user->add_subcommand("remove", "Remove a user and end its sessions");
  userRemove->add_option("name", userFlags.name, "User name")->required();
  storeFlags(userRemove);

  DeviceFlags deviceFlags;
  CLI::App* device =
      app.add_subcommand("device", "Manage MQTT device credentials (in the configured database)");
  device->require_subcommand(1);
  const auto deviceStoreFlags = [&](CLI::App* command) {
    command->add_option("--config", deviceFlags.store.configFile, "TOML configuration file")
        ->check(CLI::ExistingFile);
    addValueFlag(command, deviceFlags.store, "--data-dir", "server.data_dir",
                 "Data directory [./data]");
  };
  CLI::App* deviceAdd = device->add_subcommand("add", "Give a device a password");
  deviceAdd->add_option("id", deviceFlags.id, "Device id (its MQTT username)")->required();
  auto* passwordOption = deviceAdd->add_option(
      "--password", deviceFlags.password,
      "The password (else: --password-stdin, a prompt on a terminal, or a generated one)");
  deviceAdd
      ->add_flag("--password-stdin", deviceFlags.passwordStdin,
                 "Read the password from the first line of stdin")
      ->excludes(passwordOption);
  deviceStoreFlags(deviceAdd);
  CLI::App* deviceToken =
      device->add_subcommand("token", "Create an access token for a device (printed once)");
  deviceToken->add_option("id", deviceFlags.id, "Device id")->required();
  deviceToken->add_flag("--revoke", deviceFlags.revoke,
                        "Revoke every token of the device instead (its clients are disconnected)");
  deviceStoreFlags(deviceToken);
  CLI::App* deviceRemove = device->add_subcommand(
      "remove", "Remove a device's password and tokens (its clients are disconnected)");
  deviceRemove->add_option("id", deviceFlags.id, "Device id")->required();
  deviceStoreFlags(deviceRemove);
  CLI::App* deviceList = device->add_subcommand("list", "List devices with credentials");
  deviceStoreFlags(deviceList);

  CLI::App* sim = app.add_subcommand("sim", "Emulate fleets of devices");
  sim->require_subcommand(1);
  tern::tools::SimMqttOptions simOptions;
  std::string broker = "127.0.0.1:1883";
  int qos = 0;
  CLI::App* simMqtt = sim->add_subcommand("mqtt", "MQTT sensors publishing {\"uuid\",\"value\"}");
  simMqtt->add_option("--broker", broker, "Broker HOST:PORT")->capture_default_str();
  simMqtt->add_option("--devices", simOptions.devices, "Number of devices")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1000000u));
  simMqtt->add_option("--rate", simOptions.rateSeconds, "Seconds between one device's messages")
      ->capture_default_str()
      ->check(CLI::Range(0.0001, 86400.0));
  simMqtt->add_option("--qos", qos, "QoS 0, 1 or 2")
      ->capture_default_str()
      ->check(CLI::Range(0, 2));
  auto* duration = simMqtt->add_option("--duration", simOptions.durationSeconds, "Seconds to run")
                       ->check(CLI::Range(0.0, 31536000.0));
  auto* count = simMqtt->add_option("--count", simOptions.count, "Messages per device");
  duration->excludes(count);
  simMqtt->add_option("--threads", simOptions.threads, "Event loops")
      ->capture_default_str()
      ->check(CLI::Range(1u, 64u));
  simMqtt->add_option("--topic-prefix", simOptions.topicPrefix, "Topic prefix")
      ->capture_default_str();

  tern::tools::SimTrackerOptions trackerOptions;
  trackerOptions.rateSeconds = 5;
  std::string trackerServer;
  std::vector<std::string> protocolNames;
  for (auto name : tern::tools::simTrackerProtocols()) protocolNames.emplace_back(name);
  CLI::App* simTracker =
      sim->add_subcommand("tracker", "GPS trackers in a vendor protocol, answers checked");
  simTracker->add_option("--protocol", trackerOptions.protocol, "Tracker protocol")
      ->capture_default_str()
      ->check(CLI::IsMember(protocolNames));
  simTracker->add_option("--server", trackerServer,
                         "Server HOST:PORT [127.0.0.1 and the protocol's usual port]");
  simTracker->add_option("--devices", trackerOptions.devices, "Number of devices")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1000000u));
  simTracker
      ->add_option("--rate", trackerOptions.rateSeconds,
                   "Seconds between one device's positions; 0 = as fast as answered")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 86400.0));
  auto* trackerDuration =
      simTracker->add_option("--duration", trackerOptions.durationSeconds, "Seconds to run")
          ->check(CLI::Range(0.0, 31536000.0));
  auto* trackerCount =
      simTracker->add_option("--count", trackerOptions.count, "Positions per device");
  trackerDuration->excludes(trackerCount);
  simTracker->add_option("--threads", trackerOptions.threads, "Event loops")
      ->capture_default_str()
      ->check(CLI::Range(1u, 64u));
  simTracker
      ->add_option("--imei-base", trackerOptions.imeiBase,
                   "IMEI of the first device; the others count up from it")
      ->capture_default_str()
      ->check(CLI::Range(100000000000000ULL, 999999999999999ULL));
  simTracker
      ->add_option("--heartbeat-every", trackerOptions.heartbeatEvery,
                   "A heartbeat after every N positions (0 = none)")
      ->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int code = app.exit(e);
    return code == 0 ? 0 : kUsageError;
  }

  try {
    if (serve->parsed()) {
      tern::core::Config config = buildConfig(serveFlags);
      tern::core::initLogging(config.server.logFormat == "json" ? tern::core::LogFormat::kJson
                                                                : tern::core::LogFormat::kText,
                              config.server.logLevel);
      return tern::app::runServe(config);
    }
    if (user->parsed()) {
      tern::core::initLogging(tern::core::LogFormat::kText, "warn");
      const std::string action = userAdd->parsed()      ? "add"
                                 : userRemove->parsed() ? "remove"
                                                        : "list";
      return runUserCommand(action, userFlags);
    }
    if (device->parsed()) {
      tern::core::initLogging(tern::core::LogFormat::kText, "warn");
      const std::string action = deviceAdd->parsed()      ? "add"
                                 : deviceToken->parsed()  ? "token"
                                 : deviceRemove->parsed() ? "remove"
                                                          : "list";
      return runDeviceCommand(action, deviceFlags);
    }
    if (simMqtt->parsed()) {
      tern::core::initLogging(tern::core::LogFormat::kText, "info");
      auto hostPort = tern::core::parseHostPort("--broker", broker);
      simOptions.host = hostPort.host;
      simOptions.port = hostPort.port;
      simOptions.qos = static_cast<std::uint8_t>(qos);
      if (simOptions.durationSeconds <= 0 && simOptions.count == 0) {
        std::cerr << "tern sim mqtt: give --duration or --count\n";
        return kUsageError;
      }
      auto started = std::chrono::steady_clock::now();
      auto result = tern::tools::runSimMqtt(simOptions);
      double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      std::cout << tern::tools::formatSimSummary(result, elapsed) << std::endl;
      return result.errors == 0 && result.acked == result.sent ? 0 : 1;
    }
    if (simTracker->parsed()) {
      tern::core::initLogging(tern::core::LogFormat::kText, "info");
      if (!trackerServer.empty()) {
        auto hostPort = tern::core::parseHostPort("--server", trackerServer);
        trackerOptions.host = hostPort.host;
        trackerOptions.port = hostPort.port;
      }
      if (trackerOptions.durationSeconds <= 0 && trackerOptions.count == 0) {
        std::cerr << "tern sim tracker: give --duration or --count\n";
        return kUsageError;
      }
      auto started = std::chrono::steady_clock::now();
      auto result = tern::tools::runSimTracker(trackerOptions);
      double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      std::cout << tern::tools::formatSimTrackerSummary(result, elapsed) << std::endl;
      return tern::tools::simTrackerSucceeded(result) ? 0 : 1;
    }
  } catch (const tern::core::ConfigError& e) {
    std::cerr << "tern: " << e.what() << "\n";
    return kUsageError;
  } catch (const std::exception& e) {
    std::cerr << "tern: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
