// One contract for every storage::AuthStore backend: the same tests against SQLite (in the same
// file as the message store) and a real PostgreSQL server.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "storage/postgres/postgres_auth_store.h"
#include "storage/postgres/postgres_store.h"
#include "storage/sqlite/sqlite_auth_store.h"
#include "storage/sqlite/sqlite_store.h"
#include "support/postgres_fixture.h"

namespace tern::storage {
namespace {

[[maybe_unused]] auto* const kPostgresEnvironment =
    ::testing::AddGlobalTestEnvironment(new test::PostgresEnvironment);

namespace fs = std::filesystem;
constexpr std::int64_t kT0 = 1'767'225'600'000'000;
constexpr std::int64_t kHour = 3'600'000'000;

class AuthStoreContractTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "postgres") {
      url_ = test::PostgresServer::shared().createDatabase();
    } else {
      std::random_device random;
      dir_ = fs::temp_directory_path() /
             ("tern-auth-contract-" + std::to_string(::getpid()) + "-" + std::to_string(random()));
      fs::create_directories(dir_);
    }
    store_ = open();
  }
  void TearDown() override {
    store_.reset();
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  std::unique_ptr<AuthStore> open() {
    if (GetParam() == "postgres") return postgres::openPostgresAuthStore(url_);
    return sqlite::openSqliteAuthStore((dir_ / "tern.db").string());
  }
  // The message store of the same database, to show both live side by side.
  std::unique_ptr<Store> openMessageStore() {
    if (GetParam() == "postgres") {
      postgres::PostgresOptions options;
      options.url = url_;
      return postgres::openPostgresStore(options);
    }
    return sqlite::openSqliteStore({(dir_ / "tern.db").string()});
  }

  std::int64_t addUser(const std::string& name, const std::string& role = "viewer") {
    auto id = store_->addUser(UserRecord{0, name, role, "$argon2id$fake", kT0});
    EXPECT_TRUE(id.ok()) << (id.ok() ? "" : id.error().message);
    return id.ok() ? *id : 0;
  }

  RefreshResult rotate(const std::string& oldHash, const std::string& newHash,
                       std::int64_t now = kT0 + 1) {
    auto result = store_->rotateRefreshToken(oldHash, newHash, now, now + kHour);
    EXPECT_TRUE(result.ok()) << (result.ok() ? "" : result.error().message);
    return result.ok() ? *result : RefreshResult{};
  }

  std::string url_;
  fs::path dir_;
  std::unique_ptr<AuthStore> store_;
};

TEST_P(AuthStoreContractTest, UsersRoundTrip) {
  const auto bob = addUser("bob", "operator");
  const auto alice = addUser("alice", "admin");
  EXPECT_NE(bob, alice);
  auto duplicate = store_->addUser(UserRecord{0, "bob", "viewer", "h", kT0});
  ASSERT_FALSE(duplicate.ok());
  EXPECT_NE(duplicate.error().message.find("already exists"), std::string::npos);

  auto found = store_->findUser("bob");
  ASSERT_TRUE(found.ok());
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->id, bob);
  EXPECT_EQ((*found)->role, "operator");
  EXPECT_EQ((*found)->passwordHash, "$argon2id$fake");
  EXPECT_EQ((*found)->createdUs, kT0);
  EXPECT_FALSE(store_->findUser("carol")->has_value());
  EXPECT_FALSE(store_->findUser("BOB")->has_value());  // names are case-sensitive

  auto users = store_->listUsers();
  ASSERT_TRUE(users.ok());
  ASSERT_EQ(users->size(), 2u);
  EXPECT_EQ((*users)[0].name, "alice");  // by name
  EXPECT_EQ(*store_->countUsers(), 2);
  EXPECT_TRUE(*store_->removeUser("bob"));
  EXPECT_FALSE(*store_->removeUser("bob"));
  EXPECT_EQ(*store_->countUsers(), 1);
}

