// AuthService on a real SQLite auth store with a hand-driven clock: logins, token expiry,
// refresh rotation and reuse, logout, API keys, rate limits, user removal.
#include "auth/auth_service.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <random>
#include <variant>

#include "auth/crypto.h"
#include "storage/sqlite/sqlite_auth_store.h"

namespace tern::auth {
namespace {

constexpr std::int64_t kSecond = 1'000'000;
constexpr std::int64_t kStart = 1'767'225'600 * kSecond;

class AuthServiceTest : public ::testing::Test {
 protected:
  AuthServiceTest() {
    std::random_device random;
    dir_ = std::filesystem::temp_directory_path() /
           ("tern-auth-test-" + std::to_string(random()) + std::to_string(random()));
    std::filesystem::create_directories(dir_);
    store_ = storage::sqlite::openSqliteAuthStore((dir_ / "tern.db").string());
    service_ = std::make_unique<AuthService>(*store_, options());
    EXPECT_TRUE(service_->addUser("alice", Role::kOperator, "alice-password").ok());
  }
  ~AuthServiceTest() override {
    service_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  AuthOptions options() {
    AuthOptions o;
    o.tokenTtlUs = 60 * kSecond;
    o.refreshTtlUs = 3600 * kSecond;
    o.loginMaxFailures = 5;
    o.loginWindowUs = 60 * kSecond;
    o.cacheTtlUs = 2 * kSecond;
    o.nowUs = [this] { return now_.load(); };
    return o;
  }

  TokenPair login(const std::string& name = "alice", const std::string& password = "alice-password",
                  const std::string& address = "127.0.0.1") {
    auto outcome = service_->login(name, password, address);
    if (const auto* e = std::get_if<AuthError>(&outcome)) {
      ADD_FAILURE() << "login failed: " << e->detail;
      return {};
    }
    return std::get<TokenPair>(outcome);
  }

  static Failure failureOf(const Outcome<Principal>& outcome) {
    const auto* e = std::get_if<AuthError>(&outcome);
    return e != nullptr ? e->failure : Failure::kStoreError;
  }
  static bool ok(const Outcome<Principal>& outcome) {
    return std::holds_alternative<Principal>(outcome);
  }
  Outcome<Principal> bearer(const std::string& token) {
    return service_->authenticate("Bearer " + token, "");
  }

  std::filesystem::path dir_;
  std::atomic<std::int64_t> now_{kStart};
  std::unique_ptr<storage::AuthStore> store_;
  std::unique_ptr<AuthService> service_;
};

TEST_F(AuthServiceTest, BootstrapsAnAdminOnlyOnAnEmptyDatabase) {
  // alice exists: nothing to do.
  auto none = service_->bootstrapAdmin();
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());

