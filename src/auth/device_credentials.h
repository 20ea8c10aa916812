#pragma once
// MQTT device credentials: the logic behind `tern device add|token|remove|list` (and, later, the
// API's). A device logs in with its id and password (argon2id), or with an access token as the
// MQTT username and an empty password (stored as SHA-256, like API keys).
#include <cstdint>
#include <functional>
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

 private:
  storage::AuthStore& store_;
  std::function<std::int64_t()> nowUs_;
};

}  // namespace tern::auth