TEST_P(AuthStoreContractTest, SecretsAreCreatedOnce) {
  EXPECT_EQ(*store_->getOrCreateSecret("jwt", "first"), "first");
  EXPECT_EQ(*store_->getOrCreateSecret("jwt", "second"), "first");
  EXPECT_EQ(*store_->getOrCreateSecret("other", "x"), "x");
  store_.reset();
  store_ = open();
  EXPECT_EQ(*store_->getOrCreateSecret("jwt", "third"), "first");
}

TEST_P(AuthStoreContractTest, SessionsRotateAndDetectReuse) {
  const auto bob = addUser("bob", "operator");
  ASSERT_TRUE(store_->createSession("s1", bob, "h1", kT0, kT0 + kHour).ok());
  auto active = store_->activeSession("s1", kT0 + 1);
  ASSERT_TRUE(active.ok());
  ASSERT_TRUE(active->has_value());
  EXPECT_EQ((*active)->name, "bob");
  EXPECT_EQ((*active)->role, "operator");
  EXPECT_EQ((*active)->userId, bob);
  EXPECT_EQ(*store_->sessionOfRefreshToken("h1"), std::optional<std::string>("s1"));

  RefreshResult r = rotate("h1", "h2");
  EXPECT_EQ(r.outcome, RefreshOutcome::kRotated);
  EXPECT_EQ(r.sessionId, "s1");
  EXPECT_EQ(r.user.name, "bob");
  EXPECT_EQ(r.user.role, "operator");
  EXPECT_EQ(rotate("h2", "h3").outcome, RefreshOutcome::kRotated);
  EXPECT_EQ(rotate("nope", "h9").outcome, RefreshOutcome::kUnknown);
  // h1 again: reuse revokes the session, and h3 dies with it.
  EXPECT_EQ(rotate("h1", "h4").outcome, RefreshOutcome::kReused);
  EXPECT_FALSE(store_->activeSession("s1", kT0 + 2)->has_value());
  EXPECT_EQ(rotate("h3", "h5").outcome, RefreshOutcome::kRevoked);
}

TEST_P(AuthStoreContractTest, SessionsExpireAndCanBeRevoked) {
  const auto bob = addUser("bob");
  ASSERT_TRUE(store_->createSession("s1", bob, "h1", kT0, kT0 + kHour).ok());
  ASSERT_TRUE(store_->createSession("s2", bob, "h2", kT0, kT0 + kHour).ok());
  EXPECT_FALSE(store_->activeSession("s1", kT0 + kHour)->has_value());  // expired
  EXPECT_EQ(rotate("h1", "h1b", kT0 + kHour).outcome, RefreshOutcome::kExpired);
  EXPECT_TRUE(*store_->revokeSession("s2"));
  EXPECT_FALSE(*store_->revokeSession("s2"));
  EXPECT_FALSE(store_->activeSession("s2", kT0)->has_value());
  EXPECT_EQ(rotate("h2", "h2b").outcome, RefreshOutcome::kRevoked);

  // Rotation extends the session to the new token's expiry.
  ASSERT_TRUE(store_->createSession("s3", bob, "h3", kT0, kT0 + kHour));
  EXPECT_EQ(rotate("h3", "h3b", kT0 + kHour / 2).outcome, RefreshOutcome::kRotated);
  EXPECT_TRUE(store_->activeSession("s3", kT0 + kHour + 1)->has_value());

  ASSERT_TRUE(store_->pruneSessions(kT0 + 3 * kHour).ok());
  EXPECT_FALSE(store_->sessionOfRefreshToken("h3b")->has_value());
  EXPECT_EQ(rotate("h3b", "h3c", kT0).outcome, RefreshOutcome::kUnknown);
}

