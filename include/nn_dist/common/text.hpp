// User text inside messages: a value that came from a file or a flag is shown
// shortened and with control and non-ASCII bytes escaped, so a binary file or a
// 10 MB line never lands raw on the terminal. And numbers as text (fmt).
#pragma once

#include <cstdio>
#include <exception>
#include <string>
#include <type_traits>

namespace nn_dist {

// The length of the valid UTF-8 sequence of 2 to 4 bytes at text[i], or 0.
inline std::size_t utf8_length(const std::string& text, std::size_t i) {
  const unsigned char c = static_cast<unsigned char>(text[i]);
  const std::size_t n = c >= 0xf0 && c < 0xf5 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
  if (n == 0 || (n == 3 && c >= 0xf0) || i + n > text.size()) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    if ((static_cast<unsigned char>(text[i + k]) & 0xc0) != 0x80) return 0;
  }
  return n;
}

// Whether the n-byte UTF-8 sequence at text[i] is a character that shows as
// nothing: a C1 control or a format character (zero-width ones, direction
// marks and overrides, the byte-order mark U+FEFF), which would hide inside a
// file name in a message.
inline bool invisible_character(const std::string& text, std::size_t i, std::size_t n) {
  unsigned long c = static_cast<unsigned char>(text[i]) & (0x7fu >> n);
  for (std::size_t k = 1; k < n; ++k) c = (c << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3fu);
  return (c >= 0x80 && c <= 0x9f) || c == 0xad || c == 0x61c || c == 0x180e || (c >= 0x200b && c <= 0x200f) ||
         (c >= 0x2028 && c <= 0x202e) || (c >= 0x2060 && c <= 0x206f) || c == 0xfeff || (c >= 0xfff9 && c <= 0xfffb);
}

// At most max_chars characters of text (then "... (N bytes)"); control bytes,
// invisible characters and bytes that are not UTF-8 become \xNN (names like
// "données.h5" stay).
inline std::string printable(const std::string& text, std::size_t max_chars = 60) {
  std::string out;
  std::size_t chars = 0;
  for (std::size_t i = 0; i < text.size(); ++chars) {
    if (chars >= max_chars) return out + "... (" + std::to_string(text.size()) + " bytes)";
    const unsigned char c = static_cast<unsigned char>(text[i]);
    const std::size_t n = c >= 0x80 ? utf8_length(text, i) : 0;
    if (n > 0 && !invisible_character(text, i, n)) {
      out.append(text, i, n);
      i += n;
    } else if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
      ++i;
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
      ++i;
    }
  }
  return out;
}

// One number formatted by printf's `format` (e.g. "%.5f"), for messages and
// output lines built from strings.
inline std::string fmt(const char* format, double value) {
  char buf[64];
  const int n = std::snprintf(buf, sizeof buf, format, value);
  if (n < static_cast<int>(sizeof buf)) return buf;
  std::string long_text(static_cast<std::size_t>(n), '\0');  // e.g. "%.0f" of 1e300: never cut short
  std::snprintf(long_text.data(), long_text.size() + 1, format, value);
  return long_text;
}

// Whether all of `text` is one number (std::stod / std::stol, with nothing
// before or after it); it goes to *value. A flag's parser then names the flag.
template <typename T>
bool whole_number(const std::string& text, T* value) {
  std::size_t used = 0;
  try {
    if constexpr (std::is_floating_point_v<T>) {
      *value = static_cast<T>(std::stod(text, &used));
    } else {
      *value = static_cast<T>(std::stol(text, &used));
    }
  } catch (const std::exception&) {
    return false;
  }
  return used > 0 && used == text.size();
}

}  // namespace nn_dist
