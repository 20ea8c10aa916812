// MqttAuthenticator on a real SQLite auth store: who gets in, with which topic rules, the
// failure limit (hand-driven clock), and revocation reports.
#include "auth/mqtt_authenticator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <future>
#include <random>

#include "auth/auth_service.h"
#include "auth/device_credentials.h"
#include "storage/sqlite/sqlite_auth_store.h"

namespace tern::auth {
namespace {

using broker::AclRule;
using broker::AuthDecision;
using broker::ConnectInfo;
using Outcome = AuthDecision::Outcome;

constexpr std::int64_t kSecond = 1'000'000;

class MqttAuthenticatorTest : public ::testing::Test {
 protected:
  MqttAuthenticatorTest() {
    std::random_device random;
    dir_ = std::filesystem::temp_directory_path() /
           ("tern-mqtt-auth-test-" + std::to_string(random()) + std::to_string(random()));
    std::filesystem::create_directories(dir_);
    store_ = storage::sqlite::openSqliteAuthStore((dir_ / "tern.db").string());
    devices_ = std::make_unique<DeviceCredentials>(*store_);
    EXPECT_TRUE(devices_->addDevice("dev-1", "dev-password").ok());
    AuthService users(*store_, AuthOptions{});
    EXPECT_TRUE(users.addUser("gateway", Role::kService, "gateway-password").ok());
    EXPECT_TRUE(users.addUser("ops", Role::kOperator, "ops-password").ok());
  }
  ~MqttAuthenticatorTest() override {
    authenticator_.reset();
    devices_.reset();
    store_.reset();
    std::filesystem::remove_all(dir_);
  }

  void make(MqttAuthOptions options = {}) {
    options.nowUs = [this] { return now_.load(); };
    options.credentialCheckUs = 3600 * kSecond;  // checks are driven by the test
    authenticator_ = std::make_unique<MqttAuthenticator>(*store_, std::move(options));
  }

  AuthDecision run(ConnectInfo info) {
    if (info.address.empty()) info.address = "127.0.0.1";
    if (info.clientId.empty()) info.clientId = "client-1";
    auto promise = std::make_shared<std::promise<AuthDecision>>();
    auto future = promise->get_future();
    authenticator_->authenticate(std::move(info),
                                 [promise](AuthDecision d) { promise->set_value(std::move(d)); });
    EXPECT_EQ(future.wait_for(std::chrono::seconds(30)), std::future_status::ready);
    return future.get();
  }
  AuthDecision login(const std::string& user, const std::string& password,
                     const std::string& address = "127.0.0.1") {
    return run(ConnectInfo{"client-1", user, password, "", address, "tcp"});
  }

  static std::vector<std::string> filters(const AuthDecision& d, std::uint8_t access) {
    std::vector<std::string> out;
    for (const AclRule& rule : d.rules) {
      if ((rule.access & access) == access) out.push_back(rule.filter);
    }
    return out;
  }

