#pragma once
// The broker's Authenticator backed by the AuthStore: devices (id + password, or an access token
// as the username), service users (role service, their user password), devices by verified TLS
// client certificate (CN), and anonymous clients when allowed. argon2id checks and store
// lookups run on a few worker threads fed by a bounded queue, never on an event loop. A checker
// thread polls the store's credentials generation and reports grants of removed devices,
// revoked tokens and removed users, so the broker can close those connections.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "broker/authenticator.h"
#include "core/config.h"
#include "storage/auth_store.h"

namespace tern::auth {

struct MqttAuthOptions {
  bool allowAnonymous = false;
  std::uint32_t loginMaxFailures = 10;  // per client address and window; 0 = no limit
  std::int64_t loginWindowUs = 60'000'000;
  std::int64_t credentialCheckUs = 5'000'000;  // how often the generation is polled
  std::vector<core::MqttAclEntry> acl;         // on top of the built-in rules
  unsigned threads = 2;                        // argon2id workers
  std::size_t queueCapacity = 1024;     // CONNECTs waiting for a worker; beyond: server unavailable
  std::function<std::int64_t()> nowUs;  // monotonic µs; tests may replace it
};

class MqttAuthenticator final : public broker::Authenticator {
 public:
  // Starts the worker and checker threads.
  MqttAuthenticator(storage::AuthStore& store, MqttAuthOptions options);
  ~MqttAuthenticator() override;
  MqttAuthenticator(const MqttAuthenticator&) = delete;
  MqttAuthenticator& operator=(const MqttAuthenticator&) = delete;

  void authenticate(broker::ConnectInfo info,
                    std::function<void(broker::AuthDecision)> done) override;
  void release(const std::string& grant) override;
  void onRevoked(std::function<void(std::vector<std::string>)> handler) override;

  // One revocation check now (the checker thread runs it every credentialCheckUs). Returns the
  // grants it reported.
  std::vector<std::string> checkRevocations();
  std::size_t liveGrants();

 private:
  struct Job {
    broker::ConnectInfo info;
    std::function<void(broker::AuthDecision)> done;
  };
  // Hands the login to a worker thread (refused as unavailable when the queue is full).
  void enqueue(broker::ConnectInfo info, std::function<void(broker::AuthDecision)> done);
  void work();
  void checkLoop();
  broker::AuthDecision decide(const broker::ConnectInfo& info);
  broker::AuthDecision allowDevice(const broker::ConnectInfo& info, const std::string& deviceId,
                                   std::string grant);
  broker::AuthDecision allowService(const broker::ConnectInfo& info, const std::string& name,
                                    std::string grant);
  // Built-in rules plus the config's entries that apply, with %u and %c substituted.
  std::vector<broker::AclRule> rulesFor(const std::string& role, const std::string& identity,
                                        const std::string& clientId,
                                        std::vector<broker::AclRule> rules) const;
  bool rateLimited(const std::string& address);
  void noteFailure(const std::string& address);

  storage::AuthStore& store_;
  MqttAuthOptions options_;
  std::string dummyHash_;  // verified against for unknown names (same cost)

  std::mutex mutex_;                   // guards everything below
  std::condition_variable wake_;       // workers: a job or stop
  std::condition_variable checkWake_;  // the checker: stop
  std::deque<Job> queue_;
  bool stopping_ = false;
  std::unordered_map<std::string, std::vector<std::int64_t>> failures_;  // address → times
  std::unordered_map<std::string, int> grants_;                          // grant → connections
  std::function<void(std::vector<std::string>)> revoked_;
  std::int64_t generation_ = -1;  // the store's credentials generation at the last check

  std::vector<std::thread> workers_;
  std::thread checker_;
};

}  // namespace tern::auth
