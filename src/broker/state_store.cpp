#include "broker/state_store.h"

#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <stdexcept>
#include <unordered_set>

#include "codec/mqtt/codec.h"
#include "core/time.h"

namespace tern::broker {

namespace mqtt = codec::mqtt;

namespace {

constexpr int kSchemaVersion = 1;
constexpr std::size_t kMaxBatch = 10000;

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS sessions(
  client_id TEXT PRIMARY KEY,
  expiry_interval INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS subscriptions(
  client_id TEXT NOT NULL,
  filter TEXT NOT NULL,
  qos INTEGER NOT NULL,
  no_local INTEGER NOT NULL,
  retain_as_published INTEGER NOT NULL,
  retain_handling INTEGER NOT NULL,
  subscription_id INTEGER NOT NULL,
  PRIMARY KEY(client_id, filter)
) WITHOUT ROWID;
-- One row per copy queued for a persistent session; the id orders a session's messages.
CREATE TABLE IF NOT EXISTS messages(
  id INTEGER PRIMARY KEY,
  client_id TEXT NOT NULL,
  topic TEXT NOT NULL,
  payload BLOB NOT NULL,
  properties BLOB,
  qos INTEGER NOT NULL,
  retain INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  subscription_ids TEXT NOT NULL,
  packet_id INTEGER NOT NULL DEFAULT 0,
  released INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_client ON messages(client_id, id);
CREATE TABLE IF NOT EXISTS incoming_qos2(
  client_id TEXT NOT NULL,
  packet_id INTEGER NOT NULL,
  PRIMARY KEY(client_id, packet_id)
) WITHOUT ROWID;
-- MQTT 5 wills waiting out their delay for a detached session (added after schema 1: created
-- by IF NOT EXISTS in older files too).
CREATE TABLE IF NOT EXISTS wills(
  client_id TEXT PRIMARY KEY,
  topic TEXT NOT NULL,
  payload BLOB NOT NULL,
  properties BLOB,
  qos INTEGER NOT NULL,
  retain INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  due_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS retained(
  topic TEXT PRIMARY KEY,
  payload BLOB NOT NULL,
  properties BLOB,
  qos INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;
)sql";

// Statements of the writer, prepared once (index = StateStore::Kind).
constexpr const char* kWriteSql[] = {
    "INSERT INTO sessions(client_id, expiry_interval, expires_at) VALUES(?1, ?2, ?3) "
    "ON CONFLICT(client_id) DO UPDATE SET expiry_interval = ?2, expires_at = ?3",
    nullptr,  // kDeleteSession: several statements, below
    "INSERT INTO subscriptions VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(client_id, filter) "
    "DO UPDATE SET qos = ?3, no_local = ?4, retain_as_published = ?5, retain_handling = ?6, "
    "subscription_id = ?7",
    "DELETE FROM subscriptions WHERE client_id = ?1 AND filter = ?2",
    "INSERT OR REPLACE INTO messages(id, client_id, topic, payload, properties, qos, retain, "
    "expires_at, subscription_ids, packet_id) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    "UPDATE messages SET packet_id = ?2 WHERE id = ?1",
    "UPDATE messages SET released = 1 WHERE id = ?1",
    "DELETE FROM messages WHERE id = ?1",
    "INSERT OR IGNORE INTO incoming_qos2 VALUES(?1, ?2)",
    "DELETE FROM incoming_qos2 WHERE client_id = ?1 AND packet_id = ?2",
    "INSERT INTO retained VALUES(?1, ?2, ?3, ?4, ?5) ON CONFLICT(topic) DO UPDATE SET "
    "payload = ?2, properties = ?3, qos = ?4, expires_at = ?5",
    "DELETE FROM retained WHERE topic = ?1",
    "INSERT OR REPLACE INTO wills VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    "DELETE FROM wills WHERE client_id = ?1",
};
// clang-format off
constexpr const char* kDeleteSessionSql[] = {
    "DELETE FROM sessions WHERE client_id = ?1",
    "DELETE FROM subscriptions WHERE client_id = ?1",
    "DELETE FROM messages WHERE client_id = ?1",
    "DELETE FROM incoming_qos2 WHERE client_id = ?1",
    "DELETE FROM wills WHERE client_id = ?1",
};
// clang-format on

// MQTT 5 properties are kept as the PUBLISH the codec already knows how to write and read.
std::string encodeProperties(const mqtt::Properties* properties) {
  std::string out;
  if (properties == nullptr) return out;
  mqtt::encodePublish5("p", {}, 0, false, false, 0, properties, nullptr, out);
  return out;
}

std::shared_ptr<const mqtt::Properties> decodeProperties(std::string_view bytes) {
  if (bytes.empty()) return nullptr;
  mqtt::Frame frame = mqtt::splitFrame(bytes, 268'435'455);
  if (frame.status != mqtt::DecodeStatus::kOk) return nullptr;
  mqtt::Packet packet;
  if (mqtt::parsePacket(frame.header, frame.body, packet, mqtt::ProtocolVersion::kV5).status !=
      mqtt::DecodeStatus::kOk) {
    return nullptr;
  }
  auto* publish = std::get_if<mqtt::Publish>(&packet);
  if (publish == nullptr || publish->properties.empty()) return nullptr;
  return std::make_shared<mqtt::Properties>(std::move(publish->properties));
}

// Monotonic deadlines (what Message carries) are meaningless after a restart: stored as wall time.
std::int64_t toWall(std::int64_t monotonicUs) {
  if (monotonicUs == 0) return 0;
  return monotonicUs - core::monotonicMicros() + core::nowMicros();
}
std::int64_t toMonotonic(std::int64_t wallUs) {
  if (wallUs == 0) return 0;
  // An expired one stays expired (at least 1 µs past "now").
  return std::max<std::int64_t>(1, wallUs - core::nowMicros() + core::monotonicMicros());
}

std::string joinIds(const std::vector<std::uint32_t>& ids) {
  std::string out;
  for (std::uint32_t id : ids) {
    if (!out.empty()) out += ',';
    out += std::to_string(id);
  }
  return out;
}

std::vector<std::uint32_t> splitIds(std::string_view text) {
  std::vector<std::uint32_t> out;
  while (!text.empty()) {
    std::size_t comma = text.find(',');
    std::string_view part = text.substr(0, comma);
    std::uint32_t value = 0;
    if (std::from_chars(part.data(), part.data() + part.size(), value).ec == std::errc()) {
      out.push_back(value);
    }
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  return out;
}

std::string columnText(sqlite3_stmt* stmt, int column) {
  const auto* data = static_cast<const char*>(sqlite3_column_blob(stmt, column));
  const int size = sqlite3_column_bytes(stmt, column);
  return data == nullptr ? std::string() : std::string(data, static_cast<std::size_t>(size));
}

struct Statement {
  sqlite3_stmt* stmt = nullptr;
  Statement() = default;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement() { sqlite3_finalize(stmt); }
};

}  // namespace

StateStore::StateStore(StateStoreOptions options) : options_(std::move(options)) {
  options_.queueCapacity = std::max<std::uint32_t>(2, options_.queueCapacity);
  if (sqlite3_open_v2(options_.path.c_str(), &db_,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                      nullptr) != SQLITE_OK) {
    std::string message = db_ != nullptr ? sqlite3_errmsg(db_) : "out of memory";
    sqlite3_close(db_);
    db_ = nullptr;
    throw std::runtime_error("broker state: cannot open " + options_.path + ": " + message);
  }
  sqlite3_busy_timeout(db_, 5000);
  const std::string pragmas = std::string("PRAGMA journal_mode=WAL; PRAGMA synchronous=") +
                              (options_.syncFull ? "FULL" : "NORMAL") + ";";
  for (const char* sql : {pragmas.c_str(), kSchema}) {
    if (auto status = exec(sql); !status.ok()) {
      sqlite3_close(db_);
      db_ = nullptr;
      throw std::runtime_error("broker state: " + options_.path + ": " + status.message());
    }
  }
  const std::string version =
      "INSERT OR IGNORE INTO meta VALUES('schema_version', " + std::to_string(kSchemaVersion) + ")";
  if (auto status = exec(version.c_str()); !status.ok()) {
    sqlite3_close(db_);
    db_ = nullptr;
    throw std::runtime_error("broker state: " + options_.path + ": " + status.message());
  }
}

StateStore::~StateStore() {
  stop();
  if (db_ != nullptr) sqlite3_close(db_);
}

core::Status StateStore::exec(const char* sql) {
  char* error = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &error) != SQLITE_OK) {
    std::string message = error != nullptr ? error : sqlite3_errmsg(db_);
    sqlite3_free(error);
    return core::Error{message};
  }
  return {};
}

core::Result<StoredState> StateStore::load() {
  StoredState state;
  std::map<std::string, std::size_t> index;  // client id → sessions position
  // Runs `sql`, calling row(stmt) for each row.
  auto eachRow = [this](const char* sql, const auto& row) -> core::Status {
    Statement s;
    if (sqlite3_prepare_v2(db_, sql, -1, &s.stmt, nullptr) != SQLITE_OK) {
      return core::Error{std::string("broker state: ") + sqlite3_errmsg(db_)};
    }
    while (sqlite3_step(s.stmt) == SQLITE_ROW) row(s.stmt);
    return {};
  };
  // The stored session a row's first column names; null for rows of sessions that are gone.
  auto sessionOf = [&](sqlite3_stmt* stmt) -> StoredSession* {
    auto it = index.find(columnText(stmt, 0));
    return it == index.end() ? nullptr : &state.sessions[it->second];
  };
  // A message from four columns from `first` on: topic, payload, properties, qos.
  auto messageOf = [](sqlite3_stmt* stmt, int first) {
    auto message = std::make_shared<Message>();
    message->topic = columnText(stmt, first);
    message->payload = columnText(stmt, first + 1);
    message->properties = decodeProperties(columnText(stmt, first + 2));
    message->qos = static_cast<std::uint8_t>(sqlite3_column_int(stmt, first + 3));
    return message;
  };

  auto status =
      eachRow("SELECT client_id, expiry_interval, expires_at FROM sessions", [&](sqlite3_stmt* st) {
        StoredSession session;
        session.clientId = columnText(st, 0);
        session.expiryInterval = static_cast<std::uint32_t>(sqlite3_column_int64(st, 1));
        session.expiresAtWallUs = sqlite3_column_int64(st, 2);
        index[session.clientId] = state.sessions.size();
        state.sessions.push_back(std::move(session));
      });
  if (status.ok()) {
    status = eachRow(
        "SELECT client_id, filter, qos, no_local, retain_as_published, retain_handling, "
        "subscription_id FROM subscriptions",
        [&](sqlite3_stmt* st) {
          StoredSession* session = sessionOf(st);
          if (session == nullptr) return;
          SubscriptionOptions options;
          options.qos = static_cast<std::uint8_t>(sqlite3_column_int(st, 2));
          options.noLocal = sqlite3_column_int(st, 3) != 0;
          options.retainAsPublished = sqlite3_column_int(st, 4) != 0;
          options.retainHandling = static_cast<std::uint8_t>(sqlite3_column_int(st, 5));
          options.subscriptionId = static_cast<std::uint32_t>(sqlite3_column_int64(st, 6));
          session->subscriptions[columnText(st, 1)] = options;
        });
  }
  std::uint64_t maxId = 0;
  if (status.ok()) {
    status = eachRow(
        "SELECT id, client_id, topic, payload, properties, qos, retain, expires_at, "
        "subscription_ids, packet_id, released FROM messages ORDER BY id",
        [&](sqlite3_stmt* st) {
          const auto id = static_cast<std::uint64_t>(sqlite3_column_int64(st, 0));
          maxId = std::max(maxId, id);
          auto it = index.find(columnText(st, 1));
          if (it == index.end()) return;
          auto message = messageOf(st, 2);
          message->retain = sqlite3_column_int(st, 6) != 0;
          message->expiresAtUs = toMonotonic(sqlite3_column_int64(st, 7));
          StoredMessage stored;
          stored.id = id;
          stored.qos = message->qos;
          stored.retain = message->retain;
          stored.subscriptionIds = splitIds(columnText(st, 8));
          stored.packetId = static_cast<std::uint16_t>(sqlite3_column_int(st, 9));
          stored.released = sqlite3_column_int(st, 10) != 0;
          stored.message = std::move(message);
          state.sessions[it->second].messages.push_back(std::move(stored));
        });
  }
  nextMessageId_.store(maxId + 1);
  if (status.ok()) {
    status = eachRow("SELECT client_id, packet_id FROM incoming_qos2", [&](sqlite3_stmt* st) {
      if (StoredSession* session = sessionOf(st)) {
        session->incomingQos2.push_back(static_cast<std::uint16_t>(sqlite3_column_int(st, 1)));
      }
    });
  }
  if (status.ok()) {
    status = eachRow(
        "SELECT client_id, topic, payload, properties, qos, retain, expires_at, due_at FROM wills",
        [&](sqlite3_stmt* st) {
          StoredSession* session = sessionOf(st);
          if (session == nullptr) return;
          auto will = messageOf(st, 1);
          will->retain = sqlite3_column_int(st, 5) != 0;
          will->expiresAtUs = toMonotonic(sqlite3_column_int64(st, 6));
          session->will = std::move(will);
          session->willDueUs = toMonotonic(sqlite3_column_int64(st, 7));
        });
  }
  if (status.ok()) {
    status = eachRow("SELECT topic, payload, properties, qos, expires_at FROM retained",
                     [&](sqlite3_stmt* st) {
                       auto message = messageOf(st, 0);
                       message->retain = true;
                       message->expiresAtUs = toMonotonic(sqlite3_column_int64(st, 4));
                       state.retained.push_back(std::move(message));
                     });
  }
  if (!status.ok()) return core::Error{status.message()};
  // Rows of sessions that no longer exist (a crash between statements cannot leave them, but an
  // older build could): dropped so they do not linger.
  if (auto cleaned =
          exec("DELETE FROM subscriptions WHERE client_id NOT IN (SELECT client_id FROM sessions);"
               "DELETE FROM messages WHERE client_id NOT IN (SELECT client_id FROM sessions);"
               "DELETE FROM incoming_qos2 WHERE client_id NOT IN (SELECT client_id FROM sessions);"
               "DELETE FROM wills WHERE client_id NOT IN (SELECT client_id FROM sessions);");
      !cleaned.ok()) {
    return core::Error{"broker state: " + cleaned.message()};
  }
  return state;
}

void StateStore::start() {
  if (thread_.joinable()) return;
  {
    std::lock_guard lock(mutex_);
    stopping_ = false;
  }
  thread_ = std::thread([this] { run(); });
}

void StateStore::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::uint64_t StateStore::enqueue(Op op) {
  bool wakeWriter = false;
  std::uint64_t seq = 0;
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(op));
    seq = ++lastSeq_;
    ++stats_.writes;
    if (queue_.size() >= options_.queueCapacity) overloaded_ = true;
    wakeWriter = queue_.size() == 1 || queue_.size() == kMaxBatch;
  }
  if (wakeWriter) wake_.notify_one();
  return seq;
}

std::uint64_t StateStore::putSession(const std::string& clientId, std::uint32_t expiryInterval,
                                     std::int64_t expiresAtWallUs) {
  return enqueue(Op{
      .kind = Kind::kPutSession, .clientId = clientId, .a = expiryInterval, .b = expiresAtWallUs});
}

std::uint64_t StateStore::deleteSession(const std::string& clientId) {
  return enqueue(Op{.kind = Kind::kDeleteSession, .clientId = clientId});
}

std::uint64_t StateStore::putSubscription(const std::string& clientId, const std::string& filter,
                                          const SubscriptionOptions& options) {
  return enqueue(
      Op{.kind = Kind::kPutSubscription,
         .clientId = clientId,
         .text = filter,
         .a = options.qos | (options.noLocal ? 0x100 : 0) | (options.retainAsPublished ? 0x200 : 0),
         .b = options.retainHandling,
         .c = options.subscriptionId});
}

std::uint64_t StateStore::deleteSubscription(const std::string& clientId,
                                             const std::string& filter) {
  return enqueue(Op{.kind = Kind::kDeleteSubscription, .clientId = clientId, .text = filter});
}

std::uint64_t StateStore::addMessage(std::uint64_t id, const std::string& clientId,
                                     const Message& message, std::uint8_t qos, bool retain,
                                     const std::vector<std::uint32_t>& ids,
                                     std::uint16_t packetId) {
  return enqueue(Op{.kind = Kind::kAddMessage,
                    .id = id,
                    .clientId = clientId,
                    .text = message.topic,
                    .payload = message.payload,
                    .properties = encodeProperties(message.properties.get()),
                    .extra = joinIds(ids),
                    .a = qos | (std::int64_t{packetId} << 8),
                    .b = retain ? 1 : 0,
                    .c = toWall(message.expiresAtUs)});
}

std::uint64_t StateStore::markSent(std::uint64_t id, std::uint16_t packetId) {
  return enqueue(Op{.kind = Kind::kMarkSent, .id = id, .a = packetId});
}

std::uint64_t StateStore::markReleased(std::uint64_t id) {
  return enqueue(Op{.kind = Kind::kMarkReleased, .id = id});
}

std::uint64_t StateStore::deleteMessage(std::uint64_t id) {
  return enqueue(Op{.kind = Kind::kDeleteMessage, .id = id});
}

std::uint64_t StateStore::putIncomingQos2(const std::string& clientId, std::uint16_t packetId) {
  return enqueue(Op{.kind = Kind::kPutIncoming, .clientId = clientId, .a = packetId});
}

std::uint64_t StateStore::deleteIncomingQos2(const std::string& clientId, std::uint16_t packetId) {
  return enqueue(Op{.kind = Kind::kDeleteIncoming, .clientId = clientId, .a = packetId});
}

std::uint64_t StateStore::setRetained(const Message& message) {
  if (message.payload.empty()) {
    return enqueue(Op{.kind = Kind::kDeleteRetained, .text = message.topic});
  }
  return enqueue(Op{.kind = Kind::kPutRetained,
                    .text = message.topic,
                    .payload = message.payload,
                    .properties = encodeProperties(message.properties.get()),
                    .a = message.qos,
                    .c = toWall(message.expiresAtUs)});
}

std::uint64_t StateStore::putWill(const std::string& clientId, const Message& will,
                                  std::int64_t dueUs) {
  return enqueue(Op{.kind = Kind::kPutWill,
                    .clientId = clientId,
                    .text = will.topic,
                    .payload = will.payload,
                    .properties = encodeProperties(will.properties.get()),
                    .a = will.qos | (will.retain ? 0x100 : 0),
                    .b = toWall(dueUs),
                    .c = toWall(will.expiresAtUs)});
}

std::uint64_t StateStore::deleteWill(const std::string& clientId) {
  return enqueue(Op{.kind = Kind::kDeleteWill, .clientId = clientId});
}

void StateStore::whenDurable(std::uint64_t seq, Callback callback) {
  {
    std::lock_guard lock(mutex_);
    if (seq > committedSeq_) {
      waiters_.emplace(seq, std::move(callback));
      return;
    }
  }
  callback();
}

bool StateStore::overloaded() const {
  std::lock_guard lock(mutex_);
  return overloaded_;
}

void StateStore::onDrain(Callback callback) {
  {
    std::lock_guard lock(mutex_);
    if (overloaded_) {
      drainWaiters_.push_back(std::move(callback));
      return;
    }
  }
  callback();
}

StateStoreStats StateStore::stats() const {
  std::lock_guard lock(mutex_);
  StateStoreStats s = stats_;
  s.queued = queue_.size();
  return s;
}

core::Status StateStore::commit(const std::vector<Op>& ops) {
  // A copy added and deleted within one batch (an online subscriber acked it within the group
  // commit window) never needs to reach the disk.
  std::unordered_set<std::uint64_t> added;
  std::unordered_set<std::uint64_t> transient;
  for (const Op& op : ops) {
    if (op.kind == Kind::kAddMessage) added.insert(op.id);
    if (op.kind == Kind::kDeleteMessage && added.contains(op.id)) transient.insert(op.id);
  }
  static_assert(std::size(kWriteSql) == static_cast<std::size_t>(Kind::kDeleteWill) + 1);
  Statement statements[std::size(kWriteSql)];
  Statement deleteSession[std::size(kDeleteSessionSql)];
  auto prepared = [this](Statement& s, const char* sql) -> sqlite3_stmt* {
    if (s.stmt == nullptr) sqlite3_prepare_v2(db_, sql, -1, &s.stmt, nullptr);
    return s.stmt;
  };
  auto bindText = [](sqlite3_stmt* stmt, int index, const std::string& text) {
    sqlite3_bind_text(stmt, index, text.data(), static_cast<int>(text.size()), SQLITE_STATIC);
  };
  auto bindBlob = [](sqlite3_stmt* stmt, int index, const std::string& bytes) {
    sqlite3_bind_blob(stmt, index, bytes.data(), static_cast<int>(bytes.size()), SQLITE_STATIC);
  };
  // A message's topic, payload and properties (NULL when it has none) from parameter `first` on.
  auto bindMessage = [&](sqlite3_stmt* stmt, int first, const Op& op) {
    bindText(stmt, first, op.text);
    bindBlob(stmt, first + 1, op.payload);
    if (op.properties.empty()) {
      sqlite3_bind_null(stmt, first + 2);
    } else {
      bindBlob(stmt, first + 2, op.properties);
    }
  };
  auto step = [this](sqlite3_stmt* stmt) -> core::Status {
    const int rc = sqlite3_step(stmt);
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    if (rc != SQLITE_DONE) return core::Error{sqlite3_errmsg(db_)};
    return {};
  };

  if (auto status = exec("BEGIN IMMEDIATE"); !status.ok()) return status;
  for (const Op& op : ops) {
    const bool messageOp = op.kind == Kind::kAddMessage || op.kind == Kind::kMarkSent ||
                           op.kind == Kind::kMarkReleased || op.kind == Kind::kDeleteMessage;
    if (messageOp && transient.contains(op.id)) continue;
    core::Status status;
    if (op.kind == Kind::kDeleteSession) {
      for (std::size_t i = 0; i < std::size(kDeleteSessionSql) && status.ok(); ++i) {
        sqlite3_stmt* stmt = prepared(deleteSession[i], kDeleteSessionSql[i]);
        if (stmt == nullptr) {
          status = core::Error{sqlite3_errmsg(db_)};
          break;
        }
        bindText(stmt, 1, op.clientId);
        status = step(stmt);
      }
    } else {
      sqlite3_stmt* stmt = prepared(statements[static_cast<std::size_t>(op.kind)],
                                    kWriteSql[static_cast<std::size_t>(op.kind)]);
      if (stmt == nullptr) {
        status = core::Error{sqlite3_errmsg(db_)};
      } else {
        switch (op.kind) {
          case Kind::kPutSession:
            bindText(stmt, 1, op.clientId);
            sqlite3_bind_int64(stmt, 2, op.a);
            sqlite3_bind_int64(stmt, 3, op.b);
            break;
          case Kind::kPutSubscription:
            bindText(stmt, 1, op.clientId);
            bindText(stmt, 2, op.text);
            sqlite3_bind_int(stmt, 3, static_cast<int>(op.a & 0xFF));
            sqlite3_bind_int(stmt, 4, (op.a & 0x100) != 0 ? 1 : 0);
            sqlite3_bind_int(stmt, 5, (op.a & 0x200) != 0 ? 1 : 0);
            sqlite3_bind_int64(stmt, 6, op.b);
            sqlite3_bind_int64(stmt, 7, op.c);
            break;
          case Kind::kDeleteSubscription:
            bindText(stmt, 1, op.clientId);
            bindText(stmt, 2, op.text);
            break;
          case Kind::kAddMessage:
            sqlite3_bind_int64(stmt, 1, static_cast<std::int64_t>(op.id));
            bindText(stmt, 2, op.clientId);
            bindMessage(stmt, 3, op);
            sqlite3_bind_int64(stmt, 6, op.a & 0xFF);
            sqlite3_bind_int64(stmt, 7, op.b);
            sqlite3_bind_int64(stmt, 8, op.c);
            bindText(stmt, 9, op.extra);
            sqlite3_bind_int64(stmt, 10, op.a >> 8);
            break;
          case Kind::kMarkSent:
            sqlite3_bind_int64(stmt, 1, static_cast<std::int64_t>(op.id));
            sqlite3_bind_int64(stmt, 2, op.a);
            break;
          case Kind::kMarkReleased:
          case Kind::kDeleteMessage:
            sqlite3_bind_int64(stmt, 1, static_cast<std::int64_t>(op.id));
            break;
          case Kind::kPutIncoming:
          case Kind::kDeleteIncoming:
            bindText(stmt, 1, op.clientId);
            sqlite3_bind_int64(stmt, 2, op.a);
            break;
          case Kind::kPutRetained:
            bindMessage(stmt, 1, op);
            sqlite3_bind_int64(stmt, 4, op.a);
            sqlite3_bind_int64(stmt, 5, op.c);
            break;
          case Kind::kDeleteRetained:
            bindText(stmt, 1, op.text);
            break;
          case Kind::kPutWill:
            bindText(stmt, 1, op.clientId);
            bindMessage(stmt, 2, op);
            sqlite3_bind_int64(stmt, 5, op.a & 0xFF);
            sqlite3_bind_int(stmt, 6, (op.a & 0x100) != 0 ? 1 : 0);
            sqlite3_bind_int64(stmt, 7, op.c);
            sqlite3_bind_int64(stmt, 8, op.b);
            break;
          case Kind::kDeleteWill:
            bindText(stmt, 1, op.clientId);
            break;
          case Kind::kDeleteSession:
            break;
        }
        status = step(stmt);
      }
    }
    if (!status.ok()) {
      exec("ROLLBACK");
      return status;
    }
  }
  if (auto status = exec("COMMIT"); !status.ok()) {
    exec("ROLLBACK");
    return status;
  }
  return {};
}

void StateStore::run() {
  using Clock = std::chrono::steady_clock;
  std::vector<Op> batch;
  std::uint64_t batchLastSeq = 0;
  int backoffMs = 10;
  for (;;) {
    if (batch.empty()) {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty() && stopping_) return;
      // Group commit: give the batch a moment to fill, unless it is full or we stop.
      auto deadline = Clock::now() + std::chrono::milliseconds(options_.batchMs);
      wake_.wait_until(lock, deadline, [this] { return stopping_ || queue_.size() >= kMaxBatch; });
      const std::size_t n = std::min(queue_.size(), kMaxBatch);
      for (std::size_t i = 0; i < n; ++i) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      // Sequence numbers are handed out in queue order: the batch ends just before the queue.
      batchLastSeq = lastSeq_ - queue_.size();
    }
    core::Status status = commit(batch);
    if (!status.ok()) {
      // Nothing waiting on this batch is told it is durable; retry until it is (back-pressure
      // builds up meanwhile). At stop, give up after a while: those acks were never sent.
      bool stopping = false;
      {
        std::lock_guard lock(mutex_);
        ++stats_.commitFailures;
        stopping = stopping_;
        if (queue_.size() + batch.size() >= options_.queueCapacity) overloaded_ = true;
      }
      spdlog::error("broker state: commit of {} writes failed, retrying in {} ms: {}", batch.size(),
                    backoffMs, status.message());
      if (stopping && backoffMs >= 2000) {
        spdlog::error("broker state: giving up on {} writes at shutdown", batch.size());
        batch.clear();
        continue;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(backoffMs));
      backoffMs = std::min(backoffMs * 2, 2000);
      continue;
    }
    backoffMs = 10;
    batch.clear();
    std::vector<Callback> ready;
    std::vector<Callback> drained;
    {
      std::lock_guard lock(mutex_);
      ++stats_.commits;
      committedSeq_ = batchLastSeq;
      auto end = waiters_.upper_bound(committedSeq_);
      for (auto it = waiters_.begin(); it != end; ++it) ready.push_back(std::move(it->second));
      waiters_.erase(waiters_.begin(), end);
      if (overloaded_ && queue_.size() <= options_.queueCapacity / 2) {
        overloaded_ = false;
        drained.swap(drainWaiters_);
      }
    }
    for (auto& callback : ready) callback();
    for (auto& callback : drained) callback();
  }
}

}  // namespace tern::broker
