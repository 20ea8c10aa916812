#include "auth/mqtt_authenticator.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <unordered_set>

#include "auth/crypto.h"
#include "auth/device_credentials.h"
#include "core/time.h"

namespace tern::auth {
namespace {

using broker::AclRule;
using broker::AuthDecision;
using Outcome = broker::AuthDecision::Outcome;

constexpr std::size_t kMaxTrackedAddresses = 10'000;
constexpr std::size_t kMaxPasswordBytes = 1024;

AuthDecision refuse(Outcome outcome, std::string reason) {
  AuthDecision d;
  d.outcome = outcome;
  d.reason = std::move(reason);
  return d;
}

AuthDecision storeFailed(const core::Error& e) {
  spdlog::error("mqtt auth: store failed: {}", e.message);
  return refuse(Outcome::kUnavailable, "the credential store failed");
}

// A substituted value must stay inside one topic level, or a client id such as "#" would widen
// the rule.
bool safeLevelText(const std::string& value) {
  return !value.empty() && value.find_first_of("/+#") == std::string::npos;
}

// How a refused client is named in logs: never a whole token (it is a secret).
std::string displayName(const broker::ConnectInfo& info) {
  if (info.username) {
    if (looksLikeDeviceToken(*info.username))
      return "token " + info.username->substr(0, 12) + "...";
    return *info.username;
  }
  return info.certificateCn.empty() ? "(anonymous)" : info.certificateCn;
}

// Gives a refusal the client's display name (allowed clients carry their identity already).
std::function<void(AuthDecision)> named(const broker::ConnectInfo& info,
                                        std::function<void(AuthDecision)> done) {
  return [name = displayName(info), done = std::move(done)](AuthDecision d) {
    if (d.identity.empty() && d.outcome != Outcome::kAllowed) d.identity = name;
    done(std::move(d));
  };
}

}  // namespace

MqttAuthenticator::MqttAuthenticator(storage::AuthStore& store, MqttAuthOptions options)
    : store_(store), options_(std::move(options)) {
  if (!options_.nowUs) options_.nowUs = [] { return core::monotonicMicros(); };
  dummyHash_ = hashPassword("tern-dummy-password").value_or("");
  if (auto generation = store_.credentialsGeneration()) generation_ = *generation;
  const unsigned threads = std::max(1u, options_.threads);
  for (unsigned i = 0; i < threads; ++i) workers_.emplace_back([this] { work(); });
  checker_ = std::thread([this] { checkLoop(); });
}

MqttAuthenticator::~MqttAuthenticator() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  checkWake_.notify_all();
  for (auto& worker : workers_) worker.join();
  checker_.join();
}

void MqttAuthenticator::authenticate(broker::ConnectInfo info,
                                     std::function<void(AuthDecision)> done) {
  done = named(info, std::move(done));
  const bool hasPassword = info.password && !info.password->empty();
  const bool token = info.username && looksLikeDeviceToken(*info.username) && !hasPassword;
  if (!hasPassword && !token) {
    // No credentials to check: decided here, without the store.
    if (options_.allowAnonymous) {
      AuthDecision d;
      d.outcome = Outcome::kAllowed;
      d.allowAll = true;
      done(std::move(d));
      return;
    }
    const bool byCertificate =
        !info.certificateCn.empty() && (!info.username || *info.username == info.certificateCn);
    if (byCertificate) {
      // The CA vouches for the name; the device must still be registered (decide()), so that
      // removing it shuts the certificate out too.
      enqueue(std::move(info), std::move(done));
      return;
    }
    if (info.username) {
      noteFailure(info.address);
      done(refuse(Outcome::kBadCredentials, "a username without a password"));
    } else {
      done(refuse(Outcome::kNotAuthorized, "anonymous clients are not allowed"));
    }
    return;
  }
  if (rateLimited(info.address)) {
    done(refuse(Outcome::kRateLimited, "too many failed logins from " + info.address));
    return;
  }
  enqueue(std::move(info), std::move(done));
}

void MqttAuthenticator::enqueue(broker::ConnectInfo info, std::function<void(AuthDecision)> done) {
  {
    std::lock_guard lock(mutex_);
    if (queue_.size() < options_.queueCapacity && !stopping_) {
      queue_.push_back(Job{std::move(info), std::move(done)});
      wake_.notify_one();
      return;
    }
  }
  done(refuse(Outcome::kUnavailable, "too many logins waiting to be checked"));
}

void MqttAuthenticator::work() {
  while (true) {
    Job job;
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    AuthDecision decision = decide(job.info);
    if (decision.outcome == Outcome::kBadCredentials) noteFailure(job.info.address);
    job.done(std::move(decision));
  }
}

