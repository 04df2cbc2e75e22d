// SPDX-License-Identifier: Apache-2.0
#include "tools/crashtest/stats.h"

#include <cstdio>

namespace flurry::crashtest {

void CrashStats::Violation(const std::string& what) {
  if (first_violations.size() < 20) first_violations.push_back(what);
}

void CrashStats::Add(const CheckResult& r, const std::string& context) {
  crashes++;
  epochs_lost.Add(static_cast<double>(r.epochs_lost));
  bytes_lost.Add(static_cast<double>(r.bytes_lost));
  if (r.ok) return;
  violating++;
  bad_sectors += r.bad_sectors;
  if (!r.prefix_consistent) prefix_failures++;
  for (const auto& d : r.details) Violation(context + ": " + d);
}

std::string CrashStats::Report() const {
  char b[1024];
  double per_min = seconds > 0 ? static_cast<double>(crashes) * 60.0 / seconds : 0;
  std::string idem;
  if (idempotence_checks > 0)
    idem = std::to_string(idempotence_failures) + "/" + std::to_string(idempotence_checks) +
           " recoveries not idempotent, ";
  if (recovery_crash_checks > 0)
    idem += std::to_string(recovery_crash_failures) + "/" + std::to_string(recovery_crash_checks) +
            " crashes during recovery wrong, ";
  if (replica_checks > 0)
    idem += std::to_string(replica_failures) + "/" + std::to_string(replica_checks) +
            " re-reads with a tract server down differing, ";
  snprintf(b, sizeof b,
           "mode %s: %llu %s, %llu violations (%llu bad sectors, %llu without a durable prefix, "
           "%s%llu wrong sectors in %llu checked reads)\n"
           "  epochs lost per crash: mean %.2f, max %.0f\n"
           "  bytes lost per crash:  mean %.0f, max %.0f\n"
           "  %llu acknowledged writes, %llu failed requests, %.1f s, %.0f %s/minute",
           mode.c_str(), (unsigned long long)crashes, unit.c_str(), (unsigned long long)violating,
           (unsigned long long)bad_sectors, (unsigned long long)prefix_failures,
           idem.c_str(), (unsigned long long)read_violations, (unsigned long long)read_checks, epochs_lost.mean(),
           epochs_lost.max, bytes_lost.mean(), bytes_lost.max, (unsigned long long)acked_writes,
           (unsigned long long)errors, seconds, per_min, unit.c_str());
  std::string s = b;
  if (recovery_ms.n) {
    snprintf(b, sizeof b, "\n  restart to ready: mean %.0f ms, max %.0f ms", recovery_ms.mean(), recovery_ms.max);
    s += b;
  }
  if (stopped_early) s += "\n  stopped early: too many violations";
  for (const auto& v : first_violations) s += "\n  VIOLATION " + v;
  return s;
}

}  // namespace flurry::crashtest
