#include "bridge/source_client.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/connect.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <random>
#include <variant>

#include "broker/broker.h"
#include "broker/message.h"
#include "codec/mqtt/codec.h"
#include "core/time.h"
#include "ingest/normalizer.h"
#include "ingest/pipeline.h"

namespace tern::bridge {

namespace {

namespace asio = boost::asio;
namespace mqtt = codec::mqtt;
using asio::ip::tcp;
using namespace std::chrono_literals;

constexpr std::chrono::steady_clock::duration kBackoffMin = 100ms;
constexpr std::chrono::steady_clock::duration kBackoffMax = 30s;
constexpr std::chrono::steady_clock::duration kConnectTimeout = 10s;
constexpr std::uint16_t kSubscribePacketId = 1;  // the only packet id we ever send

// Half to all of `backoff`, so many Tern nodes losing one source do not reconnect in lockstep.
std::chrono::steady_clock::duration jittered(std::chrono::steady_clock::duration backoff) {
  thread_local std::mt19937 engine{std::random_device{}()};
  const double factor = std::uniform_real_distribution<double>(0.5, 1.0)(engine);
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(backoff * factor);
}

const char* connackText(mqtt::ConnackCode code) {
  switch (code) {
    case mqtt::ConnackCode::kAccepted:
      return "accepted";
    case mqtt::ConnackCode::kUnacceptableProtocolVersion:
      return "unacceptable protocol version";
    case mqtt::ConnackCode::kIdentifierRejected:
      return "client id rejected";
    case mqtt::ConnackCode::kServerUnavailable:
      return "server unavailable";
    case mqtt::ConnackCode::kBadUsernameOrPassword:
      return "bad username or password";
    case mqtt::ConnackCode::kNotAuthorized:
      return "not authorized";
    default:
      break;  // MQTT 5 reason codes: this client speaks 3.1.1
  }
  return "unknown code";
}

}  // namespace

SourceClient::SourceClient(asio::io_context& io, core::SourceConfig config,
                           ingest::Pipeline& pipeline, const ingest::Normalizer& normalizer,
                           broker::Broker* broker, std::uint32_t maxPacketSize)
    : io_(io),
      config_(std::move(config)),
      pipeline_(pipeline),
      normalizer_(normalizer),
      broker_(broker),
      maxPacketSize_(maxPacketSize),
      resolver_(io),
      socket_(io),
      timer_(io),
      backoff_(kBackoffMin) {
  if (config_.tls) {
    // Start-up code: a bad file throws and stops the server with the message.
    namespace ssl = asio::ssl;
    tlsContext_ = std::make_unique<ssl::context>(ssl::context::tls_client);
    tlsContext_->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                             ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                             ssl::context::no_tlsv1_1);
    if (config_.tlsCa.empty()) {
      tlsContext_->set_default_verify_paths();
    } else {
      tlsContext_->load_verify_file(config_.tlsCa);
    }
    if (!config_.tlsCert.empty()) {
      tlsContext_->use_certificate_chain_file(config_.tlsCert);
      tlsContext_->use_private_key_file(config_.tlsKey, ssl::context::pem);
    }
    if (config_.tlsVerify) {
      tlsContext_->set_verify_mode(ssl::verify_peer);
    } else {
      tlsContext_->set_verify_mode(ssl::verify_none);
      spdlog::warn("source '{}': tls_verify = false: the source's certificate is not checked",
                   config_.name);
    }
  }
}

asio::ip::tcp::socket& SourceClient::lowest() {
  return tlsStream_ ? tlsStream_->next_layer() : socket_;
}

SourceClient::~SourceClient() = default;

void SourceClient::start() {
  asio::post(io_, [self = shared_from_this()] { self->connect(); });
}

void SourceClient::stopReading(std::chrono::milliseconds timeout) {
  auto applied = std::make_shared<std::promise<void>>();
  std::future<void> done = applied->get_future();
  asio::post(io_, [self = shared_from_this(), applied] {
    self->stopping_ = true;
    if (self->state_ != State::kConnected && self->state_ != State::kAwaitSuback) {
      // Not receiving anything yet: nothing to acknowledge, so just go.
      self->finish();
    }
    applied->set_value();
  });
  done.wait_for(timeout);
}

