#include "auth/auth_service.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <stdexcept>

#include "auth/crypto.h"
#include "auth/jwt.h"
#include "core/time.h"

namespace tern::auth {
namespace {

constexpr std::int64_t kSecondUs = 1'000'000;
constexpr std::string_view kApiKeyPrefix = "tern_";
constexpr std::size_t kApiKeyShownPrefix = 12;  // "tern_" + 7 characters, for lists
// Bounds on the in-memory maps: beyond them stale entries go, and if that is not enough the map
// is cleared (the cache refills from the store; the rate limiter forgets, which is logged).
constexpr std::size_t kMaxCacheEntries = 10'000;
constexpr std::size_t kMaxTrackedAddresses = 10'000;
constexpr std::size_t kMaxPasswordBytes = 1024;

AuthError error(Failure failure, std::string detail) {
  return AuthError{failure, std::move(detail), 0};
}

AuthError storeFailure(const core::Error& e) {
  spdlog::error("auth: store failed: {}", e.message);
  return error(Failure::kStoreError, "the user store failed; the server log has the details");
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

}  // namespace

std::optional<Role> parseRole(std::string_view name) {
  if (name == "admin") return Role::kAdmin;
  if (name == "operator") return Role::kOperator;
  if (name == "viewer") return Role::kViewer;
  if (name == "service") return Role::kService;
  return std::nullopt;
}

std::string_view roleName(Role role) {
  switch (role) {
    case Role::kAdmin:
      return "admin";
    case Role::kOperator:
      return "operator";
    case Role::kViewer:
      return "viewer";
    case Role::kService:
      return "service";
  }
  return "viewer";
}

std::string_view roleNames() {
  return "admin, operator, viewer, service";
}

bool validUserName(std::string_view name) {
  if (name.empty() || name.size() > 64 || name.front() == '-') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '@' || c == '-';
  });
}

AuthService::AuthService(storage::AuthStore& store, AuthOptions options)
    : store_(store), options_(std::move(options)) {
  if (!options_.nowUs) options_.nowUs = [] { return core::nowMicros(); };
  // 64 random bytes: twice HS256's block-size minimum. Stored in the database so every node
  // (and every restart) signs and checks with the same key.
  auto secret = store_.getOrCreateSecret("jwt_hs256", base64UrlEncode(randomBytes(64)));
  if (!secret)
    throw std::runtime_error("auth: cannot load the token secret: " + secret.error().message);
  auto raw = base64UrlDecode(*secret);
  if (!raw || raw->size() < 32)
    throw std::runtime_error("auth: the stored token secret is invalid");
  secret_ = std::move(*raw);
}

core::Result<std::optional<std::string>> AuthService::bootstrapAdmin() {
  auto count = store_.countUsers();
  if (!count) return count.error();
  if (*count > 0) return std::optional<std::string>();
  std::string password = generatePassword();
  auto added = addUser("admin", Role::kAdmin, password);
  if (!added) {
    // Another node may have created it at the same moment: then there is nothing to show.
    auto again = store_.countUsers();
    if (again && *again > 0) return std::optional<std::string>();
    return added.error();
  }
  return std::optional<std::string>(std::move(password));
}

core::Result<std::int64_t> AuthService::addUser(const std::string& name, Role role,
                                                const std::string& password) {
  if (!validUserName(name)) {
    return core::Error{
        "user name '" + name +
        "': expected 1-64 characters from A-Z a-z 0-9 . _ @ - (not starting with -)"};
  }
  if (password.size() < 8 || password.size() > kMaxPasswordBytes) {
    return core::Error{"password: expected 8 to 1024 characters"};
  }
  auto hash = hashPassword(password);
  if (!hash) return core::Error{"cannot hash the password (out of memory)"};
  storage::UserRecord user;
  user.name = name;
  user.role = std::string(roleName(role));
  user.passwordHash = std::move(*hash);
  user.createdUs = now();
  return store_.addUser(user);
}

core::Result<std::vector<storage::UserRecord>> AuthService::listUsers() {
  return store_.listUsers();
}

core::Result<bool> AuthService::lastAdmin(const storage::UserRecord& user) {
  if (user.role != "admin") return false;
  auto users = store_.listUsers();
  if (!users) return users.error();
  const auto admins =
      std::count_if(users->begin(), users->end(), [](const auto& u) { return u.role == "admin"; });
  return admins <= 1;
}

void AuthService::forgetUser(const std::string& name, std::int64_t id) {
  // Cached sessions of the user (other nodes: within the cache time).
  std::lock_guard lock(mutex_);
  for (auto it = cache_.begin(); it != cache_.end();) {
    const bool mine = it->second.principal.kind == Principal::Kind::kUser &&
                      (it->second.principal.id == id || it->second.principal.name == name);
    it = mine ? cache_.erase(it) : std::next(it);
  }
}

