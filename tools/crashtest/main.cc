// SPDX-License-Identifier: Apache-2.0
//
// flurry-crashtest: crash-injection harness for flurry's write modes
// (DESIGN.md "Write modes"; the invariants are in checker.h).
//
//   flurry-crashtest inproc --mode all --states 2000        in-process, MemoryBlobIo crash images
//   flurry-crashtest nbd --mode all --kills 10               real processes, SIGKILL of flurry-disk
//
// Long campaign (run before trusting a change to a write mode; about 70
// minutes on the 2-core reference machine): tests/crash/long_campaign.sh
// [BUILD_DIR] [SEED], which runs
//
//   B=build/tools/crashtest/flurry-crashtest S=$RANDOM
//   $B inproc --mode all --states 100000 --seed $S          # ~25 min
//   $B inproc --mode all --states 20000 --seed $S --block 4K --max-buffered 256K
//   $B nbd --mode all --kills 1000 --seed $S                # ~30 min
//   $B nbd --mode all --kills 200 --seed $S --kill-tractserver
//   tests/crash/fs_crash.sh META TS DISK --kills 20 --seed $S
//
// Bounded runs of the same are the meson suite 'crash' (tests/crash/).
#include <getopt.h>
#include <malloc.h>
#include <signal.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "common/units.h"
#include "meta/meta_types.h"
#include "tools/crashtest/cluster.h"
#include "tools/crashtest/inproc.h"
#include "tools/crashtest/nbd_runner.h"

using namespace flurry;
using namespace flurry::crashtest;

