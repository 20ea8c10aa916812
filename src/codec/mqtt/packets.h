#pragma once
// MQTT 3.1.1 and 5.0 control packets as plain values. Pure code: no I/O, no allocation beyond
// the strings and vectors the packets own. See codec.h for framing, parsing and encoding.
// MQTT 5 fields (properties, reason codes, subscription options) are simply left at their
// defaults by the 3.1.1 parser and ignored by the 3.1.1 encoders.
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
  kAuth = 15,  // MQTT 5 only
};

// The protocol a connection speaks, from the CONNECT's protocol level. Level 3 (MQTT 3.1) is
// laid out as 3.1.1.
enum class ProtocolVersion : std::uint8_t {
  kV311 = 4,
  kV5 = 5,
};

const char* packetTypeName(PacketType type);

// CONNACK return codes: 0..5 are MQTT 3.1.1 (§3.2.2.3), 0x80 and above MQTT 5 (§3.2.2.2).
enum class ConnackCode : std::uint8_t {
  kAccepted = 0,
  kUnacceptableProtocolVersion = 1,
  kIdentifierRejected = 2,
  kServerUnavailable = 3,
  kBadUsernameOrPassword = 4,
  kNotAuthorized = 5,
  // MQTT 5
  kUnspecifiedError = 0x80,
  kMalformedPacket = 0x81,
  kProtocolError = 0x82,
  kImplementationSpecificError = 0x83,
  kUnsupportedProtocolVersion = 0x84,
  kClientIdentifierNotValid = 0x85,
  kBadUserNameOrPassword5 = 0x86,
  kNotAuthorized5 = 0x87,
  kServerUnavailable5 = 0x88,
  kServerBusy = 0x89,
  kBanned = 0x8A,
  kBadAuthenticationMethod = 0x8C,
  kTopicNameInvalid = 0x90,
  kPacketTooLarge = 0x95,
  kQuotaExceeded = 0x97,
  kPayloadFormatInvalid = 0x99,
  kRetainNotSupported = 0x9A,
  kQosNotSupported = 0x9B,
  kUseAnotherServer = 0x9C,
  kServerMoved = 0x9D,
  kConnectionRateExceeded = 0x9F,
};

inline constexpr std::uint8_t kSubackFailure = 0x80;

// MQTT 5 reason codes (§2.4) used outside CONNACK. One byte; which ones a packet may carry is
// checked by the parser.
namespace reason {
inline constexpr std::uint8_t kSuccess = 0x00;  // also: normal disconnection, granted QoS 0
inline constexpr std::uint8_t kGrantedQos1 = 0x01;
inline constexpr std::uint8_t kGrantedQos2 = 0x02;
inline constexpr std::uint8_t kDisconnectWithWill = 0x04;
inline constexpr std::uint8_t kNoMatchingSubscribers = 0x10;
inline constexpr std::uint8_t kNoSubscriptionExisted = 0x11;
inline constexpr std::uint8_t kContinueAuthentication = 0x18;
inline constexpr std::uint8_t kReauthenticate = 0x19;
inline constexpr std::uint8_t kUnspecifiedError = 0x80;
inline constexpr std::uint8_t kMalformedPacket = 0x81;
inline constexpr std::uint8_t kProtocolError = 0x82;
inline constexpr std::uint8_t kImplementationSpecificError = 0x83;
inline constexpr std::uint8_t kNotAuthorized = 0x87;
inline constexpr std::uint8_t kServerBusy = 0x89;
inline constexpr std::uint8_t kServerShuttingDown = 0x8B;
inline constexpr std::uint8_t kBadAuthenticationMethod = 0x8C;
inline constexpr std::uint8_t kKeepAliveTimeout = 0x8D;
inline constexpr std::uint8_t kSessionTakenOver = 0x8E;
inline constexpr std::uint8_t kTopicFilterInvalid = 0x8F;
inline constexpr std::uint8_t kTopicNameInvalid = 0x90;
inline constexpr std::uint8_t kPacketIdentifierInUse = 0x91;
inline constexpr std::uint8_t kPacketIdentifierNotFound = 0x92;
inline constexpr std::uint8_t kReceiveMaximumExceeded = 0x93;
inline constexpr std::uint8_t kTopicAliasInvalid = 0x94;
inline constexpr std::uint8_t kPacketTooLarge = 0x95;
inline constexpr std::uint8_t kMessageRateTooHigh = 0x96;
inline constexpr std::uint8_t kQuotaExceeded = 0x97;
inline constexpr std::uint8_t kAdministrativeAction = 0x98;
inline constexpr std::uint8_t kPayloadFormatInvalid = 0x99;
inline constexpr std::uint8_t kRetainNotSupported = 0x9A;
inline constexpr std::uint8_t kQosNotSupported = 0x9B;
inline constexpr std::uint8_t kUseAnotherServer = 0x9C;
inline constexpr std::uint8_t kServerMoved = 0x9D;
inline constexpr std::uint8_t kSharedSubscriptionsNotSupported = 0x9E;
inline constexpr std::uint8_t kConnectionRateExceeded = 0x9F;
inline constexpr std::uint8_t kMaximumConnectTime = 0xA0;
inline constexpr std::uint8_t kSubscriptionIdentifiersNotSupported = 0xA1;
inline constexpr std::uint8_t kWildcardSubscriptionsNotSupported = 0xA2;
}  // namespace reason