core::Result<bool> AuthService::removeUser(const std::string& name) {
  auto user = store_.findUser(name);
  if (!user) return user.error();
  if (!user->has_value()) return false;
  auto last = lastAdmin(**user);
  if (!last) return last.error();
  if (*last) return core::Error{"'" + name + "' is the last admin; add another admin first"};
  auto removed = store_.removeUser(name);
  if (removed && *removed) forgetUser(name, (*user)->id);
  return removed;
}

core::Result<std::optional<storage::UserRecord>> AuthService::findUser(const std::string& name) {
  return store_.findUser(name);
}

core::Result<bool> AuthService::updateUser(const std::string& name, std::optional<Role> role,
                                           const std::optional<std::string>& password) {
  std::optional<std::string> hash;
  if (password) {
    if (password->size() < 8 || password->size() > kMaxPasswordBytes) {
      return core::Error{"password: expected 8 to 1024 characters"};
    }
    auto hashed = hashPassword(*password);
    if (!hashed) return core::Error{"cannot hash the password (out of memory)"};
    hash = std::move(*hashed);
  }
  auto user = store_.findUser(name);
  if (!user) return user.error();
  if (!user->has_value()) return false;
  if (role && *role != Role::kAdmin) {
    auto last = lastAdmin(**user);
    if (!last) return last.error();
    if (*last) {
      return core::Error{"'" + name + "' is the last admin; make another user admin first"};
    }
  }
  std::optional<std::string> roleText;
  if (role) roleText = std::string(roleName(*role));
  auto updated = store_.updateUser(name, roleText, hash);
  if (updated && *updated) forgetUser(name, (*user)->id);
  return updated;
}

std::int64_t AuthService::loginBlockedFor(const std::string& address) {
  if (options_.loginMaxFailures == 0) return 0;
  const std::int64_t t = now();
  std::lock_guard lock(mutex_);
  auto it = failures_.find(address);
  if (it == failures_.end()) return 0;
  auto& times = it->second;
  std::erase_if(times, [&](std::int64_t at) { return at <= t - options_.loginWindowUs; });
  if (times.empty()) {
    failures_.erase(it);
    return 0;
  }
  if (times.size() < options_.loginMaxFailures) return 0;
  // Until the oldest failure in the window leaves it; at least one second.
  const std::int64_t waitUs = times.front() + options_.loginWindowUs - t;
  return std::max<std::int64_t>(1, (waitUs + kSecondUs - 1) / kSecondUs);
}

void AuthService::noteLoginFailure(const std::string& address) {
  if (options_.loginMaxFailures == 0) return;
  const std::int64_t t = now();
  std::lock_guard lock(mutex_);
  if (failures_.size() >= kMaxTrackedAddresses && !failures_.contains(address)) {
    std::erase_if(failures_, [&](const auto& entry) {
      return entry.second.empty() || entry.second.back() <= t - options_.loginWindowUs;
    });
    if (failures_.size() >= kMaxTrackedAddresses) {
      spdlog::warn("auth: login failures from {}+ addresses within {} s; forgetting them",
                   failures_.size(), options_.loginWindowUs / kSecondUs);
      failures_.clear();
    }
  }
  auto& times = failures_[address];
  times.push_back(t);
  // Only the newest loginMaxFailures matter.
  if (times.size() > options_.loginMaxFailures) {
    times.erase(times.begin(), times.begin() + static_cast<std::ptrdiff_t>(
                                                   times.size() - options_.loginMaxFailures));
  }
}

Outcome<TokenPair> AuthService::login(const std::string& name, const std::string& password,
                                      const std::string& clientAddress) {
  if (const std::int64_t wait = loginBlockedFor(clientAddress); wait > 0) {
    AuthError e =
        error(Failure::kRateLimited,
              "too many failed logins from this address; retry in " + std::to_string(wait) + " s");
    e.retryAfterSeconds = wait;
    return e;
  }
  auto user = store_.findUser(name);
  if (!user) return storeFailure(user.error());
  bool ok = false;
  if (user->has_value() && password.size() <= kMaxPasswordBytes) {
    ok = verifyPassword(password, (*user)->passwordHash);
  } else {
    // Same work for an unknown name, so response times do not tell which names exist.
    {
      std::lock_guard lock(mutex_);
      if (dummyHash_.empty()) dummyHash_ = hashPassword("tern-dummy-password").value_or("");
    }
    verifyPassword(password.substr(0, kMaxPasswordBytes), dummyHash_);
  }
  if (!ok) {
    noteLoginFailure(clientAddress);
    spdlog::warn("auth: failed login for '{}' from {}", name.substr(0, 64), clientAddress);
    return error(Failure::kBadCredentials, "wrong user name or password");
  }
  {
    std::lock_guard lock(mutex_);
    failures_.erase(clientAddress);
  }
  // Old sessions are pruned here: logins are rare enough and it keeps the tables small.
  if (auto pruned = store_.pruneSessions(now()); !pruned.ok()) {
    spdlog::warn("auth: pruning expired sessions failed: {}", pruned.message());
  }
  const storage::SessionUser sessionUser{(*user)->id, (*user)->name, (*user)->role};
  const std::string sessionId = randomToken(16);
  const std::string refreshToken = randomToken(32);
  const std::int64_t t = now();
  if (auto status = store_.createSession(sessionId, sessionUser.userId, sha256Hex(refreshToken), t,
                                         t + options_.refreshTtlUs);
      !status.ok()) {
    return storeFailure(core::Error{status.message()});
  }
  spdlog::info("auth: '{}' logged in from {}", sessionUser.name, clientAddress);
  return issue(sessionUser, sessionId, refreshToken);
}

