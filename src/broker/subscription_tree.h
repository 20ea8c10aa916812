#pragma once
// Topic-filter tree: one node per filter level, '+' and '#' as special children. Publish-time
// matching walks only the branches a topic can reach. Read-mostly: many publishers match
// concurrently under a shared lock; SUBSCRIBE/UNSUBSCRIBE take it exclusively.
// Shared subscriptions (`$share/<group>/<filter>`) hang off the node of <filter>, one member
// list per group; each matching message goes to one member, round robin.
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "broker/message.h"

namespace tern::broker {

class Session;

struct Match {
  std::shared_ptr<Session> session;
  SubscriptionOptions options;
};

// One delivery decided by match(): a session, the QoS granted, whether the RETAIN flag is kept
// (retain as published), and the identifiers of every subscription that matched.
struct Delivery {
  std::shared_ptr<Session> session;
  std::uint8_t qos = 0;
  bool retainAsPublished = false;
  std::vector<std::uint32_t> subscriptionIds;
};

// `$share/<group>/<filter>` split into its parts; nullopt when `filter` is not a shared
// subscription. `valid` is false for a malformed one (empty or wildcard group, no filter).
struct SharedFilter {
  std::string_view group;
  std::string_view filter;
  bool valid = false;
};
std::optional<SharedFilter> parseSharedFilter(std::string_view filter);

class SubscriptionTree {
 public:
  // Adds or replaces (same session, same filter) a subscription. `filter` may be a valid shared
  // subscription.
  void subscribe(const std::shared_ptr<Session>& session, std::string_view filter,
                 const SubscriptionOptions& options);
  // Returns true when the subscription existed.
  bool unsubscribe(const Session* session, std::string_view filter);
  // Appends the deliveries for a message on `topic` published by `publisher` (null: the
  // broker itself): one per session across its ordinary subscriptions, at the highest granted
  // QoS (the standard allows one copy per session), skipping no-local ones of the publisher;
  // plus one per matching shared subscription group.
  void match(std::string_view topic, const Session* publisher, std::vector<Delivery>& out) const;
  std::size_t size() const;

 private:
  struct Group {
    std::vector<Match> members;
    mutable std::atomic<std::size_t> next{0};
  };
  struct Node {
    std::unordered_map<std::string, std::unique_ptr<Node>> children;
    std::unique_ptr<Node> plus;
    std::unique_ptr<Node> hash;
    std::map<const Session*, Match> subscribers;
    std::map<std::string, std::unique_ptr<Group>, std::less<>> shared;
  };
  void matchLevel(const Node& node, const std::vector<std::string_view>& levels, std::size_t index,
                  std::vector<const Match*>& plain, std::vector<const Match*>& shared) const;
  static void pickShared(const Node& node, std::vector<const Match*>& shared);
  static bool prune(Node& node);

  mutable std::shared_mutex mutex_;
  Node root_;
  std::size_t count_ = 0;
};

}  // namespace tern::broker