// MQTT 5 property identifiers (§2.2.2.2).
enum class PropertyId : std::uint8_t {
  kPayloadFormatIndicator = 0x01,
  kMessageExpiryInterval = 0x02,
  kContentType = 0x03,
  kResponseTopic = 0x08,
  kCorrelationData = 0x09,
  kSubscriptionIdentifier = 0x0B,
  kSessionExpiryInterval = 0x11,
  kAssignedClientIdentifier = 0x12,
  kServerKeepAlive = 0x13,
  kAuthenticationMethod = 0x15,
  kAuthenticationData = 0x16,
  kRequestProblemInformation = 0x17,
  kWillDelayInterval = 0x18,
  kRequestResponseInformation = 0x19,
  kResponseInformation = 0x1A,
  kServerReference = 0x1C,
  kReasonString = 0x1F,
  kReceiveMaximum = 0x21,
  kTopicAliasMaximum = 0x22,
  kTopicAlias = 0x23,
  kMaximumQos = 0x24,
  kRetainAvailable = 0x25,
  kUserProperty = 0x26,
  kMaximumPacketSize = 0x27,
  kWildcardSubscriptionAvailable = 0x28,
  kSubscriptionIdentifierAvailable = 0x29,
  kSharedSubscriptionAvailable = 0x2A,
};

struct UserProperty {
  std::string name{};
  std::string value{};
  bool operator==(const UserProperty&) const = default;
};

// Every MQTT 5 property; a packet carries only those its type allows (the parser rejects the
// others). Encoded in identifier order; user properties keep their order.
struct Properties {
  std::optional<std::uint8_t> payloadFormatIndicator{};  // 0 bytes, 1 UTF-8
  std::optional<std::uint32_t> messageExpiryInterval{};  // seconds
  std::optional<std::string> contentType{};
  std::optional<std::string> responseTopic{};
  std::optional<std::string> correlationData{};          // binary
  std::vector<std::uint32_t> subscriptionIdentifiers{};  // 1..268,435,455; several in PUBLISH
  std::optional<std::uint32_t> sessionExpiryInterval{};  // seconds, 0xFFFFFFFF = never
  std::optional<std::string> assignedClientIdentifier{};
  std::optional<std::uint16_t> serverKeepAlive{};
  std::optional<std::string> authenticationMethod{};
  std::optional<std::string> authenticationData{};  // binary
  std::optional<std::uint8_t> requestProblemInformation{};
  std::optional<std::uint32_t> willDelayInterval{};
  std::optional<std::uint8_t> requestResponseInformation{};
  std::optional<std::string> responseInformation{};
  std::optional<std::string> serverReference{};
  std::optional<std::string> reasonString{};
  std::optional<std::uint16_t> receiveMaximum{};
  std::optional<std::uint16_t> topicAliasMaximum{};
  std::optional<std::uint16_t> topicAlias{};
  std::optional<std::uint8_t> maximumQos{};
  std::optional<std::uint8_t> retainAvailable{};
  std::vector<UserProperty> userProperties{};
  std::optional<std::uint32_t> maximumPacketSize{};
  std::optional<std::uint8_t> wildcardSubscriptionAvailable{};
  std::optional<std::uint8_t> subscriptionIdentifierAvailable{};
  std::optional<std::uint8_t> sharedSubscriptionAvailable{};
  bool operator==(const Properties&) const = default;
  bool empty() const { return *this == Properties{}; }
};