AuthDecision MqttAuthenticator::decide(const broker::ConnectInfo& info) {
  const bool hasPassword = info.password && !info.password->empty();
  if (!hasPassword && !info.certificateCn.empty() &&
      (!info.username || *info.username == info.certificateCn)) {
    // A verified client certificate.
    const std::string& name = info.certificateCn;
    auto device = store_.findDevice(name);
    if (!device) return storeFailed(device.error());
    if (!device->has_value()) {
      return refuse(Outcome::kNotAuthorized,
                    "certificate CN '" + name + "' is not a registered device");
    }
    return allowDevice(info, name, "c:" + name);
  }
  if (!hasPassword) {
    // An access token as the username (authenticate() sent nothing else here without a
    // password or a certificate).
    auto token = store_.findDeviceToken(sha256Hex(*info.username));
    if (!token) return storeFailed(token.error());
    if (!token->has_value()) return refuse(Outcome::kBadCredentials, "unknown or revoked token");
    const storage::DeviceToken& t = **token;
    return allowDevice(info, t.deviceId, "t:" + std::to_string(t.id));
  }
  if (!info.username) return refuse(Outcome::kBadCredentials, "a password without a username");
  const std::string& name = *info.username;
  const std::string_view password = std::string_view(*info.password).substr(0, kMaxPasswordBytes);
  auto device = store_.findDevice(name);
  if (!device) return storeFailed(device.error());
  if (device->has_value() && !(*device)->passwordHash.empty()) {
    if (!verifyPassword(password, (*device)->passwordHash)) {
      return refuse(Outcome::kBadCredentials, "wrong password for device '" + name + "'");
    }
    return allowDevice(info, name, "d:" + std::to_string((*device)->id));
  }
  auto user = store_.findUser(name);
  if (!user) return storeFailed(user.error());
  if (!user->has_value()) {
    verifyPassword(password, dummyHash_);  // the same time as for a known name
    return refuse(Outcome::kBadCredentials, "no device or user named '" + name + "'");
  }
  if (!verifyPassword(password, (*user)->passwordHash)) {
    return refuse(Outcome::kBadCredentials, "wrong password for user '" + name + "'");
  }
  if ((*user)->role != "service") {
    return refuse(Outcome::kNotAuthorized, "user '" + name + "' has role " + (*user)->role +
                                               "; only service users use MQTT");
  }
  return allowService(info, name, "u:" + std::to_string((*user)->id));
}

AuthDecision MqttAuthenticator::allowDevice(const broker::ConnectInfo& info,
                                            const std::string& deviceId, std::string grant) {
  AuthDecision d;
  d.outcome = Outcome::kAllowed;
  d.identity = deviceId;
  std::vector<AclRule> builtIn;
  if (safeLevelText(deviceId)) {
    builtIn.push_back(AclRule{AclRule::kRead | AclRule::kWrite, "device/" + deviceId});
    builtIn.push_back(AclRule{AclRule::kRead | AclRule::kWrite, "device/" + deviceId + "/#"});
  }
  d.rules = rulesFor("device", deviceId, info.clientId, std::move(builtIn));
  if (!grant.empty()) {
    std::lock_guard lock(mutex_);
    ++grants_[grant];
  }
  d.grant = std::move(grant);
  spdlog::debug("mqtt auth: device '{}' (client '{}', {}) logged in", deviceId, info.clientId,
                info.address);
  return d;
}

AuthDecision MqttAuthenticator::allowService(const broker::ConnectInfo& info,
                                             const std::string& name, std::string grant) {
  AuthDecision d;
  d.outcome = Outcome::kAllowed;
  d.identity = name;
  d.rules =
      rulesFor("service", name, info.clientId, {AclRule{AclRule::kRead | AclRule::kWrite, "#"}});
  {
    std::lock_guard lock(mutex_);
    ++grants_[grant];
  }
  d.grant = std::move(grant);
  spdlog::debug("mqtt auth: service user '{}' (client '{}', {}) logged in", name, info.clientId,
                info.address);
  return d;
}

std::vector<AclRule> MqttAuthenticator::rulesFor(const std::string& role,
                                                 const std::string& identity,
                                                 const std::string& clientId,
                                                 std::vector<AclRule> rules) const {
  for (const core::MqttAclEntry& entry : options_.acl) {
    if (!entry.role.empty() && entry.role != role) continue;
    if (!entry.user.empty() && entry.user != identity) continue;
    std::string filter;
    bool usable = true;
    for (std::size_t i = 0; i < entry.topic.size(); ++i) {
      if (entry.topic[i] == '%' && i + 1 < entry.topic.size()) {
        const char what = entry.topic[i + 1];
        if (what == 'u' || what == 'c') {
          const std::string& value = what == 'u' ? identity : clientId;
          usable = usable && safeLevelText(value);
          filter += value;
          ++i;
          continue;
        }
      }
      filter.push_back(entry.topic[i]);
    }
    if (usable) rules.push_back(AclRule{entry.access, std::move(filter)});
  }
  return rules;
}

