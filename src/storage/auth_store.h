#pragma once
// Users, login sessions (refresh-token families), API keys and server secrets: a small interface
// of its own next to Store, with a SQLite and a PostgreSQL implementation in the backend folders
// (same database as the messages, own tables and own schema version). Only app/ names a backend.
// Every method may be called from any thread; implementations serialise internally.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"

namespace tern::storage {

struct UserRecord {
  std::int64_t id = 0;
  std::string name;
  std::string role;  // admin | operator | viewer | service (checked by auth, stored as text)
  std::string passwordHash;  // argon2id PHC string
  std::int64_t createdUs = 0;
};

struct ApiKeyRecord {
  std::int64_t id = 0;
  std::string name;
  std::string role;
  std::string prefix;     // the first characters of the key, shown in lists to tell keys apart
  std::string hash;       // SHA-256 hex of the whole key
  std::string createdBy;  // user name (or "cli")
  std::int64_t createdUs = 0;
  std::int64_t revokedUs = 0;  // 0 = active
};

// MQTT device credentials: a password (argon2id) and/or access tokens (SHA-256), per device id.
struct DeviceCredential {
  std::int64_t id = 0;  // row id: a device removed and added again gets a new one
  std::string deviceId;
  std::string passwordHash;  // argon2id PHC string; empty: no password login (tokens only)
  std::int64_t createdUs = 0;
  std::int64_t activeTokens = 0;  // filled by listDevices
};

struct DeviceToken {
  std::int64_t id = 0;
  std::string deviceId;
  std::string prefix;  // the first characters of the token, for lists
  std::string hash;    // SHA-256 hex of the whole token
  std::int64_t createdUs = 0;
  std::int64_t revokedUs = 0;  // 0 = active
};

// What a valid session or key resolves to.
struct SessionUser {
  std::int64_t userId = 0;
  std::string name;
  std::string role;
};

enum class RefreshOutcome {
  kRotated,  // the old token is now used; the new one is stored in the same session
  kUnknown,  // no such token
  kExpired,
  kRevoked,  // the session was revoked (logout, user removed, earlier reuse)
  kReused,   // the token had already been rotated: the whole session is revoked now
};

struct RefreshResult {
  RefreshOutcome outcome = RefreshOutcome::kUnknown;
  std::string sessionId;
  SessionUser user;  // set when rotated
};

class AuthStore {
 public:
  virtual ~AuthStore() = default;

  // --- users
  // Fails when the name is taken (message says so).
  virtual core::Result<std::int64_t> addUser(const UserRecord& user) = 0;
  virtual core::Result<std::optional<UserRecord>> findUser(const std::string& name) = 0;
  virtual core::Result<std::vector<UserRecord>> listUsers() = 0;
  // Removes the user and every session of theirs. False when there was no such user.
  virtual core::Result<bool> removeUser(const std::string& name) = 0;
  virtual core::Result<std::int64_t> countUsers() = 0;
  // Changes a user's role and/or password hash (nullopt: kept); false when there is no such
  // user. A new password ends every session of the user and gives the user a new row id, so MQTT
  // logins made with the old one end too; any change raises the credentials generation (a
  // service user that is no longer one is disconnected from MQTT).
  virtual core::Result<bool> updateUser(const std::string& name,
                                        const std::optional<std::string>& role,
                                        const std::optional<std::string>& passwordHash) = 0;

  // --- secrets (e.g. the JWT signing key), created once and shared by every node
  // Stores `candidate` under `name` unless a value is already there; returns the stored value.
  virtual core::Result<std::string> getOrCreateSecret(const std::string& name,
                                                      const std::string& candidate) = 0;

