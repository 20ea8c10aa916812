#pragma once
// RFC 9457 problem details: every API error is one of these, so clients parse one shape.
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tern::api {

// What a handler returns. Kept free of Beast so the routing logic is testable on its own.
struct ApiResponse {
  unsigned status = 200;
  std::string contentType = "application/json";
  std::string body;
  std::string allow;  // the Allow header, for 405
  // Further headers, e.g. X-Next-Cursor on a CSV page (CSV has no room for it in the body).
  std::vector<std::pair<std::string, std::string>> headers;
  bool close = false;  // close the connection after sending
  // GET /api/v1/live accepted the WebSocket upgrade: the HTTP server hands the connection to the
  // live feed instead of sending this response.
  bool liveUpgrade = false;
};

struct Problem {
  unsigned status = 400;
  std::string detail;
};

// The reason phrase used as the problem title, e.g. 404 → "Not Found".
std::string_view statusTitle(unsigned status);

// An application/problem+json response.
ApiResponse problemResponse(unsigned status, std::string_view detail);
inline ApiResponse problemResponse(const Problem& problem) {
  return problemResponse(problem.status, problem.detail);
}

}  // namespace tern::api
