#pragma once
// Retained messages, one per topic. A subscribe scans them; the set stays small in the reference
// deployments, so a flat map is enough for now.
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "broker/message.h"

namespace tern::broker {

class RetainedStore {
 public:
  // Stores the message, or clears the topic when the payload is empty.
  void set(const MessagePtr& message);
  std::vector<MessagePtr> matching(std::string_view filter) const;
  std::size_t size() const;

 private:
  mutable std::mutex mutex_;
  std::map<std::string, MessagePtr, std::less<>> messages_;
};

}  // namespace tern::broker
