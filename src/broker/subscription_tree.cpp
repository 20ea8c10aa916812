#include "broker/subscription_tree.h"

#include <algorithm>
#include <mutex>

#include "broker/session.h"

namespace tern::broker {

namespace {

std::vector<std::string_view> splitLevels(std::string_view text) {
  std::vector<std::string_view> levels;
  std::size_t start = 0;
  for (;;) {
    std::size_t slash = text.find('/', start);
    if (slash == std::string_view::npos) {
      levels.push_back(text.substr(start));
      return levels;
    }
    levels.push_back(text.substr(start, slash - start));
    start = slash + 1;
  }
}

}  // namespace

void SubscriptionTree::subscribe(const std::shared_ptr<Session>& session, std::string_view filter,
                                 std::uint8_t qos) {
  std::unique_lock lock(mutex_);
  Node* node = &root_;
  for (std::string_view level : splitLevels(filter)) {
    std::unique_ptr<Node>* child = nullptr;
    if (level == "+") {
      child = &node->plus;
    } else if (level == "#") {
      child = &node->hash;
    } else {
      child = &node->children[std::string(level)];
    }
    if (!*child) *child = std::make_unique<Node>();
    node = child->get();
  }
  auto [it, inserted] = node->subscribers.insert_or_assign(session.get(), Match{session, qos});
  if (inserted) ++count_;
}

bool SubscriptionTree::unsubscribe(const Session* session, std::string_view filter) {
  std::unique_lock lock(mutex_);
  std::vector<Node*> path{&root_};
  for (std::string_view level : splitLevels(filter)) {
    Node* node = path.back();
    Node* next = nullptr;
    if (level == "+") {
      next = node->plus.get();
    } else if (level == "#") {
      next = node->hash.get();
    } else {
      auto it = node->children.find(std::string(level));
      if (it != node->children.end()) next = it->second.get();
    }
    if (next == nullptr) return false;
    path.push_back(next);
  }
  if (path.back()->subscribers.erase(session) == 0) return false;
  --count_;
  prune(root_);
  return true;
}

// Drops empty branches so the tree does not grow with every filter ever used.
bool SubscriptionTree::prune(Node& node) {
  for (auto it = node.children.begin(); it != node.children.end();) {
    if (prune(*it->second)) {
      it = node.children.erase(it);
    } else {
      ++it;
    }
  }
  if (node.plus && prune(*node.plus)) node.plus.reset();
  if (node.hash && prune(*node.hash)) node.hash.reset();
  return node.subscribers.empty() && node.children.empty() && !node.plus && !node.hash;
}

void SubscriptionTree::matchLevel(const Node& node, const std::vector<std::string_view>& levels,
                                  std::size_t index, std::vector<Match>& out) const {
  // "a/#" also matches "a": the '#' child of a node matches at every depth from here on.
  if (node.hash && !(index == 0 && !levels.empty() && levels[0].starts_with('$'))) {
    for (const auto& [session, match] : node.hash->subscribers) out.push_back(match);
  }
  if (index == levels.size()) {
    for (const auto& [session, match] : node.subscribers) out.push_back(match);
    return;
  }
  std::string_view level = levels[index];
  auto it = node.children.find(std::string(level));
  if (it != node.children.end()) matchLevel(*it->second, levels, index + 1, out);
  // Wildcards at the first level never match topics beginning with '$'.
  if (node.plus && !(index == 0 && level.starts_with('$'))) {
    matchLevel(*node.plus, levels, index + 1, out);
  }
}

void SubscriptionTree::match(std::string_view topic, std::vector<Match>& out) const {
  std::size_t first = out.size();
  {
    std::shared_lock lock(mutex_);
    matchLevel(root_, splitLevels(topic), 0, out);
  }
  if (out.size() - first < 2) return;
  // One copy per session, at the highest QoS among its matching subscriptions.
  std::sort(out.begin() + static_cast<std::ptrdiff_t>(first), out.end(),
            [](const Match& a, const Match& b) {
              return a.session != b.session ? a.session < b.session : a.qos > b.qos;
            });
  auto last = std::unique(out.begin() + static_cast<std::ptrdiff_t>(first), out.end(),
                          [](const Match& a, const Match& b) { return a.session == b.session; });
  out.erase(last, out.end());
}

std::size_t SubscriptionTree::size() const {
  std::shared_lock lock(mutex_);
  return count_;
}

}  // namespace tern::broker
