#pragma once
// The OpenAPI 3.1 description of API v1 (src/api/openapi.json, compiled in), served at
// GET /api/v1/openapi.json.
#include <string_view>

namespace tern::api {

std::string_view openApiDocument();

}  // namespace tern::api
