// SPDX-License-Identifier: Apache-2.0
//
// flurry-bench: benchmarks with a baseline in the same run.
//
// `flurry-bench tract` starts a throwaway local cluster (flurry-meta + N
// flurry-tractservers as child processes, in a temp directory under --dir),
// creates an R=1 and an R=2 volume, writes them once, and drives FdsClient
// directly from one io_uring loop: 4 KiB random read/write at QD1 and QD32,
// 1 MiB sequential read/write at QD8. In the same run it runs fio
// (--ioengine=io_uring --direct=1) with the same job shapes on a file in the
// same directory: the local-disk baseline. It prints one table (medians
// over --repeat runs) and removes its processes and directory on exit.
//
// How to run, from the build tree (no install needed):
//   meson compile -C build
//   build/tools/bench/flurry-bench tract --seconds 5
//   build/tools/bench/flurry-bench tract --dir /mnt/nvme --size 4G --repeat 3
// flurry-meta and flurry-tractserver are found next to the build tree
// (or $FLURRY_META_BIN / $FLURRY_TRACTSERVER_BIN, or --meta-bin /
// --tractserver-bin, or $PATH). --dir must be on the disk being measured
// and support O_DIRECT (not tmpfs).
#include <getopt.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "common/loop.h"
#include "common/units.h"
#include "fdsclient/fds_client.h"
#include "tools/bench/jobs.h"
#include "tools/bench/local_cluster.h"

using namespace flurry;
using namespace flurry::bench;