  auto fresh = storage::sqlite::openSqliteAuthStore((dir_ / "fresh.db").string());
  AuthService service(*fresh, options());
  auto password = service.bootstrapAdmin();
  ASSERT_TRUE(password.ok()) << password.error().message;
  ASSERT_TRUE(password->has_value());
  EXPECT_EQ((*password)->size(), 20u);
  auto users = service.listUsers();
  ASSERT_TRUE(users.ok());
  ASSERT_EQ(users->size(), 1u);
  EXPECT_EQ((*users)[0].name, "admin");
  EXPECT_EQ((*users)[0].role, "admin");
  EXPECT_TRUE(std::holds_alternative<TokenPair>(service.login("admin", **password, "a")));
  auto again = service.bootstrapAdmin();
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->has_value());
}

TEST_F(AuthServiceTest, ValidatesNewUsers) {
  EXPECT_FALSE(service_->addUser("alice", Role::kViewer, "another-password").ok());  // taken
  EXPECT_FALSE(service_->addUser("", Role::kViewer, "long-enough").ok());
  EXPECT_FALSE(service_->addUser("has space", Role::kViewer, "long-enough").ok());
  EXPECT_FALSE(service_->addUser("-dash", Role::kViewer, "long-enough").ok());
  EXPECT_FALSE(service_->addUser("bob", Role::kViewer, "short").ok());
  EXPECT_TRUE(service_->addUser("bob@example.com", Role::kService, "long-enough").ok());
  EXPECT_EQ(parseRole("service"), Role::kService);
  EXPECT_FALSE(parseRole("root").has_value());
}

TEST_F(AuthServiceTest, LoginIssuesATokenThatAuthenticates) {
  const TokenPair pair = login();
  EXPECT_EQ(pair.expiresInSeconds, 60);
  EXPECT_EQ(pair.refreshExpiresInSeconds, 3600);
  EXPECT_EQ(pair.role, Role::kOperator);
  auto principal = bearer(pair.accessToken);
  ASSERT_TRUE(ok(principal));
  EXPECT_EQ(std::get<Principal>(principal).name, "alice");
  EXPECT_EQ(std::get<Principal>(principal).role, Role::kOperator);
  EXPECT_EQ(std::get<Principal>(principal).kind, Principal::Kind::kUser);
  // The scheme is case-insensitive; surrounding blanks are tolerated.
  EXPECT_TRUE(ok(service_->authenticate("  bearer   " + pair.accessToken + " ", "")));
}

TEST_F(AuthServiceTest, WrongPasswordsAndUnknownUsersFailAlike) {
  for (const auto& [name, password] : {std::pair{"alice", "wrong-password"}, {"nobody", "x"}}) {
    auto outcome = service_->login(name, password, "10.0.0.1");
    ASSERT_TRUE(std::holds_alternative<AuthError>(outcome));
    EXPECT_EQ(std::get<AuthError>(outcome).failure, Failure::kBadCredentials);
    EXPECT_EQ(std::get<AuthError>(outcome).detail, "wrong user name or password");
  }
}

TEST_F(AuthServiceTest, MissingAndMalformedCredentials) {
  EXPECT_EQ(failureOf(service_->authenticate("", "")), Failure::kMissing);
  EXPECT_EQ(failureOf(service_->authenticate("Basic YWxpY2U6eA==", "")), Failure::kInvalid);
  EXPECT_EQ(failureOf(service_->authenticate("Bearer", "")), Failure::kInvalid);
  EXPECT_EQ(failureOf(bearer("not.a.jwt")), Failure::kInvalid);
  EXPECT_EQ(failureOf(bearer("tern_unknownkey")), Failure::kInvalid);
  EXPECT_EQ(failureOf(service_->authenticate("", "tern_unknownkey")), Failure::kInvalid);
  EXPECT_EQ(failureOf(service_->authenticate("", "no-prefix")), Failure::kInvalid);
}

TEST_F(AuthServiceTest, AccessTokensExpire) {
  const TokenPair pair = login();
  now_ += 59 * kSecond;
  EXPECT_TRUE(ok(bearer(pair.accessToken)));
  now_ += 1 * kSecond;
  EXPECT_EQ(failureOf(bearer(pair.accessToken)), Failure::kExpired);
}

TEST_F(AuthServiceTest, TokensSignedWithAnotherSecretAreRejected) {
  // A second database has its own secret: its tokens are forgeries here.
  auto other = storage::sqlite::openSqliteAuthStore((dir_ / "other.db").string());
  AuthService otherService(*other, options());
  ASSERT_TRUE(otherService.addUser("alice", Role::kAdmin, "alice-password").ok());
  auto pair = otherService.login("alice", "alice-password", "x");
  ASSERT_TRUE(std::holds_alternative<TokenPair>(pair));
  EXPECT_EQ(failureOf(bearer(std::get<TokenPair>(pair).accessToken)), Failure::kInvalid);
}

TEST_F(AuthServiceTest, TheSecretIsKeptAcrossRestarts) {
  const TokenPair pair = login();
  service_.reset();
  store_.reset();
  store_ = storage::sqlite::openSqliteAuthStore((dir_ / "tern.db").string());
  service_ = std::make_unique<AuthService>(*store_, options());
  EXPECT_TRUE(ok(bearer(pair.accessToken)));
}

TEST_F(AuthServiceTest, RefreshRotatesAndReuseRevokesTheFamily) {
  const TokenPair first = login();
  auto second = service_->refresh(first.refreshToken);
  ASSERT_TRUE(std::holds_alternative<TokenPair>(second));
  const TokenPair pair2 = std::get<TokenPair>(second);
  EXPECT_NE(pair2.refreshToken, first.refreshToken);
  EXPECT_TRUE(ok(bearer(pair2.accessToken)));
  auto third = service_->refresh(pair2.refreshToken);
  ASSERT_TRUE(std::holds_alternative<TokenPair>(third));
  const TokenPair pair3 = std::get<TokenPair>(third);

  // The first token again: a replay. The whole session is revoked, newest tokens included.
  auto replay = service_->refresh(first.refreshToken);
  ASSERT_TRUE(std::holds_alternative<AuthError>(replay));
  EXPECT_EQ(std::get<AuthError>(replay).failure, Failure::kRevoked);
  EXPECT_EQ(failureOf(bearer(pair3.accessToken)), Failure::kRevoked);
  auto newest = service_->refresh(pair3.refreshToken);
  ASSERT_TRUE(std::holds_alternative<AuthError>(newest));
  EXPECT_EQ(std::get<AuthError>(newest).failure, Failure::kRevoked);
  // Another login is a new family and works.
  EXPECT_TRUE(ok(bearer(login().accessToken)));
}

TEST_F(AuthServiceTest, RefreshTokensExpireAndUnknownOnesAreInvalid) {
  const TokenPair pair = login();
  auto unknown = service_->refresh("made-up-token");
  ASSERT_TRUE(std::holds_alternative<AuthError>(unknown));
  EXPECT_EQ(std::get<AuthError>(unknown).failure, Failure::kInvalid);
  now_ += 3600 * kSecond;
  auto expired = service_->refresh(pair.refreshToken);
  ASSERT_TRUE(std::holds_alternative<AuthError>(expired));
  EXPECT_EQ(std::get<AuthError>(expired).failure, Failure::kExpired);
}

TEST_F(AuthServiceTest, LogoutRevokesAccessAndRefreshTokens) {
  const TokenPair pair = login();
  const TokenPair other = login();
  auto principal = bearer(pair.accessToken);
  ASSERT_TRUE(ok(principal));
  ASSERT_TRUE(service_->logout(std::get<Principal>(principal), "").ok());
  EXPECT_EQ(failureOf(bearer(pair.accessToken)), Failure::kRevoked);
  auto refreshed = service_->refresh(pair.refreshToken);
  ASSERT_TRUE(std::holds_alternative<AuthError>(refreshed));
  EXPECT_EQ(std::get<AuthError>(refreshed).failure, Failure::kRevoked);
  // Other sessions of the same user live on.
  EXPECT_TRUE(ok(bearer(other.accessToken)));
}

TEST_F(AuthServiceTest, AnotherNodeSeesALogoutWithinTheCacheTime) {
  AuthService nodeB(*store_, options());
  const TokenPair pair = login();
  ASSERT_TRUE(ok(nodeB.authenticate("Bearer " + pair.accessToken, "")));  // cached on B
  ASSERT_TRUE(service_->logout(std::get<Principal>(bearer(pair.accessToken)), "").ok());
  EXPECT_EQ(failureOf(bearer(pair.accessToken)), Failure::kRevoked);  // this node: at once
  now_ += 2 * kSecond;
  EXPECT_EQ(failureOf(nodeB.authenticate("Bearer " + pair.accessToken, "")), Failure::kRevoked);
}

TEST_F(AuthServiceTest, LoginFailuresAreRateLimitedPerAddress) {
  for (int i = 0; i < 5; ++i) {
    auto outcome = service_->login("alice", "wrong-password", "10.0.0.9");
    ASSERT_EQ(std::get<AuthError>(outcome).failure, Failure::kBadCredentials) << i;
    now_ += kSecond;
  }
  // The sixth attempt is refused before the password is looked at, even the right one.
  auto limited = service_->login("alice", "alice-password", "10.0.0.9");
  ASSERT_TRUE(std::holds_alternative<AuthError>(limited));
  EXPECT_EQ(std::get<AuthError>(limited).failure, Failure::kRateLimited);
  EXPECT_EQ(std::get<AuthError>(limited).retryAfterSeconds, 55);  // the first failure + 60 s
  // Another address is not affected.
  EXPECT_TRUE(
      std::holds_alternative<TokenPair>(service_->login("alice", "alice-password", "10.0.0.10")));
  now_ += 55 * kSecond;
  EXPECT_TRUE(
      std::holds_alternative<TokenPair>(service_->login("alice", "alice-password", "10.0.0.9")));
}

TEST_F(AuthServiceTest, ApiKeysAuthenticateUntilRevoked) {
  auto created = service_->createApiKey("exporter", Role::kViewer, "alice");
  ASSERT_TRUE(created.ok()) << created.error().message;
  const std::string key = created->key;
  EXPECT_EQ(key.rfind("tern_", 0), 0u);
  EXPECT_EQ(created->record.prefix, key.substr(0, 12));
  EXPECT_EQ(created->record.hash, sha256Hex(key));
  auto viaBearer = bearer(key);
  ASSERT_TRUE(ok(viaBearer));
  EXPECT_EQ(std::get<Principal>(viaBearer).kind, Principal::Kind::kApiKey);
  EXPECT_EQ(std::get<Principal>(viaBearer).role, Role::kViewer);
  EXPECT_EQ(std::get<Principal>(viaBearer).name, "exporter");
  EXPECT_TRUE(ok(service_->authenticate("", key)));
  // One character off is another key.
  std::string wrong = key;
  wrong.back() = wrong.back() == 'A' ? 'B' : 'A';
  EXPECT_EQ(failureOf(bearer(wrong)), Failure::kInvalid);

  auto keys = service_->listApiKeys();
  ASSERT_TRUE(keys.ok());
  ASSERT_EQ(keys->size(), 1u);
  EXPECT_EQ((*keys)[0].revokedUs, 0);
  auto revoked = service_->revokeApiKey(created->record.id);
  ASSERT_TRUE(revoked.ok());
  EXPECT_TRUE(*revoked);
  EXPECT_EQ(failureOf(bearer(key)), Failure::kInvalid);
  EXPECT_EQ(failureOf(service_->authenticate("", key)), Failure::kInvalid);
  EXPECT_FALSE(*service_->revokeApiKey(created->record.id));  // already revoked
  EXPECT_EQ(service_->listApiKeys()->at(0).revokedUs, kStart);
}

TEST_F(AuthServiceTest, RemovingAUserEndsItsSessionsButNotTheLastAdmin) {
  const TokenPair pair = login();
  auto removed = service_->removeUser("alice");
  ASSERT_TRUE(removed.ok());
  EXPECT_TRUE(*removed);
  EXPECT_EQ(failureOf(bearer(pair.accessToken)), Failure::kRevoked);
  EXPECT_FALSE(*service_->removeUser("alice"));

  ASSERT_TRUE(service_->addUser("root", Role::kAdmin, "root-password").ok());
  auto last = service_->removeUser("root");
  EXPECT_FALSE(last.ok());
  EXPECT_NE(last.error().message.find("last admin"), std::string::npos);
  ASSERT_TRUE(service_->addUser("root2", Role::kAdmin, "root-password").ok());
  EXPECT_TRUE(*service_->removeUser("root"));
}

}  // namespace
}  // namespace tern::auth
