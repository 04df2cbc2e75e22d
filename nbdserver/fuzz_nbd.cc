// SPDX-License-Identifier: Apache-2.0
//
// libFuzzer target for everything nbdserver parses from untrusted clients:
// the fixed-newstyle handshake (Handshake) and, once negotiation ends, the
// request stream (RequestParser -> validator -> Transmission) executed
// against a small MemoryBlockDevice. No sockets: bytes in, reply bytes out.
//
// Build and run:
//   CXX=clang++ meson setup build-fuzz -Dfuzzers=true -Db_sanitize=address,undefined
//   meson compile -C build-fuzz nbdserver/fuzz_nbd
//   mkdir -p corpus && ./build-fuzz/nbdserver/fuzz_nbd corpus -max_len=65536 -jobs=2
// The first input byte chooses how the stream is split into Feed() calls,
// so partial headers and payloads are exercised too.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "nbdserver/exports.h"
#include "nbdserver/handshake.h"
#include "nbdserver/memory_device.h"
#include "nbdserver/request_parser.h"
#include "nbdserver/transmission.h"

using namespace flurry;
using namespace flurry::nbd;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const size_t step = 1 + data[0] % 64;
  ++data;
  --size;

  MemoryBlockDevice disk(1 << 20, "fuzz");
  disk.mutable_info().max_io = 64 * 1024;
  MemoryBlockDevice ro(64 * 1024, "ro");
  ExportTable table;
  table.Add("disk", &disk, false);
  table.Add("ro", &ro, true);
  table.SetDefault("disk");

  Handshake::Limits lim;
  lim.hard_max_payload = 256 * 1024;
  Handshake hs(&table, lim);
  std::string out = std::move(hs.output());
  hs.output().clear();

  size_t pos = 0;
  while (pos < size && !hs.done()) {
    size_t n = std::min(step, size - pos);
    pos += hs.Feed(data + pos, n);
    out += hs.output();
    hs.output().clear();
  }
  if (hs.state() != Handshake::State::kTransmission) return 0;

  const Negotiated& neg = hs.negotiated();
  RequestParser parser(neg.limits.max_payload, lim.hard_max_payload);
  Transmission tx(neg);
  size_t replies = 0, requests = 0;
  while (pos < size || parser.state() == RequestParser::State::kReady) {
    if (parser.state() == RequestParser::State::kError) break;
    if (parser.state() == RequestParser::State::kReady) {
      ParsedRequest pr = parser.Take();
      if (pr.req.type == kCmdDisc) break;
      ++requests;
      tx.Execute(std::move(pr), [&](OutMsg m) {
        ++replies;
        out += m.head;
        out.append(reinterpret_cast<const char*>(m.body.data()), m.body_len);
      });
      continue;
    }
    size_t n = std::min(step, size - pos);
    pos += parser.Feed(data + pos, n);
  }
  // MemoryBlockDevice completes synchronously: one reply per request.
  if (replies != requests) __builtin_trap();
  return 0;
}
