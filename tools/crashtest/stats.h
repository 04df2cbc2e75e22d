// SPDX-License-Identifier: Apache-2.0
//
// CrashStats: what a crash campaign of one write mode measured, and the
// one-paragraph report both runners print.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tools/crashtest/checker.h"

namespace flurry::crashtest {

struct Accum {
  uint64_t n = 0;
  double sum = 0, max = 0;
  void Add(double v) {
    n++;
    sum += v;
    if (v > max) max = v;
  }
  double mean() const { return n ? sum / static_cast<double>(n) : 0; }
};

struct CrashStats {
  std::string mode;
  std::string unit = "crash states";  // or "kills"
  uint64_t crashes = 0;               // crash states checked
  uint64_t violating = 0;             // crash states with at least one violation
  uint64_t bad_sectors = 0;
  uint64_t prefix_failures = 0;       // no durable prefix fits
  uint64_t idempotence_checks = 0, idempotence_failures = 0;
  uint64_t recovery_crash_checks = 0, recovery_crash_failures = 0;  // crashes during recovery
  uint64_t read_checks = 0, read_violations = 0;
  uint64_t replica_checks = 0, replica_failures = 0;  // whole-disk re-reads with a server down
  uint64_t acked_writes = 0, errors = 0;
  Accum epochs_lost, bytes_lost, recovery_ms;
  double seconds = 0;
  bool stopped_early = false;  // after too many violations
  std::vector<std::string> first_violations;  // a few, in words, with how to reproduce

  // Folds one checked crash in (and keeps the first few violations).
  void Add(const CheckResult& r, const std::string& context);
  void Violation(const std::string& what);
  std::string Report() const;
};

}  // namespace flurry::crashtest
