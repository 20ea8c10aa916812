// Every protocol end to end over real TCP: the reference frames of each Traccar test method are
// sent on one connection, as a device would; what comes back must be exactly the acknowledgements
// the corpus derives, in order, and every decoded position must be in the store.
#include <gtest/gtest.h>
#include <poll.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <iostream>
#include <map>
#include <thread>

#include "codec/trackers/protocol.h"
#include "codec/trackers/util.h"
#include "frame_corpus.h"
#include "storage/store.h"
#include "support/test_server.h"

namespace tern::test {
namespace {

namespace asio = boost::asio;
namespace trk = codec::trackers;
using namespace std::chrono_literals;

std::string readFor(asio::ip::tcp::socket& socket, std::size_t want,
                    std::chrono::milliseconds timeout) {
  std::string out;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (out.size() < want && std::chrono::steady_clock::now() < deadline) {
    pollfd pfd{socket.native_handle(), POLLIN, 0};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (::poll(&pfd, 1, static_cast<int>(std::max<long>(1, left.count()))) <= 0) break;
    char chunk[4096];
    boost::system::error_code ec;
    std::size_t n = socket.read_some(asio::buffer(chunk), ec);
    if (ec || n == 0) break;
    out.append(chunk, n);
  }
  return out;
}

class TrackerCorpusTcpTest : public ::testing::TestWithParam<std::string> {};

TEST_P(TrackerCorpusTcpTest, FramesOverTcpGetExactAcksAndAreStored) {
  const std::string protocol = GetParam();
  TestServer server([&](core::Config& c) { c.trackers.enabled = {protocol}; });
  const std::uint16_t port = server.server().trackerPorts().at(protocol);
  const trk::ProtocolInfo* info = trk::findProtocol(protocol);
  ASSERT_NE(info, nullptr);

  // Frames in the order of their test methods; one connection per method, like one device.
  std::map<std::string, std::vector<CorpusFrame>> groups;
  std::vector<std::string> order;
  for (auto& frame : loadCorpus(protocol)) {
    if (frame.disabled) continue;
    if (!groups.count(frame.testMethod)) order.push_back(frame.testMethod);
    groups[frame.testMethod].push_back(std::move(frame));
  }

  std::int64_t expectedStored = 0;
  std::size_t framesSent = 0;
  std::size_t framesSkipped = 0;
  for (const auto& method : order) {
    // Some reference frames were stored without their terminator (Traccar's tests feed the
    // decoder frames its pipeline already split). Over TCP a device always sends one, so restore
    // the one that makes the frame stand alone. Frames that need a per-device model setting or
    // give a time-dependent answer are left to the codec tests.
    std::vector<std::string> wire;
    for (const auto& f : groups[method]) {
      // Teltonika's constructor flag `true` is its UDP decoder; `false` is TCP, as here.
      const bool udp = f.setup.contains("decoder_ctor_args") &&
                       boost::json::serialize(f.setup.at("decoder_ctor_args")) != "[false]";
      if (f.responseTemplate.has_value() || f.setup.contains("device_model") || udp ||
          f.setup.contains("extended")) {
        ++framesSkipped;
        continue;
      }
      std::optional<std::string> ok;
      for (const char* suffix : {"", "\r\n", "$", ";", "#", "\n", "\r"}) {
        std::string candidate = f.bytes + suffix;
        auto splitter = info->create();
        trk::FrameResult r = splitter->splitFrame(candidate);
        if (r.status == trk::FrameStatus::kOk && r.size == candidate.size()) {
          ok = std::move(candidate);
          break;
        }
      }
      if (!ok) {
        ++framesSkipped;
        continue;
      }
      wire.push_back(std::move(*ok));
    }
    if (wire.empty()) continue;
    framesSent += wire.size();
    std::string stream;
    for (const auto& bytes : wire) stream += bytes;

    // What the gateway should answer: the same codec run locally over the same byte stream, the
    // way a connection runs it (split, decode, positions of an identified device are stored).
    auto codec = info->create();
    trk::SessionState session;
    std::string expectedBytes;
    std::string_view rest = stream;
    while (!rest.empty()) {
      trk::FrameResult frame = codec->splitFrame(rest);
      if (frame.status == trk::FrameStatus::kNeedMore ||
          frame.status == trk::FrameStatus::kTooLarge || frame.size == 0) {
        break;
      }
      if (frame.status == trk::FrameStatus::kOk) {
        trk::DecodeResult result = codec->decode(rest.substr(0, frame.size), session, 0);
        for (const auto& p : result.positions) {
          if (!p.deviceId.empty() || session.identified()) ++expectedStored;
        }
        expectedBytes += result.response;
        if (result.close) break;
      }
      rest.remove_prefix(frame.size);
    }

    asio::io_context io;
    asio::ip::tcp::socket socket(io);
    socket.connect({asio::ip::make_address("127.0.0.1"), port});
    asio::write(socket, asio::buffer(stream));
    std::string got = readFor(socket, expectedBytes.size(), expectedBytes.empty() ? 200ms : 5000ms);
    EXPECT_EQ(trk::toHex(got), trk::toHex(expectedBytes)) << protocol << " " << method;
  }
  std::cout << protocol << ": " << framesSent << " frames over TCP, " << framesSkipped
            << " left to the codec tests, " << expectedStored << " positions stored\n";
  // Most of each corpus must go over TCP; the rest is covered by the codec tests.
  EXPECT_GT(framesSent, framesSkipped)
      << protocol << ": " << framesSent << " frames sent, " << framesSkipped << " skipped";
  EXPECT_GT(expectedStored, 0) << protocol << ": no position reached the store";
  // Positions are committed before their ACKs; those without an ACK may still be in flight.
  std::int64_t stored = 0;
  for (int i = 0; i < 200; ++i) {
    stored = *server.server().store().countMessages();
    if (stored >= expectedStored) break;
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_EQ(stored, expectedStored) << protocol;
}

INSTANTIATE_TEST_SUITE_P(Protocols, TrackerCorpusTcpTest,
                         ::testing::Values("gt06", "teltonika", "h02", "tk103", "gps103", "gl200",
                                           "meitrack", "ruptela"));

}  // namespace
}  // namespace tern::test
