/* Multi-buffer MD5 (RFC 1321): one independent MD5 stream per SIMD lane.
 *
 * MD5 is serial within a stream, but a batch of files is many independent streams: each 32-bit
 * lane of an AVX2 (8 lanes) or AVX-512 (16 lanes) register carries one, as in Intel
 * isa-l_crypto's mb_md5. The kernels only compress whole 64-byte blocks; the caller owns the
 * buffering, the padding (0x80, zeros, 64-bit little-endian bit length) and the digest (the
 * four state words of a lane, little-endian). Lanes that have no work may point at any readable
 * block (another lane's) and have their state discarded afterwards.
 *
 * Each kernel is compiled with __attribute__((target(...))), so the extension is built with the
 * default -march and runs on any x86-64; md5mb_select() picks one with __builtin_cpu_supports.
 * Elsewhere (aarch64) no kernel exists: md5mb_select() returns 0 lanes and the caller keeps its
 * scalar path.
 */
#ifndef SCANROOT_MD5_MULTI_H
#define SCANROOT_MD5_MULTI_H

#include <stddef.h>
#include <stdint.h>

#define MD5MB_MAX_LANES 32

/* Word-sliced state: abcd[0][lane] is lane's A, abcd[1][lane] its B, ... */
typedef struct {
    uint32_t abcd[4][MD5MB_MAX_LANES] __attribute__((aligned(64)));
} md5mb_state;

/* Compress `nblocks` 64-byte blocks for every lane: lane i reads block_ptrs[i] + 64 * k. */
typedef void (*md5mb_kernel)(md5mb_state *state, const uint8_t *const *block_ptrs, size_t nblocks);

enum {
    MD5MB_NONE = 0,       /* no kernel: the caller hashes one stream at a time */
    MD5MB_AVX2_X8 = 1,
    MD5MB_AVX2_X16 = 2,   /* two interleaved groups of 8: hides the step's latency */
    MD5MB_AVX512_X16 = 3,
    MD5MB_AVX512_X32 = 4, /* two interleaved groups of 16 */
    MD5MB_KERNELS = 5
};

/* Name of a kernel id ("none", "avx2x8", ...), or NULL when out of range. */
const char *md5mb_name(int id);

/* Lanes of a kernel id, 0 for MD5MB_NONE or a kernel this build or CPU cannot run. */
int md5mb_lanes(int id);

/* The kernel of an id this CPU can run, else NULL. */
md5mb_kernel md5mb_get(int id);

/* Compress n blocks at p into one lane, in portable C (about as fast per stream as OpenSSL). */
void md5mb_scalar(md5mb_state *state, int lane, const uint8_t *p, size_t n);

/* The fastest kernel id this build and CPU can run (MD5MB_NONE if none). */
int md5mb_best(void);

/* Set one lane of the state to MD5's initial value. */
void md5mb_init_lane(md5mb_state *state, int lane);

/* The 16-byte digest of a lane whose padded stream has been compressed. */
void md5mb_digest(const md5mb_state *state, int lane, unsigned char out[16]);

/* Append MD5 padding after `length` bytes of data at `tail` (the stream's last, partial,
 * block: 0..63 bytes, or more whole blocks before it), for a stream of `total` bytes; return
 * the new length, a multiple of 64. `tail` must have room for length + 72 bytes. */
size_t md5mb_pad(unsigned char *tail, size_t length, uint64_t total);

#endif
