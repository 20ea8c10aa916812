#pragma once
// MQTT 3.1.1 control packets as plain values. Pure code: no I/O, no allocation beyond the
// strings and vectors the packets own. See codec.h for framing, parsing and encoding.
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace tern::codec::mqtt {

enum class PacketType : std::uint8_t {
  kConnect = 1,
  kConnack = 2,
  kPublish = 3,
  kPuback = 4,
  kPubrec = 5,
  kPubrel = 6,
  kPubcomp = 7,
  kSubscribe = 8,
  kSuback = 9,
  kUnsubscribe = 10,
  kUnsuback = 11,
  kPingreq = 12,
  kPingresp = 13,
  kDisconnect = 14,
};

const char* packetTypeName(PacketType type);

// CONNACK return codes (MQTT 3.1.1 §3.2.2.3).
enum class ConnackCode : std::uint8_t {
  kAccepted = 0,
  kUnacceptableProtocolVersion = 1,
  kIdentifierRejected = 2,
  kServerUnavailable = 3,
  kBadUsernameOrPassword = 4,
  kNotAuthorized = 5,
};

inline constexpr std::uint8_t kSubackFailure = 0x80;

struct Will {
  std::string topic{};
  std::string payload{};
  std::uint8_t qos = 0;
  bool retain = false;
  bool operator==(const Will&) const = default;
};

struct Connect {
  std::string protocolName{};  // "MQTT" (3.1.1) or "MQIsdp" (3.1)
  std::uint8_t protocolLevel = 4;
  bool cleanSession = true;
  std::uint16_t keepAlive = 0;  // seconds
  std::string clientId{};
  std::optional<Will> will{};
  std::optional<std::string> username{};
  std::optional<std::string> password{};  // binary data
  bool operator==(const Connect&) const = default;
};

struct Connack {
  bool sessionPresent = false;
  ConnackCode returnCode = ConnackCode::kAccepted;
  bool operator==(const Connack&) const = default;
};

struct Publish {
  std::string topic{};
  std::string payload{};
  std::uint8_t qos = 0;
  bool retain = false;
  bool dup = false;
  std::uint16_t packetId = 0;  // only meaningful for qos > 0
  bool operator==(const Publish&) const = default;
};

// PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK: a type and a packet identifier.
struct Ack {
  PacketType type = PacketType::kPuback;
  std::uint16_t packetId = 0;
  bool operator==(const Ack&) const = default;
};

struct Subscription {
  std::string filter{};
  std::uint8_t qos = 0;
  bool operator==(const Subscription&) const = default;
};

struct Subscribe {
  std::uint16_t packetId = 0;
  std::vector<Subscription> subscriptions{};
  bool operator==(const Subscribe&) const = default;
};

struct Suback {
  std::uint16_t packetId = 0;
  std::vector<std::uint8_t> returnCodes{};  // granted QoS 0..2 or kSubackFailure
  bool operator==(const Suback&) const = default;
};

struct Unsubscribe {
  std::uint16_t packetId = 0;
  std::vector<std::string> filters{};
  bool operator==(const Unsubscribe&) const = default;
};

// PINGREQ, PINGRESP, DISCONNECT: a type and nothing else.
struct Empty {
  PacketType type = PacketType::kPingreq;
  bool operator==(const Empty&) const = default;
};

// Memberwise equality (defaulted above) lets tests and the fuzzer compare round trips.
using Packet = std::variant<Connect, Connack, Publish, Ack, Subscribe, Suback, Unsubscribe, Empty>;

PacketType packetType(const Packet& packet);

}  // namespace tern::codec::mqtt
