// SPDX-License-Identifier: Apache-2.0
//
// Parsing and printing of sizes ("64K", "8M", "2G", "1T", plain bytes) and
// host:port addresses.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.h"

namespace flurry {

// Parses a size with an optional binary suffix K/M/G/T (case-insensitive,
// optional trailing "iB"/"B"). Rejects negative numbers, junk and overflow.
Result<uint64_t> ParseSize(std::string_view s);

// "8.0 MiB"-style rendering.
std::string FormatSize(uint64_t bytes);

struct HostPort {
  std::string host;
  uint16_t port = 0;
  std::string ToString() const { return host + ":" + std::to_string(port); }
};

// Parses "HOST:PORT" or ":PORT" (host defaults to 127.0.0.1). Port 0 is
// allowed (the kernel picks) only when allow_zero_port.
Result<HostPort> ParseHostPort(std::string_view s, bool allow_zero_port = false);

}  // namespace flurry