namespace {

void Usage(FILE* f) {
  fprintf(f,
          "usage: flurry-bench tract [options]\n"
          "\n"
          "Starts a local cluster (flurry-meta + N tract servers) in a temp directory\n"
          "under --dir, and measures FdsClient on an R=1 and an R=2 volume against\n"
          "fio (io_uring, O_DIRECT) on a file in the same directory, with the same\n"
          "job shapes: 4 KiB random read/write at QD1 and QD32, 1 MiB sequential\n"
          "read/write at QD8. Volumes and the fio file are written in full first.\n"
          "Prints a table of IOPS (4 KiB) or MiB/s (1 MiB) and the ratios to the\n"
          "local disk; with --repeat N, the median of N runs. Cleans up on exit.\n"
          "\n"
          "  --dir DIR             parent of the temp directory (default $TMPDIR or /tmp);\n"
          "                        put it on the disk to measure (O_DIRECT required)\n"
          "  --servers N           tract servers (default 4)\n"
          "  --seconds S           run time of each job on each target (default 5)\n"
          "  --size SIZE           volume size and fio file size (default 1G)\n"
          "  --tract-size SIZE     tract size of the volumes (default 8M)\n"
          "  --repeat N            runs per measurement; the table shows medians (default 1)\n"
          "  --delay-us N          tract servers' injected latency per request (default 0)\n"
          "  --conns N             client connections per tract server (default 1)\n"
          "  --fio PATH            fio binary (default: fio on $PATH)\n"
          "  --no-fio              skip the local-disk baseline\n"
          "  --meta-bin PATH       flurry-meta binary\n"
          "  --tractserver-bin PATH flurry-tractserver binary\n"
          "  --job SUBSTRING       run only the jobs whose name contains SUBSTRING\n"
          "                        (e.g. 'randread QD32'); may be given more than once\n"
          "  --keep                keep the temp directory (data, logs) at exit\n"
          "  -h, --help            this text\n");
}

struct Args {
  std::string dir, fio = "fio", meta_bin, ts_bin;
  int servers = 4;
  double seconds = 5;
  uint64_t size = 1ull << 30;
  uint32_t tract_size = 8u << 20;
  int repeat = 1;
  uint32_t delay_us = 0, conns = 1;
  bool no_fio = false, keep = false;
  std::vector<std::string> only;  // --job filters
};

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

void OnSignal(int) { g_interrupted = true; }

int Fail(const std::string& msg) {
  fprintf(stderr, "flurry-bench: %s\n", msg.c_str());
  return 1;
}

std::string Metric(const JobSpec& j, const JobResult& r) {
  char b[64];
  if (j.bs >= (1u << 20)) snprintf(b, sizeof b, "%.0f MiB/s", r.mib_s());
  else snprintf(b, sizeof b, "%.0f IOPS", r.iops());
  return b;
}

int RunTract(const Args& a) {
  std::vector<JobSpec> jobs;
  for (const JobSpec& j : DefaultJobs()) {
    bool want = a.only.empty();
    for (const auto& o : a.only) want = want || j.name.find(o) != std::string::npos;
    if (want) jobs.push_back(j);
  }
  if (jobs.empty()) return Fail("no job matches --job");
  std::string parent = a.dir;
  if (parent.empty()) {
    const char* t = getenv("TMPDIR");
    parent = t && *t ? t : "/tmp";
  }
  std::string tmpl = parent + "/flurry-bench-XXXXXX";
  if (!mkdtemp(tmpl.data())) return Fail("cannot create a directory under " + parent + ": " + strerror(errno));
  const std::string root = tmpl;
  bool ok = false;
  // results[target][job] = values over repeats; targets: 0 = R=1, 1 = R=2, 2 = fio.
  std::vector<std::vector<std::vector<double>>> results(3, std::vector<std::vector<double>>(jobs.size()));
  std::vector<std::string> problems;
  {
    LocalCluster::Options co;
    co.meta_bin = a.meta_bin.empty() ? FindFlurryBinary("FLURRY_META_BIN", "meta", "flurry-meta") : a.meta_bin;
    co.tractserver_bin = a.ts_bin.empty()
                             ? FindFlurryBinary("FLURRY_TRACTSERVER_BIN", "tractserver", "flurry-tractserver")
                             : a.ts_bin;
    co.root = root + "/cluster";
    co.servers = a.servers;
    co.heartbeat_timeout_ms = 10000;  // a loaded machine must not lose servers
    co.delay_us = a.delay_us;
    Status why;
    printf("flurry-bench tract: %d tract servers, %s volumes (tract %s), %g s per job, %d run(s), in %s\n",
           a.servers, FormatSize(a.size).c_str(), FormatSize(a.tract_size).c_str(), a.seconds, a.repeat,
           root.c_str());
    auto cluster = LocalCluster::Start(co, &why);
    if (!cluster) {
      fprintf(stderr, "flurry-bench: cluster did not start: %s\n", why.ToString().c_str());
      goto out;
    }
    BlobRef blobs[2];
    for (uint32_t r = 1; r <= 2; ++r) {
      auto v = (*cluster)->CreateVolume("bench-r" + std::to_string(r), a.size, a.tract_size, r, &why);
      if (!v) {
        fprintf(stderr, "flurry-bench: cannot create the R=%u volume: %s\n", r, why.ToString().c_str());
        goto out;
      }
      blobs[r - 1] = BlobRef{v->blob_hi, v->blob_lo, v->tract_size, v->replicas};
    }
    auto loop = Loop::Create(1024);
    if (!loop) {
      fprintf(stderr, "flurry-bench: io_uring: %s\n", errstr(loop.err()).c_str());
      goto out;
    }
    FdsClient::Options fo;
    fo.meta = (*cluster)->meta();
    fo.conns_per_server = a.conns;
    auto client = FdsClient::Create(loop->get(), fo, &why);
    if (!client) {
      fprintf(stderr, "flurry-bench: %s\n", why.ToString().c_str());
      goto out;
    }
    Loop* l = loop->get();
    FdsClient* c = client->get();

    for (int r = 0; r < 2 && !g_interrupted; ++r) {
      JobResult p = PrefillBlob(l, c, blobs[r], a.size);
      if (!p.ok) {
        fprintf(stderr, "flurry-bench: writing the R=%d volume failed: %s\n", r + 1, p.error.c_str());
        goto out;
      }
      printf("prefill R=%d: %s in %.1f s (%.0f MiB/s)\n", r + 1, FormatSize(a.size).c_str(), p.seconds, p.mib_s());
    }
    const std::string fio_file = root + "/fio.dat", fio_log = root + "/fio.log";
    if (!a.no_fio && !g_interrupted) {
      JobResult p = PrefillFioFile(a.fio, fio_file, a.size, fio_log);
      if (!p.ok) {
        fprintf(stderr, "flurry-bench: fio: %s\n", p.error.c_str());
        goto out;
      }
      printf("prefill fio file: %s in %.1f s (%.0f MiB/s)\n", FormatSize(a.size).c_str(), p.seconds, p.mib_s());
    }
    for (int rep = 0; rep < a.repeat && !g_interrupted; ++rep) {
      for (size_t j = 0; j < jobs.size() && !g_interrupted; ++j) {
        for (int t = 0; t < 3 && !g_interrupted; ++t) {
          if (t == 2 && a.no_fio) continue;
          JobResult res = t < 2 ? RunTractJob(l, c, blobs[t], a.size, jobs[j], a.seconds)
                                : RunFioJob(a.fio, fio_file, a.size, jobs[j], a.seconds, fio_log);
          const char* tname = t == 0 ? "flurry R=1" : t == 1 ? "flurry R=2" : "local disk";
          printf("  run %d  %-18s %-10s %12s  mean latency %8.0f us%s%s\n", rep + 1, jobs[j].name.c_str(),
                 tname, Metric(jobs[j], res).c_str(), res.mean_lat_us, res.ok ? "" : "  FAILED: ",
                 res.ok ? "" : res.error.c_str());
          fflush(stdout);
          if (!res.ok) {
            problems.push_back(jobs[j].name + " " + tname + ": " + res.error);
            continue;
          }
          results[static_cast<size_t>(t)][j].push_back(jobs[j].bs >= (1u << 20) ? res.mib_s() : res.iops());
        }
      }
    }
    const FdsStats& fs = c->stats();
    printf("fdsclient: %" PRIu64 " ops, %" PRIu64 " retries, %" PRIu64 " failovers, %" PRIu64 " failed\n", fs.ops,
           fs.retries, fs.failovers, fs.failed_ops);
    client->reset();
    for (int i = 0; i < 5; ++i) (*loop)->RunOnce(10);
    ok = !g_interrupted;
  }
out:
  if (ok) {
    printf("\n%-20s %14s %14s %14s %9s %9s\n", "job", "flurry R=1", "flurry R=2", "local disk", "R1/local",
           "R2/local");
    for (size_t j = 0; j < jobs.size(); ++j) {
      const char* unit = jobs[j].bs >= (1u << 20) ? "MiB/s" : "IOPS";
      double v[3];
      char cell[3][32], ratio[2][16];
      for (int t = 0; t < 3; ++t) {
        v[t] = Median(results[static_cast<size_t>(t)][j]);
        if (results[static_cast<size_t>(t)][j].empty()) snprintf(cell[t], sizeof cell[t], "-");
        else snprintf(cell[t], sizeof cell[t], "%.0f %s", v[t], unit);
      }
      for (int t = 0; t < 2; ++t) {
        if (v[2] > 0 && v[t] > 0) snprintf(ratio[t], sizeof ratio[t], "%.2f", v[t] / v[2]);
        else snprintf(ratio[t], sizeof ratio[t], "-");
      }
      printf("%-20s %14s %14s %14s %9s %9s\n", jobs[j].name.c_str(), cell[0], cell[1], cell[2], ratio[0], ratio[1]);
    }
    if (a.repeat > 1) printf("(medians of %d runs)\n", a.repeat);
    printf("local disk = fio --ioengine=io_uring --direct=1 (no fsync); flurry writes are durable on every\n"
           "replica (in each tract server's write-ahead journal, O_DIRECT + RWF_DSYNC) before they are\n"
           "acknowledged.\n");
    for (const auto& p : problems) printf("FAILED: %s\n", p.c_str());
  }
  if (a.keep || !ok) {
    printf("kept %s (cluster logs in %s/cluster/*.log)\n", root.c_str(), root.c_str());
  } else {
    std::error_code ec;
    std::filesystem::remove_all(root, ec);
  }
  return ok && problems.empty() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
    Usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (strcmp(argv[1], "tract") != 0) {
    fprintf(stderr, "flurry-bench: unknown subcommand '%s' (try --help)\n", argv[1]);
    return 2;
  }
  Args a;
  static const option longopts[] = {
      {"dir", required_argument, nullptr, 'd'},       {"servers", required_argument, nullptr, 'n'},
      {"seconds", required_argument, nullptr, 's'},   {"size", required_argument, nullptr, 'S'},
      {"tract-size", required_argument, nullptr, 'T'}, {"repeat", required_argument, nullptr, 'r'},
      {"delay-us", required_argument, nullptr, 'D'},  {"conns", required_argument, nullptr, 'c'},
      {"fio", required_argument, nullptr, 'f'},       {"no-fio", no_argument, nullptr, 'F'},
      {"meta-bin", required_argument, nullptr, 'm'},  {"tractserver-bin", required_argument, nullptr, 't'},
      {"keep", no_argument, nullptr, 'k'},            {"help", no_argument, nullptr, 'h'},
      {"job", required_argument, nullptr, 'j'},
      {nullptr, 0, nullptr, 0}};
  auto num = [](const char* s, long lo, long hi, const char* what) {
    char* end;
    long v = strtol(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi) {
      fprintf(stderr, "flurry-bench: bad %s '%s' (%ld..%ld)\n", what, s, lo, hi);
      exit(2);
    }
    return v;
  };
  auto size = [](const char* s, const char* what) {
    auto v = ParseSize(s);
    if (!v || *v == 0) {
      fprintf(stderr, "flurry-bench: bad %s '%s' (e.g. 512M, 1G)\n", what, s);
      exit(2);
    }
    return *v;
  };
  optind = 2;
  int ch;
  while ((ch = getopt_long(argc, argv, "h", longopts, nullptr)) != -1) {
    switch (ch) {
      case 'd': a.dir = optarg; break;
      case 'n': a.servers = static_cast<int>(num(optarg, 2, 64, "--servers")); break;
      case 's': {
        char* end;
        a.seconds = strtod(optarg, &end);
        if (*end || a.seconds < 0.1 || a.seconds > 3600) {
          fprintf(stderr, "flurry-bench: bad --seconds '%s' (0.1..3600)\n", optarg);
          return 2;
        }
        break;
      }
      case 'S': a.size = size(optarg, "--size"); break;
      case 'T': a.tract_size = static_cast<uint32_t>(std::min<uint64_t>(size(optarg, "--tract-size"), 1u << 31)); break;
      case 'r': a.repeat = static_cast<int>(num(optarg, 1, 100, "--repeat")); break;
      case 'D': a.delay_us = static_cast<uint32_t>(num(optarg, 0, 1000000, "--delay-us")); break;
      case 'c': a.conns = static_cast<uint32_t>(num(optarg, 1, 64, "--conns")); break;
      case 'f': a.fio = optarg; break;
      case 'F': a.no_fio = true; break;
      case 'm': a.meta_bin = optarg; break;
      case 't': a.ts_bin = optarg; break;
      case 'k': a.keep = true; break;
      case 'j': a.only.push_back(optarg); break;
      case 'h': Usage(stdout); return 0;
      default: Usage(stderr); return 2;
    }
  }
  if (optind != argc) {
    Usage(stderr);
    return 2;
  }
  if (a.tract_size < (1u << 20) || (a.tract_size & (a.tract_size - 1)) || a.tract_size > (1u << 30)) {
    fprintf(stderr, "flurry-bench: --tract-size must be a power of two from 1M to 1G (1 MiB jobs fit a tract)\n");
    return 2;
  }
  if (a.size % (1u << 20) != 0) {
    fprintf(stderr, "flurry-bench: --size must be a multiple of 1M\n");
    return 2;
  }
  struct sigaction sa {};
  sa.sa_handler = OnSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  signal(SIGPIPE, SIG_IGN);
  return RunTract(a);
}
