// SPDX-License-Identifier: Apache-2.0
#include "common/units.h"

#include <cctype>
#include <cstdio>

namespace flurry {

Result<uint64_t> ParseSize(std::string_view s) {
  if (s.empty()) return Result<uint64_t>::error(-EINVAL);
  uint64_t v = 0;
  size_t i = 0;
  for (; i < s.size() && isdigit(static_cast<unsigned char>(s[i])); ++i) {
    uint64_t d = s[i] - '0';
    if (v > (UINT64_MAX - d) / 10) return Result<uint64_t>::error(-ERANGE);
    v = v * 10 + d;
  }
  if (i == 0) return Result<uint64_t>::error(-EINVAL);
  std::string_view suf = s.substr(i);
  unsigned shift = 0;
  if (!suf.empty()) {
    switch (toupper(static_cast<unsigned char>(suf[0]))) {
      case 'K': shift = 10; break;
      case 'M': shift = 20; break;
      case 'G': shift = 30; break;
      case 'T': shift = 40; break;
      case 'B': shift = 0; break;
      default: return Result<uint64_t>::error(-EINVAL);
    }
    suf.remove_prefix(1);
    if (shift && (suf == "iB" || suf == "IB" || suf == "ib" || suf == "B" || suf == "b")) suf = {};
    if (!suf.empty()) return Result<uint64_t>::error(-EINVAL);
  }
  if (shift && v > (UINT64_MAX >> shift)) return Result<uint64_t>::error(-ERANGE);
  return v << shift;
}

std::string FormatSize(uint64_t b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  double v = static_cast<double>(b);
  int u = 0;
  while (v >= 1024 && u < 5) { v /= 1024; ++u; }
  char buf[32];
  if (u == 0) snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(b));
  else snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

Result<HostPort> ParseHostPort(std::string_view s, bool allow_zero_port) {
  size_t colon = s.rfind(':');
  if (colon == std::string_view::npos) return Result<HostPort>::error(-EINVAL);
  HostPort hp;
  hp.host = std::string(s.substr(0, colon));
  if (hp.host.empty()) hp.host = "127.0.0.1";
  if (hp.host.size() > 2 && hp.host.front() == '[' && hp.host.back() == ']')
    hp.host = hp.host.substr(1, hp.host.size() - 2);
  std::string_view p = s.substr(colon + 1);
  if (p.empty() || p.size() > 5) return Result<HostPort>::error(-EINVAL);
  unsigned v = 0;
  for (char c : p) {
    if (!isdigit(static_cast<unsigned char>(c))) return Result<HostPort>::error(-EINVAL);
    v = v * 10 + (c - '0');
  }
  if (v > 65535 || (v == 0 && !allow_zero_port)) return Result<HostPort>::error(-EINVAL);
  hp.port = static_cast<uint16_t>(v);
  return hp;
}

}  // namespace flurry
