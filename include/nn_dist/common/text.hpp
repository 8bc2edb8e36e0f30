// User text inside messages: a value that came from a file or a flag is shown
// shortened and with control and non-ASCII bytes escaped, so a binary file or a
// 10 MB line never lands raw on the terminal.
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

// At most max_chars characters of text (then "... (N bytes)"); control bytes
// and bytes that are not UTF-8 become \xNN (names like "données.h5" stay).
inline std::string printable(const std::string& text, std::size_t max_chars = 60) {
  std::string out;
  std::size_t chars = 0;
  for (std::size_t i = 0; i < text.size(); ++chars) {
    if (chars >= max_chars) return out + "... (" + std::to_string(text.size()) + " bytes)";
    const unsigned char c = static_cast<unsigned char>(text[i]);
    const std::size_t n = c >= 0x80 ? utf8_length(text, i) : 0;
    if (n > 0) {
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
