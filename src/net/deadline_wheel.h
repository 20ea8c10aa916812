#pragma once
// The deadlines of one event loop's connections (connect timeout, keepalive, close linger) in
// one-second slots swept by a single timer, instead of an Asio timer per connection (120 bytes
// plus a pending wait operation, for every idle connection). Used only on its loop's thread.
// A deadline fires up to a second late; one further away than the wheel's span stays in its
// slot for later rounds of the sweep.
#include <algorithm>
#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <vector>

#include "core/time.h"

namespace tern::net {

// Where an item sits in the wheel; a member of the item, so the wheel allocates nothing per item
// beyond one pointer in a slot.
struct DeadlineHook {
  static constexpr std::uint32_t kNone = 0xFFFFFFFF;
  std::int64_t deadlineUs = 0;  // monotonic (core::monotonicMicros)
  std::uint32_t slot = kNone;
  std::uint32_t index = 0;
  bool scheduled() const { return slot != kNone; }
};

// T has `DeadlineHook& deadlineHook()` and `void onDeadline(std::int64_t nowUs)`. The wheel keeps
// plain pointers: an item must be cancelled before it is destroyed.
template <class T, std::uint32_t Slots = 128>  // Slots: seconds per round
class DeadlineWheel {
 public:
  static constexpr std::uint32_t kSlots = Slots;

  explicit DeadlineWheel(boost::asio::io_context& loop) : timer_(loop) {}
  DeadlineWheel(const DeadlineWheel&) = delete;
  DeadlineWheel& operator=(const DeadlineWheel&) = delete;
  // Items still scheduled (their loop stopped with them open) are let go: cancelling them later
  // must not touch this wheel.
  ~DeadlineWheel() {
    for (auto& slot : slots_) {
      for (T* item : slot) item->deadlineHook().slot = DeadlineHook::kNone;
    }
  }

  boost::asio::any_io_executor executor() { return timer_.get_executor(); }

  // On the loop's thread.
  void start() {
    stopped_ = false;
    // Seconds up to now are past: no deadline still to come belongs to them.
    lastSweptSecond_ = core::monotonicMicros() / 1'000'000;
    arm();
  }
  // On the loop's thread: nothing fires after this; items stay until cancelled.
  void stop() {
    stopped_ = true;
    timer_.cancel();
  }

  // Sets (or moves) the item's deadline.
  void schedule(T& item, std::int64_t deadlineUs) {
    cancel(item);
    DeadlineHook& hook = item.deadlineHook();
    hook.deadlineUs = deadlineUs;
    // A deadline already past goes to the next second swept, not to one swept this round.
    const std::int64_t second = std::max(secondOf(deadlineUs), lastSweptSecond_ + 1);
    hook.slot = static_cast<std::uint32_t>(second % kSlots);
    std::vector<T*>& slot = slots_[hook.slot];
    hook.index = static_cast<std::uint32_t>(slot.size());
    slot.push_back(&item);
    ++size_;
  }

  void cancel(T& item) {
    DeadlineHook& hook = item.deadlineHook();
    if (!hook.scheduled()) return;
    std::vector<T*>& slot = slots_[hook.slot];
    T* last = slot.back();
    slot[hook.index] = last;
    last->deadlineHook().index = hook.index;
    slot.pop_back();
    hook.slot = DeadlineHook::kNone;
    --size_;
  }

  std::size_t size() const { return size_; }

 private:
  // The second a deadline belongs to, rounded up: the sweep reaches second s at or after s, when
  // every item of slot s with a deadline in this round is due. Seconds up to lastSweptSecond_
  // have been swept.
  static std::int64_t secondOf(std::int64_t us) { return (us + 999'999) / 1'000'000; }

  void arm() {
    if (stopped_) return;
    // Just after the next whole second.
    const std::int64_t nextUs = (core::monotonicMicros() / 1'000'000 + 1) * 1'000'000 + 1'000;
    timer_.expires_at(std::chrono::steady_clock::time_point(std::chrono::microseconds(nextUs)));
    timer_.async_wait([this](const boost::system::error_code& ec) {
      if (ec || stopped_) return;
      tick();
      arm();
    });
  }

  void tick() {
    const std::int64_t nowUs = core::monotonicMicros();
    const std::int64_t now = nowUs / 1'000'000;
    // Every second since the last sweep (a loop that stalled catches up), each slot at most once.
    std::int64_t from = lastSweptSecond_ + 1;
    if (now - from >= kSlots) from = now - kSlots + 1;
    for (std::int64_t second = from; second <= now; ++second) {
      sweep(static_cast<std::uint32_t>(second % kSlots), nowUs);
    }
    if (now > lastSweptSecond_) lastSweptSecond_ = now;
  }

  void sweep(std::uint32_t index, std::int64_t nowUs) {
    std::vector<T*>& slot = slots_[index];
    for (std::size_t i = 0; i < slot.size();) {
      T* item = slot[i];
      if (item->deadlineHook().deadlineUs > nowUs) {
        ++i;  // a later round
        continue;
      }
      cancel(*item);  // the slot's last item moves to i
      item->onDeadline(nowUs);
    }
    // A burst of connections that has gone should not pin its slot's memory.
    if (slot.empty() && slot.capacity() > 64) std::vector<T*>().swap(slot);
  }

  boost::asio::steady_timer timer_;
  std::array<std::vector<T*>, kSlots> slots_;
  std::int64_t lastSweptSecond_ = 0;
  std::size_t size_ = 0;
  bool stopped_ = true;
};

}  // namespace tern::net
