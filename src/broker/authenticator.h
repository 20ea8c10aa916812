#pragma once
// How the broker asks who a client is and what it may do, without knowing where credentials
// live: app/ wires an implementation (auth::MqttAuthenticator, backed by the AuthStore). The
// broker calls it once per CONNECT, keeps the answer's topic rules in the connection (no lookup
// per message), and closes connections whose grant the authenticator later reports revoked.
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace tern::broker {

// What the CONNECT (and the transport) said about the client.
struct ConnectInfo {
  std::string clientId;
  std::optional<std::string> username;
  std::optional<std::string> password;  // MQTT 5 allows one without a username
  std::string certificateCn;            // CN of a verified TLS client certificate, or empty
  std::string address;                  // the client's IP address (no port), for rate limits
  std::string transport;                // "tcp", "tls", "ws", "wss"
};

// One allow rule: the client may publish (write) and/or subscribe (read) within `filter`, an
// MQTT topic filter with every substitution already made.
struct AclRule {
  static constexpr std::uint8_t kRead = 1;
  static constexpr std::uint8_t kWrite = 2;
  std::uint8_t access = 0;  // kRead | kWrite
  std::string filter;
};

struct AuthDecision {
  enum class Outcome {
    kAllowed,
    kBadCredentials,  // CONNACK 0x04 / MQTT 5 0x86
    kNotAuthorized,   // CONNACK 0x05 / MQTT 5 0x87
    kRateLimited,     // CONNACK 0x03 / MQTT 5 0x9F
    kUnavailable,     // CONNACK 0x03 / MQTT 5 0x88 (the credential store failed, or overload)
  };
  Outcome outcome = Outcome::kNotAuthorized;
  // Device id or user name; for a refused client, how logs name it (never a whole token).
  // Empty for anonymous clients.
  std::string identity;
  std::string reason;  // why it was refused, for the log line
  // Allowed clients: everything (anonymous clients), or only what `rules` allow.
  bool allowAll = false;
  std::vector<AclRule> rules;
  // Non-empty when the credential can be revoked later: the key the authenticator reports in
  // its revocation callback, and the one the broker hands back with release().
  std::string grant;
};

class Authenticator {
 public:
  virtual ~Authenticator() = default;
  // Called on the connection's event loop; must not block it (password hashes are checked on
  // the implementation's own threads). Calls `done` exactly once, on any thread.
  virtual void authenticate(ConnectInfo info, std::function<void(AuthDecision)> done) = 0;
  // The connection that held `grant` (a non-empty AuthDecision::grant) closed.
  virtual void release(const std::string& grant) = 0;
  // The broker's hook, set once before start: called on any thread with grants that are no
  // longer valid (device removed, token revoked, user removed); their connections are closed.
  virtual void onRevoked(std::function<void(std::vector<std::string>)> handler) = 0;
};

}  // namespace tern::broker