TEST_P(AuthStoreContractTest, RemovingAUserEndsItsSessions) {
  const auto bob = addUser("bob");
  const auto carol = addUser("carol");
  ASSERT_TRUE(store_->createSession("sb", bob, "hb", kT0, kT0 + kHour).ok());
  ASSERT_TRUE(store_->createSession("sc", carol, "hc", kT0, kT0 + kHour).ok());
  EXPECT_TRUE(*store_->removeUser("bob"));
  EXPECT_FALSE(store_->activeSession("sb", kT0)->has_value());
  EXPECT_EQ(rotate("hb", "hb2").outcome, RefreshOutcome::kUnknown);
  EXPECT_TRUE(store_->activeSession("sc", kT0)->has_value());
}

TEST_P(AuthStoreContractTest, ConcurrentRefreshesWithOneTokenRotateOnce) {
  const auto bob = addUser("bob");
  ASSERT_TRUE(store_->createSession("s1", bob, "h1", kT0, kT0 + kHour).ok());
  std::vector<std::unique_ptr<AuthStore>> stores;  // separate connections, like separate nodes
  for (int i = 0; i < 4; ++i) stores.push_back(open());
  std::atomic<int> rotated{0};
  std::atomic<int> reused{0};
  std::atomic<int> revoked{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&, i] {
      // Appended rather than "n" + to_string: GCC 12's -Wrestrict misfires on that here.
      std::string newHash = "n";
      newHash += std::to_string(i);
      auto r = stores[i]->rotateRefreshToken("h1", newHash, kT0 + 1, kT0 + kHour);
      if (r.ok() && r->outcome == RefreshOutcome::kRotated) ++rotated;
      if (r.ok() && r->outcome == RefreshOutcome::kReused) ++reused;
      if (r.ok() && r->outcome == RefreshOutcome::kRevoked) ++revoked;
    });
  }
  for (auto& t : threads) t.join();
  // One wins; the first loser detects the reuse and revokes, later ones find it revoked.
  EXPECT_EQ(rotated.load(), 1);
  EXPECT_GE(reused.load(), 1);
  EXPECT_EQ(reused.load() + revoked.load(), 3);
  EXPECT_FALSE(store_->activeSession("s1", kT0 + 2)->has_value());
}

TEST_P(AuthStoreContractTest, ApiKeysRoundTripAndRevoke) {
  ApiKeyRecord key{0, "exporter", "viewer", "tern_abcdefg", "hash-1", "alice", kT0, 0};
  auto id = store_->addApiKey(key);
  ASSERT_TRUE(id.ok()) << id.error().message;
  key.hash = "hash-2";
  key.name = "second";
  auto id2 = store_->addApiKey(key);
  ASSERT_TRUE(id2.ok());
  auto found = store_->findApiKey("hash-1");
  ASSERT_TRUE(found.ok());
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ((*found)->id, *id);
  EXPECT_EQ((*found)->name, "exporter");
  EXPECT_EQ((*found)->role, "viewer");
  EXPECT_EQ((*found)->prefix, "tern_abcdefg");
  EXPECT_EQ((*found)->createdBy, "alice");
  EXPECT_EQ((*found)->createdUs, kT0);
  EXPECT_FALSE(store_->findApiKey("hash-3")->has_value());

  EXPECT_TRUE(*store_->revokeApiKey(*id, kT0 + 5));
  EXPECT_FALSE(*store_->revokeApiKey(*id, kT0 + 6));
  EXPECT_FALSE(*store_->revokeApiKey(999999, kT0));
  EXPECT_FALSE(store_->findApiKey("hash-1")->has_value());
  auto keys = store_->listApiKeys();
  ASSERT_TRUE(keys.ok());
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_EQ((*keys)[0].id, *id2);  // newest first
  EXPECT_EQ((*keys)[1].revokedUs, kT0 + 5);
  EXPECT_EQ((*keys)[0].revokedUs, 0);
}

