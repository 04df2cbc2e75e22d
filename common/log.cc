// SPDX-License-Identifier: Apache-2.0
#include "common/log.h"

#include <atomic>
#include <cstdio>
#include <ctime>
#include <string>

namespace flurry {
namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::string g_prefix = "flurry";
const char* kNames[] = {"debug", "info", "warn", "error"};
}  // namespace

void SetLogLevel(LogLevel level) { g_level = static_cast<int>(level); }
void SetLogPrefix(const char* prefix) { g_prefix = prefix; }
bool LogEnabled(LogLevel level) { return static_cast<int>(level) >= g_level.load(); }

void Log(LogLevel level, const char* fmt, ...) {
  if (!LogEnabled(level)) return;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  tm tmv;
  localtime_r(&ts.tv_sec, &tmv);
  fprintf(stderr, "%02d:%02d:%02d.%03ld %s %s: %s\n", tmv.tm_hour, tmv.tm_min, tmv.tm_sec,
          ts.tv_nsec / 1000000, g_prefix.c_str(), kNames[static_cast<int>(level)], msg);
}

}  // namespace flurry
