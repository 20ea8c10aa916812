#pragma once
// Framing, parsing and encoding of MQTT 3.1.1 and 5.0 packets. Pure functions over byte strings,
// so the same code runs in the broker, the simulator, the tests and the fuzzer.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "codec/mqtt/packets.h"

namespace tern::codec::mqtt {

enum class DecodeStatus : std::uint8_t {
  kOk,
  kNeedMore,   // not a whole packet yet: read more bytes and call again
  kMalformed,  // violates the standard: close the connection
  kTooLarge,   // remaining length above the configured maximum: close the connection
};

const char* decodeStatusName(DecodeStatus status);

struct Frame {
  DecodeStatus status = DecodeStatus::kNeedMore;
  std::uint8_t header = 0;      // the first byte: type in the high nibble, flags in the low one
  std::string_view body;        // the variable header and payload (views into the input)
  std::size_t size = 0;         // bytes the whole packet occupies at the front of the input
  const char* error = nullptr;  // static text when status is kMalformed or kTooLarge
  std::uint8_t reasonCode = reason::kMalformedPacket;  // for an MQTT 5 DISCONNECT (0x81 / 0x95)
};

// Splits one packet off the front of `data`. `maxPacketSize` bounds the whole packet (fixed
// header included) so a peer cannot make us buffer without limit. A remaining length encoded in
// more than four bytes is kMalformed, and so is packet type 0 (type 15 is AUTH in MQTT 5; the
// parser decides).
Frame splitFrame(std::string_view data, std::uint32_t maxPacketSize);

struct ParseResult {
  DecodeStatus status = DecodeStatus::kOk;  // kOk or kMalformed
  const char* error = nullptr;              // static text when kMalformed
  // MQTT 5: the reason code for the DISCONNECT that closes the connection — 0x81 malformed
  // packet, or 0x82 protocol error (a repeated property, a value out of range, ...).
  std::uint8_t reasonCode = reason::kMalformedPacket;
};

// Parses a framed packet into `out`, laid out as `version` says (a connection knows it from its
// CONNECT; a CONNECT itself is parsed by its own protocol level). Enforces every "MUST" that
// can be checked on one packet: reserved flag bits, UTF-8 well-formedness (no U+0000, no
// surrogates), topic names without wildcards, valid topic filters, non-zero packet identifiers
// where required, at least one topic in SUBSCRIBE/UNSUBSCRIBE, QoS 3 rejected, CONNECT flag
// rules, no trailing bytes; in MQTT 5 also the properties (each identifier allowed in its packet,
// of its type, not repeated unless the standard allows it, values in range), reason codes valid
// for their packet, and subscription options (reserved bits, retain handling 3, no local on a
// shared subscription). A CONNECT whose protocol level is not 3, 4 or 5 is returned as kOk with
// only protocolName and protocolLevel filled, so the broker can refuse it as the standard says.
// DISCONNECT parses as `Disconnect` and UNSUBACK as `Unsuback` in both versions.
ParseResult parsePacket(std::uint8_t header, std::string_view body, Packet& out,
                        ProtocolVersion version = ProtocolVersion::kV311);

// Per-delivery PUBLISH properties that replace the message's own (when given to encodePublish5):
// the remaining message expiry, the topic alias of this connection, the matching subscriptions'
// identifiers.
struct PublishOverrides {
  std::optional<std::uint32_t> messageExpiryInterval{};
  std::optional<std::uint16_t> topicAlias{};
  const std::vector<std::uint32_t>* subscriptionIdentifiers = nullptr;
};

// Encoders append one whole packet to `out`. `encode` lays a packet out for `version` (fields
// the version does not have are left out); a Connect is laid out by its protocolLevel.
void encode(const Packet& packet, std::string& out,
            ProtocolVersion version = ProtocolVersion::kV311);
void encodeConnect(const Connect& connect, std::string& out);
void encodeConnack(bool sessionPresent, ConnackCode code, std::string& out);
void encodePublish(std::string_view topic, std::string_view payload, std::uint8_t qos, bool retain,
                   bool dup, std::uint16_t packetId, std::string& out);
void encodeAck(PacketType type, std::uint16_t packetId,
               std::string& out);  // PUBACK..PUBCOMP, UNSUBACK
void encodeSubscribe(const Subscribe& subscribe, std::string& out);
void encodeSuback(std::uint16_t packetId, const std::vector<std::uint8_t>& codes, std::string& out);
void encodeUnsubscribe(const Unsubscribe& unsubscribe, std::string& out);
void encodeEmpty(PacketType type, std::string& out);  // PINGREQ, PINGRESP, DISCONNECT

// MQTT 5 layouts. Properties may be null (none).
void encodeConnack5(const Connack& connack, std::string& out);
void encodePublish5(std::string_view topic, std::string_view payload, std::uint8_t qos, bool retain,
                    bool dup, std::uint16_t packetId, const Properties* properties,
                    const PublishOverrides* overrides, std::string& out);
// PUBACK..PUBCOMP in their shortest form: no reason code for success without properties.
void encodeAck5(PacketType type, std::uint16_t packetId, std::uint8_t reasonCode,
                const Properties* properties, std::string& out);
void encodeSubscribe5(const Subscribe& subscribe, std::string& out);
void encodeSuback5(const Suback& suback, std::string& out);
void encodeUnsubscribe5(const Unsubscribe& unsubscribe, std::string& out);
void encodeUnsuback5(const Unsuback& unsuback, std::string& out);
void encodeDisconnect5(std::uint8_t reasonCode, const Properties* properties, std::string& out);
void encodeAuth(const Auth& auth, std::string& out);

}  // namespace tern::codec::mqtt