Outcome<TokenPair> AuthService::issue(const storage::SessionUser& user,
                                      const std::string& sessionId,
                                      const std::string& refreshToken) {
  const auto role = parseRole(user.role);
  if (!role) return error(Failure::kInvalid, "the user has an unknown role");
  const std::int64_t t = now();
  AccessClaims claims;
  claims.subject = user.name;
  claims.userId = user.userId;
  claims.role = user.role;
  claims.sessionId = sessionId;
  claims.issuedAt = t / kSecondUs;
  claims.expiresAt = (t + options_.tokenTtlUs) / kSecondUs;
  TokenPair pair;
  pair.accessToken = signJwt(claims, secret_);
  pair.expiresInSeconds = claims.expiresAt - claims.issuedAt;
  pair.refreshToken = refreshToken;
  pair.refreshExpiresInSeconds = options_.refreshTtlUs / kSecondUs;
  pair.user = user.name;
  pair.role = *role;
  return pair;
}

Outcome<TokenPair> AuthService::refresh(const std::string& refreshToken) {
  if (refreshToken.empty() || refreshToken.size() > 256) {
    return error(Failure::kInvalid, "invalid refresh token");
  }
  const std::string next = randomToken(32);
  const std::int64_t t = now();
  auto rotated = store_.rotateRefreshToken(sha256Hex(refreshToken), sha256Hex(next), t,
                                           t + options_.refreshTtlUs);
  if (!rotated) return storeFailure(rotated.error());
  switch (rotated->outcome) {
    case storage::RefreshOutcome::kRotated:
      return issue(rotated->user, rotated->sessionId, next);
    case storage::RefreshOutcome::kUnknown:
      return error(Failure::kInvalid, "invalid refresh token");
    case storage::RefreshOutcome::kExpired:
      return error(Failure::kExpired, "refresh token expired; log in again");
    case storage::RefreshOutcome::kRevoked:
      return error(Failure::kRevoked, "refresh token revoked; log in again");
    case storage::RefreshOutcome::kReused:
      forgetCached("s:" + rotated->sessionId);
      spdlog::warn("auth: a used refresh token of '{}' was presented again; session revoked",
                   rotated->user.name);
      return error(Failure::kRevoked,
                   "refresh token already used; the session is revoked, log in again");
  }
  return error(Failure::kInvalid, "invalid refresh token");
}

core::Status AuthService::logout(const Principal& principal, const std::string& refreshToken) {
  if (!principal.sessionId.empty()) {
    auto revoked = store_.revokeSession(principal.sessionId);
    if (!revoked) return revoked.error();
    forgetCached("s:" + principal.sessionId);
  }
  if (!refreshToken.empty()) {
    auto session = store_.sessionOfRefreshToken(sha256Hex(refreshToken));
    if (!session) return session.error();
    if (session->has_value()) {
      auto revoked = store_.revokeSession(**session);
      if (!revoked) return revoked.error();
      forgetCached("s:" + **session);
    }
  }
  return {};
}

void AuthService::forgetCached(const std::string& cacheKey) {
  std::lock_guard lock(mutex_);
  cache_.erase(cacheKey);
}

Outcome<Principal> AuthService::authenticate(std::string_view authorization,
                                             std::string_view apiKey) {
  authorization = trim(authorization);
  apiKey = trim(apiKey);
  if (!authorization.empty()) {
    // The scheme is case-insensitive (RFC 9110 §11.1).
    const auto space = authorization.find(' ');
    std::string scheme(authorization.substr(0, space));
    std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (scheme != "bearer" || space == std::string_view::npos) {
      return error(Failure::kInvalid, "expected 'Authorization: Bearer <token or API key>'");
    }
    const std::string_view credential = trim(authorization.substr(space + 1));
    if (credential.empty()) return error(Failure::kInvalid, "empty bearer token");
    if (credential.starts_with(kApiKeyPrefix)) return authenticateKey(credential);
    return authenticateJwt(credential);
  }
  if (!apiKey.empty()) return authenticateKey(apiKey);
  return error(Failure::kMissing,
               "authentication required: send 'Authorization: Bearer <token>' (POST "
               "/api/v1/auth/login) or an API key");
}

