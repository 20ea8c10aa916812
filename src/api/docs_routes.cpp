// The API's own description (GET /api/v1/openapi.json) and Swagger UI (/docs), both public and
// both compiled into the binary.
#include "api/encoding.h"
#include "api/openapi.h"
#include "api/router.h"
#include "web/docs_assets.h"

namespace tern::embedded {
extern const std::string_view kOpenApiJson;
}

namespace tern::api {
namespace {

ApiResponse fileResponse(const web::DocsFile& file) {
  ApiResponse response;
  response.contentType = std::string(file.contentType);
  response.body = std::string(file.body);
  // The files change only with the binary; an hour of caching spares reloads of the 1.5 MB
  // bundle without pinning an old UI for long after an upgrade.
  response.headers.emplace_back("Cache-Control", "public, max-age=3600");
  return response;
}

}  // namespace

std::string_view openApiDocument() {
  return embedded::kOpenApiJson;
}

ApiResponse Router::openApi(const Call& /*call*/) const {
  ApiResponse response;
  response.body = std::string(openApiDocument());
  return response;
}

ApiResponse Router::docsIndex(const Call& /*call*/) const {
  return fileResponse(*web::findDocsFile("index.html"));
}

ApiResponse Router::docsAsset(const Call& call) const {
  const auto* file = web::findDocsFile(call.args[0]);
  if (file == nullptr) {
    return problemResponse(404, "no such file under /docs: " + quoteInput(call.args[0], 200));
  }
  return fileResponse(*file);
}

}  // namespace tern::api
