// SPDX-License-Identifier: Apache-2.0
//
// WriteGate: may this process still write a volume? StripedBlob asks before
// every write, zero, bitmap clear and background repair it issues.
// flurry-disk's gate is the volume's write lease at flurry-meta
// (daemon/lease.h); tests and tools without one pass none (always yes).
//
// Contract
// - Check() is called on the blob's loop thread, must be cheap (an atomic
//   load and a clock read) and never block. now_ns is the loop's clock
//   (Loop::NowNs); a gate may read a clock of its own instead.
// - 0: write now. -EAGAIN: not now, ask again later (the lease is being
//   renewed). -EPERM: never again (another writer holds the volume).
#pragma once

#include <cstdint>

namespace flurry {

class WriteGate {
 public:
  virtual ~WriteGate() = default;
  virtual int Check(uint64_t now_ns) const = 0;
  // For log lines: what the gate is waiting for.
  virtual const char* what() const = 0;
  // The generation the tract servers check our writes by (tract protocol
  // writer_gen; 0 = none): a newer writer's FENCE makes servers refuse
  // ours, whatever our own view of the lease.
  virtual uint64_t writer_gen() const { return 0; }
};

}  // namespace flurry
