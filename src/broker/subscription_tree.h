#pragma once
// Topic-filter tree: one node per filter level, '+' and '#' as special children. Publish-time
// matching walks only the branches a topic can reach. Read-mostly: many publishers match
// concurrently under a shared lock; SUBSCRIBE/UNSUBSCRIBE take it exclusively.
#include <cstdint>
#include <map>
#include <memory>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace tern::broker {

class Session;

struct Match {
  std::shared_ptr<Session> session;
  std::uint8_t qos = 0;
};

class SubscriptionTree {
 public:
  // Adds or replaces (same session, same filter) a subscription.
  void subscribe(const std::shared_ptr<Session>& session, std::string_view filter, std::uint8_t qos);
  // Returns true when the subscription existed.
  bool unsubscribe(const Session* session, std::string_view filter);
  // Appends one entry per session whose subscriptions match, with the highest granted QoS among
  // the overlapping ones (the standard allows one copy per session at the maximum QoS).
  void match(std::string_view topic, std::vector<Match>& out) const;
  std::size_t size() const;

 private:
  struct Node {
    std::unordered_map<std::string, std::unique_ptr<Node>> children;
    std::unique_ptr<Node> plus;
    std::unique_ptr<Node> hash;
    std::map<const Session*, Match> subscribers;
  };
  static void collect(const Node& node, std::map<const Session*, Match>::const_iterator begin,
                      std::map<const Session*, Match>::const_iterator end, std::vector<Match>& out);
  void matchLevel(const Node& node, const std::vector<std::string_view>& levels, std::size_t index,
                  std::vector<Match>& out) const;
  static bool prune(Node& node);

  mutable std::shared_mutex mutex_;
  Node root_;
  std::size_t count_ = 0;
};

}  // namespace tern::broker
