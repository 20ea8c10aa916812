// The auth tables in PostgreSQL: one connection behind a mutex, reconnected on demand. Auth
// traffic is small; see sqlite_auth_store.cpp for the same logic on SQLite.
#include "storage/postgres/postgres_auth_store.h"

#include <libpq-fe.h>

#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string_view>
#include <utility>
#include <vector>

namespace tern::storage::postgres {
namespace {

constexpr int kAuthSchemaVersion = 2;
// Serialises auth migrations when several nodes start at once (apart from the message schema's).
constexpr const char* kMigrationLockKey = "7384612094";

constexpr const char* kMigrations[] = {
    R"sql(
CREATE TABLE users(
  id bigserial PRIMARY KEY,
  name text NOT NULL UNIQUE,
  role text NOT NULL,
  password_hash text NOT NULL,
  created bigint NOT NULL
);
CREATE TABLE auth_sessions(
  id text PRIMARY KEY,
  user_id bigint NOT NULL,
  created bigint NOT NULL,
  expires bigint NOT NULL,
  revoked boolean NOT NULL DEFAULT false
);
CREATE INDEX auth_sessions_user ON auth_sessions(user_id);
CREATE TABLE refresh_tokens(
  hash text PRIMARY KEY,
  session_id text NOT NULL,
  created bigint NOT NULL,
  expires bigint NOT NULL,
  used boolean NOT NULL DEFAULT false
);
CREATE INDEX refresh_tokens_session ON refresh_tokens(session_id);
CREATE TABLE api_keys(
  id bigserial PRIMARY KEY,
  name text NOT NULL,
  role text NOT NULL,
  prefix text NOT NULL,
  hash text NOT NULL UNIQUE,
  created_by text NOT NULL,
  created bigint NOT NULL,
  revoked bigint NOT NULL DEFAULT 0
);
CREATE TABLE auth_secrets(name text PRIMARY KEY, value text NOT NULL);
)sql",
    // MQTT device credentials, and the counter a running broker polls to notice removals.
    R"sql(
CREATE TABLE device_credentials(
  id bigserial PRIMARY KEY,
  device_id text NOT NULL UNIQUE,
  password_hash text NOT NULL,
  created bigint NOT NULL
);
CREATE TABLE device_tokens(
  id bigserial PRIMARY KEY,
  device_id text NOT NULL,
  prefix text NOT NULL,
  hash text NOT NULL UNIQUE,
  created bigint NOT NULL,
  revoked bigint NOT NULL DEFAULT 0
);
CREATE INDEX device_tokens_device ON device_tokens(device_id);
CREATE TABLE auth_generation(id integer PRIMARY KEY CHECK (id = 1), value bigint NOT NULL);
INSERT INTO auth_generation(id, value) VALUES(1, 0);
)sql",
};
static_assert(std::size(kMigrations) == kAuthSchemaVersion, "one migration per schema version");

struct PgConnDeleter {
  void operator()(PGconn* conn) const { PQfinish(conn); }
};
struct PgResultDeleter {
  void operator()(PGresult* result) const { PQclear(result); }
};
using ConnPtr = std::unique_ptr<PGconn, PgConnDeleter>;
using ResultPtr = std::unique_ptr<PGresult, PgResultDeleter>;

std::string oneLine(const char* text) {
  std::string out = text != nullptr ? text : "";
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  for (char& c : out) {
    if (c == '\n') c = ' ';
  }
  return out;
}

class PostgresAuthStore final : public AuthStore {
 public:
  explicit PostgresAuthStore(std::string url) : url_(std::move(url)) {
    std::lock_guard lock(mutex_);
    if (auto status = connect(); !status.ok()) throw std::runtime_error(status.message());
    migrate();
  }

  core::Result<std::int64_t> addUser(const UserRecord& user) override {
    std::lock_guard lock(mutex_);
    auto r = query(
        "INSERT INTO users(name, role, password_hash, created) VALUES($1, $2, $3, $4::int8) "
        "ON CONFLICT(name) DO NOTHING RETURNING id",
        {user.name, user.role, user.passwordHash, std::to_string(user.createdUs)}, "add user");
    if (!r) return r.error();
    if (PQntuples(r->get()) == 0)
      return core::Error{"a user named '" + user.name + "' already exists"};
    return intAt(*r, 0, 0);
  }

