#pragma once
// One WebSocket client of the live feed (/api/v1/live): reads subscribe/unsubscribe messages,
// sends the matching records, re-checks its credentials. Created by the HTTP server after the
// router has authenticated the upgrade request.
#include <atomic>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "api/live_feed.h"
#include "core/result.h"

namespace tern::api {

struct LiveSessionHooks {
  // Re-checks the credentials the connection was opened with: nullopt while they hold, else why
  // not (expired, revoked). Runs on an API thread; may block briefly on the user store.
  std::function<std::optional<std::string>()> recheck;
  // The device list, for group membership.
  std::function<core::Result<std::vector<storage::DeviceSummary>>()> listDevices;
};

// Takes the connection over: answers the upgrade request with 101 and serves the client until
// it or the server closes. `counter` is the HTTP server's open-connection count, held while the
// session lives. A feed already at its session limit gets close code 1013 (try again later).
void startLiveSession(boost::beast::tcp_stream&& stream,
                      boost::beast::http::request<boost::beast::http::string_body> request,
                      LiveFeed& feed, LiveSessionHooks hooks, std::string peer,
                      std::atomic<std::size_t>& counter);

}  // namespace tern::api