struct Will {
  std::string topic{};
  std::string payload{};
  std::uint8_t qos = 0;
  bool retain = false;
  Properties properties{};  // MQTT 5 will properties
  bool operator==(const Will&) const = default;
};

struct Connect {
  std::string protocolName{};      // "MQTT" (3.1.1, 5.0) or "MQIsdp" (3.1)
  std::uint8_t protocolLevel = 4;  // 3, 4 or 5
  bool cleanSession = true;        // "clean start" in MQTT 5
  std::uint16_t keepAlive = 0;     // seconds
  std::string clientId{};
  std::optional<Will> will{};
  std::optional<std::string> username{};
  std::optional<std::string> password{};  // binary data
  Properties properties{};
  bool operator==(const Connect&) const = default;
};

struct Connack {
  bool sessionPresent = false;
  ConnackCode returnCode = ConnackCode::kAccepted;  // the reason code in MQTT 5
  Properties properties{};
  bool operator==(const Connack&) const = default;
};

struct Publish {
  std::string topic{};
  std::string payload{};
  std::uint8_t qos = 0;
  bool retain = false;
  bool dup = false;
  std::uint16_t packetId = 0;  // only meaningful for qos > 0
  Properties properties{};     // MQTT 5; the topic may be empty when a topic alias is given
  bool operator==(const Publish&) const = default;
};

// PUBACK, PUBREC, PUBREL, PUBCOMP: a type and a packet identifier (and in MQTT 5 a reason
// code and properties).
struct Ack {
  PacketType type = PacketType::kPuback;
  std::uint16_t packetId = 0;
  std::uint8_t reasonCode = reason::kSuccess;  // MQTT 5
  Properties properties{};                     // MQTT 5
  bool operator==(const Ack&) const = default;
};

struct Subscription {
  std::string filter{};
  std::uint8_t qos = 0;
  // MQTT 5 subscription options (§3.8.3.1).
  bool noLocal = false;
  bool retainAsPublished = false;
  std::uint8_t retainHandling = 0;  // 0 send retained, 1 only if new, 2 never
  bool operator==(const Subscription&) const = default;
};

struct Subscribe {
  std::uint16_t packetId = 0;
  std::vector<Subscription> subscriptions{};
  Properties properties{};  // MQTT 5: subscription identifier, user properties
  bool operator==(const Subscribe&) const = default;
};

struct Suback {
  std::uint16_t packetId = 0;
  // 3.1.1: granted QoS 0..2 or kSubackFailure; MQTT 5: the reason codes.
  std::vector<std::uint8_t> returnCodes{};
  Properties properties{};
  bool operator==(const Suback&) const = default;
};

struct Unsubscribe {
  std::uint16_t packetId = 0;
  std::vector<std::string> filters{};
  Properties properties{};
  bool operator==(const Unsubscribe&) const = default;
};

struct Unsuback {
  std::uint16_t packetId = 0;
  std::vector<std::uint8_t> reasonCodes{};  // MQTT 5, one per filter; empty in 3.1.1
  Properties properties{};
  bool operator==(const Unsuback&) const = default;
};

// PINGREQ, PINGRESP, and DISCONNECT as sent by 3.1.1 code: a type and nothing else.
struct Empty {
  PacketType type = PacketType::kPingreq;
  bool operator==(const Empty&) const = default;
};

// DISCONNECT as parsed (both versions): MQTT 5 adds a reason code and properties.
struct Disconnect {
  std::uint8_t reasonCode = reason::kSuccess;
  Properties properties{};
  bool operator==(const Disconnect&) const = default;
};

// AUTH (MQTT 5 only).
struct Auth {
  std::uint8_t reasonCode = reason::kSuccess;
  Properties properties{};
  bool operator==(const Auth&) const = default;
};

// Memberwise equality (defaulted above) lets tests and the fuzzer compare round trips.
using Packet = std::variant<Connect, Connack, Publish, Ack, Subscribe, Suback, Unsubscribe,
                            Unsuback, Empty, Disconnect, Auth>;

PacketType packetType(const Packet& packet);

}  // namespace tern::codec::mqtt
