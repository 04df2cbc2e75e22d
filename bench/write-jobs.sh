# shellcheck shell=bash
# SPDX-License-Identifier: Apache-2.0
#
# write-jobs.sh: the fio write jobs of the write-mode benchmarks, sourced by
# bench/modes-bench.sh and bench/ab-bench.sh so both run the same shapes.
#   fsync1    4 KiB random write, flush after every write, QD1
#   fsync4    4 KiB random write, flush after every 4 writes, QD4
#   nofsync   4 KiB random write, no flush, QD32
#   aligned   64 KiB random write at 64 KiB offsets, flush every 4, QD4
# write_job_args JOB prints its fio options; an unknown JOB returns 1.
write_job_args() {
  case "$1" in
    fsync1) echo "--rw=randwrite --bs=4k --iodepth=1 --fsync=1" ;;
    fsync4) echo "--rw=randwrite --bs=4k --iodepth=4 --fsync=4" ;;
    nofsync) echo "--rw=randwrite --bs=4k --iodepth=32" ;;
    aligned) echo "--rw=randwrite --bs=64k --blockalign=64k --iodepth=4 --fsync=4" ;;
    *) return 1 ;;
  esac
}
