// DeadlineWheel on a real io_context: items fire once their deadline has passed (never before),
// in later rounds when they lie beyond the wheel's span, not at all once cancelled, and may
// schedule themselves again from onDeadline.
#include "net/deadline_wheel.h"

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <thread>
#include <vector>

namespace tern::net {
namespace {

struct Item {
  DeadlineHook hook;
  std::vector<std::int64_t> fired;  // the sweep's "now" of each firing
  std::int64_t again = 0;           // > 0: schedule once more, this far ahead
  std::function<void(Item&, std::int64_t)> reschedule;

  DeadlineHook& deadlineHook() { return hook; }
  void onDeadline(std::int64_t nowUs) {
    fired.push_back(nowUs);
    if (again > 0 && reschedule) {
      const std::int64_t delay = again;
      again = 0;
      reschedule(*this, nowUs + delay);
    }
  }
};

TEST(DeadlineWheel, FiresDueItemsOnceAcrossRoundsAndSkipsCancelled) {
  boost::asio::io_context loop;
  // Four one-second slots: a deadline 6 s ahead lies beyond one round.
  DeadlineWheel<Item, 4> wheel(loop);
  Item soon, later, beyond, cancelled, twice, moved;
  twice.again = 1'200'000;
  twice.reschedule = [&](Item& item, std::int64_t at) { wheel.schedule(item, at); };
  // Start early in a second, so that `soon` is due within the second the wheel starts in (a
  // wheel that took that second as already swept would hold it back a whole round).
  while (core::monotonicMicros() % 1'000'000 > 200'000) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const std::int64_t start = core::monotonicMicros();
  wheel.start();
  wheel.schedule(soon, start + 300'000);
  wheel.schedule(later, start + 1'700'000);
  wheel.schedule(beyond, start + 6'200'000);
  wheel.schedule(cancelled, start + 500'000);
  wheel.schedule(twice, start + 800'000);
  wheel.schedule(moved, start + 400'000);
  wheel.schedule(moved, start + 2'500'000);  // moved later: fires once, at the new deadline
  EXPECT_EQ(wheel.size(), 6u);
  wheel.cancel(cancelled);
  wheel.cancel(cancelled);  // twice is harmless
  EXPECT_FALSE(cancelled.hook.scheduled());
  EXPECT_EQ(wheel.size(), 5u);

  // Bounded: stop once everything fired or after 20 s.
  const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < limit && wheel.size() > 0) {
    loop.run_for(std::chrono::milliseconds(100));
  }
  wheel.stop();
  loop.run_for(std::chrono::milliseconds(10));

  EXPECT_EQ(wheel.size(), 0u);
  ASSERT_EQ(soon.fired.size(), 1u);
  EXPECT_GE(soon.fired[0], start + 300'000);
  ASSERT_EQ(later.fired.size(), 1u);
  EXPECT_GE(later.fired[0], start + 1'700'000);
  ASSERT_EQ(beyond.fired.size(), 1u) << "an item beyond one round fires in a later one";
  EXPECT_GE(beyond.fired[0], start + 6'200'000);
  EXPECT_TRUE(cancelled.fired.empty());
  ASSERT_EQ(twice.fired.size(), 2u);
  EXPECT_GE(twice.fired[1], twice.fired[0] + 1'200'000);
  ASSERT_EQ(moved.fired.size(), 1u);
  EXPECT_GE(moved.fired[0], start + 2'500'000);
  // Order follows the deadlines.
  EXPECT_LT(soon.fired[0], later.fired[0]);
  EXPECT_LT(later.fired[0], beyond.fired[0]);
}

TEST(DeadlineWheel, ItemsLeftAtDestructionAreLetGo) {
  boost::asio::io_context loop;
  Item item;
  {
    DeadlineWheel<Item> wheel(loop);
    wheel.schedule(item, core::monotonicMicros() + 60'000'000);
    EXPECT_TRUE(item.hook.scheduled());
  }
  EXPECT_FALSE(item.hook.scheduled()) << "a later cancel would touch a destroyed wheel";
}

}  // namespace
}  // namespace tern::net
