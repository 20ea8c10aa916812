#pragma once
// A mutex in four bytes (std::mutex takes forty), for objects that exist by the hundred thousand
// and are rarely contended, such as MQTT sessions. Uncontended lock and unlock are one atomic
// operation each; a contended lock spins briefly, then sleeps on the word (futex, through C++20
// atomic wait). Not recursive, no timed locking; usable with std::lock_guard/std::unique_lock.
#include <atomic>
#include <cstdint>

namespace tern::core {

class SmallMutex {
 public:
  SmallMutex() = default;
  SmallMutex(const SmallMutex&) = delete;
  SmallMutex& operator=(const SmallMutex&) = delete;

  void lock() {
    std::uint32_t expected = kUnlocked;
    if (state_.compare_exchange_strong(expected, kLocked, std::memory_order_acquire)) return;
    lockSlow();
  }

  bool try_lock() {
    std::uint32_t expected = kUnlocked;
    return state_.compare_exchange_strong(expected, kLocked, std::memory_order_acquire);
  }

  void unlock() {
    // Only a lock that saw contention pays for a wake-up.
    if (state_.exchange(kUnlocked, std::memory_order_release) == kContended) state_.notify_one();
  }

 private:
  static constexpr std::uint32_t kUnlocked = 0;
  static constexpr std::uint32_t kLocked = 1;
  static constexpr std::uint32_t kContended = 2;  // locked, and someone may be waiting

  void lockSlow() {
    for (int i = 0; i < 64; ++i) {
      std::uint32_t expected = kUnlocked;
      if (state_.load(std::memory_order_relaxed) == kUnlocked &&
          state_.compare_exchange_weak(expected, kLocked, std::memory_order_acquire)) {
        return;
      }
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#endif
    }
    // From here on the word says "contended", so the holder's unlock wakes a sleeper.
    while (state_.exchange(kContended, std::memory_order_acquire) != kUnlocked) {
      state_.wait(kContended, std::memory_order_relaxed);
    }
  }

  std::atomic<std::uint32_t> state_{kUnlocked};
};

}  // namespace tern::core