TEST_P(AuthStoreContractTest, LivesBesideTheMessageStoreAndReopens) {
  auto messages = openMessageStore();
  addUser("bob");
  ASSERT_TRUE(store_->addDeviceToken(DeviceToken{0, "dev", "tdev_a", "h", kT0, 0}).ok());
  store_.reset();
  messages.reset();
  messages = openMessageStore();  // the message schema does not trip over the auth tables
  store_ = open();
  EXPECT_TRUE(store_->findUser("bob")->has_value());
  EXPECT_TRUE(store_->findDeviceToken("h")->has_value());
  EXPECT_TRUE(messages->check().ok());
}

std::int64_t generation(AuthStore& store) {
  auto value = store.credentialsGeneration();
  EXPECT_TRUE(value.ok()) << (value.ok() ? "" : value.error().message);
  return value.ok() ? *value : -1;
}

TEST_P(AuthStoreContractTest, DevicePasswordsRoundTrip) {
  const std::int64_t g0 = generation(*store_);
  auto id = store_->addDevice(DeviceCredential{0, "dev-1", "$argon2id$one", kT0, 0});
  ASSERT_TRUE(id.ok()) << id.error().message;
  auto again = store_->addDevice(DeviceCredential{0, "dev-1", "$argon2id$two", kT0, 0});
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.error().message.find("dev-1"), std::string::npos) << again.error().message;
  ASSERT_TRUE(store_->addDevice(DeviceCredential{0, "Dev-1", "$argon2id$three", kT0, 0}).ok())
      << "device ids are case-sensitive";

  auto found = store_->findDevice("dev-1");
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->id, *id);
  EXPECT_EQ((*found)->passwordHash, "$argon2id$one");  // the second add changed nothing
  EXPECT_EQ((*found)->createdUs, kT0);
  EXPECT_FALSE(store_->findDevice("dev-2")->has_value());
  EXPECT_EQ(generation(*store_), g0) << "adding revokes nothing";

  auto list = store_->listDevices();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 2u);
  EXPECT_EQ((*list)[0].deviceId, "Dev-1");  // byte order
  EXPECT_EQ((*list)[1].deviceId, "dev-1");

  EXPECT_TRUE(*store_->removeDevice("dev-1"));
  EXPECT_FALSE(*store_->removeDevice("dev-1"));
  EXPECT_FALSE(store_->findDevice("dev-1")->has_value());
  EXPECT_EQ(generation(*store_), g0 + 1);
  // Added again, it is a new row: connections of the old one are told apart.
  auto readded = store_->addDevice(DeviceCredential{0, "dev-1", "$argon2id$four", kT0, 0});
  ASSERT_TRUE(readded.ok());
  EXPECT_NE(*readded, *id);
}

