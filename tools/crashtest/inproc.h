// SPDX-License-Identifier: Apache-2.0
//
// The in-process crash runner: an Engine (MakeEngine) over a MemoryBlobIo,
// driven by the Workload while blob writes complete in random order; a
// crash is MemoryBlobIo::CrashImage() at a random moment (every queued
// write's 4 KiB chunks independently old or new).
//
// A chain = build a fresh engine, then for each of its crash states: run the
// workload up to a random crash point, take the crash image, recover a new
// engine on it (Open), read the whole disk and Check() it; then crash the
// recovered engine at once (its blob plus whatever recovery left queued),
// recover a third engine on that and require the same disk content
// (idempotent recovery). The recovered engine carries on to the chain's
// next crash, its read-back content being the new baseline.
//
// Every chain has its own seed derived from (seed, chain index), so a
// failing chain is reproduced with the same options plus --only-chain I.
// (Engines that use timers — log mode's checkpoints — add wall-clock
// nondeterminism.)
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "epochs/engine.h"
#include "meta/meta_types.h"
#include "tools/crashtest/stats.h"
#include "tools/crashtest/workload.h"

namespace flurry::crashtest {

struct InprocOptions {
  WriteMode mode = WriteMode::kWriteThrough;
  uint64_t states = 1000;            // crash states in all
  uint64_t seed = 1;
  uint64_t only_chain = ~0ull;       // run only this chain
  uint64_t size = 4u << 20;          // volume bytes
  uint32_t block = 64u << 10;        // volume block size
  uint32_t max_actions = 600;        // per generation; the crash point is uniform in [0, max]
  int generations = 2;               // crash states per chain
  double quiesce_rate = 0.005;       // Engine::Quiesce() per action
  uint32_t checkpoint_ms = 0;        // EngineOptions::checkpoint_interval_ms (0: the engine's default)
  uint64_t max_buffered = 0;         // EngineOptions::max_buffered_bytes (0: default)
  uint64_t max_violations = 20;      // stop the mode after this many violating crash states
  WorkloadOptions wl;
  bool verbose = false;
  // Builds the engine (default: MakeEngine). Tests plant broken engines
  // here to show that the harness catches them.
  std::function<Result<std::unique_ptr<Engine>>(const VolumeInfo&, BlobIo*, const EngineOptions&, Status*)>
      make_engine;
};

// Runs the campaign for o.mode into *st. Returns 0, or -EOPNOTSUPP when
// MakeEngine has no engine for the mode (*why says so), or another
// negative errno when the harness itself could not run (io_uring).
int RunInproc(const InprocOptions& o, CrashStats* st, std::string* why);

}  // namespace flurry::crashtest
