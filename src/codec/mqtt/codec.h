#pragma once
// Framing, parsing and encoding of MQTT 3.1.1 packets. Pure functions over byte strings, so the
// same code runs in the broker, the simulator, the tests and the fuzzer.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "codec/mqtt/packets.h"

namespace tern::codec::mqtt {

enum class DecodeStatus : std::uint8_t {
  kOk,
  kNeedMore,  // not a whole packet yet: read more bytes and call again
  kMalformed,  // violates the standard: close the connection
  kTooLarge,  // remaining length above the configured maximum: close the connection
};

const char* decodeStatusName(DecodeStatus status);

struct Frame {
  DecodeStatus status = DecodeStatus::kNeedMore;
  std::uint8_t header = 0;  // the first byte: type in the high nibble, flags in the low one
  std::string_view body;  // the variable header and payload (views into the input)
  std::size_t size = 0;  // bytes the whole packet occupies at the front of the input
  const char* error = nullptr;  // static text when status is kMalformed or kTooLarge
};

// Splits one packet off the front of `data`. `maxPacketSize` bounds the whole packet (fixed
// header included) so a peer cannot make us buffer without limit. A remaining length encoded in
// more than four bytes is kMalformed.
Frame splitFrame(std::string_view data, std::uint32_t maxPacketSize);

struct ParseResult {
  DecodeStatus status = DecodeStatus::kOk;  // kOk or kMalformed
  const char* error = nullptr;  // static text when kMalformed
};

// Parses a framed packet into `out`. Enforces every "MUST" of MQTT 3.1.1 that can be checked on
// one packet: reserved flag bits, UTF-8 well-formedness (no U+0000, no surrogates), topic names
// without wildcards, valid topic filters, non-zero packet identifiers where required, at least one
// topic in SUBSCRIBE/UNSUBSCRIBE, QoS 3 rejected, CONNECT flag rules, no trailing bytes.
// A CONNECT whose protocol level is neither 3 nor 4 is returned as kOk with only protocolName and
// protocolLevel filled, so the broker can answer CONNACK 0x01 as the standard requires.
ParseResult parsePacket(std::uint8_t header, std::string_view body, Packet& out);

// Encoders append one whole packet to `out`.
void encode(const Packet& packet, std::string& out);
void encodeConnect(const Connect& connect, std::string& out);
void encodeConnack(bool sessionPresent, ConnackCode code, std::string& out);
void encodePublish(std::string_view topic, std::string_view payload, std::uint8_t qos, bool retain,
                   bool dup, std::uint16_t packetId, std::string& out);
void encodeAck(PacketType type, std::uint16_t packetId, std::string& out);  // PUBACK..PUBCOMP, UNSUBACK
void encodeSubscribe(const Subscribe& subscribe, std::string& out);
void encodeSuback(std::uint16_t packetId, const std::vector<std::uint8_t>& codes, std::string& out);
void encodeUnsubscribe(const Unsubscribe& unsubscribe, std::string& out);
void encodeEmpty(PacketType type, std::string& out);  // PINGREQ, PINGRESP, DISCONNECT

}  // namespace tern::codec::mqtt