TEST_P(AuthStoreContractTest, DeviceTokensRoundTripAndRevoke) {
  const std::int64_t g0 = generation(*store_);
  auto t1 = store_->addDeviceToken(DeviceToken{0, "tok-dev", "tdev_abc", "hash-1", kT0, 0});
  ASSERT_TRUE(t1.ok()) << t1.error().message;
  auto t2 = store_->addDeviceToken(DeviceToken{0, "tok-dev", "tdev_def", "hash-2", kT0 + 1, 0});
  ASSERT_TRUE(t2.ok());
  EXPECT_NE(*t1, *t2);
  EXPECT_FALSE(store_->addDeviceToken(DeviceToken{0, "other", "tdev_x", "hash-1", kT0, 0}).ok())
      << "token hashes are unique";

  // A token registers its device, without a password; adding one later sets it.
  auto device = store_->findDevice("tok-dev");
  ASSERT_TRUE(device.ok() && device->has_value());
  EXPECT_EQ((*device)->passwordHash, "");
  auto list = store_->listDevices();
  ASSERT_TRUE(list.ok());
  ASSERT_EQ(list->size(), 1u);
  EXPECT_EQ((*list)[0].activeTokens, 2);
  auto withPassword = store_->addDevice(DeviceCredential{0, "tok-dev", "$argon2id$p", kT0, 0});
  ASSERT_TRUE(withPassword.ok()) << withPassword.error().message;
  EXPECT_EQ(*withPassword, (*device)->id);
  EXPECT_EQ((*store_->findDevice("tok-dev"))->passwordHash, "$argon2id$p");

  auto found = store_->findDeviceToken("hash-2");
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->id, *t2);
  EXPECT_EQ((*found)->deviceId, "tok-dev");
  EXPECT_EQ((*found)->prefix, "tdev_def");
  EXPECT_EQ((*found)->createdUs, kT0 + 1);
  EXPECT_FALSE(store_->findDeviceToken("hash-3")->has_value());
  EXPECT_EQ(store_->listDeviceTokens()->size(), 2u);
  EXPECT_EQ(generation(*store_), g0);

  auto revoked = store_->revokeDeviceTokens("tok-dev", kT0 + 5);
  ASSERT_TRUE(revoked.ok());
  EXPECT_EQ(*revoked, 2);
  EXPECT_EQ(generation(*store_), g0 + 1);
  EXPECT_EQ(*store_->revokeDeviceTokens("tok-dev", kT0 + 6), 0);
  EXPECT_EQ(generation(*store_), g0 + 1) << "nothing revoked, nothing to re-check";
  EXPECT_FALSE(store_->findDeviceToken("hash-1")->has_value());
  EXPECT_TRUE(store_->listDeviceTokens()->empty());
  EXPECT_EQ((*store_->listDevices())[0].activeTokens, 0);
  EXPECT_TRUE(store_->findDevice("tok-dev")->has_value()) << "the password stays";

  // Removing the device removes its tokens too.
  ASSERT_TRUE(store_->addDeviceToken(DeviceToken{0, "tok-dev", "tdev_ghi", "hash-4", kT0, 0}).ok());
  EXPECT_TRUE(*store_->removeDevice("tok-dev"));
  EXPECT_FALSE(store_->findDeviceToken("hash-4")->has_value());
  EXPECT_EQ(generation(*store_), g0 + 2);
}

TEST_P(AuthStoreContractTest, DevicePasswordsAreSetReplacedAndCleared) {
  const std::int64_t g0 = generation(*store_);
  // New: registered, nothing to revoke.
  auto created = store_->setDevicePassword("pw-dev", "$argon2id$one", kT0);
  ASSERT_TRUE(created.ok()) << created.error().message;
  EXPECT_TRUE(*created);
  auto first = store_->findDevice("pw-dev");
  ASSERT_TRUE(first.ok() && first->has_value());
  EXPECT_EQ((*first)->passwordHash, "$argon2id$one");
  EXPECT_EQ((*first)->createdUs, kT0);
  EXPECT_EQ(generation(*store_), g0);
  // Replaced: a new row id (the old password's logins end) and a raised generation; tokens stay.
  ASSERT_TRUE(store_->addDeviceToken(DeviceToken{0, "pw-dev", "tdev_a", "pw-hash-1", kT0, 0}).ok());
  ASSERT_TRUE(store_->addDevice(DeviceCredential{0, "zz-newer", "$argon2id$z", kT0, 0}).ok());
  auto replaced = store_->setDevicePassword("pw-dev", "$argon2id$two", kT0 + 1);
  ASSERT_TRUE(replaced.ok()) << replaced.error().message;
  EXPECT_FALSE(*replaced);
  auto second = store_->findDevice("pw-dev");
  ASSERT_TRUE(second.ok() && second->has_value());
  EXPECT_EQ((*second)->passwordHash, "$argon2id$two");
  EXPECT_NE((*second)->id, (*first)->id);
  EXPECT_NE((*second)->id, (*store_->findDevice("zz-newer"))->id);
  EXPECT_EQ(generation(*store_), g0 + 1);
  EXPECT_EQ(store_->deviceTokens("pw-dev")->size(), 1u);
  // Set on a token-only device: it was known, so this replaces (the empty password).
  ASSERT_TRUE(
      store_->addDeviceToken(DeviceToken{0, "tok-only", "tdev_b", "pw-hash-2", kT0, 0}).ok());
  auto onTokens = store_->setDevicePassword("tok-only", "$argon2id$three", kT0);
  ASSERT_TRUE(onTokens.ok());
  EXPECT_FALSE(*onTokens);

  // Cleared: no password, a new row id, tokens kept; clearing again changes nothing.
  const std::int64_t g1 = generation(*store_);
  auto cleared = store_->clearDevicePassword("pw-dev");
  ASSERT_TRUE(cleared.ok()) << cleared.error().message;
  EXPECT_TRUE(*cleared);
  auto third = store_->findDevice("pw-dev");
  ASSERT_TRUE(third.ok() && third->has_value());
  EXPECT_EQ((*third)->passwordHash, "");
  EXPECT_NE((*third)->id, (*second)->id);
  EXPECT_EQ(generation(*store_), g1 + 1);
  EXPECT_EQ(store_->deviceTokens("pw-dev")->size(), 1u);
  EXPECT_FALSE(*store_->clearDevicePassword("pw-dev"));
  EXPECT_FALSE(*store_->clearDevicePassword("nobody"));
  EXPECT_EQ(generation(*store_), g1 + 1);
}

