// The operator web app: its page at /, its files at /app/{file} (both public: the page holds no
// data, everything it shows comes from the token-protected API) and GET /api/v1/web/config, the
// settings the page needs once logged in (tile URL, online window).
#include <boost/json/object.hpp>

#include "api/encoding.h"
#include "api/json_out.h"
#include "api/router.h"
#include "web/app_assets.h"

namespace tern::api {
namespace {

constexpr std::int64_t kSecondUs = 1'000'000;

// The page runs only its own scripts and talks only to this server (plus the configured tile
// server for images); styles may be inline because Leaflet and uPlot position elements that way.
constexpr std::string_view kContentSecurityPolicy =
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob: https: http:; connect-src 'self' ws: wss:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

ApiResponse appFileResponse(const web::AppFile& file) {
  ApiResponse response;
  response.contentType = std::string(file.contentType);
  response.body = std::string(file.body);
  // Library files change only with their npm version; the app's own files with every build, so
  // the browser asks again each time rather than run a stale app against a newer server.
  response.headers.emplace_back("Cache-Control",
                                file.library ? "public, max-age=3600" : "no-cache");
  response.headers.emplace_back("X-Content-Type-Options", "nosniff");
  if (file.name == "index.html") {
    response.headers.emplace_back("Content-Security-Policy", std::string(kContentSecurityPolicy));
  }
  return response;
}

}  // namespace

ApiResponse Router::appIndex(const Call& /*call*/) const {
  return appFileResponse(*web::findAppFile("index.html"));
}

ApiResponse Router::appAsset(const Call& call) const {
  const auto* file = web::findAppFile(call.args[0]);
  if (file == nullptr) {
    return problemResponse(404, "no such file under /app: " + quoteInput(call.args[0], 200));
  }
  return appFileResponse(*file);
}

ApiResponse Router::webConfig(const Call& /*call*/) const {
  boost::json::object body;
  body["tile_url"] = toValidUtf8(options_.web.tileUrl);
  body["tile_attribution"] = toValidUtf8(options_.web.tileAttribution);
  body["online_window_s"] = options_.web.onlineWindowUs / kSecondUs;
  ApiResponse response;
  response.body = toJsonText(body);
  return response;
}

}  // namespace tern::api