  core::Result<std::optional<UserRecord>> findUser(const std::string& name) override {
    std::lock_guard lock(mutex_);
    auto r = query("SELECT id, name, role, password_hash, created FROM users WHERE name = $1",
                   {name}, "find user");
    if (!r) return r.error();
    if (PQntuples(r->get()) == 0) return std::optional<UserRecord>();
    return std::optional<UserRecord>(readUser(*r, 0));
  }

  core::Result<std::vector<UserRecord>> listUsers() override {
    std::lock_guard lock(mutex_);
    auto r = query(
        "SELECT id, name, role, password_hash, created FROM users ORDER BY name COLLATE \"C\"", {},
        "list users");
    if (!r) return r.error();
    std::vector<UserRecord> users;
    for (int i = 0; i < PQntuples(r->get()); ++i) users.push_back(readUser(*r, i));
    return users;
  }

  core::Result<bool> removeUser(const std::string& name) override {
    std::lock_guard lock(mutex_);
    // One statement, so it is atomic without an explicit transaction.
    auto r = query(
        "WITH u AS (DELETE FROM users WHERE name = $1 RETURNING id), "
        "s AS (DELETE FROM auth_sessions WHERE user_id IN (SELECT id FROM u) RETURNING id), "
        "t AS (DELETE FROM refresh_tokens WHERE session_id IN (SELECT id FROM s)), "
        "g AS (UPDATE auth_generation SET value = value + 1 WHERE EXISTS (SELECT 1 FROM u)) "
        "SELECT count(*) FROM u",
        {name}, "remove user");
    if (!r) return r.error();
    return intAt(*r, 0, 0) > 0;
  }

  core::Result<bool> updateUser(const std::string& name, const std::optional<std::string>& role,
                                const std::optional<std::string>& passwordHash) override {
    std::lock_guard lock(mutex_);
    // One statement, so it is atomic without an explicit transaction. $2/$3 null: kept. A new
    // password ends the user's sessions and takes a new id (MQTT logins hold the old one).
    const char* params[] = {name.c_str(), role ? role->c_str() : nullptr,
                            passwordHash ? passwordHash->c_str() : nullptr};
    auto r = queryNullable(
        "WITH o AS (SELECT id FROM users WHERE name = $1 FOR UPDATE), "
        "u AS (UPDATE users SET role = coalesce($2, role), "
        "password_hash = coalesce($3, password_hash), "
        "id = CASE WHEN $3 IS NULL THEN id "
        "ELSE nextval(pg_get_serial_sequence('users', 'id')) END "
        "WHERE id IN (SELECT id FROM o) RETURNING id), "
        "s AS (DELETE FROM auth_sessions WHERE $3 IS NOT NULL AND user_id IN (SELECT id FROM o) "
        "RETURNING id), "
        "t AS (DELETE FROM refresh_tokens WHERE session_id IN (SELECT id FROM s)), "
        "g AS (UPDATE auth_generation SET value = value + 1 WHERE EXISTS (SELECT 1 FROM u)) "
        "SELECT count(*) FROM u",
        params, "update user");
    if (!r) return r.error();
    return intAt(*r, 0, 0) > 0;
  }

  core::Result<std::int64_t> countUsers() override {
    std::lock_guard lock(mutex_);
    auto r = query("SELECT count(*) FROM users", {}, "count users");
    if (!r) return r.error();
    return intAt(*r, 0, 0);
  }

  core::Result<std::string> getOrCreateSecret(const std::string& name,
                                              const std::string& candidate) override {
    std::lock_guard lock(mutex_);
    auto inserted =
        query("INSERT INTO auth_secrets(name, value) VALUES($1, $2) ON CONFLICT(name) DO NOTHING",
              {name, candidate}, "store secret");
    if (!inserted) return inserted.error();
    auto r = query("SELECT value FROM auth_secrets WHERE name = $1", {name}, "read secret");
    if (!r) return r.error();
    if (PQntuples(r->get()) == 0) return core::Error{"postgres auth: secret vanished"};
    return std::string(PQgetvalue(r->get(), 0, 0));
  }

  core::Status createSession(const std::string& sessionId, std::int64_t userId,
                             const std::string& refreshHash, std::int64_t nowUs,
                             std::int64_t expiresUs) override {
    std::lock_guard lock(mutex_);
    auto r = query(
        "WITH s AS (INSERT INTO auth_sessions(id, user_id, created, expires) "
        "VALUES($1, $2::int8, $3::int8, $4::int8) RETURNING id) "
        "INSERT INTO refresh_tokens(hash, session_id, created, expires) "
        "SELECT $5, id, $3::int8, $4::int8 FROM s",
        {sessionId, std::to_string(userId), std::to_string(nowUs), std::to_string(expiresUs),
         refreshHash},
        "create session");
    if (!r) return r.error();
    return {};
  }