TEST_P(AuthStoreContractTest, OneDeviceTokenIsListedAndRevoked) {
  auto t1 = store_->addDeviceToken(DeviceToken{0, "one", "tdev_1", "one-hash-1", kT0, 0});
  auto t2 = store_->addDeviceToken(DeviceToken{0, "one", "tdev_2", "one-hash-2", kT0 + 1, 0});
  auto t3 = store_->addDeviceToken(DeviceToken{0, "two", "tdev_3", "one-hash-3", kT0, 0});
  ASSERT_TRUE(t1.ok() && t2.ok() && t3.ok());
  auto tokens = store_->deviceTokens("one");
  ASSERT_TRUE(tokens.ok()) << tokens.error().message;
  ASSERT_EQ(tokens->size(), 2u);
  EXPECT_EQ((*tokens)[0].id, *t1);
  EXPECT_EQ((*tokens)[0].prefix, "tdev_1");
  EXPECT_EQ((*tokens)[1].id, *t2);
  EXPECT_EQ((*tokens)[1].createdUs, kT0 + 1);
  EXPECT_TRUE(store_->deviceTokens("nobody")->empty());

  const std::int64_t g0 = generation(*store_);
  // Only the device's own, active token.
  EXPECT_FALSE(*store_->revokeDeviceToken("one", *t3, kT0 + 2));
  EXPECT_FALSE(*store_->revokeDeviceToken("one", 999'999, kT0 + 2));
  EXPECT_EQ(generation(*store_), g0);
  EXPECT_TRUE(*store_->revokeDeviceToken("one", *t1, kT0 + 2));
  EXPECT_EQ(generation(*store_), g0 + 1);
  EXPECT_FALSE(*store_->revokeDeviceToken("one", *t1, kT0 + 3));
  EXPECT_FALSE(store_->findDeviceToken("one-hash-1")->has_value());
  EXPECT_TRUE(store_->findDeviceToken("one-hash-2")->has_value());
  EXPECT_TRUE(store_->findDeviceToken("one-hash-3")->has_value());
  tokens = store_->deviceTokens("one");
  ASSERT_TRUE(tokens.ok());
  ASSERT_EQ(tokens->size(), 1u);
  EXPECT_EQ((*tokens)[0].id, *t2);
}

TEST_P(AuthStoreContractTest, UpdatingAUserChangesRoleAndPassword) {
  const auto bob = addUser("bob", "service");
  const auto carol = addUser("carol");
  ASSERT_TRUE(store_->createSession("sb", bob, "hb", kT0, kT0 + kHour).ok());
  ASSERT_TRUE(store_->createSession("sc", carol, "hc", kT0, kT0 + kHour).ok());
  const std::int64_t g0 = generation(*store_);

  // A role alone: the session stays and sees the new role; MQTT re-checks (generation).
  auto updated = store_->updateUser("bob", std::string("operator"), std::nullopt);
  ASSERT_TRUE(updated.ok()) << updated.error().message;
  EXPECT_TRUE(*updated);
  auto found = store_->findUser("bob");
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->role, "operator");
  EXPECT_EQ((*found)->id, bob);
  EXPECT_EQ((*found)->passwordHash, "$argon2id$fake");
  auto session = store_->activeSession("sb", kT0 + 1);
  ASSERT_TRUE(session.ok() && session->has_value());
  EXPECT_EQ((*session)->role, "operator");
  EXPECT_EQ(generation(*store_), g0 + 1);

  // A password: every session of the user ends, the user gets a new id; others keep theirs.
  updated = store_->updateUser("bob", std::nullopt, std::string("$argon2id$new"));
  ASSERT_TRUE(updated.ok()) << updated.error().message;
  EXPECT_TRUE(*updated);
  found = store_->findUser("bob");
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->passwordHash, "$argon2id$new");
  EXPECT_EQ((*found)->role, "operator");
  EXPECT_NE((*found)->id, bob);
  EXPECT_NE((*found)->id, carol);
  EXPECT_EQ((*found)->createdUs, kT0);
  EXPECT_FALSE(store_->activeSession("sb", kT0 + 1)->has_value());
  EXPECT_EQ(rotate("hb", "hb2").outcome, RefreshOutcome::kUnknown);
  EXPECT_TRUE(store_->activeSession("sc", kT0 + 1)->has_value());
  EXPECT_EQ(generation(*store_), g0 + 2);
  // A new session of the new id works.
  ASSERT_TRUE(store_->createSession("sb2", (*found)->id, "hb3", kT0, kT0 + kHour).ok());
  EXPECT_TRUE(store_->activeSession("sb2", kT0 + 1)->has_value());

  // Both at once; an unknown user is false and raises nothing.
  updated = store_->updateUser("carol", std::string("admin"), std::string("$argon2id$c"));
  ASSERT_TRUE(updated.ok() && *updated);
  EXPECT_EQ((*store_->findUser("carol"))->role, "admin");
  EXPECT_EQ((*store_->findUser("carol"))->passwordHash, "$argon2id$c");
  EXPECT_FALSE(store_->activeSession("sc", kT0 + 1)->has_value());
  const std::int64_t g1 = generation(*store_);
  updated = store_->updateUser("nobody", std::string("admin"), std::nullopt);
  ASSERT_TRUE(updated.ok());
  EXPECT_FALSE(*updated);
  EXPECT_EQ(generation(*store_), g1);
  EXPECT_EQ(*store_->countUsers(), 2);
}

TEST_P(AuthStoreContractTest, RemovingAUserRaisesTheCredentialsGeneration) {
  addUser("svc", "service");
  const std::int64_t g0 = generation(*store_);
  EXPECT_TRUE(*store_->removeUser("svc"));
  EXPECT_EQ(generation(*store_), g0 + 1);
  EXPECT_FALSE(*store_->removeUser("svc"));
  EXPECT_EQ(generation(*store_), g0 + 1);
  // Seen by another connection to the same database (the CLI and a running server).
  auto other = open();
  EXPECT_EQ(generation(*other), g0 + 1);
}

INSTANTIATE_TEST_SUITE_P(Backends, AuthStoreContractTest, ::testing::Values("sqlite", "postgres"),
                         [](const ::testing::TestParamInfo<std::string>& param) {
                           return param.param;
                         });

}  // namespace
}  // namespace tern::storage