void SourceClient::shutdown(std::chrono::milliseconds timeout) {
  if (shutdownRequested_.exchange(true)) return;
  std::future<void> done = closed_.get_future();
  asio::post(io_, [self = shared_from_this()] {
    self->stopping_ = true;
    if (self->state_ != State::kConnected && self->state_ != State::kAwaitSuback) {
      self->finish();
      return;
    }
    // The pipeline has stopped, so every completion has posted its onAckReady before this.
    self->flushAcks();
    mqtt::encodeEmpty(mqtt::PacketType::kDisconnect, self->out_);
    self->state_ = State::kDisconnecting;
    self->disarm();
    self->flush();  // finish() follows once everything is written
  });
  done.wait_for(timeout);
}

SourceStats SourceClient::stats() const {
  SourceStats out;
  out.name = config_.name;
  out.connected = connected_.load(std::memory_order_relaxed);
  out.received = received_.load(std::memory_order_relaxed);
  out.acked = acked_.load(std::memory_order_relaxed);
  out.reconnects = reconnects_.load(std::memory_order_relaxed);
  out.readPauses = readPauses_.load(std::memory_order_relaxed);
  return out;
}

// A later arm or disarm makes this wait a no-op, even if its handler was already queued.
template <class F>
void SourceClient::arm(Clock::time_point at, F f) {
  timer_.expires_at(at);
  const std::uint32_t mine = ++timerSeq_;
  timer_.async_wait([self = shared_from_this(), mine, f](const boost::system::error_code& ec) {
    if (!ec && mine == self->timerSeq_ && self->state_ != State::kStopped) f();
  });
}

void SourceClient::disarm() {
  ++timerSeq_;
  timer_.cancel();
}

void SourceClient::connect() {
  if (stopping_ || state_ == State::kStopped) return;
  if (attempted_) reconnects_.fetch_add(1, std::memory_order_relaxed);
  attempted_ = true;
  state_ = State::kConnecting;
  const std::uint32_t gen = ++gen_;
  arm(Clock::now() + kConnectTimeout, [this] { lost("connect timed out"); });
  if (tlsContext_) tlsStream_ = std::make_shared<TlsStream>(io_, *tlsContext_);
  resolver_.async_resolve(
      config_.host, std::to_string(config_.port),
      [self = shared_from_this(), gen](const boost::system::error_code& ec,
                                       const tcp::resolver::results_type& results) {
        if (gen != self->gen_) return;
        if (ec) {
          self->lost("cannot resolve " + self->config_.host + ": " + ec.message());
          return;
        }
        asio::async_connect(
            self->lowest(), results,
            [self, gen](const boost::system::error_code& error, const tcp::endpoint&) {
              if (gen != self->gen_) return;
              if (error) {
                self->lost("connect: " + error.message());
                return;
              }
              if (!self->tlsStream_) {
                self->onTcpConnected();
                return;
              }
              auto stream = self->tlsStream_;
              // SNI, and the certificate must name the host we dialled (name or address).
              SSL_set_tlsext_host_name(stream->native_handle(), self->config_.host.c_str());
              if (self->config_.tlsVerify) {
                stream->set_verify_callback(asio::ssl::host_name_verification(self->config_.host));
              }
              stream->async_handshake(
                  asio::ssl::stream_base::client,
                  [self, gen, stream](const boost::system::error_code& handshakeError) {
                    if (gen != self->gen_) return;
                    self->onTlsHandshake(handshakeError);
                  });
            });
      });
}

void SourceClient::onTlsHandshake(const boost::system::error_code& ec) {
  if (ec) {
    std::string reason = "TLS handshake: " + ec.message();
    const long verify = SSL_get_verify_result(tlsStream_->native_handle());
    if (verify != X509_V_OK) {
      reason += std::string(" (") + X509_verify_cert_error_string(verify) + ")";
    }
    lost(reason);
    return;
  }
  onTcpConnected();
}

void SourceClient::onTcpConnected() {
  boost::system::error_code ignored;
  lowest().set_option(tcp::no_delay(true), ignored);
  state_ = State::kAwaitConnack;
  mqtt::Connect connect;
  connect.protocolName = "MQTT";
  connect.protocolLevel = 4;
  connect.cleanSession = config_.cleanSession;
  connect.keepAlive = config_.keepAlive;
  connect.clientId = config_.clientId;
  connect.username = config_.username;
  connect.password = config_.password;
  mqtt::encodeConnect(connect, out_);
  flush();
  startRead();
}

