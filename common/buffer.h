// SPDX-License-Identifier: Apache-2.0
//
// AlignedBuffer: an owned, 4096-byte aligned byte buffer suitable for
// O_DIRECT IO. Move-only. Contents are uninitialised unless zeroed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>
#include <utility>

namespace flurry {

inline constexpr size_t kIoAlign = 4096;

inline size_t AlignUp(size_t v, size_t a) { return (v + a - 1) / a * a; }
inline size_t AlignDown(size_t v, size_t a) { return v / a * a; }

class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t size) : size_(size) {
    if (size == 0) return;
    void* p = nullptr;
    if (posix_memalign(&p, kIoAlign, AlignUp(size, kIoAlign)) != 0) throw std::bad_alloc();
    data_ = static_cast<uint8_t*>(p);
  }
  ~AlignedBuffer() { free(data_); }
  AlignedBuffer(AlignedBuffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept {
    if (this != &o) {
      free(data_);
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;

  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  void zero() { if (data_) memset(data_, 0, size_); }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace flurry