namespace {

void ShortUsage() {
  fprintf(stderr,
          "usage: flurry-crashtest inproc|nbd [--mode write-through|fast-ack|log|all] [options]\n"
          "(flurry-crashtest --help explains the options)\n");
}

void Usage(FILE* f) {
  fprintf(f,
          "usage: flurry-crashtest inproc [options]\n"
          "       flurry-crashtest nbd [options]\n"
          "\n"
          "Crash-injection harness for flurry's write modes. A random workload (writes of\n"
          "512 B to --max-write, 4 KiB-aligned or not, overlapping often; trims and\n"
          "write-zeroes, which must read back as zeros; FLUSH and FUA now and then;\n"
          "checked reads) stamps every 512-byte sector with the id of the write that put\n"
          "it there. After each crash the whole disk is read back and checked against\n"
          "the history of acknowledged requests:\n"
          "  write-through   every acknowledged write survives unless overwritten;\n"
          "                  unacknowledged ones leave old or new data, never garbage\n"
          "  fast-ack, log   prefix consistency: for some R every sector holds the last\n"
          "                  write of epochs <= R or a later one of epoch R+1, nothing\n"
          "                  newer, never garbage; a FUA write, once acknowledged,\n"
          "                  survives with everything acknowledged before it was sent\n"
          "(an epoch is the span between two acknowledged FLUSHes). Epochs lost = the\n"
          "newest acknowledged epoch minus the newest epoch whose acknowledged writes\n"
          "all survived; bytes lost = sectors older than their last acknowledged write.\n"
          "\n"
          "inproc: the engine runs in this process over an in-memory blob whose writes\n"
          "  complete in random order; a crash keeps each unfinished write's 4 KiB chunks\n"
          "  independently old or new. A chain of --generations crash states continues\n"
          "  each time on the recovered engine; every recovered engine is also crashed\n"
          "  again at once and must recover to the same content (idempotence), and half\n"
          "  the time a recovery is also crashed midway and must still pass the check.\n"
          "  An engine that stops answering while requests wait is a violation too.\n"
          "nbd: starts flurry-meta and 4 flurry-tractservers in a work directory, a volume\n"
          "  per mode (64M, 2 replicas, 1M tracts, segment 8) served by flurry-disk, and\n"
          "  drives it over NBD; kills flurry-disk with SIGKILL at a random moment,\n"
          "  restarts it and reads the disk back. Binaries: $FLURRY_BIN_DIR, else the\n"
          "  build tree relative to this program, else beside it.\n"
          "\n"
          "Per mode it prints crash states (or kills), violations, epochs and bytes lost\n"
          "per crash (mean, max) and crashes per minute. A mode that flurry does not\n"
          "implement yet is reported as not available and skipped.\n"
          "\n"
          "options (both):\n"
          "  --mode M           write-through | fast-ack | log | all (default all)\n"
          "  --seed N           random seed (default 1)\n"
          "  --size SIZE        volume size (inproc 4M, nbd 64M)\n"
          "  --block SIZE       volume block size (default 64K)\n"
          "  --max-write SIZE   largest write, a multiple of 512 (inproc 256K, nbd 1M)\n"
          "  --depth N          writes in flight at most (inproc 8, nbd 16)\n"
          "  --flush-rate P     probability of a FLUSH per request (default 0.05)\n"
          "  --fua-rate P       probability of FUA per write (default 0.03)\n"
          "  --read-rate P      probability of a checked read per request (default 0.05)\n"
          "  --trim-rate P      probability of a trim per request (default 0.02)\n"
          "  --zero-rate P      probability of a write-zeroes per request (default 0.02)\n"
          "  --max-violations N stop a mode after N violating crashes (default 20)\n"
          "  -v, --verbose      one line per crash\n"
          "  -h, --help         this text\n"
          "options (inproc):\n"
          "  --states N         crash states per mode (default 1000)\n"
          "  --generations N    crash states per chain (default 2)\n"
          "  --max-actions N    workload steps before a crash, at most (default 600)\n"
          "  --quiesce-rate P   probability of Engine::Quiesce() per step (default 0.005)\n"
          "  --checkpoint-ms N  EngineOptions::checkpoint_interval_ms (default: the engine's)\n"
          "  --max-buffered SIZE EngineOptions::max_buffered_bytes (default: the engine's)\n"
          "  --only-chain I     run only chain I (to reproduce a violation: same options)\n"
          "options (nbd):\n"
          "  --kills N          crashes per mode (default 10)\n"
          "  --kill-tractserver at each crash also SIGKILL one tract server (restarted\n"
          "                     on its directory and port, or a new port if that stays\n"
          "                     busy, before flurry-disk); after the check, read the\n"
          "                     whole disk again with a random tract server down: it must\n"
          "                     read the same (replicas resynced after the crash)\n"
          "  --kill-min-ms N    workload time before a kill, at least (default 20)\n"
          "  --kill-max-ms N    ... at most (default 500)\n"
          "  --dir DIR          work directory (default: new under $TMPDIR or /tmp);\n"
          "                     kept, with logs and ops-MODE.log, unless the run is clean\n"
          "  --keep             keep the work directory even when the run is clean\n"
          "\n"
          "exit status: 0 no violation; 1 violations; 2 usage; 3 the harness could not\n"
          "run; 77 none of the requested modes is available.\n");
}

bool ParseDouble(const char* s, double* out) {
  char* end = nullptr;
  double v = strtod(s, &end);
  if (end == s || *end || v < 0 || v > 1) return false;
  *out = v;
  return true;
}

bool ParseU64(const char* s, uint64_t* out) {
  auto r = ParseSize(s);
  if (!r) return false;
  *out = *r;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && (std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help")) {
    Usage(stdout);
    return 0;
  }
  if (argc < 2 || (std::string(argv[1]) != "inproc" && std::string(argv[1]) != "nbd")) {
    ShortUsage();
    return 2;
  }
  const bool nbd = std::string(argv[1]) == "nbd";
  std::string mode = "all", dir;
  uint64_t seed = 1, size = nbd ? 64u << 20 : 4u << 20, block = 64u << 10;
  uint64_t states = 1000, generations = 2, max_actions = 600, only_chain = ~0ull, checkpoint_ms = 0,
           max_buffered = 0;
  uint64_t kills = 10, kill_min = 20, kill_max = 500, max_violations = 20;
  bool kill_ts = false, keep = false, verbose = false;
  double quiesce_rate = 0.005;
  WorkloadOptions wl;
  wl.max_write = nbd ? 1u << 20 : 256u << 10;
  wl.depth = nbd ? 16 : 8;
  wl.hot_bytes = nbd ? 4u << 20 : 256u << 10;
  enum {
    kMode = 1000, kSeed, kSize, kBlock, kMaxWrite, kDepth, kFlushRate, kFuaRate, kReadRate, kTrimRate,
    kZeroRate, kMaxViol, kStates, kGen, kMaxActions, kQuiesce, kCheckpoint, kMaxBuffered, kOnly, kKills,
    kKillTs, kKillMin, kKillMax, kDir, kKeep
  };
  static const option longopts[] = {
      {"mode", required_argument, nullptr, kMode},
      {"seed", required_argument, nullptr, kSeed},
      {"size", required_argument, nullptr, kSize},
      {"block", required_argument, nullptr, kBlock},
      {"max-write", required_argument, nullptr, kMaxWrite},
      {"depth", required_argument, nullptr, kDepth},
      {"flush-rate", required_argument, nullptr, kFlushRate},
      {"fua-rate", required_argument, nullptr, kFuaRate},
      {"read-rate", required_argument, nullptr, kReadRate},
      {"trim-rate", required_argument, nullptr, kTrimRate},
      {"zero-rate", required_argument, nullptr, kZeroRate},
      {"max-violations", required_argument, nullptr, kMaxViol},
      {"states", required_argument, nullptr, kStates},
      {"generations", required_argument, nullptr, kGen},
      {"max-actions", required_argument, nullptr, kMaxActions},
      {"quiesce-rate", required_argument, nullptr, kQuiesce},
      {"checkpoint-ms", required_argument, nullptr, kCheckpoint},
      {"max-buffered", required_argument, nullptr, kMaxBuffered},
      {"only-chain", required_argument, nullptr, kOnly},
      {"kills", required_argument, nullptr, kKills},
      {"kill-tractserver", no_argument, nullptr, kKillTs},
      {"kill-min-ms", required_argument, nullptr, kKillMin},
      {"kill-max-ms", required_argument, nullptr, kKillMax},
      {"dir", required_argument, nullptr, kDir},
      {"keep", no_argument, nullptr, kKeep},
      {"verbose", no_argument, nullptr, 'v'},
      {"help", no_argument, nullptr, 'h'},
      {nullptr, 0, nullptr, 0}};
  const std::vector<int> inproc_only = {kStates, kGen, kMaxActions, kQuiesce, kCheckpoint, kMaxBuffered, kOnly};
  const std::vector<int> nbd_only = {kKills, kKillTs, kKillMin, kKillMax, kDir, kKeep};
  int c;
  optind = 2;
  auto bad = [&](const char* opt) {
    fprintf(stderr, "flurry-crashtest: bad value for --%s: '%s'\n", opt, optarg ? optarg : "");
    return 2;
  };
  int li = -1;
  while ((c = getopt_long(argc, argv, "vh", longopts, &li)) != -1) {
    const std::vector<int>& wrong = nbd ? inproc_only : nbd_only;
    if (li >= 0 && std::find(wrong.begin(), wrong.end(), c) != wrong.end()) {
      fprintf(stderr, "flurry-crashtest: --%s is not an option of '%s' (see --help)\n", longopts[li].name, argv[1]);
      return 2;
    }
    li = -1;
    uint64_t n = 0;
    switch (c) {
      case kMode: mode = optarg; break;
      case kSeed: if (!ParseU64(optarg, &seed)) return bad("seed"); break;
      case kSize: if (!ParseU64(optarg, &size)) return bad("size"); break;
      case kBlock: if (!ParseU64(optarg, &block)) return bad("block"); break;
      case kMaxWrite:
        if (!ParseU64(optarg, &n) || n < 512 || n % 512 || n > (16u << 20)) return bad("max-write");
        wl.max_write = static_cast<uint32_t>(n);
        break;
      case kDepth:
        if (!ParseU64(optarg, &n) || n < 1 || n > 1024) return bad("depth");
        wl.depth = static_cast<uint32_t>(n);
        break;
      case kFlushRate: if (!ParseDouble(optarg, &wl.flush_rate)) return bad("flush-rate"); break;
      case kFuaRate: if (!ParseDouble(optarg, &wl.fua_rate)) return bad("fua-rate"); break;
      case kReadRate: if (!ParseDouble(optarg, &wl.read_rate)) return bad("read-rate"); break;
      case kTrimRate: if (!ParseDouble(optarg, &wl.trim_rate)) return bad("trim-rate"); break;
      case kZeroRate: if (!ParseDouble(optarg, &wl.zero_rate)) return bad("zero-rate"); break;
      case kStates: if (!ParseU64(optarg, &states) || states < 1) return bad("states"); break;
      case kGen: if (!ParseU64(optarg, &generations) || generations < 1 || generations > 1000) return bad("generations"); break;
      case kMaxActions: if (!ParseU64(optarg, &max_actions) || max_actions > 10000000) return bad("max-actions"); break;
      case kQuiesce: if (!ParseDouble(optarg, &quiesce_rate)) return bad("quiesce-rate"); break;
      case kCheckpoint: if (!ParseU64(optarg, &checkpoint_ms) || checkpoint_ms > 3600000) return bad("checkpoint-ms"); break;
      case kMaxBuffered: if (!ParseU64(optarg, &max_buffered)) return bad("max-buffered"); break;
      case kOnly: if (!ParseU64(optarg, &only_chain)) return bad("only-chain"); break;
      case kKills: if (!ParseU64(optarg, &kills) || kills < 1) return bad("kills"); break;
      case kKillTs: kill_ts = true; break;
      case kKillMin: if (!ParseU64(optarg, &kill_min) || kill_min > 600000) return bad("kill-min-ms"); break;
      case kKillMax: if (!ParseU64(optarg, &kill_max) || kill_max > 600000) return bad("kill-max-ms"); break;
      case kDir: dir = optarg; break;
      case kKeep: keep = true; break;
      case kMaxViol: if (!ParseU64(optarg, &max_violations) || max_violations < 1) return bad("max-violations"); break;
      case 'v': verbose = true; break;
      case 'h': Usage(stdout); return 0;
      default: ShortUsage(); return 2;
    }
  }
  if (optind != argc) {
    fprintf(stderr, "flurry-crashtest: unexpected argument '%s'\n", argv[optind]);
    return 2;
  }
  if (kill_min > kill_max) {
    fprintf(stderr, "flurry-crashtest: --kill-min-ms is above --kill-max-ms\n");
    return 2;
  }
  if (size % 4096 || size < (1u << 20)) {
    fprintf(stderr, "flurry-crashtest: --size must be a multiple of 4K, at least 1M\n");
    return 2;
  }
  std::vector<WriteMode> modes;
  if (mode == "all") {
    modes = {WriteMode::kWriteThrough, WriteMode::kFastAck, WriteMode::kLog};
  } else if (auto m = ParseWriteMode(mode)) {
    modes = {*m};
  } else {
    fprintf(stderr, "flurry-crashtest: unknown --mode '%s' (write-through, fast-ack, log or all)\n", mode.c_str());
    return 2;
  }

  signal(SIGPIPE, SIG_IGN);
  // The runners allocate and free disk-sized buffers all the time; keep
  // them in the heap instead of mapping fresh (page-faulting) memory each time.
  mallopt(M_MMAP_THRESHOLD, 1 << 30);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  std::unique_ptr<ProcCluster> cluster;
  bool made_dir = false;
  if (nbd) {
    Binaries bins;
    if (Status s = FindBinaries(&bins); !s.ok()) {
      fprintf(stderr, "flurry-crashtest: %s\n", s.ToString().c_str());
      return 3;
    }
    if (dir.empty()) {
      const char* tmp = getenv("TMPDIR");
      std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/flurry-crashtest.XXXXXX";
      if (!mkdtemp(templ.data())) {
        perror("flurry-crashtest: mkdtemp");
        return 3;
      }
      dir = templ;
      made_dir = true;
    } else {
      std::error_code ec;
      std::filesystem::create_directories(dir, ec);
    }
    printf("work directory %s\n", dir.c_str());
    fflush(stdout);
    Status why;
    auto cl = ProcCluster::Start(bins, dir, 4, &why);
    if (!cl) {
      fprintf(stderr, "flurry-crashtest: starting the cluster: %s\n(logs kept in %s)\n", why.ToString().c_str(),
              dir.c_str());
      return 3;
    }
    cluster = std::move(*cl);
  }

  int ran = 0, violations = 0, harness_errors = 0;
  for (WriteMode m : modes) {
    CrashStats st;
    std::string why;
    int r;
    if (nbd) {
      NbdOptions o;
      o.mode = m;
      o.kills = kills;
      o.seed = seed;
      o.size = size;
      o.block = static_cast<uint32_t>(block);
      o.kill_min_ms = static_cast<int>(kill_min);
      o.kill_max_ms = static_cast<int>(kill_max);
      o.kill_tractserver = kill_ts;
      o.max_violations = max_violations;
      o.wl = wl;
      o.verbose = verbose;
      r = RunNbd(cluster.get(), o, &st, &why);
    } else {
      InprocOptions o;
      o.mode = m;
      o.states = states;
      o.seed = seed;
      o.only_chain = only_chain;
      o.size = size;
      o.block = static_cast<uint32_t>(block);
      o.max_actions = static_cast<uint32_t>(max_actions);
      o.generations = static_cast<int>(generations);
      o.quiesce_rate = quiesce_rate;
      o.checkpoint_ms = static_cast<uint32_t>(checkpoint_ms);
      o.max_buffered = max_buffered;
      o.max_violations = max_violations;
      o.wl = wl;
      o.verbose = verbose;
      r = RunInproc(o, &st, &why);
    }
    if (r == -EOPNOTSUPP) {
      printf("mode %s: not available (%s); skipped\n", WriteModeName(m), why.c_str());
      fflush(stdout);
      continue;
    }
    if (r < 0) {
      printf("mode %s: harness error: %s\n", WriteModeName(m), why.c_str());
      fflush(stdout);
      harness_errors++;
      continue;
    }
    ran++;
    if (st.violating > 0) violations++;
    printf("%s\n", st.Report().c_str());
    fflush(stdout);
  }
  cluster.reset();
  if (nbd) {
    if (violations == 0 && harness_errors == 0 && !keep && made_dir) {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    } else {
      printf("work directory kept: %s\n", dir.c_str());
    }
  }
  if (harness_errors > 0) return 3;
  if (violations > 0) return 1;
  if (ran == 0) return 77;
  return 0;
}