void SourceClient::startRead() {
  if (reading_ || paused_ || stopping_) return;
  reading_ = true;
  if (tlsStream_) {
    tlsStream_->async_read_some(
        asio::buffer(chunk_), [self = shared_from_this(), gen = gen_, stream = tlsStream_](
                                  const boost::system::error_code& ec, std::size_t bytes) {
          if (gen != self->gen_) return;
          // A source closing without close_notify ends the stream as plain TCP would.
          self->onRead(ec == asio::ssl::error::stream_truncated ? asio::error::eof : ec, bytes);
        });
    return;
  }
  socket_.async_read_some(asio::buffer(chunk_),
                          [self = shared_from_this(), gen = gen_](
                              const boost::system::error_code& ec, std::size_t bytes) {
                            if (gen != self->gen_) return;
                            self->onRead(ec, bytes);
                          });
}

void SourceClient::onRead(const boost::system::error_code& ec, std::size_t bytes) {
  reading_ = false;
  if (state_ == State::kStopped || state_ == State::kDisconnecting) return;
  if (ec) {
    lost(ec == asio::error::eof ? "connection closed by the source" : "read: " + ec.message());
    return;
  }
  // After stopReading() nothing more is taken; unacknowledged QoS 1 messages come again later.
  if (stopping_) return;
  rx_.append(chunk_.data(), bytes);
  const std::uint32_t gen = gen_;
  processIncoming();
  if (gen != gen_ || state_ == State::kStopped) return;
  flush();
  if (pipeline_.overloaded()) {
    // Back-pressure, as for a local connection: TCP flow control slows the source down.
    paused_ = true;
    readPauses_.fetch_add(1, std::memory_order_relaxed);
    if (broker_ != nullptr) broker_->countReadPause();  // health: ingest.read_pauses
    pipeline_.onDrain([weak = weak_from_this(), gen] {
      if (auto self = weak.lock()) {
        asio::post(self->io_, [self, gen] { self->resumeReading(gen); });
      }
    });
    return;
  }
  startRead();
}

void SourceClient::resumeReading(std::uint32_t gen) {
  if (gen != gen_ || !paused_) return;
  paused_ = false;
  startRead();
}

void SourceClient::processIncoming() {
  const std::uint32_t gen = gen_;
  std::size_t offset = 0;
  while (true) {
    const mqtt::Frame frame =
        mqtt::splitFrame(std::string_view(rx_).substr(offset), maxPacketSize_);
    if (frame.status == mqtt::DecodeStatus::kNeedMore) break;
    if (frame.status != mqtt::DecodeStatus::kOk) {
      lost(std::string("bad packet from the source: ") + (frame.error ? frame.error : "?"));
      return;
    }
    mqtt::Packet packet;
    const mqtt::ParseResult parsed = mqtt::parsePacket(frame.header, frame.body, packet);
    if (parsed.status != mqtt::DecodeStatus::kOk) {
      lost(std::string("bad packet from the source: ") + (parsed.error ? parsed.error : "?"));
      return;
    }
    offset += frame.size;
    if (!handlePacket(packet) || gen != gen_) return;  // torn down; rx_ already cleared
  }
  rx_.erase(0, offset);
}

bool SourceClient::handlePacket(mqtt::Packet& packet) {
  pingOutstanding_ = false;  // anything from the source proves the connection is alive
  if (const auto* connack = std::get_if<mqtt::Connack>(&packet)) return onConnack(*connack);
  if (state_ == State::kAwaitConnack) {
    lost(std::string("unexpected ") + mqtt::packetTypeName(mqtt::packetType(packet)) +
         " before CONNACK");
    return false;
  }
  if (const auto* suback = std::get_if<mqtt::Suback>(&packet)) return onSuback(*suback);
  if (auto* publish = std::get_if<mqtt::Publish>(&packet)) return onPublish(*publish);
  if (const auto* ack = std::get_if<mqtt::Ack>(&packet)) {
    // We publish nothing, so only a confused broker sends these; answer PUBREL so it can finish.
    if (ack->type == mqtt::PacketType::kPubrel) {
      mqtt::encodeAck(mqtt::PacketType::kPubcomp, ack->packetId, out_);
    }
    return true;
  }
  if (const auto* empty = std::get_if<mqtt::Empty>(&packet);
      empty != nullptr && empty->type == mqtt::PacketType::kPingresp) {
    return true;
  }
  lost(std::string("unexpected ") + mqtt::packetTypeName(mqtt::packetType(packet)));
  return false;
}

