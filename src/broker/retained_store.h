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

class StateStore;

class RetainedStore {
 public:
  // From now on every change (but of $SYS topics, which the broker rewrites) is also written
  // there.
  void setStateStore(StateStore* store) { store_ = store; }
  // Stores the message, or clears the topic when the payload is empty. Returns the state store
  // sequence number of the write (0: none).
  std::uint64_t set(const MessagePtr& message);
  std::vector<MessagePtr> matching(std::string_view filter) const;
  std::size_t size() const;

 private:
  StateStore* store_ = nullptr;
  mutable std::mutex mutex_;
  std::map<std::string, MessagePtr, std::less<>> messages_;
};

}  // namespace tern::broker
