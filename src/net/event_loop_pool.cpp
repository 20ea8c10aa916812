#include "net/event_loop_pool.h"

#include <spdlog/spdlog.h>

#include <exception>

namespace tern::net {

EventLoopPool::EventLoopPool(unsigned threads) {
  if (threads == 0) threads = std::max(1u, std::thread::hardware_concurrency());
  for (unsigned i = 0; i < threads; ++i) {
    auto loop = std::make_unique<Loop>();
    // concurrency hint 1: each context is driven by exactly one thread, so Asio can skip locking.
    loop->context = std::make_unique<boost::asio::io_context>(1);
    loop->guard =
        std::make_unique<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>(
            loop->context->get_executor());
    loops_.push_back(std::move(loop));
  }
}

EventLoopPool::~EventLoopPool() {
  stop();
}

void EventLoopPool::start() {
  if (started_) return;
  started_ = true;
  for (auto& loop : loops_) {
    boost::asio::io_context* context = loop->context.get();
    loop->thread = std::thread([context] {
      for (;;) {
        try {
          context->run();
          return;
        } catch (const std::exception& e) {
          // A handler must never throw on the data plane; if one does, log it and keep serving.
          spdlog::error("event loop: unhandled exception: {}", e.what());
        }
      }
    });
  }
}

void EventLoopPool::stop() {
  for (auto& loop : loops_) {
    loop->guard.reset();
    loop->context->stop();
  }
  for (auto& loop : loops_) {
    if (loop->thread.joinable()) loop->thread.join();
  }
  started_ = false;
}

boost::asio::io_context& EventLoopPool::next() {
  return *loops_[next_.fetch_add(1, std::memory_order_relaxed) % loops_.size()]->context;
}

}  // namespace tern::net