  std::filesystem::path dir_;
  std::unique_ptr<storage::AuthStore> store_;
  std::unique_ptr<DeviceCredentials> devices_;
  std::unique_ptr<MqttAuthenticator> authenticator_;
  std::atomic<std::int64_t> now_{1000 * kSecond};
};

TEST_F(MqttAuthenticatorTest, AnonymousClientsOnlyWhenAllowed) {
  make();
  EXPECT_EQ(run(ConnectInfo{}).outcome, Outcome::kNotAuthorized);
  EXPECT_EQ(run(ConnectInfo{"c", "dev-1", std::nullopt, "", "", "tcp"}).outcome,
            Outcome::kBadCredentials)
      << "a username without a password";
  MqttAuthOptions options;
  options.allowAnonymous = true;
  make(options);
  const AuthDecision d = run(ConnectInfo{});
  EXPECT_EQ(d.outcome, Outcome::kAllowed);
  EXPECT_TRUE(d.allowAll);
  EXPECT_TRUE(d.grant.empty());
  // Credentials are still checked when given.
  EXPECT_EQ(login("dev-1", "wrong-password").outcome, Outcome::kBadCredentials);
}

TEST_F(MqttAuthenticatorTest, DevicesPasswordsTokensAndCertificates) {
  make();
  AuthDecision d = login("dev-1", "dev-password");
  ASSERT_EQ(d.outcome, Outcome::kAllowed) << d.reason;
  EXPECT_FALSE(d.allowAll);
  EXPECT_EQ(d.identity, "dev-1");
  EXPECT_EQ(filters(d, AclRule::kRead | AclRule::kWrite),
            (std::vector<std::string>{"device/dev-1", "device/dev-1/#"}));
  EXPECT_EQ(d.grant.rfind("d:", 0), 0u) << d.grant;
  EXPECT_EQ(login("dev-1", "wrong-password").outcome, Outcome::kBadCredentials);
  EXPECT_EQ(login("dev-2", "dev-password").outcome, Outcome::kBadCredentials);

  auto token = devices_->createToken("dev-t");
  ASSERT_TRUE(token.ok());
  d = run(ConnectInfo{"c", token->token, std::nullopt, "", "", "tcp"});
  ASSERT_EQ(d.outcome, Outcome::kAllowed) << d.reason;
  EXPECT_EQ(d.identity, "dev-t");
  EXPECT_EQ(d.grant, "t:" + std::to_string(token->record.id));
  EXPECT_EQ(run(ConnectInfo{"c", token->token, "", "", "", "tcp"}).outcome, Outcome::kAllowed)
      << "an empty password is no password";
  EXPECT_EQ(run(ConnectInfo{"c", token->token + "x", std::nullopt, "", "", "tcp"}).outcome,
            Outcome::kBadCredentials);
  EXPECT_EQ(login("dev-t", "anything-at-all").outcome, Outcome::kBadCredentials)
      << "a token-only device has no password";

  // A verified certificate's CN is the device id, of a registered device only.
  d = run(ConnectInfo{"c", std::nullopt, std::nullopt, "cert-dev", "", "tls"});
  EXPECT_EQ(d.outcome, Outcome::kNotAuthorized);
  EXPECT_NE(d.reason.find("not a registered device"), std::string::npos) << d.reason;
  ASSERT_TRUE(devices_->addDevice("cert-dev", "cert-dev-password").ok());
  d = run(ConnectInfo{"c", std::nullopt, std::nullopt, "cert-dev", "", "tls"});
  ASSERT_EQ(d.outcome, Outcome::kAllowed) << d.reason;
  EXPECT_EQ(d.identity, "cert-dev");
  EXPECT_EQ(filters(d, AclRule::kWrite),
            (std::vector<std::string>{"device/cert-dev", "device/cert-dev/#"}));
  EXPECT_EQ(d.grant, "c:cert-dev");
  EXPECT_EQ(run(ConnectInfo{"c", "cert-dev", std::nullopt, "cert-dev", "", "tls"}).outcome,
            Outcome::kAllowed);
  EXPECT_EQ(run(ConnectInfo{"c", "other", std::nullopt, "cert-dev", "", "tls"}).outcome,
            Outcome::kBadCredentials);
}

TEST_F(MqttAuthenticatorTest, ServiceUsersOnly) {
  make();
  AuthDecision d = login("gateway", "gateway-password");
  ASSERT_EQ(d.outcome, Outcome::kAllowed) << d.reason;
  EXPECT_EQ(filters(d, AclRule::kRead | AclRule::kWrite), (std::vector<std::string>{"#"}));
  EXPECT_EQ(login("gateway", "wrong-password").outcome, Outcome::kBadCredentials);
  EXPECT_EQ(login("ops", "ops-password").outcome, Outcome::kNotAuthorized);
  EXPECT_EQ(login("ops", "wrong-password").outcome, Outcome::kBadCredentials)
      << "the role is not told to someone without the password";
}

TEST_F(MqttAuthenticatorTest, ConfiguredRulesWithSubstitutions) {
  MqttAuthOptions options;
  options.acl = {
      core::MqttAclEntry{"", "device", 1, "broadcast/#"},
      core::MqttAclEntry{"", "device", 2, "clients/%c/%u"},
      core::MqttAclEntry{"dev-1", "", 3, "special/#"},
      core::MqttAclEntry{"", "service", 1, "never/for/devices"},
  };
  make(options);
  AuthDecision d = run(ConnectInfo{"cl-9", "dev-1", "dev-password", "", "", "tcp"});
  ASSERT_EQ(d.outcome, Outcome::kAllowed);
  EXPECT_EQ(filters(d, AclRule::kRead), (std::vector<std::string>{"device/dev-1", "device/dev-1/#",
                                                                  "broadcast/#", "special/#"}));
  EXPECT_EQ(filters(d, AclRule::kWrite),
            (std::vector<std::string>{"device/dev-1", "device/dev-1/#", "clients/cl-9/dev-1",
                                      "special/#"}));
  // A client id that is not one plain topic level would widen the rule: the rule is dropped.
  d = run(ConnectInfo{"#", "dev-1", "dev-password", "", "", "tcp"});
  ASSERT_EQ(d.outcome, Outcome::kAllowed);
  EXPECT_EQ(filters(d, AclRule::kWrite),
            (std::vector<std::string>{"device/dev-1", "device/dev-1/#", "special/#"}));
  d = login("gateway", "gateway-password");
  EXPECT_EQ(filters(d, AclRule::kRead), (std::vector<std::string>{"#", "never/for/devices"}));
}

TEST_F(MqttAuthenticatorTest, RepeatedFailuresFromOneAddressAreLimited) {
  MqttAuthOptions options;
  options.loginMaxFailures = 3;
  options.loginWindowUs = 60 * kSecond;
  make(options);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(login("dev-1", "wrong-password", "10.0.0.1").outcome, Outcome::kBadCredentials);
  }
  EXPECT_EQ(login("dev-1", "dev-password", "10.0.0.1").outcome, Outcome::kRateLimited);
  EXPECT_EQ(login("dev-1", "dev-password", "10.0.0.2").outcome, Outcome::kAllowed)
      << "another address is not affected";
  now_ += 61 * kSecond;
  EXPECT_EQ(login("dev-1", "dev-password", "10.0.0.1").outcome, Outcome::kAllowed)
      << "the failures have left the window";
}

TEST_F(MqttAuthenticatorTest, RevocationsAreReportedForLiveGrants) {
  make();
  std::vector<std::string> reported;
  authenticator_->onRevoked([&](std::vector<std::string> grants) { reported = grants; });
  auto token = devices_->createToken("dev-t");
  ASSERT_TRUE(token.ok());
  const AuthDecision byPassword = login("dev-1", "dev-password");
  const AuthDecision byToken = run(ConnectInfo{"c", token->token, std::nullopt, "", "", "tcp"});
  const AuthDecision service = login("gateway", "gateway-password");
  const AuthDecision byCertificate =
      run(ConnectInfo{"c", std::nullopt, std::nullopt, "dev-1", "", "tls"});
  ASSERT_EQ(byCertificate.grant, "c:dev-1");
  ASSERT_EQ(authenticator_->liveGrants(), 4u);
  EXPECT_TRUE(authenticator_->checkRevocations().empty()) << "nothing changed";

  ASSERT_TRUE(*devices_->revokeTokens("dev-t") == 1);
  EXPECT_EQ(authenticator_->checkRevocations(), std::vector<std::string>{byToken.grant});
  EXPECT_EQ(reported, std::vector<std::string>{byToken.grant});
  authenticator_->release(byToken.grant);

  // Removing the device shuts out its password and its certificate alike.
  ASSERT_TRUE(*devices_->removeDevice("dev-1"));
  auto revoked = authenticator_->checkRevocations();
  std::sort(revoked.begin(), revoked.end());
  EXPECT_EQ(revoked, (std::vector<std::string>{byCertificate.grant, byPassword.grant}));
  authenticator_->release(byPassword.grant);
  authenticator_->release(byCertificate.grant);
  EXPECT_EQ(run(ConnectInfo{"c", std::nullopt, std::nullopt, "dev-1", "", "tls"}).outcome,
            Outcome::kNotAuthorized);

  ASSERT_TRUE(*store_->removeUser("gateway"));
  EXPECT_EQ(authenticator_->checkRevocations(), std::vector<std::string>{service.grant});
  authenticator_->release(service.grant);
  EXPECT_EQ(authenticator_->liveGrants(), 0u);
}

}  // namespace
}  // namespace tern::auth
