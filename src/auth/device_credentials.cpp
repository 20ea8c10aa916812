#include "auth/device_credentials.h"

#include <algorithm>

#include "auth/crypto.h"
#include "core/time.h"

namespace tern::auth {
namespace {

constexpr std::size_t kMaxDeviceId = 128;
constexpr std::size_t kMinPassword = 8;
constexpr std::size_t kMaxPassword = 1024;
constexpr std::size_t kShownPrefix = 12;  // "tdev_" + 7 characters, for lists

}  // namespace

bool validDeviceId(std::string_view id) {
  if (id.empty() || id.size() > kMaxDeviceId || id.front() == '-') return false;
  if (looksLikeDeviceToken(id)) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == ':' || c == '@' || c == '-';
  });
}

bool looksLikeDeviceToken(std::string_view username) {
  return username.starts_with(kDeviceTokenPrefix);
}

DeviceCredentials::DeviceCredentials(storage::AuthStore& store, std::function<std::int64_t()> nowUs)
    : store_(store), nowUs_(std::move(nowUs)) {
  if (!nowUs_) nowUs_ = [] { return core::nowMicros(); };
}

namespace {

core::Error invalidDeviceId(const std::string& deviceId) {
  return core::Error{"device id '" + deviceId +
                     "': expected 1-128 characters from A-Z a-z 0-9 . _ : @ - (not starting "
                     "with - or " +
                     std::string(kDeviceTokenPrefix) + ")"};
}

}  // namespace

core::Result<std::int64_t> DeviceCredentials::addDevice(const std::string& deviceId,
                                                        const std::string& password) {
  if (!validDeviceId(deviceId)) return invalidDeviceId(deviceId);
  if (password.size() < kMinPassword || password.size() > kMaxPassword) {
    return core::Error{"password: expected 8 to 1024 characters"};
  }
  auto hash = hashPassword(password);
  if (!hash) return core::Error{"cannot hash the password (out of memory)"};
  return store_.addDevice(storage::DeviceCredential{0, deviceId, std::move(*hash), nowUs_(), 0});
}

core::Result<NewDeviceToken> DeviceCredentials::createToken(const std::string& deviceId) {
  if (!validDeviceId(deviceId)) return core::Error{"invalid device id '" + deviceId + "'"};
  NewDeviceToken out;
  out.token = std::string(kDeviceTokenPrefix) + randomToken(32);
  out.record.deviceId = deviceId;
  out.record.prefix = out.token.substr(0, kShownPrefix);
  out.record.hash = sha256Hex(out.token);
  out.record.createdUs = nowUs_();
  auto id = store_.addDeviceToken(out.record);
  if (!id) return id.error();
  out.record.id = *id;
  return out;
}

core::Result<std::int64_t> DeviceCredentials::revokeTokens(const std::string& deviceId) {
  return store_.revokeDeviceTokens(deviceId, nowUs_());
}

core::Result<bool> DeviceCredentials::removeDevice(const std::string& deviceId) {
  return store_.removeDevice(deviceId);
}

core::Result<std::vector<storage::DeviceCredential>> DeviceCredentials::listDevices() {
  return store_.listDevices();
}

core::Result<bool> DeviceCredentials::setPassword(const std::string& deviceId,
                                                  const std::string& password) {
  if (!validDeviceId(deviceId)) return invalidDeviceId(deviceId);
  if (password.size() < kMinPassword || password.size() > kMaxPassword) {
    return core::Error{"password: expected 8 to 1024 characters"};
  }
  auto hash = hashPassword(password);
  if (!hash) return core::Error{"cannot hash the password (out of memory)"};
  return store_.setDevicePassword(deviceId, *hash, nowUs_());
}

core::Result<bool> DeviceCredentials::clearPassword(const std::string& deviceId) {
  return store_.clearDevicePassword(deviceId);
}

core::Result<std::optional<storage::DeviceCredential>> DeviceCredentials::find(
    const std::string& deviceId) {
  return store_.findDevice(deviceId);
}

core::Result<std::vector<storage::DeviceToken>> DeviceCredentials::tokens(
    const std::string& deviceId) {
  return store_.deviceTokens(deviceId);
}

core::Result<bool> DeviceCredentials::revokeToken(const std::string& deviceId,
                                                  std::int64_t tokenId) {
  return store_.revokeDeviceToken(deviceId, tokenId, nowUs_());
}

}  // namespace tern::auth
