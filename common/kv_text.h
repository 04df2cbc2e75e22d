// SPDX-License-Identifier: Apache-2.0
//
// The "key=value\n" counters text used by status endpoints (tract server
// STAT_SERVER, engines' CountersText()).
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

}  // namespace flurry
