#pragma once
#include <cstdint>
#include <memory>
#include <string>

namespace tern::broker {

// An application message as routed inside the broker; shared, immutable, so one publish fanned
// out to many subscribers is one allocation.
struct Message {
  std::string topic;
  std::string payload;
  std::uint8_t qos = 0;
  bool retain = false;
};
using MessagePtr = std::shared_ptr<const Message>;

}  // namespace tern::broker
