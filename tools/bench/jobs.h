// SPDX-License-Identifier: Apache-2.0
//
// Benchmark job shapes and the two ways flurry-bench runs them: through
// FdsClient against a blob (RunTractJob) and through fio on a local file
// (RunFioJob, fio.cc). Both report the same numbers.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "common/loop.h"
#include "fdsclient/fds_client.h"

namespace flurry::bench {

struct JobSpec {
  std::string name;  // e.g. "4k randread QD32"
  bool write = false;
  bool random = true;
  uint32_t bs = 4096;
  unsigned qd = 1;
};

// The fixed job list of `flurry-bench tract`.
std::vector<JobSpec> DefaultJobs();

struct JobResult {
  bool ok = false;
  std::string error;      // why not ok
  double seconds = 0;
  uint64_t ops = 0, bytes = 0, failed = 0;
  double mean_lat_us = 0;
  double iops() const { return seconds > 0 ? static_cast<double>(ops) / seconds : 0; }
  double mib_s() const { return seconds > 0 ? static_cast<double>(bytes) / seconds / (1 << 20) : 0; }
};

// Set from a signal handler: running jobs stop early.
extern std::atomic<bool> g_interrupted;

// Runs `spec` for `seconds` against [0, size) of the blob. Random jobs pick
// bs-aligned offsets uniformly; sequential ones sweep the range (wrapping)
// with qd requests in flight. IOs never cross a tract (bs divides the tract
// size).
JobResult RunTractJob(Loop* loop, FdsClient* client, const BlobRef& blob, uint64_t size,
                      const JobSpec& spec, double seconds);

// Writes [0, size) once (1 MiB, QD 8) so that reads find data.
JobResult PrefillBlob(Loop* loop, FdsClient* client, const BlobRef& blob, uint64_t size);

// fio --ioengine=io_uring --direct=1 on `file` (size bytes), same shape.
JobResult RunFioJob(const std::string& fio, const std::string& file, uint64_t size,
                    const JobSpec& spec, double seconds, const std::string& log);
// Lays the fio file out by writing it sequentially (fio rw=write, bs=1M).
JobResult PrefillFioFile(const std::string& fio, const std::string& file, uint64_t size,
                         const std::string& log);

}  // namespace flurry::bench