  core::Result<RefreshResult> rotateRefreshToken(const std::string& oldHash,
                                                 const std::string& newHash, std::int64_t nowUs,
                                                 std::int64_t newExpiresUs) override {
    std::lock_guard lock(mutex_);
    if (auto begin = query("BEGIN", {}, "begin refresh"); !begin) return begin.error();
    auto result = rotateLocked(oldHash, newHash, nowUs, newExpiresUs);
    if (!result) {
      query("ROLLBACK", {}, "rollback refresh");
      return result;
    }
    if (auto commit = query("COMMIT", {}, "commit refresh"); !commit) return commit.error();
    return result;
  }

  core::Result<std::optional<SessionUser>> activeSession(const std::string& sessionId,
                                                         std::int64_t nowUs) override {
    std::lock_guard lock(mutex_);
    auto r = query(
        "SELECT u.id, u.name, u.role FROM auth_sessions AS s JOIN users AS u ON u.id = s.user_id "
        "WHERE s.id = $1 AND NOT s.revoked AND s.expires > $2::int8",
        {sessionId, std::to_string(nowUs)}, "read session");
    if (!r) return r.error();
    if (PQntuples(r->get()) == 0) return std::optional<SessionUser>();
    return std::optional<SessionUser>(
        SessionUser{intAt(*r, 0, 0), PQgetvalue(r->get(), 0, 1), PQgetvalue(r->get(), 0, 2)});
  }

  core::Result<bool> revokeSession(const std::string& sessionId) override {
    std::lock_guard lock(mutex_);
    auto r = query("UPDATE auth_sessions SET revoked = true WHERE id = $1 AND NOT revoked",
                   {sessionId}, "revoke session");
    if (!r) return r.error();
    return std::string_view(PQcmdTuples(r->get())) != "0";
  }

  core::Result<std::optional<std::string>> sessionOfRefreshToken(const std::string& hash) override {
    std::lock_guard lock(mutex_);
    auto r = query("SELECT session_id FROM refresh_tokens WHERE hash = $1", {hash},
                   "find refresh token");
    if (!r) return r.error();
    if (PQntuples(r->get()) == 0) return std::optional<std::string>();
    return std::optional<std::string>(PQgetvalue(r->get(), 0, 0));
  }

  core::Status pruneSessions(std::int64_t nowUs) override {
    std::lock_guard lock(mutex_);
    auto r = query(
        "WITH s AS (DELETE FROM auth_sessions WHERE expires <= $1::int8 RETURNING id) "
        "DELETE FROM refresh_tokens WHERE session_id IN (SELECT id FROM s)",
        {std::to_string(nowUs)}, "prune sessions");
    if (!r) return r.error();
    return {};
  }

  core::Result<std::int64_t> addApiKey(const ApiKeyRecord& key) override {
    std::lock_guard lock(mutex_);
    auto r = query(
        "INSERT INTO api_keys(name, role, prefix, hash, created_by, created) "
        "VALUES($1, $2, $3, $4, $5, $6::int8) RETURNING id",
        {key.name, key.role, key.prefix, key.hash, key.createdBy, std::to_string(key.createdUs)},
        "add API key");
    if (!r) return r.error();
    return intAt(*r, 0, 0);
  }

  core::Result<std::vector<ApiKeyRecord>> listApiKeys() override {
    std::lock_guard lock(mutex_);
    auto r = query(
        "SELECT id, name, role, prefix, hash, created_by, created, revoked FROM api_keys "
        "ORDER BY id DESC",
        {}, "list API keys");
    if (!r) return r.error();
    std::vector<ApiKeyRecord> keys;
    for (int i = 0; i < PQntuples(r->get()); ++i) keys.push_back(readKey(*r, i));
    return keys;
  }

  core::Result<std::optional<ApiKeyRecord>> findApiKey(const std::string& hash) override {
    std::lock_guard lock(mutex_);
    auto r = query(
        "SELECT id, name, role, prefix, hash, created_by, created, revoked FROM api_keys "
        "WHERE hash = $1 AND revoked = 0",
        {hash}, "find API key");
    if (!r) return r.error();
    if (PQntuples(r->get()) == 0) return std::optional<ApiKeyRecord>();
    return std::optional<ApiKeyRecord>(readKey(*r, 0));
  }

