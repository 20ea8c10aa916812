// The auth tables in the SQLite database: one connection behind a mutex. Auth traffic is small
// (logins, refreshes, cache misses of token checks), so no pool; writes are short transactions
// that wait for the ingest writer's lock through the busy timeout.
#include "storage/sqlite/sqlite_auth_store.h"

#include <sqlite3.h>

#include <mutex>
#include <stdexcept>
#include <string_view>
#include <unordered_map>
#include <utility>

namespace tern::storage::sqlite {
namespace {

constexpr int kAuthSchemaVersion = 2;
constexpr int kBusyTimeoutMs = 5000;

struct Migration {
  int version;
  const char* sql;
};

// Applied in order, all pending ones in one transaction. Never edit a released entry.
constexpr Migration kMigrations[] = {
    {1, R"sql(
CREATE TABLE users(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  role TEXT NOT NULL,
  password_hash TEXT NOT NULL,
  created INTEGER NOT NULL
);
CREATE TABLE auth_sessions(
  id TEXT PRIMARY KEY,
  user_id INTEGER NOT NULL,
  created INTEGER NOT NULL,
  expires INTEGER NOT NULL,
  revoked INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX auth_sessions_user ON auth_sessions(user_id);
CREATE TABLE refresh_tokens(
  hash TEXT PRIMARY KEY,
  session_id TEXT NOT NULL,
  created INTEGER NOT NULL,
  expires INTEGER NOT NULL,
  used INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX refresh_tokens_session ON refresh_tokens(session_id);
CREATE TABLE api_keys(
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  role TEXT NOT NULL,
  prefix TEXT NOT NULL,
  hash TEXT NOT NULL UNIQUE,
  created_by TEXT NOT NULL,
  created INTEGER NOT NULL,
  revoked INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE auth_secrets(name TEXT PRIMARY KEY, value TEXT NOT NULL);
)sql"},
    // MQTT device credentials, and the counter a running broker polls to notice removals.
    {2, R"sql(
CREATE TABLE device_credentials(
  id INTEGER PRIMARY KEY,
  device_id TEXT NOT NULL UNIQUE,
  password_hash TEXT NOT NULL,
  created INTEGER NOT NULL
);
CREATE TABLE device_tokens(
  id INTEGER PRIMARY KEY,
  device_id TEXT NOT NULL,
  prefix TEXT NOT NULL,
  hash TEXT NOT NULL UNIQUE,
  created INTEGER NOT NULL,
  revoked INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX device_tokens_device ON device_tokens(device_id);
CREATE TABLE auth_generation(id INTEGER PRIMARY KEY CHECK (id = 1), value INTEGER NOT NULL);
INSERT INTO auth_generation(id, value) VALUES(1, 0);
)sql"},
};
static_assert(std::size(kMigrations) == kAuthSchemaVersion, "one migration per schema version");

core::Error sqlError(sqlite3* db, std::string_view what) {
  std::string message = "sqlite auth: ";
  message += what;
  message += ": ";
  message += db != nullptr ? sqlite3_errmsg(db) : "out of memory";
  return core::Error{std::move(message)};
}

// A prepared statement bound and stepped in one scope; reset when the scope ends.
class Stmt {
 public:
  Stmt(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  ~Stmt() {
    if (stmt_ != nullptr) {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    }
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;

  Stmt& text(int index, std::string_view value) {
    sqlite3_bind_text64(stmt_, index, value.data(), value.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
    return *this;
  }
  Stmt& integer(int index, std::int64_t value) {
    sqlite3_bind_int64(stmt_, index, value);
    return *this;
  }
  // SQLITE_ROW, SQLITE_DONE or an error code.
  int step() { return sqlite3_step(stmt_); }
  std::int64_t columnInt(int column) const { return sqlite3_column_int64(stmt_, column); }
  std::string columnText(int column) const {
    const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, column));
    if (text == nullptr) return {};
    return {text, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, column))};
  }
  sqlite3* db() const { return db_; }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_;
};

constexpr const char* kSqlAddUser =
    "INSERT INTO users(name, role, password_hash, created) VALUES(?1, ?2, ?3, ?4) "
    "ON CONFLICT(name) DO NOTHING RETURNING id";
constexpr const char* kSqlFindUser =
    "SELECT id, name, role, password_hash, created FROM users WHERE name = ?1";
constexpr const char* kSqlListUsers =
    "SELECT id, name, role, password_hash, created FROM users ORDER BY name";
constexpr const char* kSqlUserId = "SELECT id FROM users WHERE name = ?1";
constexpr const char* kSqlDeleteUser = "DELETE FROM users WHERE id = ?1";
constexpr const char* kSqlDeleteUserTokens =
    "DELETE FROM refresh_tokens WHERE session_id IN "
    "(SELECT id FROM auth_sessions WHERE user_id = ?1)";
constexpr const char* kSqlDeleteUserSessions = "DELETE FROM auth_sessions WHERE user_id = ?1";
constexpr const char* kSqlCountUsers = "SELECT count(*) FROM users";
constexpr const char* kSqlSetUserRole = "UPDATE users SET role = ?2 WHERE id = ?1";
// A new id above every other: MQTT logins with the old password hold a grant of the old one.
constexpr const char* kSqlSetUserPassword =
    "UPDATE users SET password_hash = ?2, id = (SELECT max(id) + 1 FROM users) WHERE id = ?1";
constexpr const char* kSqlInsertSecret =
    "INSERT INTO auth_secrets(name, value) VALUES(?1, ?2) ON CONFLICT(name) DO NOTHING";
constexpr const char* kSqlGetSecret = "SELECT value FROM auth_secrets WHERE name = ?1";
constexpr const char* kSqlInsertSession =
    "INSERT INTO auth_sessions(id, user_id, created, expires) VALUES(?1, ?2, ?3, ?4)";
constexpr const char* kSqlInsertToken =
    "INSERT INTO refresh_tokens(hash, session_id, created, expires) VALUES(?1, ?2, ?3, ?4)";
constexpr const char* kSqlFindToken =
    "SELECT t.session_id, t.expires, t.used, s.revoked, s.user_id, u.name, u.role "
    "FROM refresh_tokens AS t JOIN auth_sessions AS s ON s.id = t.session_id "
    "LEFT JOIN users AS u ON u.id = s.user_id WHERE t.hash = ?1";
constexpr const char* kSqlUseToken = "UPDATE refresh_tokens SET used = 1 WHERE hash = ?1";
constexpr const char* kSqlExtendSession =
    "UPDATE auth_sessions SET expires = max(expires, ?2) WHERE id = ?1";
constexpr const char* kSqlRevokeSession =
    "UPDATE auth_sessions SET revoked = 1 WHERE id = ?1 AND revoked = 0";
constexpr const char* kSqlActiveSession =
    "SELECT u.id, u.name, u.role FROM auth_sessions AS s JOIN users AS u ON u.id = s.user_id "
    "WHERE s.id = ?1 AND s.revoked = 0 AND s.expires > ?2";
constexpr const char* kSqlSessionOfToken = "SELECT session_id FROM refresh_tokens WHERE hash = ?1";
constexpr const char* kSqlPruneTokens =
    "DELETE FROM refresh_tokens WHERE session_id IN "
    "(SELECT id FROM auth_sessions WHERE expires <= ?1)";
constexpr const char* kSqlPruneSessions = "DELETE FROM auth_sessions WHERE expires <= ?1";
constexpr const char* kSqlAddKey =
    "INSERT INTO api_keys(name, role, prefix, hash, created_by, created) "
    "VALUES(?1, ?2, ?3, ?4, ?5, ?6) RETURNING id";
constexpr const char* kSqlListKeys =
    "SELECT id, name, role, prefix, hash, created_by, created, revoked FROM api_keys "
    "ORDER BY id DESC";
constexpr const char* kSqlFindKey =
    "SELECT id, name, role, prefix, hash, created_by, created, revoked FROM api_keys "
    "WHERE hash = ?1 AND revoked = 0";
constexpr const char* kSqlRevokeKey =
    "UPDATE api_keys SET revoked = ?2 WHERE id = ?1 AND revoked = 0";

constexpr const char* kSqlBumpGeneration = "UPDATE auth_generation SET value = value + 1";
constexpr const char* kSqlGeneration = "SELECT value FROM auth_generation WHERE id = 1";
// A device that so far has only tokens (empty hash) gets the password; one with a password
// keeps it (no row returned).
constexpr const char* kSqlAddDevice =
    "INSERT INTO device_credentials(device_id, password_hash, created) VALUES(?1, ?2, ?3) "
    "ON CONFLICT(device_id) DO UPDATE SET password_hash = excluded.password_hash "
    "WHERE device_credentials.password_hash = '' RETURNING id";
constexpr const char* kSqlEnsureDevice =
    "INSERT INTO device_credentials(device_id, password_hash, created) VALUES(?1, '', ?2) "
    "ON CONFLICT(device_id) DO NOTHING";
constexpr const char* kSqlFindDevice =
    "SELECT id, device_id, password_hash, created, 0 FROM device_credentials WHERE device_id = ?1";
constexpr const char* kSqlListDevices =
    "SELECT d.id, d.device_id, d.password_hash, d.created, "
    "(SELECT count(*) FROM device_tokens AS t WHERE t.device_id = d.device_id AND t.revoked = 0) "
    "FROM device_credentials AS d ORDER BY d.device_id";
constexpr const char* kSqlDeleteDevice = "DELETE FROM device_credentials WHERE device_id = ?1";
constexpr const char* kSqlDeleteDeviceTokens = "DELETE FROM device_tokens WHERE device_id = ?1";
constexpr const char* kSqlAddDeviceToken =
    "INSERT INTO device_tokens(device_id, prefix, hash, created) VALUES(?1, ?2, ?3, ?4) "
    "RETURNING id";
constexpr const char* kSqlFindDeviceToken =
    "SELECT id, device_id, prefix, hash, created, revoked FROM device_tokens "
    "WHERE hash = ?1 AND revoked = 0";
constexpr const char* kSqlListDeviceTokens =
    "SELECT id, device_id, prefix, hash, created, revoked FROM device_tokens WHERE revoked = 0 "
    "ORDER BY id";
constexpr const char* kSqlRevokeDeviceTokens =
    "UPDATE device_tokens SET revoked = ?2 WHERE device_id = ?1 AND revoked = 0";

// A new id above every other: a replaced password must not keep the grant of the old one.
constexpr const char* kSqlSetDevicePassword =
    "INSERT INTO device_credentials(device_id, password_hash, created) VALUES(?1, ?2, ?3) "
    "ON CONFLICT(device_id) DO UPDATE SET password_hash = excluded.password_hash, "
    "id = (SELECT max(id) + 1 FROM device_credentials)";
constexpr const char* kSqlClearDevicePassword =
    "UPDATE device_credentials SET password_hash = '', "
    "id = (SELECT max(id) + 1 FROM device_credentials) "
    "WHERE device_id = ?1 AND password_hash <> ''";
constexpr const char* kSqlDeviceTokensOf =
    "SELECT id, device_id, prefix, hash, created, revoked FROM device_tokens "
    "WHERE device_id = ?1 AND revoked = 0 ORDER BY id";
constexpr const char* kSqlRevokeDeviceToken =
    "UPDATE device_tokens SET revoked = ?3 WHERE device_id = ?1 AND id = ?2 AND revoked = 0";

class SqliteAuthStore final : public AuthStore {
 public:
  explicit SqliteAuthStore(const std::string& path) {
    const int rc =
        sqlite3_open_v2(path.c_str(), &db_,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
      std::string message = sqlError(db_, "open " + path).message;
      sqlite3_close_v2(db_);
      db_ = nullptr;
      throw std::runtime_error(message);
    }
    sqlite3_busy_timeout(db_, kBusyTimeoutMs);
    exec("PRAGMA journal_mode=WAL");
    exec("PRAGMA synchronous=FULL");  // auth changes are rare; make each one durable
    migrate();
  }

  ~SqliteAuthStore() override {
    for (auto& [sql, stmt] : statements_) sqlite3_finalize(stmt);
    sqlite3_close_v2(db_);
  }
  SqliteAuthStore(const SqliteAuthStore&) = delete;
  SqliteAuthStore& operator=(const SqliteAuthStore&) = delete;

  core::Result<std::int64_t> addUser(const UserRecord& user) override {
    std::lock_guard lock(mutex_);
    auto stmt = prepare(kSqlAddUser);
    if (!stmt) return stmt.error();
    Stmt s(db_, *stmt);
    s.text(1, user.name).text(2, user.role).text(3, user.passwordHash).integer(4, user.createdUs);
    const int rc = s.step();
    if (rc == SQLITE_ROW) return s.columnInt(0);
    if (rc == SQLITE_DONE) return core::Error{"a user named '" + user.name + "' already exists"};
    return sqlError(db_, "add user");
  }

  core::Result<std::optional<UserRecord>> findUser(const std::string& name) override {
    std::lock_guard lock(mutex_);
    auto stmt = prepare(kSqlFindUser);
    if (!stmt) return stmt.error();
    Stmt s(db_, *stmt);
    s.text(1, name);
    const int rc = s.step();
    if (rc == SQLITE_DONE) return std::optional<UserRecord>();
    if (rc != SQLITE_ROW) return sqlError(db_, "find user");
    return std::optional<UserRecord>(readUser(s));
  }

  core::Result<std::vector<UserRecord>> listUsers() override {
    std::lock_guard lock(mutex_);
    auto stmt = prepare(kSqlListUsers);
    if (!stmt) return stmt.error();
    Stmt s(db_, *stmt);
    std::vector<UserRecord> users;
    int rc = SQLITE_ROW;
    while ((rc = s.step()) == SQLITE_ROW) users.push_back(readUser(s));
    if (rc != SQLITE_DONE) return sqlError(db_, "list users");
    return users;
  }

  core::Result<bool> removeUser(const std::string& name) override {
    std::lock_guard lock(mutex_);
    return transaction<bool>("remove user", [&]() -> core::Result<bool> {
      auto id = lookupInt(kSqlUserId, name);
      if (!id) return id.error();
      if (!id->has_value()) return false;
      for (const char* sql : {kSqlDeleteUserTokens, kSqlDeleteUserSessions, kSqlDeleteUser}) {
        auto stmt = prepare(sql);
        if (!stmt) return stmt.error();
        Stmt s(db_, *stmt);
        s.integer(1, **id);
        if (s.step() != SQLITE_DONE) return sqlError(db_, "remove user");
      }
      if (auto status = runPlain(kSqlBumpGeneration); !status.ok()) {
        return core::Error{status.message()};
      }
      return true;
    });
  }

  core::Result<bool> updateUser(const std::string& name, const std::optional<std::string>& role,
                                const std::optional<std::string>& passwordHash) override {
    std::lock_guard lock(mutex_);
    return transaction<bool>("update user", [&]() -> core::Result<bool> {
      auto id = lookupInt(kSqlUserId, name);
      if (!id) return id.error();
      if (!id->has_value()) return false;
      if (role) {
        auto stmt = prepare(kSqlSetUserRole);
        if (!stmt) return stmt.error();
        Stmt s(db_, *stmt);
        s.integer(1, **id).text(2, *role);
        if (s.step() != SQLITE_DONE) return sqlError(db_, "set user role");
      }
      if (passwordHash) {
        // Every session ends: refresh tokens, then sessions, then the new password and id.
        for (const char* sql : {kSqlDeleteUserTokens, kSqlDeleteUserSessions}) {
          auto stmt = prepare(sql);
          if (!stmt) return stmt.error();
          Stmt s(db_, *stmt);
          s.integer(1, **id);
          if (s.step() != SQLITE_DONE) return sqlError(db_, "end user sessions");
        }
        auto stmt = prepare(kSqlSetUserPassword);
        if (!stmt) return stmt.error();
        Stmt s(db_, *stmt);
        s.integer(1, **id).text(2, *passwordHash);
        if (s.step() != SQLITE_DONE) return sqlError(db_, "set user password");
      }
      if (auto status = runPlain(kSqlBumpGeneration); !status.ok()) {
        return core::Error{status.message()};
      }
      return true;
    });
  }

  core::Result<std::int64_t> countUsers() override {
    std::lock_guard lock(mutex_);
    auto stmt = prepare(kSqlCountUsers);
    if (!stmt) return stmt.error();
    Stmt s(db_, *stmt);
    if (s.step() != SQLITE_ROW) return sqlError(db_, "count users");
    return s.columnInt(0);
  }

  core::Result<std::string> getOrCreateSecret(const std::string& name,
                                              const std::string& candidate) override {
    std::lock_guard lock(mutex_);
    {
      auto stmt = prepare(kSqlInsertSecret);
      if (!stmt) return stmt.error();
      Stmt s(db_, *stmt);
      s.text(1, name).text(2, candidate);
      if (s.step() != SQLITE_DONE) return sqlError(db_, "store secret");
    }
    auto stmt = prepare(kSqlGetSecret);
    if (!stmt) return stmt.error();
    Stmt s(db_, *stmt);
    s.text(1, name);
    if (s.step() != SQLITE_ROW) return sqlError(db_, "read secret");
    return s.columnText(0);
  }

  core::Status createSession(const std::string& sessionId, std::int64_t userId,
                             const std::string& refreshHash, std::int64_t nowUs,
                             std::int64_t expiresUs) override {
    std::lock_guard lock(mutex_);
    auto done = transaction<bool>("create session", [&]() -> core::Result<bool> {
      {
        auto stmt = prepare(kSqlInsertSession);
        if (!stmt) return stmt.error();
        Stmt s(db_, *stmt);
        s.text(1, sessionId).integer(2, userId).integer(3, nowUs).integer(4, expiresUs);
        if (s.step() != SQLITE_DONE) return sqlError(db_, "insert session");
      }
      auto stmt = prepare(kSqlInsertToken);
      if (!stmt) return stmt.error();
      Stmt s(db_, *stmt);
      s.text(1, refreshHash).text(2, sessionId).integer(3, nowUs).integer(4, expiresUs);
      if (s.step() != SQLITE_DONE) return sqlError(db_, "insert refresh token");
      return true;
    });
    if (!done) return done.error();
    return {};
  }

  core::Result<RefreshResult> rotateRefreshToken(const std::string& oldHash,
                                                 const std::string& newHash, std::int64_t nowUs,
                                                 std::int64_t newExpiresUs) override {
    std::lock_guard lock(mutex_);
    return transaction<RefreshResult>("refresh", [&]() -> core::Result<RefreshResult> {
      RefreshResult result;
      std::int64_t expires = 0;
      bool used = false;
      bool revoked = false;
      bool userExists = false;
      {
        auto stmt = prepare(kSqlFindToken);
        if (!stmt) return stmt.error();
        Stmt s(db_, *stmt);
        s.text(1, oldHash);
        const int rc = s.step();
        if (rc == SQLITE_DONE) return result;  // kUnknown
        if (rc != SQLITE_ROW) return sqlError(db_, "find refresh token");
        result.sessionId = s.columnText(0);
        expires = s.columnInt(1);
        used = s.columnInt(2) != 0;
        revoked = s.columnInt(3) != 0;
        result.user.userId = s.columnInt(4);
        userExists = sqlite3_column_type(*stmt, 5) != SQLITE_NULL;
        result.user.name = s.columnText(5);
        result.user.role = s.columnText(6);
      }
      if (revoked || !userExists) {
        result.outcome = RefreshOutcome::kRevoked;
        return result;
      }
      if (used) {
        // Someone replays a rotated token: either the client or a thief has a copy. Revoke the
        // family so neither can go on.
        if (auto status = runWithText(kSqlRevokeSession, result.sessionId); !status.ok()) {
          return core::Error{status.message()};
        }
        result.outcome = RefreshOutcome::kReused;
        return result;
      }
      if (expires <= nowUs) {
        result.outcome = RefreshOutcome::kExpired;
        return result;
      }
      if (auto status = runWithText(kSqlUseToken, oldHash); !status.ok()) {
        return core::Error{status.message()};
      }
      {
        auto stmt = prepare(kSqlInsertToken);
        if (!stmt) return stmt.error();
        Stmt s(db_, *stmt);
        s.text(1, newHash).text(2, result.sessionId).integer(3, nowUs).integer(4, newExpiresUs);
        if (s.step() != SQLITE_DONE) return sqlError(db_, "insert refresh token");
      }
      {
        auto stmt = prepare(kSqlExtendSession);
        if (!stmt) return stmt.error();
        Stmt s(db_, *stmt);
        s.text(1, result.sessionId).integer(2, newExpiresUs);
        if (s.step() != SQLITE_DONE) return sqlError(db_, "extend session");
      }
      result.outcome = RefreshOutcome::kRotated;
      return result;
    });
  }

  core::Result<std::optional<SessionUser>> activeSession(const std::string& sessionId,
                                                         std::int64_t nowUs) override {
    std::lock_guard lock(mutex_);
    auto stmt = prepare(kSqlActiveSession);
    if (!stmt) return stmt.error();
    Stmt s(db_, *stmt);
    s.text(1, sessionId).integer(2, nowUs);
    const int rc = s.step();
    if (rc == SQLITE_DONE) return std::optional<SessionUser>();
    if (rc != SQLITE_ROW) return sqlError(db_, "read session");
    return std::optional<SessionUser>(
        SessionUser{s.columnInt(0), s.columnText(1), s.columnText(2)});
  }

  core::Result<bool> revokeSession(const std::string& sessionId) override {
    std::lock_guard lock(mutex_);
    auto status = runWithText(kSqlRevokeSession, sessionId);
    if (!status.ok()) return core::Error{status.message()};
    return sqlite3_changes(db_) > 0;
  }

  core::Result<std::optional<std::string>> sessionOfRefreshToken(const std::string& hash) override {
    std::lock_guard lock(mutex_);
    auto stmt = prepare(kSqlSessionOfToken);
    if (!stmt) return stmt.error();
    Stmt s(db_, *stmt);
    s.text(1, hash);
    const int rc = s.step();
    if (rc == SQLITE_DONE) return std::optional<std::string>();
    if (rc != SQLITE_ROW) return sqlError(db_, "find refresh token");
    return std::optional<std::string>(s.columnText(0));
  }

  core::Status pruneSessions(std::int64_t nowUs) override {
    std::lock_guard lock(mutex_);
    auto done = transaction<bool>("prune sessions", [&]() -> core::Result<bool> {
      for (const char* sql : {kSqlPruneTokens, kSqlPruneSessions}) {
        auto stmt = prepare(sql);
        if (!stmt) return stmt.error();
        Stmt s(db_, *stmt);
        s.integer(1, nowUs);
        if (s.step() != SQLITE_DONE) return sqlError(db_, "prune sessions");
      }
      return true;
    });
    if (!done) return done.error();
    return {};
  }

  core::Result<std::int64_t> addApiKey(const ApiKeyRecord& key) override {
    std::lock_guard lock(mutex_);
    auto stmt = prepare(kSqlAddKey);
    if (!stmt) return stmt.error();
    Stmt s(db_, *stmt);
    s.text(1, key.name).text(2, key.role).text(3, key.prefix).text(4, key.hash);
    s.text(5, key.createdBy).integer(6, key.createdUs);
    if (s.step() != SQLITE_ROW) return sqlError(db_, "add API key");
    return s.columnInt(0);
  }

  core::Result<std::vector<ApiKeyRecord>> listApiKeys() override {
    std::lock_guard lock(mutex_);
    auto stmt = prepare(kSqlListKeys);
    if (!stmt) return stmt.error();
    Stmt s(db_, *stmt);
    std::vector<ApiKeyRecord> keys;
    int rc = SQLITE_ROW;
    while ((rc = s.step()) == SQLITE_ROW) keys.push_back(readKey(s));
    if (rc != SQLITE_DONE) return sqlError(db_, "list API keys");
    return keys;
  }

  core::Result<std::optional<ApiKeyRecord>> findApiKey(const std::string& hash) override {
    std::lock_guard lock(mutex_);
    auto stmt = prepare(kSqlFindKey);
    if (!stmt) return stmt.error();
    Stmt s(db_, *stmt);
    s.text(1, hash);
    const int rc = s.step();
    if (rc == SQLITE_DONE) return std::optional<ApiKeyRecord>();
    if (rc != SQLITE_ROW) return sqlError(db_, "find API key");
    return std::optional<ApiKeyRecord>(readKey(s));
  }

  core::Result<bool> revokeApiKey(std::int64_t id, std::int64_t nowUs) override {
    std::lock_guard lock(mutex_);
    auto stmt = prepare(kSqlRevokeKey);
    if (!stmt) return stmt.error();
    Stmt s(db_, *stmt);
    s.integer(1, id).integer(2, nowUs > 0 ? nowUs : 1);
    if (s.step() != SQLITE_DONE) return sqlError(db_, "revoke API key");
    return sqlite3_changes(db_) > 0;
  }

  core::Result<std::int64_t> addDevice(const DeviceCredential& device) override {
    std::lock_guard lock(mutex_);
    auto stmt = prepare(kSqlAddDevice);
    if (!stmt) return stmt.error();
    Stmt s(db_, *stmt);
    s.text(1, device.deviceId).text(2, device.passwordHash).integer(3, device.createdUs);
    const int rc = s.step();
    if (rc == SQLITE_ROW) return s.columnInt(0);
    if (rc == SQLITE_DONE) {
      return core::Error{"device '" + device.deviceId + "' already has a password"};
    }
    return sqlError(db_, "add device");
  }

  core::Result<std::optional<DeviceCredential>> findDevice(const std::string& deviceId) override {
    std::lock_guard lock(mutex_);
    auto stmt = prepare(kSqlFindDevice);
    if (!stmt) return stmt.error();
    Stmt s(db_, *stmt);
    s.text(1, deviceId);
    const int rc = s.step();
    if (rc == SQLITE_DONE) return std::optional<DeviceCredential>();
    if (rc != SQLITE_ROW) return sqlError(db_, "find device");
    return std::optional<DeviceCredential>(readDevice(s));
  }

  core::Result<std::vector<DeviceCredential>> listDevices() override {
    std::lock_guard lock(mutex_);
    auto stmt = prepare(kSqlListDevices);
    if (!stmt) return stmt.error();
    Stmt s(db_, *stmt);
    std::vector<DeviceCredential> devices;
    int rc = SQLITE_ROW;
    while ((rc = s.step()) == SQLITE_ROW) devices.push_back(readDevice(s));
    if (rc != SQLITE_DONE) return sqlError(db_, "list devices");
    return devices;
  }

  core::Result<bool> removeDevice(const std::string& deviceId) override {
    std::lock_guard lock(mutex_);
    return transaction<bool>("remove device", [&]() -> core::Result<bool> {
      int changed = 0;
      for (const char* sql : {kSqlDeleteDeviceTokens, kSqlDeleteDevice}) {
        if (auto status = runWithText(sql, deviceId); !status.ok()) {
          return core::Error{status.message()};
        }
        changed += sqlite3_changes(db_);
      }
      if (changed == 0) return false;
      if (auto status = runPlain(kSqlBumpGeneration); !status.ok()) {
        return core::Error{status.message()};
      }
      return true;
    });
  }

  core::Result<std::int64_t> addDeviceToken(const DeviceToken& token) override {
    std::lock_guard lock(mutex_);
    return transaction<std::int64_t>("add device token", [&]() -> core::Result<std::int64_t> {
      {
        auto stmt = prepare(kSqlEnsureDevice);
        if (!stmt) return stmt.error();
        Stmt s(db_, *stmt);
        s.text(1, token.deviceId).integer(2, token.createdUs);
        if (s.step() != SQLITE_DONE) return sqlError(db_, "register device");
      }
      auto stmt = prepare(kSqlAddDeviceToken);
      if (!stmt) return stmt.error();
      Stmt s(db_, *stmt);
      s.text(1, token.deviceId).text(2, token.prefix).text(3, token.hash);
      s.integer(4, token.createdUs);
      if (s.step() != SQLITE_ROW) return sqlError(db_, "add device token");
      return s.columnInt(0);
    });
  }

  core::Result<std::optional<DeviceToken>> findDeviceToken(const std::string& hash) override {
    std::lock_guard lock(mutex_);
    auto stmt = prepare(kSqlFindDeviceToken);
    if (!stmt) return stmt.error();
    Stmt s(db_, *stmt);
    s.text(1, hash);
    const int rc = s.step();
    if (rc == SQLITE_DONE) return std::optional<DeviceToken>();
    if (rc != SQLITE_ROW) return sqlError(db_, "find device token");
    return std::optional<DeviceToken>(readToken(s));
  }

  core::Result<std::vector<DeviceToken>> listDeviceTokens() override {
    std::lock_guard lock(mutex_);
    auto stmt = prepare(kSqlListDeviceTokens);
    if (!stmt) return stmt.error();
    Stmt s(db_, *stmt);
    std::vector<DeviceToken> tokens;
    int rc = SQLITE_ROW;
    while ((rc = s.step()) == SQLITE_ROW) tokens.push_back(readToken(s));
    if (rc != SQLITE_DONE) return sqlError(db_, "list device tokens");
    return tokens;
  }

  core::Result<std::int64_t> revokeDeviceTokens(const std::string& deviceId,
                                                std::int64_t nowUs) override {
    std::lock_guard lock(mutex_);
    return transaction<std::int64_t>("revoke device tokens", [&]() -> core::Result<std::int64_t> {
      auto stmt = prepare(kSqlRevokeDeviceTokens);
      if (!stmt) return stmt.error();
      Stmt s(db_, *stmt);
      s.text(1, deviceId).integer(2, nowUs > 0 ? nowUs : 1);
      if (s.step() != SQLITE_DONE) return sqlError(db_, "revoke device tokens");
      const std::int64_t revoked = sqlite3_changes(db_);
      if (revoked > 0) {
        if (auto status = runPlain(kSqlBumpGeneration); !status.ok()) {
          return core::Error{status.message()};
        }
      }
      return revoked;
    });
  }

  core::Result<bool> setDevicePassword(const std::string& deviceId, const std::string& passwordHash,
                                       std::int64_t nowUs) override {
    std::lock_guard lock(mutex_);
    return transaction<bool>("set device password", [&]() -> core::Result<bool> {
      bool existed = false;
      {
        auto stmt = prepare(kSqlFindDevice);
        if (!stmt) return stmt.error();
        Stmt s(db_, *stmt);
        s.text(1, deviceId);
        const int rc = s.step();
        if (rc != SQLITE_ROW && rc != SQLITE_DONE) return sqlError(db_, "find device");
        existed = rc == SQLITE_ROW;
      }
      auto stmt = prepare(kSqlSetDevicePassword);
      if (!stmt) return stmt.error();
      Stmt s(db_, *stmt);
      s.text(1, deviceId).text(2, passwordHash).integer(3, nowUs);
      if (s.step() != SQLITE_DONE) return sqlError(db_, "set device password");
      if (existed) {
        if (auto status = runPlain(kSqlBumpGeneration); !status.ok()) {
          return core::Error{status.message()};
        }
      }
      return !existed;
    });
  }

  core::Result<bool> clearDevicePassword(const std::string& deviceId) override {
    std::lock_guard lock(mutex_);
    return transaction<bool>("clear device password", [&]() -> core::Result<bool> {
      if (auto status = runWithText(kSqlClearDevicePassword, deviceId); !status.ok()) {
        return core::Error{status.message()};
      }
      if (sqlite3_changes(db_) == 0) return false;
      if (auto status = runPlain(kSqlBumpGeneration); !status.ok()) {
        return core::Error{status.message()};
      }
      return true;
    });
  }

  core::Result<std::vector<DeviceToken>> deviceTokens(const std::string& deviceId) override {
    std::lock_guard lock(mutex_);
    auto stmt = prepare(kSqlDeviceTokensOf);
    if (!stmt) return stmt.error();
    Stmt s(db_, *stmt);
    s.text(1, deviceId);
    std::vector<DeviceToken> tokens;
    int rc = SQLITE_ROW;
    while ((rc = s.step()) == SQLITE_ROW) tokens.push_back(readToken(s));
    if (rc != SQLITE_DONE) return sqlError(db_, "list a device's tokens");
    return tokens;
  }

  core::Result<bool> revokeDeviceToken(const std::string& deviceId, std::int64_t tokenId,
                                       std::int64_t nowUs) override {
    std::lock_guard lock(mutex_);
    return transaction<bool>("revoke device token", [&]() -> core::Result<bool> {
      auto stmt = prepare(kSqlRevokeDeviceToken);
      if (!stmt) return stmt.error();
      Stmt s(db_, *stmt);
      s.text(1, deviceId).integer(2, tokenId).integer(3, nowUs > 0 ? nowUs : 1);
      if (s.step() != SQLITE_DONE) return sqlError(db_, "revoke device token");
      if (sqlite3_changes(db_) == 0) return false;
      if (auto status = runPlain(kSqlBumpGeneration); !status.ok()) {
        return core::Error{status.message()};
      }
      return true;
    });
  }

  core::Result<std::int64_t> credentialsGeneration() override {
    std::lock_guard lock(mutex_);
    auto stmt = prepare(kSqlGeneration);
    if (!stmt) return stmt.error();
    Stmt s(db_, *stmt);
    if (s.step() != SQLITE_ROW) return sqlError(db_, "read credentials generation");
    return s.columnInt(0);
  }

  std::string backendName() const override { return "sqlite"; }

 private:
  static DeviceCredential readDevice(const Stmt& s) {
    return DeviceCredential{s.columnInt(0), s.columnText(1), s.columnText(2), s.columnInt(3),
                            s.columnInt(4)};
  }
  static DeviceToken readToken(const Stmt& s) {
    return DeviceToken{s.columnInt(0),  s.columnText(1), s.columnText(2),
                       s.columnText(3), s.columnInt(4),  s.columnInt(5)};
  }
  core::Status runPlain(const char* sql) {
    auto stmt = prepare(sql);
    if (!stmt) return stmt.error();
    Stmt s(db_, *stmt);
    if (s.step() != SQLITE_DONE) return sqlError(db_, "update");
    return {};
  }

  static UserRecord readUser(const Stmt& s) {
    return UserRecord{s.columnInt(0), s.columnText(1), s.columnText(2), s.columnText(3),
                      s.columnInt(4)};
  }
  static ApiKeyRecord readKey(const Stmt& s) {
    return ApiKeyRecord{s.columnInt(0),  s.columnText(1), s.columnText(2), s.columnText(3),
                        s.columnText(4), s.columnText(5), s.columnInt(6),  s.columnInt(7)};
  }

  void exec(const std::string& sql) {
    char* message = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &message) != SQLITE_OK) {
      std::string text = "sqlite auth: " + sql.substr(0, 60) + ": ";
      text += message != nullptr ? message : sqlite3_errmsg(db_);
      sqlite3_free(message);
      throw std::runtime_error(text);
    }
  }

  void migrate() {
    exec("BEGIN IMMEDIATE");
    try {
      exec("CREATE TABLE IF NOT EXISTS auth_schema(version INTEGER NOT NULL)");
      int version = 0;
      {
        auto stmt = prepare("SELECT max(version) FROM auth_schema");
        if (!stmt) throw std::runtime_error(stmt.error().message);
        Stmt s(db_, *stmt);
        if (s.step() != SQLITE_ROW)
          throw std::runtime_error(sqlError(db_, "read auth schema").message);
        version = static_cast<int>(s.columnInt(0));
      }
      if (version > kAuthSchemaVersion) {
        throw std::runtime_error("sqlite auth: database auth schema version " +
                                 std::to_string(version) + " is newer than this build's (" +
                                 std::to_string(kAuthSchemaVersion) + "); upgrade tern");
      }
      for (const Migration& migration : kMigrations) {
        if (migration.version > version) {
          exec(migration.sql);
          exec("INSERT INTO auth_schema(version) VALUES(" + std::to_string(migration.version) +
               ")");
        }
      }
      exec("COMMIT");
    } catch (...) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      throw;
    }
  }

  core::Result<sqlite3_stmt*> prepare(const char* sql) {
    if (auto it = statements_.find(sql); it != statements_.end()) return it->second;
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v3(db_, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, nullptr) != SQLITE_OK) {
      return sqlError(db_, "prepare");
    }
    statements_.emplace(sql, stmt);
    return stmt;
  }

