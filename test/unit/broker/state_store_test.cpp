// The broker state store against a real SQLite file: what is written comes back after a
// reopen, also when the process died without closing it, and a torn WAL tail is tolerated.
#include "broker/state_store.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <random>
#include <thread>

#include "broker/session.h"
#include "core/time.h"

namespace tern::broker {
namespace {

namespace fs = std::filesystem;

// Appended piecewise: GCC 12 at -O3 raises a false -Wrestrict on "x" + std::to_string(i).
std::string numbered(const char* prefix, int i) {
  std::string out = prefix;
  out += std::to_string(i);
  return out;
}

class StateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::random_device random;
    dir_ = fs::temp_directory_path() / ("tern-state-store-" + std::to_string(random()));
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  StateStoreOptions options() const { return StateStoreOptions{(dir_ / "broker.db").string()}; }

  // Blocks until `seq` is durable (bounded).
  static void waitDurable(StateStore& store, std::uint64_t seq) {
    auto done = std::make_shared<std::promise<void>>();
    auto future = done->get_future();
    store.whenDurable(seq, [done] { done->set_value(); });
    ASSERT_EQ(future.wait_for(std::chrono::seconds(30)), std::future_status::ready);
  }

  static MessagePtr message(const std::string& topic, const std::string& payload,
                            std::uint8_t qos = 1) {
    auto m = std::make_shared<Message>();
    m->topic = topic;
    m->payload = payload;
    m->qos = qos;
    return m;
  }