  core::Result<bool> revokeApiKey(std::int64_t id, std::int64_t nowUs) override {
    std::lock_guard lock(mutex_);
    auto r = query("UPDATE api_keys SET revoked = $2::int8 WHERE id = $1::int8 AND revoked = 0",
                   {std::to_string(id), std::to_string(nowUs > 0 ? nowUs : 1)}, "revoke API key");
    if (!r) return r.error();
    return std::string_view(PQcmdTuples(r->get())) != "0";
  }

  core::Result<std::int64_t> addDevice(const DeviceCredential& device) override {
    std::lock_guard lock(mutex_);
    auto r = query(
        "INSERT INTO device_credentials(device_id, password_hash, created) "
        "VALUES($1, $2, $3::int8) ON CONFLICT(device_id) DO UPDATE "
        "SET password_hash = excluded.password_hash "
        "WHERE device_credentials.password_hash = '' RETURNING id",
        {device.deviceId, device.passwordHash, std::to_string(device.createdUs)}, "add device");
    if (!r) return r.error();
    if (PQntuples(r->get()) == 0) {
      return core::Error{"device '" + device.deviceId + "' already has a password"};
    }
    return intAt(*r, 0, 0);
  }

  core::Result<std::optional<DeviceCredential>> findDevice(const std::string& deviceId) override {
    std::lock_guard lock(mutex_);
    auto r = query(
        "SELECT id, device_id, password_hash, created, 0 FROM device_credentials "
        "WHERE device_id = $1",
        {deviceId}, "find device");
    if (!r) return r.error();
    if (PQntuples(r->get()) == 0) return std::optional<DeviceCredential>();
    return std::optional<DeviceCredential>(readDevice(*r, 0));
  }

  core::Result<std::vector<DeviceCredential>> listDevices() override {
    std::lock_guard lock(mutex_);
    auto r = query(
        "SELECT d.id, d.device_id, d.password_hash, d.created, "
        "(SELECT count(*) FROM device_tokens AS t WHERE t.device_id = d.device_id "
        "AND t.revoked = 0) FROM device_credentials AS d ORDER BY d.device_id COLLATE \"C\"",
        {}, "list devices");
    if (!r) return r.error();
    std::vector<DeviceCredential> devices;
    for (int i = 0; i < PQntuples(r->get()); ++i) devices.push_back(readDevice(*r, i));
    return devices;
  }

  core::Result<bool> removeDevice(const std::string& deviceId) override {
    std::lock_guard lock(mutex_);
    auto r = query(
        "WITH d AS (DELETE FROM device_credentials WHERE device_id = $1 RETURNING id), "
        "t AS (DELETE FROM device_tokens WHERE device_id = $1 RETURNING id), "
        "n AS (SELECT (SELECT count(*) FROM d) + (SELECT count(*) FROM t) AS changed), "
        "g AS (UPDATE auth_generation SET value = value + 1 WHERE (SELECT changed FROM n) > 0) "
        "SELECT changed FROM n",
        {deviceId}, "remove device");
    if (!r) return r.error();
    return intAt(*r, 0, 0) > 0;
  }

  core::Result<std::int64_t> addDeviceToken(const DeviceToken& token) override {
    std::lock_guard lock(mutex_);
    auto r = query(
        "WITH d AS (INSERT INTO device_credentials(device_id, password_hash, created) "
        "VALUES($1, '', $4::int8) ON CONFLICT(device_id) DO NOTHING) "
        "INSERT INTO device_tokens(device_id, prefix, hash, created) "
        "VALUES($1, $2, $3, $4::int8) RETURNING id",
        {token.deviceId, token.prefix, token.hash, std::to_string(token.createdUs)},
        "add device token");
    if (!r) return r.error();
    return intAt(*r, 0, 0);
  }

  core::Result<std::optional<DeviceToken>> findDeviceToken(const std::string& hash) override {
    std::lock_guard lock(mutex_);
    auto r = query(
        "SELECT id, device_id, prefix, hash, created, revoked FROM device_tokens "
        "WHERE hash = $1 AND revoked = 0",
        {hash}, "find device token");
    if (!r) return r.error();
    if (PQntuples(r->get()) == 0) return std::optional<DeviceToken>();
    return std::optional<DeviceToken>(readToken(*r, 0));
  }

