// SPDX-License-Identifier: Apache-2.0
//
// The "key=value\n" counters text used by status endpoints (tract server
// STAT_SERVER, engines' CountersText()), and reading one field back out of
// whitespace-separated "key=value" text (flurry-meta's LEASE replies).
#pragma once

#include <cstdint>
#include <string>

namespace flurry {

inline void AppendKv(std::string* out, const char* key, uint64_t value) {
  *out += key;
  *out += '=';
  *out += std::to_string(value);
  *out += '\n';
}

// The value of key in "k1=v1 k2=v2 ..." (space or newline separated); empty
// when absent.
inline std::string KvField(const std::string& text, const std::string& key) {
  for (size_t p = 0; (p = text.find(key + "=", p)) != std::string::npos; p += key.size()) {
    if (p > 0 && text[p - 1] != ' ' && text[p - 1] != '\n') continue;
    size_t v = p + key.size() + 1;
    size_t e = text.find_first_of(" \n", v);
    return text.substr(v, e == std::string::npos ? std::string::npos : e - v);
  }
  return "";
}

}  // namespace flurry
