#include "core/ids.h"

#include <gtest/gtest.h>

#include <regex>
#include <set>
#include <thread>
#include <vector>

namespace tern::core {
namespace {

TEST(IdsTest, UuidHasVersion4Format) {
  const std::regex pattern("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
  for (int i = 0; i < 1000; ++i) {
    const std::string id = randomUuid();
    ASSERT_TRUE(std::regex_match(id, pattern)) << id;
  }
}

TEST(IdsTest, UuidsAreUniqueAcrossThreads) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 5000;
  std::vector<std::vector<std::string>> results(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&results, t] {
      for (int i = 0; i < kPerThread; ++i) {
        results[static_cast<std::size_t>(t)].push_back(randomUuid());
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  std::set<std::string> all;
  for (const auto& r : results) {
    all.insert(r.begin(), r.end());
  }
  EXPECT_EQ(all.size(), static_cast<std::size_t>(kThreads * kPerThread));
}

TEST(IdsTest, HostNameIsNotEmpty) {
  EXPECT_FALSE(hostName().empty());
}

}  // namespace
}  // namespace tern::core