Outcome<Principal> AuthService::authenticateJwt(std::string_view token) {
  const std::int64_t t = now();
  const JwtResult verified = verifyJwt(token, secret_, t / kSecondUs);
  if (!verified.ok) {
    return error(verified.error == JwtError::kExpired ? Failure::kExpired : Failure::kInvalid,
                 std::string(jwtErrorText(verified.error)));
  }
  const std::string cacheKey = "s:" + verified.claims.sessionId;
  {
    std::lock_guard lock(mutex_);
    if (auto it = cache_.find(cacheKey); it != cache_.end() &&
                                         t - it->second.checkedUs < options_.cacheTtlUs &&
                                         t >= it->second.checkedUs) {
      return it->second.principal;
    }
  }
  // The signature is good; the session still has to exist (logout, user removal, refresh-token
  // reuse revoke it), and the user's current role applies rather than the one in the token.
  auto session = store_.activeSession(verified.claims.sessionId, t);
  if (!session) return storeFailure(session.error());
  if (!session->has_value()) return error(Failure::kRevoked, "token revoked (logged out)");
  const auto role = parseRole((*session)->role);
  if (!role) return error(Failure::kInvalid, "the user has an unknown role");
  Principal principal{Principal::Kind::kUser, (*session)->userId, (*session)->name, *role,
                      verified.claims.sessionId};
  std::lock_guard lock(mutex_);
  if (cache_.size() >= kMaxCacheEntries) cache_.clear();
  cache_[cacheKey] = Cached{principal, t};
  return principal;
}

Outcome<Principal> AuthService::authenticateKey(std::string_view key) {
  if (!key.starts_with(kApiKeyPrefix) || key.size() > 256) {
    return error(Failure::kInvalid, "invalid API key");
  }
  // Keys are looked up by their SHA-256: what a timing difference could reveal is the hash,
  // from which the key cannot be recovered.
  const std::string hash = sha256Hex(key);
  const std::string cacheKey = "k:" + hash;
  const std::int64_t t = now();
  {
    std::lock_guard lock(mutex_);
    if (auto it = cache_.find(cacheKey); it != cache_.end() &&
                                         t - it->second.checkedUs < options_.cacheTtlUs &&
                                         t >= it->second.checkedUs) {
      return it->second.principal;
    }
  }
  auto found = store_.findApiKey(hash);
  if (!found) return storeFailure(found.error());
  if (!found->has_value() || !constantTimeEqual((*found)->hash, hash)) {
    return error(Failure::kInvalid, "invalid or revoked API key");
  }
  const auto role = parseRole((*found)->role);
  if (!role) return error(Failure::kInvalid, "the API key has an unknown role");
  Principal principal{Principal::Kind::kApiKey, (*found)->id, (*found)->name, *role, {}};
  std::lock_guard lock(mutex_);
  if (cache_.size() >= kMaxCacheEntries) cache_.clear();
  cache_[cacheKey] = Cached{principal, t};
  return principal;
}

core::Result<NewApiKey> AuthService::createApiKey(const std::string& name, Role role,
                                                  const std::string& createdBy) {
  if (name.empty() || name.size() > 128 || std::any_of(name.begin(), name.end(), [](char c) {
        return static_cast<unsigned char>(c) < 0x20;
      })) {
    return core::Error{"name: expected 1 to 128 printable characters"};
  }
  NewApiKey out;
  out.key = std::string(kApiKeyPrefix) + randomToken(32);
  out.record.name = name;
  out.record.role = std::string(roleName(role));
  out.record.prefix = out.key.substr(0, kApiKeyShownPrefix);
  out.record.hash = sha256Hex(out.key);
  out.record.createdBy = createdBy;
  out.record.createdUs = now();
  auto id = store_.addApiKey(out.record);
  if (!id) return id.error();
  out.record.id = *id;
  return out;
}

core::Result<std::vector<storage::ApiKeyRecord>> AuthService::listApiKeys() {
  return store_.listApiKeys();
}

core::Result<bool> AuthService::revokeApiKey(std::int64_t id) {
  auto revoked = store_.revokeApiKey(id, now());
  if (revoked && *revoked) {
    std::lock_guard lock(mutex_);
    for (auto it = cache_.begin(); it != cache_.end();) {
      const bool match =
          it->second.principal.kind == Principal::Kind::kApiKey && it->second.principal.id == id;
      it = match ? cache_.erase(it) : std::next(it);
    }
  }
  return revoked;
}

}  // namespace tern::auth
