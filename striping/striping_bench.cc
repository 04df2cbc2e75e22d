// SPDX-License-Identifier: Apache-2.0
//
// Cost of mapping one IO through StripeMap. The S=1 rows are the baseline
// (naive linear map); run with --benchmark_repetitions=5
// --benchmark_report_aggregates_only=true to get medians side by side.
#include <benchmark/benchmark.h>

#include <cstdlib>

#include "striping/striping.h"

namespace flurry {
namespace {

constexpr uint64_t kTract = 8ull << 20;
constexpr uint64_t kVolume = 1ull << 40;

StripeMap MakeMap(uint32_t s, uint32_t b) {
  auto m = StripeMap::Create({kVolume, kTract, s, b});
  if (!m.ok()) std::abort();
  return std::move(m).value();
}

// Args: segment tracts S, IO size. Stripe unit 64 KiB.
void BM_ForEachPiece(benchmark::State& state) {
  StripeMap m = MakeMap(static_cast<uint32_t>(state.range(0)), 64 << 10);
  const uint64_t io = static_cast<uint64_t>(state.range(1));
  uint64_t off = 0;
  for (auto _ : state) {
    uint64_t sum = 0;
    (void)m.ForEachPiece(off, io, [&](const StripePiece& p) { sum += p.tract + p.tract_off; });
    benchmark::DoNotOptimize(sum);
    off = (off + 7 * io + 4096) % (kVolume - io) & ~uint64_t{4095};
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_Map(benchmark::State& state) {
  StripeMap m = MakeMap(static_cast<uint32_t>(state.range(0)), 64 << 10);
  const uint64_t io = static_cast<uint64_t>(state.range(1));
  uint64_t off = 0;
  for (auto _ : state) {
    auto pieces = m.Map(off, io);
    benchmark::DoNotOptimize(pieces->data());
    off = (off + 7 * io + 4096) % (kVolume - io) & ~uint64_t{4095};
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_ForEachRun(benchmark::State& state) {
  StripeMap m = MakeMap(static_cast<uint32_t>(state.range(0)), 64 << 10);
  const uint64_t io = static_cast<uint64_t>(state.range(1));
  uint64_t off = 0;
  for (auto _ : state) {
    uint64_t n = 0;
    (void)m.ForEachRun(off, io, [&](const StripePiece& p) { n += p.length; });
    benchmark::DoNotOptimize(n);
    off = (off + 7 * io + 4096) % (kVolume - io) & ~uint64_t{4095};
  }
  state.SetItemsProcessed(state.iterations());
}

void Sizes(benchmark::internal::Benchmark* b) {
  for (int64_t s : {1, 128})
    for (int64_t io : {4 << 10, 1 << 20}) b->Args({s, io});
  b->ArgNames({"S", "io"});
}

BENCHMARK(BM_ForEachPiece)->Apply(Sizes);
BENCHMARK(BM_ForEachRun)->Apply(Sizes);
BENCHMARK(BM_Map)->Apply(Sizes);

}  // namespace
}  // namespace flurry

BENCHMARK_MAIN();
