#include <gtest/gtest.h>

#include <algorithm>

#include "broker/session.h"
#include "broker/subscription_tree.h"

namespace tern::broker {
namespace {

std::shared_ptr<Session> makeSession(const std::string& id) {
  return std::make_shared<Session>(id, true, SessionLimits{});
}

std::vector<std::string> matchIds(const SubscriptionTree& tree, const std::string& topic) {
  std::vector<Match> matches;
  tree.match(topic, matches);
  std::vector<std::string> ids;
  for (const auto& m : matches) {
    // Appended piecewise: GCC 12 at -O3 raises a false -Wrestrict on a + ":" + b.
    std::string id = m.session->clientId();
    id += ':';
    id += std::to_string(m.qos);
    ids.push_back(id);
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

TEST(SubscriptionTree, ExactPlusAndHash) {
  SubscriptionTree tree;
  auto a = makeSession("a");
  auto b = makeSession("b");
  tree.subscribe(a, "sport/tennis/player1", 0);
  tree.subscribe(b, "sport/+/player1", 1);
  EXPECT_EQ(matchIds(tree, "sport/tennis/player1"), (std::vector<std::string>{"a:0", "b:1"}));
  EXPECT_EQ(matchIds(tree, "sport/golf/player1"), (std::vector<std::string>{"b:1"}));
  EXPECT_TRUE(matchIds(tree, "sport/tennis").empty());
  tree.subscribe(a, "sport/#", 2);
  EXPECT_EQ(matchIds(tree, "sport"), (std::vector<std::string>{"a:2"}));
  EXPECT_EQ(tree.size(), 3u);
}

TEST(SubscriptionTree, OverlappingGivesOneMatchAtMaxQos) {
  SubscriptionTree tree;
  auto a = makeSession("a");
  tree.subscribe(a, "#", 0);
  tree.subscribe(a, "x/+", 2);
  tree.subscribe(a, "x/y", 1);
  EXPECT_EQ(matchIds(tree, "x/y"), (std::vector<std::string>{"a:2"}));
}

TEST(SubscriptionTree, WildcardsAtRootSkipDollarTopics) {
  SubscriptionTree tree;
  auto a = makeSession("a");
  auto b = makeSession("b");
  tree.subscribe(a, "#", 0);
  tree.subscribe(a, "+/broker/uptime", 0);
  tree.subscribe(b, "$SYS/#", 0);
  EXPECT_EQ(matchIds(tree, "$SYS/broker/uptime"), (std::vector<std::string>{"b:0"}));
  EXPECT_EQ(matchIds(tree, "x/broker/uptime"), (std::vector<std::string>{"a:0"}));
}

TEST(SubscriptionTree, EmptyLevelsAreLevels) {
  SubscriptionTree tree;
  auto a = makeSession("a");
  tree.subscribe(a, "+/+", 0);
  tree.subscribe(a, "/finance", 1);
  EXPECT_EQ(matchIds(tree, "/finance"), (std::vector<std::string>{"a:1"}));
  EXPECT_EQ(matchIds(tree, "a/"), (std::vector<std::string>{"a:0"}));
}

TEST(SubscriptionTree, ResubscribeReplacesAndUnsubscribePrunes) {
  SubscriptionTree tree;
  auto a = makeSession("a");
  tree.subscribe(a, "a/b/c", 0);
  tree.subscribe(a, "a/b/c", 2);
  EXPECT_EQ(tree.size(), 1u);
  EXPECT_EQ(matchIds(tree, "a/b/c"), (std::vector<std::string>{"a:2"}));
  EXPECT_FALSE(tree.unsubscribe(a.get(), "a/b"));
  EXPECT_TRUE(tree.unsubscribe(a.get(), "a/b/c"));
  EXPECT_FALSE(tree.unsubscribe(a.get(), "a/b/c"));
  EXPECT_EQ(tree.size(), 0u);
  EXPECT_TRUE(matchIds(tree, "a/b/c").empty());
}

TEST(Session, QueueIsBoundedAndDropsQos0First) {
  SessionLimits limits;
  limits.maxInflight = 1;
  limits.maxQueued = 2;
  Session session("s", false, limits);
  auto message = [](std::uint8_t qos) {
    return std::make_shared<const Message>(Message{std::string("topic"), std::string("payload"), qos, false});
  };
  // Offline: QoS 0 is not kept, QoS 1 is queued up to the bound.
  session.deliver(message(0), 2, false);
  EXPECT_EQ(session.queued(), 0u);
  session.deliver(message(1), 2, false);
  session.deliver(message(1), 2, false);
  session.deliver(message(1), 2, false);
  EXPECT_EQ(session.queued(), 2u);
  EXPECT_EQ(session.counters().dropped, 2u);
}

}  // namespace
}  // namespace tern::broker