bool SourceClient::onConnack(const mqtt::Connack& connack) {
  if (state_ != State::kAwaitConnack) {
    lost("unexpected CONNACK");
    return false;
  }
  if (connack.returnCode != mqtt::ConnackCode::kAccepted) {
    lost(std::string("connection refused: ") + connackText(connack.returnCode));
    return false;
  }
  backoff_ = kBackoffMin;
  disarm();  // the connect timeout; armPing() takes the timer over
  if (connack.sessionPresent && !config_.cleanSession) {
    // The source kept our subscriptions; subscribing again would resend retained messages.
    onReady();
    return true;
  }
  mqtt::Subscribe subscribe;
  subscribe.packetId = kSubscribePacketId;
  for (const auto& filter : config_.topics)
    subscribe.subscriptions.push_back({filter, config_.qos});
  mqtt::encodeSubscribe(subscribe, out_);
  state_ = State::kAwaitSuback;
  armPing();
  return true;
}

bool SourceClient::onSuback(const mqtt::Suback& suback) {
  if (state_ != State::kAwaitSuback || suback.packetId != kSubscribePacketId) {
    spdlog::debug("source '{}': ignoring SUBACK {}", config_.name, suback.packetId);
    return true;
  }
  for (std::size_t i = 0; i < suback.returnCodes.size() && i < config_.topics.size(); ++i) {
    if (suback.returnCodes[i] == mqtt::kSubackFailure) {
      spdlog::error("source '{}': {}:{} refused the subscription to '{}'", config_.name,
                    config_.host, config_.port, config_.topics[i]);
    }
  }
  onReady();
  return true;
}

void SourceClient::onReady() {
  state_ = State::kConnected;
  failedSinceConnected_ = false;
  connected_.store(true, std::memory_order_relaxed);
  spdlog::info("source '{}': connected to {}:{} as '{}', subscribed to {} filter(s)", config_.name,
               config_.host, config_.port, config_.clientId, config_.topics.size());
  armPing();
}

bool SourceClient::onPublish(mqtt::Publish& publish) {
  received_.fetch_add(1, std::memory_order_relaxed);
  if (publish.qos > 1) {
    // We subscribe with at most QoS 1, and a broker never sends above the granted QoS.
    lost("QoS 2 PUBLISH although subscribed with at most QoS 1");
    return false;
  }
  std::optional<storage::Record> record =
      normalizer_.normalize(publish.topic, publish.payload, core::nowMicros());
  // Local subscribers see the message as if it had been published here; '$' topics (the
  // source's own $SYS) stay out of the local tree.
  std::uint64_t durableSeq = 0;  // broker state writes (persistent sessions, retained) to wait for
  if (broker_ != nullptr && !publish.topic.starts_with('$')) {
    auto message = std::make_shared<broker::Message>();
    message->qos = publish.qos;
    message->retain = publish.retain;
    message->topic = publish.topic;
    message->payload = record ? publish.payload : std::move(publish.payload);
    broker_->route(message, nullptr, &durableSeq);
  }
  const bool qos1 = publish.qos == 1;
  if (!record) {
    if (qos1 && durableSeq == 0) {
      queueAck(publish.packetId, true);  // nothing to store: ack in order, at once
    } else if (qos1) {
      const std::uint64_t sequence = queueAck(publish.packetId, false);
      broker_->whenStateDurable(durableSeq, [self = shared_from_this(), gen = gen_, sequence] {
        asio::post(self->io_, [self, gen, sequence] { self->onAckReady(gen, sequence); });
      });
    }
    return true;
  }
  if (!qos1) {
    pipeline_.submit(std::move(*record), nullptr);
    return true;
  }
  const std::uint64_t sequence = queueAck(publish.packetId, false);
  pipeline_.submit(
      std::move(*record), [self = shared_from_this(), gen = gen_, sequence, durableSeq] {
        auto ready = [self, gen, sequence] {
          asio::post(self->io_, [self, gen, sequence] { self->onAckReady(gen, sequence); });
        };
        if (self->broker_ == nullptr) {
          ready();
        } else {
          self->broker_->whenStateDurable(durableSeq, std::move(ready));
        }
      });
  return true;
}

std::uint64_t SourceClient::queueAck(std::uint16_t packetId, bool ready) {
  const std::uint64_t sequence = nextAckSequence_++;
  acks_.push_back(PendingAck{sequence, packetId, ready});
  if (ready) flushAcks();
  return sequence;
}

