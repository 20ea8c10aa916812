#include "api/problem.h"

#include <boost/json/object.hpp>

#include "api/encoding.h"
#include "api/json_out.h"

namespace tern::api {

std::string_view statusTitle(unsigned status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 201:
      return "Created";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 409:
      return "Conflict";
    case 408:
      return "Request Timeout";
    case 413:
      return "Content Too Large";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    default:
      return status >= 500 ? "Server Error" : "Client Error";
  }
}

ApiResponse problemResponse(unsigned status, std::string_view detail) {
  boost::json::object body;
  body["type"] = "about:blank";
  body["title"] = statusTitle(status);
  body["status"] = status;
  // Details may quote client input; keep the JSON valid whatever bytes it held.
  body["detail"] = toValidUtf8(detail);
  ApiResponse response;
  response.status = status;
  response.contentType = "application/problem+json";
  response.body = toJsonText(body);
  return response;
}

}  // namespace tern::api