  core::Result<std::vector<DeviceToken>> listDeviceTokens() override {
    std::lock_guard lock(mutex_);
    auto r = query(
        "SELECT id, device_id, prefix, hash, created, revoked FROM device_tokens "
        "WHERE revoked = 0 ORDER BY id",
        {}, "list device tokens");
    if (!r) return r.error();
    std::vector<DeviceToken> tokens;
    for (int i = 0; i < PQntuples(r->get()); ++i) tokens.push_back(readToken(*r, i));
    return tokens;
  }

  core::Result<std::int64_t> revokeDeviceTokens(const std::string& deviceId,
                                                std::int64_t nowUs) override {
    std::lock_guard lock(mutex_);
    auto r = query(
        "WITH t AS (UPDATE device_tokens SET revoked = $2::int8 WHERE device_id = $1 "
        "AND revoked = 0 RETURNING id), "
        "g AS (UPDATE auth_generation SET value = value + 1 WHERE EXISTS (SELECT 1 FROM t)) "
        "SELECT count(*) FROM t",
        {deviceId, std::to_string(nowUs > 0 ? nowUs : 1)}, "revoke device tokens");
    if (!r) return r.error();
    return intAt(*r, 0, 0);
  }

  core::Result<bool> setDevicePassword(const std::string& deviceId, const std::string& passwordHash,
                                       std::int64_t nowUs) override {
    std::lock_guard lock(mutex_);
    // A replaced password takes a new id (the grant of the old one ends) and raises the
    // generation; xmax = 0 tells an insert from an update.
    auto r = query(
        "WITH d AS (INSERT INTO device_credentials(device_id, password_hash, created) "
        "VALUES($1, $2, $3::int8) ON CONFLICT(device_id) DO UPDATE "
        "SET password_hash = excluded.password_hash, "
        "id = nextval(pg_get_serial_sequence('device_credentials', 'id')) "
        "RETURNING (xmax = 0) AS inserted), "
        "g AS (UPDATE auth_generation SET value = value + 1 "
        "WHERE EXISTS (SELECT 1 FROM d WHERE NOT inserted)) "
        "SELECT count(*) FROM d WHERE inserted",
        {deviceId, passwordHash, std::to_string(nowUs)}, "set device password");
    if (!r) return r.error();
    return intAt(*r, 0, 0) > 0;
  }

  core::Result<bool> clearDevicePassword(const std::string& deviceId) override {
    std::lock_guard lock(mutex_);
    auto r = query(
        "WITH d AS (UPDATE device_credentials SET password_hash = '', "
        "id = nextval(pg_get_serial_sequence('device_credentials', 'id')) "
        "WHERE device_id = $1 AND password_hash <> '' RETURNING 1), "
        "g AS (UPDATE auth_generation SET value = value + 1 WHERE EXISTS (SELECT 1 FROM d)) "
        "SELECT count(*) FROM d",
        {deviceId}, "clear device password");
    if (!r) return r.error();
    return intAt(*r, 0, 0) > 0;
  }

  core::Result<std::vector<DeviceToken>> deviceTokens(const std::string& deviceId) override {
    std::lock_guard lock(mutex_);
    auto r = query(
        "SELECT id, device_id, prefix, hash, created, revoked FROM device_tokens "
        "WHERE device_id = $1 AND revoked = 0 ORDER BY id",
        {deviceId}, "list a device's tokens");
    if (!r) return r.error();
    std::vector<DeviceToken> tokens;
    for (int i = 0; i < PQntuples(r->get()); ++i) tokens.push_back(readToken(*r, i));
    return tokens;
  }

  core::Result<bool> revokeDeviceToken(const std::string& deviceId, std::int64_t tokenId,
                                       std::int64_t nowUs) override {
    std::lock_guard lock(mutex_);
    auto r = query(
        "WITH t AS (UPDATE device_tokens SET revoked = $3::int8 WHERE device_id = $1 "
        "AND id = $2::int8 AND revoked = 0 RETURNING id), "
        "g AS (UPDATE auth_generation SET value = value + 1 WHERE EXISTS (SELECT 1 FROM t)) "
        "SELECT count(*) FROM t",
        {deviceId, std::to_string(tokenId), std::to_string(nowUs > 0 ? nowUs : 1)},
        "revoke device token");
    if (!r) return r.error();
    return intAt(*r, 0, 0) > 0;
  }

