#pragma once
// One Asio io_context per thread (one per core by default). A connection is pinned to one loop
// for its whole life; other threads reach it by posting to that loop, never by locking it.
#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <cstddef>
#include <memory>
#include <thread>
#include <vector>

namespace tern::net {

class EventLoopPool {
 public:
  // threads == 0 → std::thread::hardware_concurrency().
  explicit EventLoopPool(unsigned threads);
  ~EventLoopPool();
  EventLoopPool(const EventLoopPool&) = delete;
  EventLoopPool& operator=(const EventLoopPool&) = delete;

  void start();
  // Stops every loop (pending handlers are dropped) and joins the threads.
  void stop();

  std::size_t size() const { return loops_.size(); }
  boost::asio::io_context& loop(std::size_t index) { return *loops_[index]->context; }
  // Round-robin choice for new connections.
  boost::asio::io_context& next();

 private:
  struct Loop {
    std::unique_ptr<boost::asio::io_context> context;
    std::unique_ptr<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guard;
    std::thread thread;
  };
  std::vector<std::unique_ptr<Loop>> loops_;
  std::atomic<std::size_t> next_{0};
  bool started_ = false;
};

}  // namespace tern::net