  core::Result<std::optional<std::int64_t>> lookupInt(const char* sql, const std::string& key) {
    auto stmt = prepare(sql);
    if (!stmt) return stmt.error();
    Stmt s(db_, *stmt);
    s.text(1, key);
    const int rc = s.step();
    if (rc == SQLITE_DONE) return std::optional<std::int64_t>();
    if (rc != SQLITE_ROW) return sqlError(db_, "lookup");
    return std::optional<std::int64_t>(s.columnInt(0));
  }

  core::Status runWithText(const char* sql, const std::string& value) {
    auto stmt = prepare(sql);
    if (!stmt) return stmt.error();
    Stmt s(db_, *stmt);
    s.text(1, value);
    if (s.step() != SQLITE_DONE) return sqlError(db_, "update");
    return {};
  }

  // Runs `body` in BEGIN IMMEDIATE … COMMIT; rolls back when it fails.
  template <class T, class Body>
  core::Result<T> transaction(std::string_view what, Body&& body) {
    if (sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK) {
      return sqlError(db_, std::string("begin ") + std::string(what));
    }
    core::Result<T> result = body();
    if (!result) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      return result;
    }
    if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
      core::Error error = sqlError(db_, std::string("commit ") + std::string(what));
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
      return error;
    }
    return result;
  }

  std::mutex mutex_;
  sqlite3* db_ = nullptr;
  std::unordered_map<const char*, sqlite3_stmt*> statements_;
};

}  // namespace

std::unique_ptr<AuthStore> openSqliteAuthStore(const std::string& path) {
  return std::make_unique<SqliteAuthStore>(path);
}

int sqliteAuthSchemaVersion() {
  return kAuthSchemaVersion;
}

}  // namespace tern::storage::sqlite
