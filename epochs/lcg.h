// SPDX-License-Identifier: Apache-2.0
//
// LcgPermutation: the deterministic order in which log mode writes its P
// physical blocks (DESIGN.md "Write modes", Blizzard §2.5). O(1) space: the
// parameters (a, c, m) are a function of the number of runs alone, and a
// position is the pair (x, step) — x the physical block at that step, step
// how many blocks the walk has visited since position 0 (it grows across
// laps, never wraps in practice: 2^64 steps).
//
// Runs. The P blocks are cut into R = ceil(P / run) runs of `run`
// consecutive blocks (the last one may be shorter). The walk visits the runs
// in LCG order and the blocks of a run in address order. run = 1 is a walk
// over single blocks (the format of checkpoint version 1). Longer runs make
// consecutive steps adjacent on the blob, so writes issued together merge
// into one blob write and fill tract files in long extents, while the runs
// still spread over every tract (LogDevice::FlushIssues, log_write.cc).
//
// The LCG x' = (a*x + c) mod m runs over m = 2^k >= max(R, 4), keeping only
// values < R ("cycle walking"). One lap = P consecutive steps = m raw LCG
// steps, and visits every physical block exactly once; lap after lap
// repeats the same order. Because m < 2R (for R >= 4), a new run costs fewer
// than two raw LCG steps on average and at most m - R + 1.
//
// Full period (Hull–Dobell). The raw LCG has period m iff
//   (1) c and m are coprime            — c is odd, m a power of two;
//   (2) a - 1 is divisible by every prime factor of m (only 2) — a odd;
//   (3) a - 1 is divisible by 4 when 4 divides m — a ≡ 1 (mod 4).
// ParamsFor() forces c odd and a ≡ 1 (mod 4), so every m it returns gets a
// full period: each value of [0, m) once per m raw steps, hence each run
// once per lap. log_device_test checks it exhaustively for small P and runs.
//
// Arithmetic is mod 2^64 and then masked: since m divides 2^64 the result is
// exactly (a*x + c) mod m, with no 128-bit products. Not thread-safe (a
// value type).
#pragma once

#include <bit>
#include <cstdint>

namespace flurry {

class LcgPermutation {
 public:
  struct Params {
    uint64_t a = 1, c = 1, m = 4;
    bool operator==(const Params&) const = default;
  };

  // The one parameter choice for n elements: m = bit_ceil(max(n, 4)); a and
  // c are fixed odd 64-bit constants (PCG's multiplier and increment)
  // reduced mod m and adjusted to satisfy (1)–(3). a = 1 only when m = 4.
  static Params ParamsFor(uint64_t n) {
    Params p;
    p.m = std::bit_ceil(n < 4 ? uint64_t{4} : n);
    const uint64_t mask = p.m - 1;
    p.a = ((0x5851F42D4C957F2Dull & mask) & ~uint64_t{3}) | 1;  // ≡ 1 (mod 4)
    if (p.a == 1 && p.m > 4) p.a = 5;
    p.c = (0x14057B7EF767814Full & mask) | 1;  // odd
    return p;
  }

  LcgPermutation() = default;
  // Position 0 of the walk over [0, n) in runs of `run` blocks; n, run >= 1.
  explicit LcgPermutation(uint64_t n, uint64_t run = 1)
      : n_(n), run_(run), runs_(Runs(n, run)), p_(ParamsFor(runs_)) {
    uint64_t r = 0x9E3779B97F4A7C15ull & (p_.m - 1);
    while (r >= runs_) r = Raw(r);
    x_ = r * run_;
  }
  // A saved position. Valid() says whether it is one this walk can be at.
  LcgPermutation(uint64_t n, uint64_t run, uint64_t x, uint64_t step)
      : n_(n), run_(run), runs_(Runs(n, run)), p_(ParamsFor(runs_)), x_(x), step_(step) {}
  bool Valid() const { return n_ > 0 && run_ > 0 && x_ < n_; }

  // The number of runs of a walk over n blocks: the n ParamsFor() is given.
  static uint64_t Runs(uint64_t n, uint64_t run) { return run == 0 ? 0 : n / run + (n % run != 0); }

  uint64_t value() const { return x_; }  // the physical block at step()
  uint64_t step() const { return step_; }
  const Params& params() const { return p_; }
  uint64_t size() const { return n_; }
  uint64_t run() const { return run_; }

  void Advance() {
    step_++;
    if ((x_ + 1) % run_ != 0 && x_ + 1 < n_) {  // the rest of this run
      x_++;
      return;
    }
    uint64_t r = x_ / run_;
    do r = Raw(r);
    while (r >= runs_);
    x_ = r * run_;
  }

 private:
  uint64_t Raw(uint64_t x) const { return (p_.a * x + p_.c) & (p_.m - 1); }
  uint64_t n_ = 0, run_ = 1, runs_ = 0;
  Params p_;
  uint64_t x_ = 0, step_ = 0;
};

}  // namespace flurry