  // --- sessions: one per login, a family of refresh tokens of which only the newest is usable
  virtual core::Status createSession(const std::string& sessionId, std::int64_t userId,
                                     const std::string& refreshHash, std::int64_t nowUs,
                                     std::int64_t expiresUs) = 0;
  // Atomically: checks `oldHash`, marks it used and stores `newHash` (valid until
  // `newExpiresUs`). Reuse of a used token revokes the session.
  virtual core::Result<RefreshResult> rotateRefreshToken(const std::string& oldHash,
                                                         const std::string& newHash,
                                                         std::int64_t nowUs,
                                                         std::int64_t newExpiresUs) = 0;
  // The session's user if the session exists, is not revoked and has not expired.
  virtual core::Result<std::optional<SessionUser>> activeSession(const std::string& sessionId,
                                                                 std::int64_t nowUs) = 0;
  // False when there was no such (unrevoked) session.
  virtual core::Result<bool> revokeSession(const std::string& sessionId) = 0;
  // The session a refresh token belongs to, if any.
  virtual core::Result<std::optional<std::string>> sessionOfRefreshToken(
      const std::string& hash) = 0;
  // Deletes sessions (and their tokens) that expired before `nowUs`.
  virtual core::Status pruneSessions(std::int64_t nowUs) = 0;

  // --- API keys
  virtual core::Result<std::int64_t> addApiKey(const ApiKeyRecord& key) = 0;
  // Active and revoked, newest first.
  virtual core::Result<std::vector<ApiKeyRecord>> listApiKeys() = 0;
  // The active key with this hash.
  virtual core::Result<std::optional<ApiKeyRecord>> findApiKey(const std::string& hash) = 0;
  // False when there is no such active key.
  virtual core::Result<bool> revokeApiKey(std::int64_t id, std::int64_t nowUs) = 0;

  // --- MQTT device credentials
  // Sets the password of a new device, or of a device that so far has tokens only. Fails when
  // the device already has a password. Returns the device's row id.
  virtual core::Result<std::int64_t> addDevice(const DeviceCredential& device) = 0;
  virtual core::Result<std::optional<DeviceCredential>> findDevice(const std::string& deviceId) = 0;
  // Every device with credentials, by id, with its number of active tokens.
  virtual core::Result<std::vector<DeviceCredential>> listDevices() = 0;
  // Removes the device's password and all its tokens. False when it had none.
  virtual core::Result<bool> removeDevice(const std::string& deviceId) = 0;
  // Stores a token (registering the device without a password if it is new); returns its id.
  virtual core::Result<std::int64_t> addDeviceToken(const DeviceToken& token) = 0;
  // The active token with this hash.
  virtual core::Result<std::optional<DeviceToken>> findDeviceToken(const std::string& hash) = 0;
  // Every active token: for re-checking live connections.
  virtual core::Result<std::vector<DeviceToken>> listDeviceTokens() = 0;
  // Revokes every active token of the device; returns how many.
  virtual core::Result<std::int64_t> revokeDeviceTokens(const std::string& deviceId,
                                                        std::int64_t nowUs) = 0;
  // Sets or replaces the device's password (registering the device if new); true when the
  // device had no credentials before. A replaced password gets the credential a new row id and
  // raises the credentials generation, so clients logged in with the old one are disconnected
  // (tokens stay valid).
  virtual core::Result<bool> setDevicePassword(const std::string& deviceId,
                                               const std::string& passwordHash,
                                               std::int64_t nowUs) = 0;
  // Removes the device's password, keeping its tokens. False when it had none.
  virtual core::Result<bool> clearDevicePassword(const std::string& deviceId) = 0;
  // The device's active tokens, oldest first.
  virtual core::Result<std::vector<DeviceToken>> deviceTokens(const std::string& deviceId) = 0;
  // Revokes one active token of the device. False when the device has no such active token.
  virtual core::Result<bool> revokeDeviceToken(const std::string& deviceId, std::int64_t tokenId,
                                               std::int64_t nowUs) = 0;
  // A counter raised by every change that can invalidate a connected MQTT client (removing a
  // device or a user, revoking tokens), also when made by another process (the CLI): a
  // running broker polls it and re-checks its clients when it moved.
  virtual core::Result<std::int64_t> credentialsGeneration() = 0;

  virtual std::string backendName() const = 0;
};

}  // namespace tern::storage