  fs::path dir_;
};

TEST_F(StateStoreTest, WritesComeBackAfterReopen) {
  const std::int64_t expiry = core::nowMicros() + 60'000'000;
  {
    StateStore store(options());
    ASSERT_TRUE(store.load().ok());
    store.start();
    store.putSession("a", 3600, 0);
    store.putSession("a", 3600, expiry);  // detached later: the last write wins
    store.putSession("b", kSessionNeverExpires, 0);
    store.putSubscription("a", "x/#",
                          SubscriptionOptions{.qos = 2,
                                              .noLocal = true,
                                              .retainAsPublished = true,
                                              .retainHandling = 2,
                                              .subscriptionId = 7});
    store.putSubscription("a", "y", SubscriptionOptions{.qos = 1});
    store.deleteSubscription("a", "y");

    auto props = std::make_shared<codec::mqtt::Properties>();
    props->contentType = "text/plain";
    props->userProperties.push_back({"k", "v"});
    auto withProps = std::make_shared<Message>(*message("x/1", "one"));
    withProps->properties = props;
    withProps->expiresAtUs = core::monotonicMicros() + 120'000'000;
    const std::uint64_t id1 = store.nextMessageId();
    const std::uint64_t id2 = store.nextMessageId();
    const std::uint64_t id3 = store.nextMessageId();
    const std::uint64_t id4 = store.nextMessageId();
    store.addMessage(id1, "a", *withProps, 1, true, {7, 9});
    store.addMessage(id2, "a", *message("x/2", "two", 2), 2, false, {});
    store.markSent(id2, 42);
    store.markReleased(id2);
    store.addMessage(id3, "a", *message("x/3", "three"), 1, false, {}, 43);
    store.addMessage(id4, "b", *message("x/4", "gone"), 1, false, {});
    store.putIncomingQos2("a", 5);
    store.putIncomingQos2("a", 6);
    store.deleteIncomingQos2("a", 6);
    store.setRetained(*message("r/1", "kept", 1));
    store.setRetained(*message("r/2", "cleared", 0));
    const std::uint64_t last = store.setRetained(*message("r/2", "", 0));
    waitDurable(store, last);
    // A later batch: the ack of id4 arrives after it was committed.
    waitDurable(store, store.deleteMessage(id4));
  }
  StateStore store(options());
  auto loaded = store.load();
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  ASSERT_EQ(loaded->sessions.size(), 2u);
  const StoredSession* a = nullptr;
  const StoredSession* b = nullptr;
  for (const auto& s : loaded->sessions) (s.clientId == "a" ? a : b) = &s;
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(a->expiryInterval, 3600u);
  EXPECT_EQ(a->expiresAtWallUs, expiry);
  EXPECT_EQ(b->expiryInterval, kSessionNeverExpires);
  ASSERT_EQ(a->subscriptions.size(), 1u);
  const SubscriptionOptions& o = a->subscriptions.at("x/#");
  EXPECT_EQ(o.qos, 2);
  EXPECT_TRUE(o.noLocal);
  EXPECT_TRUE(o.retainAsPublished);
  EXPECT_EQ(o.retainHandling, 2);
  EXPECT_EQ(o.subscriptionId, 7u);

  ASSERT_EQ(a->messages.size(), 3u);
  const StoredMessage& m1 = a->messages[0];
  EXPECT_EQ(m1.message->topic, "x/1");
  EXPECT_EQ(m1.message->payload, "one");
  EXPECT_TRUE(m1.retain);
  EXPECT_EQ(m1.packetId, 0);
  EXPECT_EQ(m1.subscriptionIds, (std::vector<std::uint32_t>{7, 9}));
  ASSERT_NE(m1.message->properties, nullptr);
  EXPECT_EQ(m1.message->properties->contentType, "text/plain");
  ASSERT_EQ(m1.message->properties->userProperties.size(), 1u);
  EXPECT_EQ(m1.message->properties->userProperties[0].value, "v");
  // The expiry deadline survives as a deadline: about 120 s left, never more.
  const auto left = m1.message->remainingExpiry(core::monotonicMicros());
  ASSERT_TRUE(left.has_value());
  EXPECT_LE(*left, 120u);
  EXPECT_GT(*left, 60u);
  EXPECT_EQ(a->messages[1].packetId, 42);
  EXPECT_TRUE(a->messages[1].released);
  EXPECT_EQ(a->messages[1].qos, 2);
  EXPECT_EQ(a->messages[2].packetId, 43);
  EXPECT_FALSE(a->messages[2].released);
  EXPECT_TRUE(b->messages.empty());
  EXPECT_EQ(a->incomingQos2, (std::vector<std::uint16_t>{5}));

  ASSERT_EQ(loaded->retained.size(), 1u);
  EXPECT_EQ(loaded->retained[0]->topic, "r/1");
  EXPECT_EQ(loaded->retained[0]->payload, "kept");
  EXPECT_TRUE(loaded->retained[0]->retain);
  // Ids handed out after a reopen never collide with stored ones.
  EXPECT_GT(store.nextMessageId(), a->messages.back().id);
}

TEST_F(StateStoreTest, DeleteSessionRemovesEverythingOfIt) {
  {
    StateStore store(options());
    ASSERT_TRUE(store.load().ok());
    store.start();
    store.putSession("a", 10, 0);
    store.putSubscription("a", "t", SubscriptionOptions{.qos = 1});
    store.addMessage(store.nextMessageId(), "a", *message("t", "p"), 1, false, {});
    store.putIncomingQos2("a", 1);
    store.putSession("keep", 10, 0);
    waitDurable(store, store.deleteSession("a"));
  }
  StateStore store(options());
  auto loaded = store.load();
  ASSERT_TRUE(loaded.ok());
  ASSERT_EQ(loaded->sessions.size(), 1u);
  EXPECT_EQ(loaded->sessions[0].clientId, "keep");
  EXPECT_TRUE(loaded->sessions[0].messages.empty());
}

TEST_F(StateStoreTest, DelayedWillsComeBackUntilTakenOrTheSessionEnds) {
  const std::int64_t due = core::monotonicMicros() + 30'000'000;
  {
    StateStore store(options());
    ASSERT_TRUE(store.load().ok());
    store.start();
    store.putSession("a", 60, 0);
    store.putSession("b", 60, 0);
    store.putSession("c", 60, 0);
    auto props = std::make_shared<codec::mqtt::Properties>();
    props->contentType = "text/plain";
    auto will = std::make_shared<Message>(*message("w/a", "gone", 2));
    will->retain = true;
    will->properties = props;
    will->expiresAtUs = core::monotonicMicros() + 90'000'000;
    store.putWill("a", *will, due);
    store.putWill("b", *message("w/b", "taken"), due);
    store.deleteWill("b");
    store.putWill("c", *message("w/c", "ended"), due);
    waitDurable(store, store.deleteSession("c"));
  }
  StateStore store(options());
  auto loaded = store.load();
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  ASSERT_EQ(loaded->sessions.size(), 2u);
  for (const StoredSession& s : loaded->sessions) {
    if (s.clientId == "b") {
      EXPECT_EQ(s.will, nullptr);
      continue;
    }
    ASSERT_EQ(s.clientId, "a");
    ASSERT_NE(s.will, nullptr);
    EXPECT_EQ(s.will->topic, "w/a");
    EXPECT_EQ(s.will->payload, "gone");
    EXPECT_EQ(s.will->qos, 2);
    EXPECT_TRUE(s.will->retain);
    ASSERT_NE(s.will->properties, nullptr);
    EXPECT_EQ(s.will->properties->contentType, "text/plain");
    // Deadlines survive as deadlines (wall time on disk); allow for clock rounding.
    EXPECT_NEAR(static_cast<double>(s.willDueUs), static_cast<double>(due), 1e6);
    const auto left = s.will->remainingExpiry(core::monotonicMicros());
    ASSERT_TRUE(left.has_value());
    EXPECT_LE(*left, 90u);
    EXPECT_GT(*left, 60u);
  }
}

TEST_F(StateStoreTest, QueueIsBoundedAndDrains) {
  StateStoreOptions bounded = options();
  bounded.queueCapacity = 10;
  StateStore store(bounded);
  ASSERT_TRUE(store.load().ok());
  std::uint64_t last = 0;
  for (int i = 0; i < 10; ++i) last = store.putSession(numbered("s", i), 10, 0);
  EXPECT_TRUE(store.overloaded());  // the writer is not running yet: nothing drains
  std::atomic<bool> drained{false};
  store.onDrain([&] { drained = true; });
  EXPECT_FALSE(drained.load());
  store.start();
  waitDurable(store, last);
  for (int i = 0; i < 3000 && !drained.load(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(drained.load());
  EXPECT_FALSE(store.overloaded());
}

// The child writes two committed batches and dies without closing anything (as kill -9 would
// leave it).
void writeAndDie(const StateStoreOptions& options, int batchA, int batchB) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto* store = new StateStore(options);  // never destroyed: the process just ends
    if (!store->load().ok()) _exit(3);
    store->start();
    auto wait = [store](std::uint64_t seq) {
      std::promise<void> done;
      auto future = done.get_future();
      store->whenDurable(seq, [&done] { done.set_value(); });
      return future.wait_for(std::chrono::seconds(30)) == std::future_status::ready;
    };
    std::uint64_t seq = store->putSession("crash", 3600, 0);
    for (int i = 0; i < batchA; ++i) {
      auto m = std::make_shared<Message>();
      m->topic = "a";
      m->payload = numbered("A", i);
      seq = store->addMessage(store->nextMessageId(), "crash", *m, 1, false, {});
    }
    if (!wait(seq)) _exit(4);
    for (int i = 0; i < batchB; ++i) {
      auto m = std::make_shared<Message>();
      m->topic = "b";
      m->payload = numbered("B", i);
      seq = store->addMessage(store->nextMessageId(), "crash", *m, 1, false, {});
    }
    if (!wait(seq)) _exit(5);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
}

TEST_F(StateStoreTest, SurvivesProcessDeathWithoutClose) {
  writeAndDie(options(), 100, 100);
  StateStore store(options());
  auto loaded = store.load();
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  ASSERT_EQ(loaded->sessions.size(), 1u);
  EXPECT_EQ(loaded->sessions[0].messages.size(), 200u);
}

TEST_F(StateStoreTest, TornWalTailIsTolerated) {
  writeAndDie(options(), 50, 2000);
  const fs::path wal = dir_ / "broker.db-wal";
  ASSERT_TRUE(fs::exists(wal));
  const auto size = fs::file_size(wal);
  ASSERT_GT(size, 4096u);
  // A crash in the middle of writing the last transaction: its tail is cut off, and garbage
  // follows where the rest would have been.
  fs::resize_file(wal, size - 3000);
  {
    std::ofstream out(wal, std::ios::binary | std::ios::app);
    out << std::string(1000, '\x5a');
  }
  StateStore store(options());
  auto loaded = store.load();
  ASSERT_TRUE(loaded.ok()) << loaded.error().message;
  ASSERT_EQ(loaded->sessions.size(), 1u);
  std::size_t a = 0;
  std::vector<std::string> b;
  for (const auto& m : loaded->sessions[0].messages) {
    if (m.message->topic == "a") {
      ++a;
    } else {
      b.push_back(m.message->payload);
    }
  }
  // The first batch is intact; of the second, whole transactions survive: a prefix, in order.
  EXPECT_EQ(a, 50u);
  EXPECT_LT(b.size(), 2000u);
  for (std::size_t i = 0; i < b.size(); ++i) ASSERT_EQ(b[i], numbered("B", static_cast<int>(i)));
  // And the file takes writes again.
  store.start();
  waitDurable(store, store.putSession("after", 1, 0));
}

}  // namespace
}  // namespace tern::broker
