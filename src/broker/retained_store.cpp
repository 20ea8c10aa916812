#include "broker/retained_store.h"

#include "broker/state_store.h"
#include "codec/mqtt/topic.h"
#include "core/time.h"

namespace tern::broker {

std::uint64_t RetainedStore::set(const MessagePtr& message) {
  std::lock_guard lock(mutex_);
  if (message->payload.empty()) {
    if (messages_.erase(message->topic) == 0) return 0;  // nothing to clear
  } else {
    messages_.insert_or_assign(message->topic, message);
  }
  // Under the mutex, so the store sees the changes of one topic in the order memory did.
  if (store_ == nullptr || message->topic.starts_with("$SYS")) return 0;
  return store_->setRetained(*message);
}

std::vector<MessagePtr> RetainedStore::matching(std::string_view filter) const {
  std::vector<MessagePtr> out;
  const std::int64_t now = core::monotonicMicros();
  std::lock_guard lock(mutex_);
  for (const auto& [topic, message] : messages_) {
    // An expired retained message (MQTT 5 message expiry) is no longer handed out.
    if (codec::mqtt::topicMatches(filter, topic) && !message->expired(now)) {
      out.push_back(message);
    }
  }
  return out;
}

std::size_t RetainedStore::size() const {
  std::lock_guard lock(mutex_);
  return messages_.size();
}

}  // namespace tern::broker