void MqttAuthenticator::release(const std::string& grant) {
  std::lock_guard lock(mutex_);
  auto it = grants_.find(grant);
  if (it != grants_.end() && --it->second <= 0) grants_.erase(it);
}

void MqttAuthenticator::onRevoked(std::function<void(std::vector<std::string>)> handler) {
  std::lock_guard lock(mutex_);
  revoked_ = std::move(handler);
}

std::size_t MqttAuthenticator::liveGrants() {
  std::lock_guard lock(mutex_);
  return grants_.size();
}

std::vector<std::string> MqttAuthenticator::checkRevocations() {
  auto generation = store_.credentialsGeneration();
  if (!generation) {
    spdlog::warn("mqtt auth: cannot read the credentials generation: {}",
                 generation.error().message);
    return {};
  }
  {
    std::lock_guard lock(mutex_);
    if (*generation == generation_) return {};
  }
  // Something was removed or revoked: load what is still valid (three queries, whatever the
  // number of clients), then compare every live grant. Grants given before the change are
  // registered by now, so none slips through.
  std::unordered_set<std::string> valid;
  auto devices = store_.listDevices();
  auto tokens = store_.listDeviceTokens();
  auto users = store_.listUsers();
  if (!devices || !tokens || !users) {
    spdlog::warn("mqtt auth: cannot re-check credentials: {}", !devices  ? devices.error().message
                                                               : !tokens ? tokens.error().message
                                                                         : users.error().message);
    return {};
  }
  for (const auto& d : *devices) {
    if (!d.passwordHash.empty()) valid.insert("d:" + std::to_string(d.id));
    valid.insert("c:" + d.deviceId);  // certificate logins: while the device is registered
  }
  for (const auto& t : *tokens) valid.insert("t:" + std::to_string(t.id));
  for (const auto& u : *users) {
    if (u.role == "service") valid.insert("u:" + std::to_string(u.id));
  }
  std::vector<std::string> revoked;
  std::function<void(std::vector<std::string>)> handler;
  {
    std::lock_guard lock(mutex_);
    generation_ = *generation;
    for (const auto& [grant, count] : grants_) {
      if (!valid.contains(grant)) revoked.push_back(grant);
    }
    handler = revoked_;
  }
  if (!revoked.empty()) {
    spdlog::info("mqtt auth: credentials of {} connected client group(s) were removed or revoked",
                 revoked.size());
    if (handler) handler(revoked);
  }
  return revoked;
}

void MqttAuthenticator::checkLoop() {
  while (true) {
    {
      std::unique_lock lock(mutex_);
      checkWake_.wait_for(lock, std::chrono::microseconds(options_.credentialCheckUs),
                          [&] { return stopping_; });
      if (stopping_) return;
    }
    checkRevocations();
  }
}

bool MqttAuthenticator::rateLimited(const std::string& address) {
  if (options_.loginMaxFailures == 0) return false;
  const std::int64_t now = options_.nowUs();
  std::lock_guard lock(mutex_);
  auto it = failures_.find(address);
  if (it == failures_.end()) return false;
  auto& times = it->second;
  std::erase_if(times, [&](std::int64_t at) { return at <= now - options_.loginWindowUs; });
  if (times.empty()) {
    failures_.erase(it);
    return false;
  }
  return times.size() >= options_.loginMaxFailures;
}

void MqttAuthenticator::noteFailure(const std::string& address) {
  if (options_.loginMaxFailures == 0) return;
  const std::int64_t now = options_.nowUs();
  std::lock_guard lock(mutex_);
  if (failures_.size() >= kMaxTrackedAddresses && !failures_.contains(address)) {
    std::erase_if(failures_, [&](const auto& entry) {
      return entry.second.empty() || entry.second.back() <= now - options_.loginWindowUs;
    });
    if (failures_.size() >= kMaxTrackedAddresses) {
      spdlog::warn("mqtt auth: failed logins from {}+ addresses within a window; forgetting them",
                   failures_.size());
      failures_.clear();
    }
  }
  auto& times = failures_[address];
  times.push_back(now);
  if (times.size() > options_.loginMaxFailures) {
    times.erase(times.begin(), times.begin() + static_cast<std::ptrdiff_t>(
                                                   times.size() - options_.loginMaxFailures));
  }
}

}  // namespace tern::auth
