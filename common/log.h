// SPDX-License-Identifier: Apache-2.0
//
// Minimal leveled logging to stderr. Thread-safe (one fprintf per line).
#pragma once

#include <cstdarg>

namespace flurry {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void SetLogLevel(LogLevel level);
void SetLogPrefix(const char* prefix);  // e.g. "tractserver[127.0.0.1:7001]"
bool LogEnabled(LogLevel level);
void Log(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace flurry

#define FLOG_DEBUG(...) \
  do { if (::flurry::LogEnabled(::flurry::LogLevel::kDebug)) ::flurry::Log(::flurry::LogLevel::kDebug, __VA_ARGS__); } while (0)
#define FLOG_INFO(...) ::flurry::Log(::flurry::LogLevel::kInfo, __VA_ARGS__)
#define FLOG_WARN(...) ::flurry::Log(::flurry::LogLevel::kWarn, __VA_ARGS__)
#define FLOG_ERROR(...) ::flurry::Log(::flurry::LogLevel::kError, __VA_ARGS__)