void SourceClient::onAckReady(std::uint32_t gen, std::uint64_t sequence) {
  // A commit for a connection that is gone: the source resends that message on the next one.
  if (gen != gen_ || acks_.empty() || sequence < acks_.front().sequence) return;
  const auto index = static_cast<std::size_t>(sequence - acks_.front().sequence);
  if (index >= acks_.size()) return;
  acks_[index].ready = true;
  flushAcks();
  flush();
}

void SourceClient::flushAcks() {
  // PUBACKs leave in the order the PUBLISHes arrived (MQTT 3.1.1 §4.6).
  while (!acks_.empty() && acks_.front().ready) {
    mqtt::encodeAck(mqtt::PacketType::kPuback, acks_.front().packetId, out_);
    acks_.pop_front();
    acked_.fetch_add(1, std::memory_order_relaxed);
  }
}

void SourceClient::armPing() {
  if (config_.keepAlive == 0) return;
  // Ping at three quarters of the keep-alive so the source never has to time us out.
  const auto after = std::chrono::seconds(config_.keepAlive) * 3 / 4;
  arm(lastSend_ + std::chrono::duration_cast<Clock::duration>(after), [this] { onPingTimer(); });
}

void SourceClient::onPingTimer() {
  if (state_ != State::kConnected && state_ != State::kAwaitSuback) return;
  const auto after = std::chrono::seconds(config_.keepAlive) * 3 / 4;
  if (Clock::now() - lastSend_ >= after) {
    // While paused we cannot read the PINGRESP; the connection is not dead for that.
    if (pingOutstanding_ && !paused_) {
      lost("no PINGRESP within the keep-alive");
      return;
    }
    pingOutstanding_ = true;
    mqtt::encodeEmpty(mqtt::PacketType::kPingreq, out_);
    flush();
  }
  armPing();
}

void SourceClient::flush() {
  if (writing_ || out_.empty() || state_ == State::kIdle || state_ == State::kConnecting ||
      state_ == State::kStopped) {
    return;
  }
  writing_ = true;
  std::swap(out_, wbuf_);
  out_.clear();
  lastSend_ = Clock::now();
  auto done = [self = shared_from_this(), gen = gen_, stream = tlsStream_](
                  const boost::system::error_code& ec, std::size_t) {
    if (gen != self->gen_) return;
    self->writing_ = false;
    self->wbuf_.clear();
    if (ec) {
      self->lost("write: " + ec.message());
    } else if (!self->out_.empty()) {
      self->flush();
    } else if (self->state_ == State::kDisconnecting) {
      self->finish();
    }
  };
  if (tlsStream_) {
    asio::async_write(*tlsStream_, asio::buffer(wbuf_), std::move(done));
  } else {
    asio::async_write(socket_, asio::buffer(wbuf_), std::move(done));
  }
}

void SourceClient::lost(const std::string& reason) {
  if (state_ == State::kStopped) return;
  if (state_ == State::kDisconnecting || stopping_) {
    finish();
    return;
  }
  connected_.store(false, std::memory_order_relaxed);
  const auto delay = jittered(backoff_);
  backoff_ = std::min(backoff_ * 2, kBackoffMax);
  // The first failure is worth a warning; repeating it every retry while the source is down is not.
  const auto level = failedSinceConnected_ ? spdlog::level::debug : spdlog::level::warn;
  failedSinceConnected_ = true;
  spdlog::log(level, "source '{}': {}:{}: {}; retrying in {} ms", config_.name, config_.host,
              config_.port, reason,
              std::chrono::duration_cast<std::chrono::milliseconds>(delay).count());
  closeSocket();
  state_ = State::kIdle;
  arm(Clock::now() + delay, [this] { connect(); });
}

void SourceClient::closeSocket() {
  ++gen_;  // every handler of the old connection now ignores its result
  boost::system::error_code ignored;
  resolver_.cancel();
  tcp::socket& socket = lowest();
  if (socket.is_open()) {
    socket.shutdown(tcp::socket::shutdown_both, ignored);
    socket.close(ignored);
  }
  tlsStream_.reset();  // pending handlers keep it alive until they have run
  rx_.clear();
  out_.clear();
  wbuf_.clear();
  acks_.clear();
  writing_ = false;
  reading_ = false;
  paused_ = false;
  pingOutstanding_ = false;
}

void SourceClient::finish() {
  if (state_ == State::kStopped) return;
  connected_.store(false, std::memory_order_relaxed);
  closeSocket();
  disarm();
  state_ = State::kStopped;
  if (!closedSet_) {
    closedSet_ = true;
    closed_.set_value();
  }
}

}  // namespace tern::bridge
