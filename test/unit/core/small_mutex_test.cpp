// SmallMutex: mutual exclusion under contention (threads that sleep on the word and are woken),
// try_lock, and its size.
#include "core/small_mutex.h"

#include <gtest/gtest.h>

#include <mutex>
#include <thread>
#include <vector>

namespace tern::core {
namespace {

static_assert(sizeof(SmallMutex) == 4);

TEST(SmallMutex, ExcludesUnderContention) {
  SmallMutex mutex;
  std::uint64_t counter = 0;  // not atomic: only the mutex protects it
  constexpr int kThreads = 4;
  constexpr int kRounds = 200'000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kRounds; ++i) {
        std::lock_guard lock(mutex);
        // A read-modify-write in two steps, with a yield now and then to force contention.
        const std::uint64_t seen = counter;
        if (i % 1000 == 0) std::this_thread::yield();
        counter = seen + 1;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(counter, std::uint64_t{kThreads} * kRounds);
}

TEST(SmallMutex, TryLock) {
  SmallMutex mutex;
  ASSERT_TRUE(mutex.try_lock());
  bool other = true;
  std::thread([&] { other = mutex.try_lock(); }).join();
  EXPECT_FALSE(other);
  mutex.unlock();
  std::thread([&] {
    other = mutex.try_lock();
    if (other) mutex.unlock();
  }).join();
  EXPECT_TRUE(other);
}

}  // namespace
}  // namespace tern::core
