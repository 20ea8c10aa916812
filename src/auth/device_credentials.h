#pragma once
// MQTT device credentials: the logic behind `tern device add|token|remove|list` (and, later, the
// API's). A device logs in with its id and password (argon2id), or with an access token as the
// MQTT username and an empty password (stored as SHA-256, like API keys).
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"
#include "storage/auth_store.h"

namespace tern::auth {

// Every device token starts with this, so a token is never mistaken for a device id.
inline constexpr std::string_view kDeviceTokenPrefix = "tdev_";

// 1–128 characters from [A-Za-z0-9._:@-], not starting with '-' or kDeviceTokenPrefix. No '/',
// '+' or '#': a device id is substituted into topic patterns (device/<id>/#).
bool validDeviceId(std::string_view id);
bool looksLikeDeviceToken(std::string_view username);

struct NewDeviceToken {
  storage::DeviceToken record;
  std::string token;  // shown once
};

class DeviceCredentials {
 public:
  explicit DeviceCredentials(storage::AuthStore& store, std::function<std::int64_t()> nowUs = {});

  // Gives a device a password (8–1024 bytes). Fails when the id is invalid or the device already
  // has one.
  core::Result<std::int64_t> addDevice(const std::string& deviceId, const std::string& password);
  // A new token for the device (registered on the way if new); earlier tokens stay valid.
  core::Result<NewDeviceToken> createToken(const std::string& deviceId);
  // Revokes every token of the device; returns how many.
  core::Result<std::int64_t> revokeTokens(const std::string& deviceId);
  // Removes the password and every token. False when the device had no credentials.
  core::Result<bool> removeDevice(const std::string& deviceId);
  core::Result<std::vector<storage::DeviceCredential>> listDevices();

  // For the API. Sets or replaces the password (8–1024 bytes); true when the device had no
  // credentials before. Logins with a replaced password are disconnected (tokens stay).
  core::Result<bool> setPassword(const std::string& deviceId, const std::string& password);
  // Removes the password, keeping the tokens. False when there was none.
  core::Result<bool> clearPassword(const std::string& deviceId);
  // The device's credentials, if any, and its active tokens (never secrets: hashes stay inside).
  core::Result<std::optional<storage::DeviceCredential>> find(const std::string& deviceId);
  core::Result<std::vector<storage::DeviceToken>> tokens(const std::string& deviceId);
  // Revokes one active token of the device. False when it has no such token.
  core::Result<bool> revokeToken(const std::string& deviceId, std::int64_t tokenId);

 private:
  storage::AuthStore& store_;
  std::function<std::int64_t()> nowUs_;
};

}  // namespace tern::auth
