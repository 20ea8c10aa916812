#include "trackers/tracker_connection.h"

#include <spdlog/spdlog.h>

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>
#include <cstring>

#include "core/time.h"
#include "ingest/pipeline.h"
#include "trackers/position_record.h"
#include "trackers/tracker_server.h"

namespace tern::trackers {

namespace asio = boost::asio;
namespace trk = codec::trackers;

namespace {
constexpr std::size_t kReadChunk = 4096;
}

TrackerConnection::TrackerConnection(TrackerServer& server, const trk::ProtocolInfo& protocol,
                                     asio::ip::tcp::socket socket, std::string peer,
                                     std::string initialBytes)
    : server_(server),
      protocol_(protocol),
      codec_(protocol.create()),
      socket_(std::move(socket)),
      idleTimer_(socket_.get_executor()),
      peer_(std::move(peer)),
      input_(std::move(initialBytes)),
      inputUsed_(input_.size()) {}

void TrackerConnection::start() {
  boost::system::error_code ec;
  if (peer_.empty()) {
    auto remote = socket_.remote_endpoint(ec);
    peer_ =
        ec ? std::string("?") : remote.address().to_string() + ":" + std::to_string(remote.port());
  }
  socket_.set_option(asio::ip::tcp::no_delay(true), ec);
  session_.accept = [this](const std::string& id) { return server_.acceptDevice(id); };
  lastActivityUs_ = core::monotonicMicros();
  armIdleTimer();
  if (inputUsed_ > 0) {
    // Bytes that came with the PROXY header: the start of the protocol, handled as a read.
    processInput();
    if (closed_) return;
    flush();
  }
  readMore();
}

void TrackerConnection::readMore() {
  if (reading_ || paused_ || closed_) return;
  if (input_.size() - inputUsed_ < kReadChunk) input_.resize(inputUsed_ + kReadChunk);
  reading_ = true;
  socket_.async_read_some(asio::buffer(input_.data() + inputUsed_, input_.size() - inputUsed_),
                          [self = shared_from_this()](const boost::system::error_code& ec,
                                                      std::size_t n) { self->onRead(ec, n); });
}

void TrackerConnection::onRead(const boost::system::error_code& ec, std::size_t bytes) {
  reading_ = false;
  if (closed_) return;
  if (ec) {
    close(ec == asio::error::eof ? "closed by device" : "connection lost: " + ec.message(), false);
    return;
  }
  inputUsed_ += bytes;
  lastActivityUs_ = core::monotonicMicros();
  processInput();
  if (closed_) return;
  flush();
  ingest::Pipeline& pipeline = server_.pipeline();
  if (pipeline.overloaded()) {
    // Back-pressure: stop reading until the writer catches up; devices wait for their ACKs.
    paused_ = true;
    pipeline.onDrain([weak = weak_from_this()] {
      if (auto self = weak.lock()) {
        asio::post(self->executor(), [self] {
          self->paused_ = false;
          self->readMore();
        });
      }
    });
    return;
  }
  readMore();
}

void TrackerConnection::processInput() {
  std::size_t offset = 0;
  while (!closed_ && offset < inputUsed_) {
    std::string_view available(input_.data() + offset, inputUsed_ - offset);
    trk::FrameResult frame = codec_->splitFrame(available);
    if (frame.status == trk::FrameStatus::kNeedMore) {
      if (available.size() > protocol_.maxFrameSize) {
        server_.counters().closedOversize.fetch_add(1, std::memory_order_relaxed);
        close("incomplete frame larger than the protocol maximum", true);
        return;
      }
      break;
    }
    if (frame.status == trk::FrameStatus::kTooLarge) {
      server_.counters().closedOversize.fetch_add(1, std::memory_order_relaxed);
      close("frame larger than the protocol maximum", true);
      return;
    }
    // A decoder that reports no progress would spin; treat it as a broken stream.
    if (frame.size == 0 || frame.size > available.size()) {
      close("framing made no progress", true);
      return;
    }
    if (frame.status == trk::FrameStatus::kSkip) {
      skipped_ += frame.size;
      server_.counters().skippedBytes.fetch_add(frame.size, std::memory_order_relaxed);
      if (skipped_ > server_.options().maxSkippedBytes) {
        close("too many bytes that are not " + std::string(protocol_.name) + " frames", true);
        return;
      }
    } else {
      handleFrame(available.substr(0, frame.size));
    }
    offset += frame.size;
  }
  if (offset > 0 && !closed_) {
    std::memmove(input_.data(), input_.data() + offset, inputUsed_ - offset);
    inputUsed_ -= offset;
  }
  if (inputUsed_ == 0 && input_.size() > 16 * kReadChunk) {
    input_.resize(kReadChunk);
    input_.shrink_to_fit();
  }
}

void TrackerConnection::handleFrame(std::string_view frame) {
  server_.counters().frames.fetch_add(1, std::memory_order_relaxed);
  const bool wasIdentified = session_.identified();
  const std::int64_t now = core::nowMicros();
  trk::DecodeResult result = codec_->decode(frame, session_, now);
  if (result.badChecksum) server_.counters().badChecksums.fetch_add(1, std::memory_order_relaxed);
  if (result.badLength) server_.counters().badLengths.fetch_add(1, std::memory_order_relaxed);
  if (!wasIdentified && session_.identified()) {
    spdlog::debug("trackers: {} device {} connected from {}", protocol_.name, session_.deviceId,
                  peer_);
    server_.deviceOnline(session_.deviceId, shared_from_this());
  }
  if (result.commandAnswer && session_.identified()) {
    server_.commandAnswered(session_.deviceId, result.commandAnswer->text);
  }

  std::uint64_t sequence = nextSequence_++;
  std::size_t stored = 0;
  for (auto& position : result.positions) {
    if (position.deviceId.empty()) position.deviceId = session_.deviceId;
    if (position.deviceId.empty()) continue;  // nobody to store it for
    if (position.protocol.empty()) position.protocol = std::string(protocol_.name);
    ++stored;
  }
  responses_.push_back(
      PendingResponse{sequence, std::move(result.response), stored == 0, result.close});
  if (stored > 0) {
    server_.counters().positions.fetch_add(stored, std::memory_order_relaxed);
    // The response waits until every position of this frame is committed.
    auto remaining = std::make_shared<std::atomic<std::size_t>>(stored);
    for (const auto& position : result.positions) {
      if (position.deviceId.empty()) continue;
      server_.pipeline().submit(
          toRecord(position, frame, server_.options().nodeId, now),
          [self = shared_from_this(), remaining, sequence] {
            if (remaining->fetch_sub(1) == 1) {
              asio::post(self->executor(), [self, sequence] { self->onResponseReady(sequence); });
            }
          });
    }
  }
  flushResponses();
}

void TrackerConnection::onResponseReady(std::uint64_t sequence) {
  if (closed_ || responses_.empty() || sequence < responses_.front().sequence) return;
  std::size_t index = static_cast<std::size_t>(sequence - responses_.front().sequence);
  if (index >= responses_.size()) return;
  responses_[index].ready = true;
  flushResponses();
  flush();
}

void TrackerConnection::flushResponses() {
  while (!responses_.empty() && responses_.front().ready) {
    PendingResponse& front = responses_.front();
    outbox_.append(front.bytes);
    bool closeAfter = front.closeAfter;
    responses_.pop_front();
    if (closeAfter) {
      flush();
      close("protocol asked to close", false);
      return;
    }
  }
}

void TrackerConnection::sendCommand(std::uint64_t id, const trk::Command& command) {
  if (closed_) {
    server_.commandSent(id, std::string(protocol_.name), false);
    return;
  }
  auto bytes = codec_->encodeCommand(command, session_);
  server_.commandSent(id, std::string(protocol_.name), bytes.has_value());
  if (bytes) write(std::move(*bytes));
}

void TrackerConnection::write(std::string bytes) {
  outbox_.append(bytes);
  flush();
}

void TrackerConnection::flush() {
  if (writeInProgress_ || outbox_.empty()) {
    if (!writeInProgress_ && closeAfterWrite_) {
      boost::system::error_code ec;
      socket_.close(ec);
    }
    return;
  }
  writing_.clear();
  writing_.swap(outbox_);
  writeInProgress_ = true;
  asio::async_write(socket_, asio::buffer(writing_),
                    [self = shared_from_this()](const boost::system::error_code& ec, std::size_t) {
                      self->writeInProgress_ = false;
                      if (ec) {
                        self->close("write failed: " + ec.message(), false);
                        boost::system::error_code ignored;
                        self->socket_.close(ignored);
                        return;
                      }
                      self->flush();
                    });
}

void TrackerConnection::armIdleTimer() {
  const std::int64_t limitUs = std::int64_t{protocol_.idleTimeoutSeconds} * 1'000'000;
  std::int64_t idle = core::monotonicMicros() - lastActivityUs_;
  idleTimer_.expires_after(std::chrono::microseconds(std::max<std::int64_t>(limitUs - idle, 1000)));
  idleTimer_.async_wait([self = shared_from_this(), limitUs](const boost::system::error_code& ec) {
    if (ec || self->closed_) return;
    if (core::monotonicMicros() - self->lastActivityUs_ >= limitUs) {
      self->close("idle timeout", false);
    } else {
      self->armIdleTimer();
    }
  });
}

void TrackerConnection::closeFromServer(std::string_view reason) {
  close(reason, false);
}

void TrackerConnection::close(std::string_view reason, bool warn) {
  if (closed_) return;
  closed_ = true;
  if (warn) {
    spdlog::warn("trackers: closing {} connection {} ({}): {}", protocol_.name,
                 session_.deviceId.empty() ? "?" : session_.deviceId, peer_, reason);
  } else {
    spdlog::debug("trackers: {} connection {} ({}) closed: {}", protocol_.name, session_.deviceId,
                  peer_, reason);
  }
  idleTimer_.cancel();
  responses_.clear();  // unconfirmed positions are resent by the device
  if (session_.identified()) server_.deviceOffline(session_.deviceId, this);
  server_.connectionClosed();
  closeAfterWrite_ = true;
  flush();
  if (writeInProgress_) {
    idleTimer_.expires_after(std::chrono::seconds(5));
    idleTimer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec) return;
      boost::system::error_code ignored;
      self->socket_.close(ignored);
    });
  }
}

}  // namespace tern::trackers