  core::Result<std::int64_t> credentialsGeneration() override {
    std::lock_guard lock(mutex_);
    auto r =
        query("SELECT value FROM auth_generation WHERE id = 1", {}, "read credentials generation");
    if (!r) return r.error();
    if (PQntuples(r->get()) == 0) return core::Error{"postgres auth: no credentials generation"};
    return intAt(*r, 0, 0);
  }

  std::string backendName() const override { return "postgres"; }

 private:
  static DeviceCredential readDevice(const ResultPtr& r, int row) {
    return DeviceCredential{intAt(r, row, 0), PQgetvalue(r.get(), row, 1),
                            PQgetvalue(r.get(), row, 2), intAt(r, row, 3), intAt(r, row, 4)};
  }
  static DeviceToken readToken(const ResultPtr& r, int row) {
    return DeviceToken{intAt(r, row, 0),
                       PQgetvalue(r.get(), row, 1),
                       PQgetvalue(r.get(), row, 2),
                       PQgetvalue(r.get(), row, 3),
                       intAt(r, row, 4),
                       intAt(r, row, 5)};
  }

  core::Result<RefreshResult> rotateLocked(const std::string& oldHash, const std::string& newHash,
                                           std::int64_t nowUs, std::int64_t newExpiresUs) {
    RefreshResult result;
    // FOR UPDATE OF t: two refreshes with the same token queue here; the second sees it used.
    auto r = query(
        "SELECT t.session_id, t.expires, t.used, s.revoked, s.user_id, u.name, u.role "
        "FROM refresh_tokens AS t JOIN auth_sessions AS s ON s.id = t.session_id "
        "LEFT JOIN users AS u ON u.id = s.user_id WHERE t.hash = $1 FOR UPDATE OF t, s",
        {oldHash}, "find refresh token");
    if (!r) return r.error();
    if (PQntuples(r->get()) == 0) return result;
    result.sessionId = PQgetvalue(r->get(), 0, 0);
    const std::int64_t expires = intAt(*r, 0, 1);
    const bool used = std::string_view(PQgetvalue(r->get(), 0, 2)) == "t";
    const bool revoked = std::string_view(PQgetvalue(r->get(), 0, 3)) == "t";
    result.user.userId = intAt(*r, 0, 4);
    const bool userExists = PQgetisnull(r->get(), 0, 5) == 0;
    if (userExists) {
      result.user.name = PQgetvalue(r->get(), 0, 5);
      result.user.role = PQgetvalue(r->get(), 0, 6);
    }
    if (revoked || !userExists) {
      result.outcome = RefreshOutcome::kRevoked;
      return result;
    }
    if (used) {
      auto revoke = query("UPDATE auth_sessions SET revoked = true WHERE id = $1",
                          {result.sessionId}, "revoke session");
      if (!revoke) return revoke.error();
      result.outcome = RefreshOutcome::kReused;
      return result;
    }
    if (expires <= nowUs) {
      result.outcome = RefreshOutcome::kExpired;
      return result;
    }
    auto update = query(
        "WITH used AS (UPDATE refresh_tokens SET used = true WHERE hash = $1), "
        "ext AS (UPDATE auth_sessions SET expires = greatest(expires, $4::int8) WHERE id = $2) "
        "INSERT INTO refresh_tokens(hash, session_id, created, expires) "
        "VALUES($3, $2, $5::int8, $4::int8)",
        {oldHash, result.sessionId, newHash, std::to_string(newExpiresUs), std::to_string(nowUs)},
        "rotate refresh token");
    if (!update) return update.error();
    result.outcome = RefreshOutcome::kRotated;
    return result;
  }

  static std::int64_t intAt(const ResultPtr& r, int row, int column) {
    return std::stoll(PQgetvalue(r.get(), row, column));
  }
  static UserRecord readUser(const ResultPtr& r, int row) {
    return UserRecord{intAt(r, row, 0), PQgetvalue(r.get(), row, 1), PQgetvalue(r.get(), row, 2),
                      PQgetvalue(r.get(), row, 3), intAt(r, row, 4)};
  }
  static ApiKeyRecord readKey(const ResultPtr& r, int row) {
    return ApiKeyRecord{intAt(r, row, 0),
                        PQgetvalue(r.get(), row, 1),
                        PQgetvalue(r.get(), row, 2),
                        PQgetvalue(r.get(), row, 3),
                        PQgetvalue(r.get(), row, 4),
                        PQgetvalue(r.get(), row, 5),
                        intAt(r, row, 6),
                        intAt(r, row, 7)};
  }

