#include "api/live_feed.h"

#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/json.hpp>

#include "api/encoding.h"
#include "api/json_out.h"
#include "core/time.h"

namespace tern::api {
namespace {

namespace json = boost::json;

std::string errorMessage(std::string_view detail) {
  return toJsonText(json::object{{"type", "error"}, {"detail", detail}});
}

// A member that must be an array of strings, each at most 1 KiB; nullopt when absent.
std::optional<std::vector<std::string>> stringList(const json::object& message,
                                                   std::string_view name, std::string& error) {
  const json::value* value = message.if_contains(name);
  if (value == nullptr) return std::nullopt;
  if (!value->is_array()) {
    error = "'" + std::string(name) + "': expected an array of strings";
    return std::nullopt;
  }
  std::vector<std::string> out;
  for (const json::value& item : value->as_array()) {
    if (!item.is_string() || item.as_string().empty() || item.as_string().size() > 1024) {
      error = "'" + std::string(name) + "': expected non-empty strings of at most 1024 bytes";
      return std::nullopt;
    }
    out.emplace_back(item.as_string());
  }
  return out;
}

json::array toArray(const std::set<std::string>& values) {
  json::array out;
  for (const auto& value : values) out.emplace_back(toValidUtf8(value));
  return out;
}

}  // namespace

void coalesceLatest(std::vector<LiveEventPtr>& events) {
  std::unordered_map<std::string_view, std::size_t> newest;
  for (std::size_t i = 0; i < events.size(); ++i) newest[events[i]->device] = i;
  std::vector<LiveEventPtr> kept;
  kept.reserve(newest.size());
  for (std::size_t i = 0; i < events.size(); ++i) {
    if (newest[events[i]->device] == i) kept.push_back(std::move(events[i]));
  }
  events = std::move(kept);
}

std::string LiveFilter::apply(std::string_view text) {
  boost::system::error_code ec;
  json::value parsed = json::parse(text, ec);
  if (ec || !parsed.is_object()) {
    return errorMessage(
        "expected a JSON object like {\"op\":\"subscribe\",\"devices\":[\"d1\"],\"keys\":[]}");
  }
  const json::object& message = parsed.as_object();
  for (const auto& member : message) {
    const std::string_view key = member.key();
    if (key != "op" && key != "devices" && key != "groups" && key != "keys" && key != "all") {
      return errorMessage("unknown member '" + quoteInput(key, 64) +
                          "'; expected op, devices, groups, keys, all");
    }
  }
  const json::value* op = message.if_contains("op");
  const bool subscribe = op != nullptr && op->is_string() && op->as_string() == "subscribe";
  const bool unsubscribe = op != nullptr && op->is_string() && op->as_string() == "unsubscribe";
  if (!subscribe && !unsubscribe) return errorMessage("'op': expected subscribe or unsubscribe");
  std::string error;
  auto devices = stringList(message, "devices", error);
  auto groups = error.empty() ? stringList(message, "groups", error) : std::nullopt;
  auto keys = error.empty() ? stringList(message, "keys", error) : std::nullopt;
  if (!error.empty()) return errorMessage(error);
  std::optional<bool> all;
  if (const json::value* value = message.if_contains("all")) {
    if (!value->is_bool()) return errorMessage("'all': expected true or false");
    all = value->as_bool();
  }
  std::vector<std::pair<std::string, std::string>> groupPairs;
  for (const auto& group : groups.value_or(std::vector<std::string>{})) {
    const auto colon = group.find(':');
    if (colon == std::string::npos || colon == 0) {
      return errorMessage("'groups': expected tag groups as key:value, got '" +
                          quoteInput(group, 64) + "'");
    }
    groupPairs.emplace_back(group.substr(0, colon), group.substr(colon + 1));
  }
  // Check the limits on a copy, so a refused message changes nothing.
  LiveFilter next = *this;
  if (subscribe) {
    if (all) next.all_ = *all;
    for (auto& device : devices.value_or(std::vector<std::string>{})) {
      next.devices_.insert(std::move(device));
    }
    for (auto& pair : groupPairs) next.groups_.insert(std::move(pair));
    for (auto& key : keys.value_or(std::vector<std::string>{})) next.keys_.insert(std::move(key));
  } else {
    if (all && *all) next.all_ = false;
    for (const auto& device : devices.value_or(std::vector<std::string>{})) {
      next.devices_.erase(device);
    }
    for (const auto& pair : groupPairs) next.groups_.erase(pair);
    for (const auto& key : keys.value_or(std::vector<std::string>{})) next.keys_.erase(key);
  }
  if (next.devices_.size() > kMaxDevices) {
    return errorMessage("at most " + std::to_string(kMaxDevices) + " devices per connection");
  }
  if (next.groups_.size() > kMaxGroups) {
    return errorMessage("at most " + std::to_string(kMaxGroups) + " groups per connection");
  }
  if (next.keys_.size() > kMaxKeys) {
    return errorMessage("at most " + std::to_string(kMaxKeys) + " keys per connection");
  }
  const bool groupsChanged = next.groups_ != groups_;
  *this = std::move(next);
  if (groupsChanged && groups_.empty()) groupDevices_.clear();
  return subscribedMessage();
}

void LiveFilter::resolveGroups(const std::vector<storage::DeviceSummary>& devices) {
  groupDevices_.clear();
  if (groups_.empty()) return;
  for (const auto& device : devices) {
    for (const auto& [key, value] : groups_) {
      const auto tag = device.tags.find(key);
      if (tag != device.tags.end() && tag->second == value) {
        groupDevices_.insert(device.deviceId);
        break;
      }
    }
  }
}

bool LiveFilter::matches(const LiveEvent& event) const {
  return all_ || devices_.contains(event.device) || groupDevices_.contains(event.device);
}

std::optional<json::object> LiveFilter::render(const LiveEvent& event) const {
  json::object fields;
  for (const auto& field : event.fields) {
    if (!keys_.empty() && !keys_.contains(field.key)) continue;
    fields[toValidUtf8(field.key)] = fieldValueToJson(field.value);
  }
  if (!keys_.empty() && fields.empty()) return std::nullopt;
  json::object out;
  out["device"] = toValidUtf8(event.device);
  out["ts"] = core::formatRfc3339Millis(event.serverTimeUs);
  if (event.deviceTimeUs) out["device_ts"] = core::formatRfc3339Millis(*event.deviceTimeUs);
  out["topic"] = toValidUtf8(event.topic);
  out["node"] = toValidUtf8(event.node);
  out["fields"] = std::move(fields);
  return out;
}

std::string LiveFilter::recordsMessage(std::span<const LiveEventPtr> events, bool coalesced) const {
  json::array records;
  for (const auto& event : events) {
    if (auto rendered = render(*event)) records.emplace_back(std::move(*rendered));
  }
  if (records.empty()) return {};
  return toJsonText(
      json::object{{"type", "records"}, {"coalesced", coalesced}, {"records", std::move(records)}});
}

std::string LiveFilter::subscribedMessage() const {
  json::array groups;
  for (const auto& [key, value] : groups_) groups.emplace_back(toValidUtf8(key + ":" + value));
  return toJsonText(json::object{{"type", "subscribed"},
                                 {"all", all_},
                                 {"devices", toArray(devices_)},
                                 {"groups", std::move(groups)},
                                 {"keys", toArray(keys_)}});
}

LiveFeed::LiveFeed(LiveFeedOptions options) : options_(options) {}

void LiveFeed::publish(std::span<const storage::Record> records) {
  if (sessions_.load(std::memory_order_acquire) == 0 || records.empty()) return;
  // Copies made before the lock, so the writer holds it only to move pointers.
  std::vector<LiveEventPtr> events;
  events.reserve(records.size());
  for (const auto& record : records) {
    auto event = std::make_shared<LiveEvent>();
    event->device = record.deviceId;
    event->serverTimeUs = record.serverTimeUs;
    event->deviceTimeUs = record.deviceTimeUs;
    event->topic = record.topic;
    event->node = record.nodeId;
    event->fields = record.fields;
    events.push_back(std::move(event));
  }
  std::lock_guard lock(mutex_);
  published_ += events.size();
  for (auto& event : events) {
    if (overflow_.empty() && inbox_.size() < options_.inboxEvents) {
      inbox_.push_back(std::move(event));
      continue;
    }
    // The fan-out is behind: from here on keep the latest per device until it catches up.
    if (overflow_.empty()) {
      ++inboxOverflows_;
      for (auto& queued : inbox_) overflow_[queued->device] = std::move(queued);
      inbox_.clear();
    }
    std::string device = event->device;
    overflow_[std::move(device)] = std::move(event);
  }
  if (!flushPending_ && strand_) {
    flushPending_ = true;
    boost::asio::post(*strand_, [this] { flush(); });
  }
}

void LiveFeed::flush() {
  auto batch = std::make_shared<std::vector<LiveEventPtr>>();
  std::vector<std::shared_ptr<LiveSink>> sinks;
  {
    std::lock_guard lock(mutex_);
    flushPending_ = false;
    batch->swap(inbox_);
    for (auto& [device, event] : overflow_) batch->push_back(std::move(event));
    overflow_.clear();
    std::erase_if(sinks_, [](const std::weak_ptr<LiveSink>& sink) { return sink.expired(); });
    sinks.reserve(sinks_.size());
    for (const auto& weak : sinks_) {
      if (auto sink = weak.lock()) sinks.push_back(std::move(sink));
    }
  }
  if (batch->empty()) return;
  const LiveBatch shared = std::move(batch);
  for (const auto& sink : sinks) sink->deliver(shared);
}

void LiveFeed::bind(boost::asio::any_io_executor executor) {
  std::lock_guard lock(mutex_);
  strand_ = boost::asio::make_strand(std::move(executor));
  flushPending_ = false;
}

void LiveFeed::unbind() {
  std::lock_guard lock(mutex_);
  strand_.reset();
  flushPending_ = false;
  inbox_.clear();
  overflow_.clear();
}

bool LiveFeed::attach(std::weak_ptr<LiveSink> sink) {
  std::lock_guard lock(mutex_);
  if (sessions_.load(std::memory_order_relaxed) >= options_.maxSessions) return false;
  sessions_.fetch_add(1, std::memory_order_acq_rel);
  sinks_.push_back(std::move(sink));
  return true;
}

void LiveFeed::detach() {
  sessions_.fetch_sub(1, std::memory_order_acq_rel);
}

LiveFeedStats LiveFeed::stats() const {
  std::lock_guard lock(mutex_);
  LiveFeedStats out;
  out.sessions = sessions_.load(std::memory_order_relaxed);
  out.published = published_;
  out.inboxOverflows = inboxOverflows_;
  return out;
}

}  // namespace tern::api
