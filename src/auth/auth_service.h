#pragma once
// Users, logins and API keys: the logic behind `tern user …` and the API's /auth and /api-keys
// endpoints, and the check every API request goes through (authenticate). Storage is an
// AuthStore; nothing here knows which backend it is.
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include "core/result.h"
#include "storage/auth_store.h"

namespace tern::auth {

// Ordered by power for the API: viewer and service read, operator also writes devices, admin
// also manages users and API keys. `service` is for programs (MQTT service users, issue 6).
enum class Role { kViewer, kService, kOperator, kAdmin };

std::optional<Role> parseRole(std::string_view name);
std::string_view roleName(Role role);
// "admin, operator, viewer, service", for messages.
std::string_view roleNames();
// 1–64 characters from [A-Za-z0-9._@-], not starting with '-'.
bool validUserName(std::string_view name);

struct AuthOptions {
  std::int64_t tokenTtlUs = 15LL * 60 * 1'000'000;        // access JWT lifetime
  std::int64_t refreshTtlUs = 30LL * 86'400 * 1'000'000;  // refresh token lifetime
  std::uint32_t loginMaxFailures = 5;  // per client address and window; 0 = no limit
  std::int64_t loginWindowUs = 60'000'000;
  // How long a checked session or API key is trusted without asking the store again. Local
  // revocations take effect at once; those made by another node within this time.
  std::int64_t cacheTtlUs = 2'000'000;
  std::function<std::int64_t()> nowUs;  // wall clock; tests may replace it
};

// Who made a request.
struct Principal {
  enum class Kind { kUser, kApiKey };
  Kind kind = Kind::kUser;
  std::int64_t id = 0;  // user id or API key id
  std::string name;     // user name or key name
  Role role = Role::kViewer;
  std::string sessionId;  // users only
};

enum class Failure {
  kMissing,  // no credentials
  kInvalid,  // malformed, forged, wrong algorithm, unknown key
  kExpired,
  kRevoked,
  kBadCredentials,  // wrong name or password
  kRateLimited,
  kStoreError,
};

struct AuthError {
  Failure failure = Failure::kInvalid;
  std::string detail;
  std::int64_t retryAfterSeconds = 0;  // kRateLimited
};

template <class T>
using Outcome = std::variant<T, AuthError>;

struct TokenPair {
  std::string accessToken;
  std::int64_t expiresInSeconds = 0;
  std::string refreshToken;
  std::int64_t refreshExpiresInSeconds = 0;
  std::string user;
  Role role = Role::kViewer;
};

struct NewApiKey {
  storage::ApiKeyRecord record;
  std::string key;  // shown once
};

class AuthService {
 public:
  // Loads (or creates, once per database) the JWT signing secret. Throws std::runtime_error
  // when the store cannot give it: start-up code.
  AuthService(storage::AuthStore& store, AuthOptions options);

  // --- users (CLI and start-up)
  // On a database without users: creates "admin" with a random password and returns the
  // password (to be shown once). nullopt when users exist.
  core::Result<std::optional<std::string>> bootstrapAdmin();
  core::Result<std::int64_t> addUser(const std::string& name, Role role,
                                     const std::string& password);
  core::Result<std::vector<storage::UserRecord>> listUsers();
  // Refuses to remove the last admin (an error naming "last admin"). False when there is no
  // such user. Ends the user's sessions.
  core::Result<bool> removeUser(const std::string& name);
  core::Result<std::optional<storage::UserRecord>> findUser(const std::string& name);
  // Changes the role and/or password (nullopt: kept). Refuses to take the role admin from the
  // last admin (an error naming "last admin"); a bad password is an error starting
  // "password:". A new password ends the user's sessions. False when there is no such user.
  core::Result<bool> updateUser(const std::string& name, std::optional<Role> role,
                                const std::optional<std::string>& password);

  // --- API
  Outcome<TokenPair> login(const std::string& name, const std::string& password,
                           const std::string& clientAddress);
  Outcome<TokenPair> refresh(const std::string& refreshToken);
  // Revokes the principal's session (and the session of `refreshToken`, when given).
  core::Status logout(const Principal& principal, const std::string& refreshToken);
  // From the Authorization header ("Bearer <jwt or API key>") or the X-API-Key header.
  Outcome<Principal> authenticate(std::string_view authorization, std::string_view apiKey);

  core::Result<NewApiKey> createApiKey(const std::string& name, Role role,
                                       const std::string& createdBy);
  core::Result<std::vector<storage::ApiKeyRecord>> listApiKeys();
  core::Result<bool> revokeApiKey(std::int64_t id);

  const AuthOptions& options() const { return options_; }

 private:
  std::int64_t now() const { return options_.nowUs(); }
  Outcome<TokenPair> issue(const storage::SessionUser& user, const std::string& sessionId,
                           const std::string& refreshToken);
  Outcome<Principal> authenticateJwt(std::string_view token);
  Outcome<Principal> authenticateKey(std::string_view key);
  // Rate limiting: seconds to wait before another attempt from `address` (0 = go ahead).
  std::int64_t loginBlockedFor(const std::string& address);
  void noteLoginFailure(const std::string& address);
  void forgetCached(const std::string& cacheKey);
  // Drops cached principals of the user (by name and by id), so a change applies at once here.
  void forgetUser(const std::string& name, std::int64_t id);
  // Whether `name` is an admin and no other admin exists.
  core::Result<bool> lastAdmin(const storage::UserRecord& user);

  storage::AuthStore& store_;
  AuthOptions options_;
  std::string secret_;

  std::mutex mutex_;                                                     // guards the members below
  std::unordered_map<std::string, std::vector<std::int64_t>> failures_;  // address → times
  struct Cached {
    Principal principal;
    std::int64_t checkedUs = 0;
  };
  std::unordered_map<std::string, Cached> cache_;  // "s:<sid>" / "k:<hash>" → principal
  std::string dummyHash_;  // verified against when the user does not exist (same cost)
};

}  // namespace tern::auth
