#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "codec/mqtt/packets.h"

namespace tern::broker {

// An application message as routed inside the broker; shared, immutable, so one publish fanned
// out to many subscribers is one allocation.
struct Message {
  std::string topic;
  std::string payload;
  std::uint8_t qos = 0;
  bool retain = false;
  // MQTT 5 properties passed through to MQTT 5 subscribers (payload format indicator, content
  // type, response topic, correlation data, user properties); null when there are none.
  // 3.1.1 subscribers get the message without them.
  std::shared_ptr<const codec::mqtt::Properties> properties;
  // MQTT 5 message expiry: the monotonic time (µs) after which it is no longer delivered;
  // 0 = never expires.
  std::int64_t expiresAtUs = 0;

  bool expired(std::int64_t nowUs) const { return expiresAtUs != 0 && nowUs >= expiresAtUs; }
  // Seconds left, rounded up, for the Message Expiry Interval forwarded to subscribers.
  std::optional<std::uint32_t> remainingExpiry(std::int64_t nowUs) const {
    if (expiresAtUs == 0) return std::nullopt;
    const std::int64_t left = expiresAtUs - nowUs;
    if (left <= 0) return 0;
    return static_cast<std::uint32_t>((left + 999'999) / 1'000'000);
  }
};
using MessagePtr = std::shared_ptr<const Message>;

// What a client asked for with one subscription (MQTT 5 options; 3.1.1 uses qos only).
struct SubscriptionOptions {
  std::uint8_t qos = 0;
  bool noLocal = false;
  bool retainAsPublished = false;
  std::uint8_t retainHandling = 0;
  std::uint32_t subscriptionId = 0;  // 0 = none
};

}  // namespace tern::broker
