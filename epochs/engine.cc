// SPDX-License-Identifier: Apache-2.0
#include "epochs/engine.h"

#include "epochs/fast_ack.h"
#include "epochs/log_device.h"
#include "epochs/log_format.h"
#include "epochs/volume_device.h"
#include "striping/striped_blob.h"

namespace flurry {

uint64_t EngineBlobSize(const VolumeInfo& vol) {
  if (vol.mode == WriteMode::kLog) {
    // Two checkpoint slots + P expanded blocks (epochs/log_format.h).
    auto g = LogGeometry::For(vol.size, vol.block_size);
    if (g) return g->blob_bytes;
  }
  return vol.size;
}

Result<std::unique_ptr<Engine>> MakeEngine(const VolumeInfo& vol, BlobIo* blob,
                                           const EngineOptions& opts, Status* why) {
  using R = Result<std::unique_ptr<Engine>>;
  switch (vol.mode) {
    case WriteMode::kWriteThrough:
      return std::unique_ptr<Engine>(new WriteThroughDevice(vol, blob, opts.read_only));
    case WriteMode::kFastAck:
      return std::unique_ptr<Engine>(new FastAckDevice(vol, blob, opts));
    case WriteMode::kLog: {
      auto e = LogDevice::Create(vol, blob, opts, why);
      if (!e) return R::error(e.err());
      return std::unique_ptr<Engine>(std::move(*e));
    }
  }
  *why = Status::Error(-EOPNOTSUPP, std::string("volume '") + vol.name + "' uses write mode " +
                                        WriteModeName(vol.mode) +
                                        ", which this flurry-disk does not implement yet");
  return R::error(-EOPNOTSUPP);
}

Result<Volume> MakeVolume(const VolumeInfo& vol, FdsClient* fds, const EngineOptions& opts,
                          Status* why) {
  StripeParams p{EngineBlobSize(vol), vol.tract_size, vol.segment_tracts, vol.StripeUnit()};
  auto map = StripeMap::Create(p);
  if (!map) {
    *why = StripeMap::Check(p);
    return Result<Volume>::error(-EINVAL);
  }
  BlobRef ref{vol.blob_hi, vol.blob_lo, vol.tract_size, vol.replicas};
  ref.writer_gen = opts.gate ? opts.gate->writer_gen() : 0;
  Volume v;
  StripedBlob::Options so;
  so.loop = opts.loop;
  so.dirty_linger_ms = opts.dirty_linger_ms;
  so.read_only = opts.read_only;
  so.gate = opts.gate;
  v.blob = std::make_unique<StripedBlob>(fds, ref, std::move(*map), so);
  auto e = MakeEngine(vol, v.blob.get(), opts, why);
  if (!e) return Result<Volume>::error(e.err());
  v.device = std::move(*e);
  return v;
}

}  // namespace flurry
