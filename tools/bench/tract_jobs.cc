// SPDX-License-Identifier: Apache-2.0
#include <algorithm>
#include <cstring>
#include <functional>
#include <limits>

#include "common/buffer.h"
#include "tools/bench/jobs.h"

namespace flurry::bench {

std::atomic<bool> g_interrupted{false};

std::vector<JobSpec> DefaultJobs() {
  return {
      {"4k randread QD1", false, true, 4096, 1},
      {"4k randread QD32", false, true, 4096, 32},
      {"4k randwrite QD1", true, true, 4096, 1},
      {"4k randwrite QD32", true, true, 4096, 32},
      {"1M seqread QD8", false, false, 1u << 20, 8},
      {"1M seqwrite QD8", true, false, 1u << 20, 8},
  };
}

namespace {

JobResult Run(Loop* loop, FdsClient* client, const BlobRef& blob, uint64_t size, const JobSpec& spec,
              double seconds, uint64_t max_ops) {
  JobResult r;
  if (blob.tract_size % spec.bs != 0 || size < spec.bs) {
    r.error = "block size must divide the tract size and fit the volume";
    return r;
  }
  const uint64_t blocks = size / spec.bs;
  std::vector<AlignedBuffer> bufs;
  uint64_t x = 0x9E3779B97F4A7C15ull;
  auto rnd = [&x] {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
  };
  for (unsigned i = 0; i < spec.qd; ++i) {
    bufs.emplace_back(spec.bs);
    for (size_t j = 0; j + 8 <= spec.bs; j += 8) {
      uint64_t v = rnd();
      memcpy(bufs.back().data() + j, &v, 8);
    }
  }
  const uint64_t start = Loop::NowNs();
  const uint64_t end = seconds > 0 ? start + static_cast<uint64_t>(seconds * 1e9)
                                   : std::numeric_limits<uint64_t>::max();
  uint64_t cursor = 0, issued = 0, inflight = 0, last_done = start;
  uint64_t lat_sum_ns = 0;
  std::function<void(unsigned)> issue = [&](unsigned slot) {
    uint64_t now = Loop::NowNs();
    if (now >= end || g_interrupted || (max_ops && issued >= max_ops) || r.failed > 100) return;
    uint64_t block = spec.random ? rnd() % blocks : cursor;
    cursor = (cursor + 1) % blocks;
    uint64_t off = block * spec.bs;
    uint64_t tract = off / blob.tract_size;
    uint32_t toff = static_cast<uint32_t>(off % blob.tract_size);
    issued++;
    inflight++;
    auto done = [&, slot, now](int res) {
      inflight--;
      last_done = Loop::NowNs();
      if (res < 0) {
        if (r.failed++ == 0) r.error = "IO failed: " + errstr(res);
        // Re-issue from the loop (no recursion on synchronous failures); the
        // pending post counts as in flight so that the job waits for it.
        inflight++;
        loop->Post([&, slot] {
          inflight--;
          issue(slot);
        });
        return;
      }
      r.ops++;
      r.bytes += spec.bs;
      lat_sum_ns += last_done - now;
      issue(slot);
    };
    uint8_t* buf = bufs[slot].data();
    if (spec.write) {
      client->Write(blob, tract, toff, spec.bs, buf, 0, std::move(done));
    } else {
      client->Read(blob, tract, toff, spec.bs, buf,
                   [done = std::move(done)](int res, std::vector<uint8_t>) { done(res); });
    }
  };
  for (unsigned i = 0; i < spec.qd; ++i) issue(i);
  while (inflight > 0) loop->RunOnce(100);
  r.seconds = static_cast<double>(last_done - start) / 1e9;
  r.mean_lat_us = r.ops ? static_cast<double>(lat_sum_ns) / static_cast<double>(r.ops) / 1e3 : 0;
  r.ok = r.failed == 0 && r.ops > 0 && !g_interrupted;
  if (g_interrupted && r.error.empty()) r.error = "interrupted";
  if (r.ops == 0 && r.error.empty()) r.error = "no IO completed";
  return r;
}

}  // namespace

JobResult RunTractJob(Loop* loop, FdsClient* client, const BlobRef& blob, uint64_t size,
                      const JobSpec& spec, double seconds) {
  return Run(loop, client, blob, size, spec, seconds, 0);
}

JobResult PrefillBlob(Loop* loop, FdsClient* client, const BlobRef& blob, uint64_t size) {
  JobSpec fill{"prefill", true, false, 1u << 20, 8};
  return Run(loop, client, blob, size, fill, 0, size / fill.bs);
}

}  // namespace flurry::bench
