// The flat JSON helpers, copied from the SQLite backend (whose copy is private to it), except
// that NUL characters are written as U+FFFD.
#include "storage/postgres/flat_json.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <system_error>
#include <variant>

namespace tern::storage::postgres {
namespace {

bool representableValue(const FieldValue& value) {
  const auto* d = std::get_if<double>(&value);
  return d == nullptr || std::isfinite(*d);
}

void appendJsonValue(std::string& out, const FieldValue& value) {
  char buffer[64];
  if (const auto* i = std::get_if<std::int64_t>(&value)) {
    const auto end = std::to_chars(buffer, buffer + sizeof buffer, *i).ptr;
    out.append(buffer, end);
  } else if (const auto* d = std::get_if<double>(&value)) {
    const auto end = std::to_chars(buffer, buffer + sizeof buffer, *d).ptr;
    const std::string_view text(buffer, static_cast<std::size_t>(end - buffer));
    out += text;
    if (text.find_first_of(".eE") == std::string_view::npos) {
      out += ".0";  // keep it a double when read back
    }
  } else if (const auto* b = std::get_if<bool>(&value)) {
    out += *b ? "true" : "false";
  } else {
    appendJsonString(out, std::get<std::string>(value));
  }
}

void appendUtf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Reads the flat objects written above (and PostgreSQL's json_object_agg re-rendering of them,
// which keeps value tokens verbatim). Standard JSON escapes are accepted; nested values are
// not expected.
class FlatJsonReader {
 public:
  explicit FlatJsonReader(std::string_view text) : text_(text) {}

  bool read(std::vector<Field>& fields) {
    skipSpace();
    if (!consume('{')) {
      return false;
    }
    skipSpace();
    if (consume('}')) {
      return atEnd();
    }
    while (true) {
      Field field;
      skipSpace();
      if (!readString(field.key)) {
        return false;
      }
      skipSpace();
      if (!consume(':')) {
        return false;
      }
      skipSpace();
      bool isNull = false;
      if (!readValue(field.value, isNull)) {
        return false;
      }
      if (!isNull) {
        fields.push_back(std::move(field));
      }
      skipSpace();
      if (consume('}')) {
        return atEnd();
      }
      if (!consume(',')) {
        return false;
      }
    }
  }

 private:
  bool atEnd() {
    skipSpace();
    return pos_ == text_.size();
  }
  void skipSpace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\n' ||
                                   text_[pos_] == '\r' || text_[pos_] == '\t')) {
      ++pos_;
    }
  }
  bool consume(char c) {
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  bool consumeWord(std::string_view word) {
    if (text_.substr(pos_, word.size()) == word) {
      pos_ += word.size();
      return true;
    }
    return false;
  }

  bool readHex4(std::uint32_t& value) {
    if (pos_ + 4 > text_.size()) {
      return false;
    }
    const char* begin = text_.data() + pos_;
    const auto [ptr, ec] = std::from_chars(begin, begin + 4, value, 16);
    if (ec != std::errc() || ptr != begin + 4) {
      return false;
    }
    pos_ += 4;
    return true;
  }

  bool readString(std::string& out) {
    if (!consume('"')) {
      return false;
    }
    while (pos_ < text_.size()) {
      const char c = text_[pos_++];
      if (c == '"') {
        return true;
      }
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= text_.size()) {
        return false;
      }
      switch (text_[pos_++]) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case '/':
          out += '/';
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          std::uint32_t cp = 0;
          if (!readHex4(cp)) {
            return false;
          }
          if (cp >= 0xD800 && cp < 0xDC00 && text_.substr(pos_, 2) == "\\u") {
            pos_ += 2;
            std::uint32_t low = 0;
            if (!readHex4(low)) {
              return false;
            }
            cp = (low >= 0xDC00 && low < 0xE000) ? 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00)
                                                 : 0xFFFD;
          } else if (cp >= 0xD800 && cp < 0xE000) {
            cp = 0xFFFD;  // a lone surrogate has no UTF-8 form
          }
          appendUtf8(out, cp);
          break;
        }
        default:
          return false;
      }
    }
    return false;
  }

  bool readValue(FieldValue& value, bool& isNull) {
    if (pos_ >= text_.size()) {
      return false;
    }
    const char c = text_[pos_];
    if (c == '"') {
      std::string text;
      if (!readString(text)) {
        return false;
      }
      value = std::move(text);
      return true;
    }
    if (consumeWord("true")) {
      value = true;
      return true;
    }
    if (consumeWord("false")) {
      value = false;
      return true;
    }
    if (consumeWord("null")) {
      isNull = true;
      return true;
    }
    return readNumber(value);
  }

  bool readNumber(FieldValue& value) {
    const std::size_t start = pos_;
    bool isDouble = false;
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (c == '.' || c == 'e' || c == 'E') {
        isDouble = true;
      } else if (!(c == '-' || c == '+' || (c >= '0' && c <= '9'))) {
        break;
      }
      ++pos_;
    }
    const char* begin = text_.data() + start;
    const char* end = text_.data() + pos_;
    if (begin == end) {
      return false;
    }
    if (!isDouble) {
      std::int64_t i = 0;
      const auto [ptr, ec] = std::from_chars(begin, end, i);
      if (ec == std::errc() && ptr == end) {
        value = i;
        return true;
      }
      // Out of int64 range: fall through and keep it as a double.
    }
    double d = 0;
    const auto [ptr, ec] = std::from_chars(begin, end, d);
    if (ec != std::errc() || ptr != end) {
      return false;
    }
    value = d;
    return true;
  }

  std::string_view text_;
  std::size_t pos_ = 0;
};

}  // namespace

void appendJsonString(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += '"';
  for (const char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\0':
        // PostgreSQL's json functions refuse to unescape \u0000 (it has no text form), and
        // one such value would make every json_each/->> over the object fail.
        out += "\xEF\xBF\xBD";
        break;
      default:
        if (byte < 0x20) {
          out += "\\u00";
          out += kHex[byte >> 4];
          out += kHex[byte & 0xF];
        } else {
          out += c;  // UTF-8 passes through unchanged
        }
    }
  }
  out += '"';
}

bool representable(const FieldValue& value) {
  return representableValue(value);
}

void appendJsonMember(std::string& out, bool& first, std::string_view key,
                      const FieldValue& value) {
  if (!representableValue(value)) {
    return;
  }
  out += first ? '{' : ',';
  first = false;
  appendJsonString(out, key);
  out += ':';
  appendJsonValue(out, value);
}

void appendJsonObject(std::string& out, const std::vector<Field>& fields) {
  bool first = true;
  for (const Field& field : fields) {
    appendJsonMember(out, first, field.key, field.value);
  }
  out += first ? "{}" : "}";
}

bool parseFields(std::string_view text, std::vector<Field>& fields) {
  return FlatJsonReader(text).read(fields);
}

}  // namespace tern::storage::postgres