  core::Status connect() {
    const char* keywords[] = {"connect_timeout", "application_name", "dbname", nullptr};
    const char* values[] = {"5", "tern-auth", url_.c_str(), nullptr};
    ConnPtr conn(PQconnectdbParams(keywords, values, 1));
    if (!conn || PQstatus(conn.get()) != CONNECTION_OK) {
      return core::Error{"postgres auth: connect: " + (conn ? oneLine(PQerrorMessage(conn.get()))
                                                            : std::string("out of memory"))};
    }
    conn_ = std::move(conn);
    return {};
  }

  // Runs one statement with text parameters. A broken connection is reconnected once first.
  core::Result<ResultPtr> query(const char* sql, const std::vector<std::string>& params,
                                std::string_view what) {
    std::vector<const char*> values;
    values.reserve(params.size());
    for (const auto& p : params) values.push_back(p.c_str());
    return queryNullable(sql, values, what);
  }

  // The same with parameters as C strings, where a null pointer is SQL NULL.
  core::Result<ResultPtr> queryNullable(const char* sql, std::span<const char* const> values,
                                        std::string_view what) {
    if (!conn_ || PQstatus(conn_.get()) != CONNECTION_OK) {
      conn_.reset();
      if (auto status = connect(); !status.ok()) return core::Error{status.message()};
    }
    // Without parameters PQexec, which also runs multi-statement scripts (migrations).
    ResultPtr r(values.empty() ? PQexec(conn_.get(), sql)
                               : PQexecParams(conn_.get(), sql, static_cast<int>(values.size()),
                                              nullptr, values.data(), nullptr, nullptr, 0));
    const auto status = r ? PQresultStatus(r.get()) : PGRES_FATAL_ERROR;
    if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
      std::string message = "postgres auth: ";
      message += what;
      message += ": ";
      message += oneLine(PQerrorMessage(conn_.get()));
      if (PQstatus(conn_.get()) != CONNECTION_OK) conn_.reset();
      return core::Error{std::move(message)};
    }
    return r;
  }

  void execOrThrow(const std::string& sql, std::string_view what) {
    auto r = query(sql.c_str(), {}, what);
    if (!r) throw std::runtime_error(r.error().message);
  }

  void migrate() {
    execOrThrow(std::string("SELECT pg_advisory_lock(") + kMigrationLockKey + ")", "lock");
    try {
      execOrThrow(
          "CREATE TABLE IF NOT EXISTS tern_auth_schema_version(version integer PRIMARY "
          "KEY, applied_at timestamptz NOT NULL DEFAULT now())",
          "create auth schema table");
      auto r = query("SELECT coalesce(max(version), 0) FROM tern_auth_schema_version", {},
                     "read auth schema version");
      if (!r) throw std::runtime_error(r.error().message);
      const auto version = static_cast<int>(intAt(*r, 0, 0));
      if (version > kAuthSchemaVersion) {
        throw std::runtime_error("postgres auth: schema version " + std::to_string(version) +
                                 " is newer than this build's (" +
                                 std::to_string(kAuthSchemaVersion) + "); upgrade tern");
      }
      for (int next = version + 1; next <= kAuthSchemaVersion; ++next) {
        execOrThrow("BEGIN", "begin migration");
        try {
          execOrThrow(kMigrations[next - 1], "migrate auth schema");
          execOrThrow(
              "INSERT INTO tern_auth_schema_version(version) VALUES(" + std::to_string(next) + ")",
              "record auth schema version");
          execOrThrow("COMMIT", "commit migration");
        } catch (...) {
          query("ROLLBACK", {}, "rollback");
          throw;
        }
      }
    } catch (...) {
      query("SELECT pg_advisory_unlock_all()", {}, "unlock");
      throw;
    }
    execOrThrow("SELECT pg_advisory_unlock_all()", "unlock");
  }

  std::string url_;
  std::mutex mutex_;
  ConnPtr conn_;
};

}  // namespace

std::unique_ptr<AuthStore> openPostgresAuthStore(const std::string& url) {
  return std::make_unique<PostgresAuthStore>(url);
}

int postgresAuthSchemaVersion() {
  return kAuthSchemaVersion;
}

}  // namespace tern::storage::postgres
