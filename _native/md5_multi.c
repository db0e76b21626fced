/* Multi-buffer MD5 kernels; see md5_multi.h. */
#include "md5_multi.h"

#include <string.h>

static const char *const NAMES[MD5MB_KERNELS] = {"none", "avx2x8", "avx2x16", "avx512x16", "avx512x32"};
static const int LANES[MD5MB_KERNELS] = {0, 8, 16, 16, 32};

const char *md5mb_name(int id)
{
    return id >= 0 && id < MD5MB_KERNELS ? NAMES[id] : NULL;
}

void md5mb_init_lane(md5mb_state *state, int lane)
{
    state->abcd[0][lane] = 0x67452301u;
    state->abcd[1][lane] = 0xefcdab89u;
    state->abcd[2][lane] = 0x98badcfeu;
    state->abcd[3][lane] = 0x10325476u;
}

void md5mb_digest(const md5mb_state *state, int lane, unsigned char out[16])
{
    for (int w = 0; w < 4; w++) {
        uint32_t v = state->abcd[w][lane];
        out[4 * w] = (unsigned char)v;
        out[4 * w + 1] = (unsigned char)(v >> 8);
        out[4 * w + 2] = (unsigned char)(v >> 16);
        out[4 * w + 3] = (unsigned char)(v >> 24);
    }
}

size_t md5mb_pad(unsigned char *tail, size_t length, uint64_t total)
{
    uint64_t bits = total * 8;
    size_t end = (length + 1 + 8 + 63) & ~(size_t)63;
    tail[length] = 0x80;
    memset(tail + length + 1, 0, end - 8 - length - 1);
    for (int i = 0; i < 8; i++)
        tail[end - 8 + i] = (unsigned char)(bits >> (8 * i));
    return end;
}

/* The 64 steps, (function, a, b, c, d, message word, rotation, constant) each: RFC 1321 3.4. */
#define MD5_STEPS(S) \
    S(F, a, b, c, d,  0,  7, 0xd76aa478u) \
    S(F, d, a, b, c,  1, 12, 0xe8c7b756u) \
    S(F, c, d, a, b,  2, 17, 0x242070dbu) \
    S(F, b, c, d, a,  3, 22, 0xc1bdceeeu) \
    S(F, a, b, c, d,  4,  7, 0xf57c0fafu) \
    S(F, d, a, b, c,  5, 12, 0x4787c62au) \
    S(F, c, d, a, b,  6, 17, 0xa8304613u) \
    S(F, b, c, d, a,  7, 22, 0xfd469501u) \
    S(F, a, b, c, d,  8,  7, 0x698098d8u) \
    S(F, d, a, b, c,  9, 12, 0x8b44f7afu) \
    S(F, c, d, a, b, 10, 17, 0xffff5bb1u) \
    S(F, b, c, d, a, 11, 22, 0x895cd7beu) \
    S(F, a, b, c, d, 12,  7, 0x6b901122u) \
    S(F, d, a, b, c, 13, 12, 0xfd987193u) \
    S(F, c, d, a, b, 14, 17, 0xa679438eu) \
    S(F, b, c, d, a, 15, 22, 0x49b40821u) \
    S(G, a, b, c, d,  1,  5, 0xf61e2562u) \
    S(G, d, a, b, c,  6,  9, 0xc040b340u) \
    S(G, c, d, a, b, 11, 14, 0x265e5a51u) \
    S(G, b, c, d, a,  0, 20, 0xe9b6c7aau) \
    S(G, a, b, c, d,  5,  5, 0xd62f105du) \
    S(G, d, a, b, c, 10,  9, 0x02441453u) \
    S(G, c, d, a, b, 15, 14, 0xd8a1e681u) \
    S(G, b, c, d, a,  4, 20, 0xe7d3fbc8u) \
    S(G, a, b, c, d,  9,  5, 0x21e1cde6u) \
    S(G, d, a, b, c, 14,  9, 0xc33707d6u) \
    S(G, c, d, a, b,  3, 14, 0xf4d50d87u) \
    S(G, b, c, d, a,  8, 20, 0x455a14edu) \
    S(G, a, b, c, d, 13,  5, 0xa9e3e905u) \
    S(G, d, a, b, c,  2,  9, 0xfcefa3f8u) \
    S(G, c, d, a, b,  7, 14, 0x676f02d9u) \
    S(G, b, c, d, a, 12, 20, 0x8d2a4c8au) \
    S(H, a, b, c, d,  5,  4, 0xfffa3942u) \
    S(H, d, a, b, c,  8, 11, 0x8771f681u) \
    S(H, c, d, a, b, 11, 16, 0x6d9d6122u) \
    S(H, b, c, d, a, 14, 23, 0xfde5380cu) \
    S(H, a, b, c, d,  1,  4, 0xa4beea44u) \
    S(H, d, a, b, c,  4, 11, 0x4bdecfa9u) \
    S(H, c, d, a, b,  7, 16, 0xf6bb4b60u) \
    S(H, b, c, d, a, 10, 23, 0xbebfbc70u) \
    S(H, a, b, c, d, 13,  4, 0x289b7ec6u) \
    S(H, d, a, b, c,  0, 11, 0xeaa127fau) \
    S(H, c, d, a, b,  3, 16, 0xd4ef3085u) \
    S(H, b, c, d, a,  6, 23, 0x04881d05u) \
    S(H, a, b, c, d,  9,  4, 0xd9d4d039u) \
    S(H, d, a, b, c, 12, 11, 0xe6db99e5u) \
    S(H, c, d, a, b, 15, 16, 0x1fa27cf8u) \
    S(H, b, c, d, a,  2, 23, 0xc4ac5665u) \
    S(I, a, b, c, d,  0,  6, 0xf4292244u) \
    S(I, d, a, b, c,  7, 10, 0x432aff97u) \
    S(I, c, d, a, b, 14, 15, 0xab9423a7u) \
    S(I, b, c, d, a,  5, 21, 0xfc93a039u) \
    S(I, a, b, c, d, 12,  6, 0x655b59c3u) \
    S(I, d, a, b, c,  3, 10, 0x8f0ccc92u) \
    S(I, c, d, a, b, 10, 15, 0xffeff47du) \
    S(I, b, c, d, a,  1, 21, 0x85845dd1u) \
    S(I, a, b, c, d,  8,  6, 0x6fa87e4fu) \
    S(I, d, a, b, c, 15, 10, 0xfe2ce6e0u) \
    S(I, c, d, a, b,  6, 15, 0xa3014314u) \
    S(I, b, c, d, a, 13, 21, 0x4e0811a1u) \
    S(I, a, b, c, d,  4,  6, 0xf7537e82u) \
    S(I, d, a, b, c, 11, 10, 0xbd3af235u) \
    S(I, c, d, a, b,  2, 15, 0x2ad7d2bbu) \
    S(I, b, c, d, a,  9, 21, 0xeb86d391u)

/* One lane, one block at a time, in plain C: for a batch's last busy lane, where a SIMD kernel
 * would spend all its lanes on one stream (about 2x slower than this per stream). */
#define SC_F(b, c, d) ((d) ^ ((b) & ((c) ^ (d))))
#define SC_G(b, c, d) ((c) ^ ((d) & ((b) ^ (c))))
#define SC_H(b, c, d) ((b) ^ (c) ^ (d))
#define SC_I(b, c, d) ((c) ^ ((b) | ~(d)))
#define SC_STEP(f, a, b, c, d, w, s, k) \
    a += SC_##f(b, c, d) + m[w] + (k); \
    a = ((a << (s)) | (a >> (32 - (s)))) + b;

void md5mb_scalar(md5mb_state *st, int lane, const uint8_t *p, size_t n)
{
    uint32_t a = st->abcd[0][lane], b = st->abcd[1][lane], c = st->abcd[2][lane], d = st->abcd[3][lane];
    for (size_t k = 0; k < n; k++, p += 64) {
        uint32_t m[16];
        for (int i = 0; i < 16; i++)
            m[i] = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 | (uint32_t)p[4 * i + 3] << 24;
        uint32_t aa = a, bb = b, cc = c, dd = d;
        MD5_STEPS(SC_STEP)
        a += aa;
        b += bb;
        c += cc;
        d += dd;
    }
    st->abcd[0][lane] = a;
    st->abcd[1][lane] = b;
    st->abcd[2][lane] = c;
    st->abcd[3][lane] = d;
}

#if defined(__x86_64__)
#include <immintrin.h>

/* ---- AVX2: 8 lanes per __m256i ---------------------------------------------------------- */

#define AVX2_F(b, c, d) _mm256_xor_si256(d, _mm256_and_si256(b, _mm256_xor_si256(c, d)))
#define AVX2_G(b, c, d) _mm256_xor_si256(c, _mm256_and_si256(d, _mm256_xor_si256(b, c)))
#define AVX2_H(b, c, d) _mm256_xor_si256(_mm256_xor_si256(b, c), d)
#define AVX2_I(b, c, d) _mm256_xor_si256(c, _mm256_or_si256(b, _mm256_xor_si256(d, ones)))
#define AVX2_ROL(x, s) _mm256_or_si256(_mm256_slli_epi32(x, s), _mm256_srli_epi32(x, 32 - (s)))

/* One step on group g: a = b + rol(a + f(b, c, d) + m[w] + k, s). */
#define AVX2_STEP(g, f, a, b, c, d, w, s, k) \
    a##g = _mm256_add_epi32(a##g, _mm256_add_epi32(m##g[w], _mm256_set1_epi32((int)(k)))); \
    a##g = _mm256_add_epi32(a##g, AVX2_##f(b##g, c##g, d##g)); \
    a##g = _mm256_add_epi32(AVX2_ROL(a##g, s), b##g);

/* 8x8 transpose of 32-bit words: m[8 * half + j] = word j of each lane's half `half`. */
__attribute__((target("avx2"), always_inline)) static inline void avx2_load(__m256i *m, const uint8_t *const *p, size_t off)
{
    for (int half = 0; half < 2; half++) {
        __m256i r[8], t[8], u[8];
        for (int i = 0; i < 8; i++)
            r[i] = _mm256_loadu_si256((const __m256i *)(p[i] + off + 32 * half));
        for (int i = 0; i < 8; i += 2) {
            t[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]);
            t[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
        }
        /* u[4 * g + e]: rows 4g..4g+3, element 4k+e in 128-bit half k */
        for (int g = 0; g < 2; g++) {
            u[4 * g + 0] = _mm256_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
            u[4 * g + 1] = _mm256_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
            u[4 * g + 2] = _mm256_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
            u[4 * g + 3] = _mm256_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
        }
        for (int e = 0; e < 4; e++) {
            m[8 * half + e] = _mm256_permute2x128_si256(u[e], u[4 + e], 0x20);
            m[8 * half + 4 + e] = _mm256_permute2x128_si256(u[e], u[4 + e], 0x31);
        }
    }
}

#define AVX2_LOAD_STATE(g, base) \
    __m256i a##g = _mm256_load_si256((const __m256i *)&st->abcd[0][base]); \
    __m256i b##g = _mm256_load_si256((const __m256i *)&st->abcd[1][base]); \
    __m256i c##g = _mm256_load_si256((const __m256i *)&st->abcd[2][base]); \
    __m256i d##g = _mm256_load_si256((const __m256i *)&st->abcd[3][base]);
#define AVX2_STORE_STATE(g, base) \
    _mm256_store_si256((__m256i *)&st->abcd[0][base], a##g); \
    _mm256_store_si256((__m256i *)&st->abcd[1][base], b##g); \
    _mm256_store_si256((__m256i *)&st->abcd[2][base], c##g); \
    _mm256_store_si256((__m256i *)&st->abcd[3][base], d##g);
#define AVX2_SAVE(g) __m256i aa##g = a##g, bb##g = b##g, cc##g = c##g, dd##g = d##g;
#define AVX2_ADD(g) \
    a##g = _mm256_add_epi32(a##g, aa##g); b##g = _mm256_add_epi32(b##g, bb##g); \
    c##g = _mm256_add_epi32(c##g, cc##g); d##g = _mm256_add_epi32(d##g, dd##g);

#define AVX2_S0(f, a, b, c, d, w, s, k) AVX2_STEP(0, f, a, b, c, d, w, s, k)
#define AVX2_S01(f, a, b, c, d, w, s, k) AVX2_STEP(0, f, a, b, c, d, w, s, k) AVX2_STEP(1, f, a, b, c, d, w, s, k)

__attribute__((target("avx2"))) static void md5_avx2_x8(md5mb_state *st, const uint8_t *const *p, size_t n)
{
    const __m256i ones = _mm256_set1_epi32(-1);
    __m256i m0[16];
    AVX2_LOAD_STATE(0, 0)
    for (size_t k = 0; k < n; k++) {
        avx2_load(m0, p, 64 * k);
        AVX2_SAVE(0)
        MD5_STEPS(AVX2_S0)
        AVX2_ADD(0)
    }
    AVX2_STORE_STATE(0, 0)
}

__attribute__((target("avx2"))) static void md5_avx2_x16(md5mb_state *st, const uint8_t *const *p, size_t n)
{
    const __m256i ones = _mm256_set1_epi32(-1);
    __m256i m0[16], m1[16];
    AVX2_LOAD_STATE(0, 0)
    AVX2_LOAD_STATE(1, 8)
    for (size_t k = 0; k < n; k++) {
        avx2_load(m0, p, 64 * k);
        avx2_load(m1, p + 8, 64 * k);
        AVX2_SAVE(0)
        AVX2_SAVE(1)
        MD5_STEPS(AVX2_S01)
        AVX2_ADD(0)
        AVX2_ADD(1)
    }
    AVX2_STORE_STATE(0, 0)
    AVX2_STORE_STATE(1, 8)
}

/* ---- AVX-512: 16 lanes per __m512i, ternary logic for F/G/H/I, native rotate ---------- */

/* vpternlogd truth tables with (b, c, d) = (0xF0, 0xCC, 0xAA). */
#define AVX512_F(b, c, d) _mm512_ternarylogic_epi32(b, c, d, 0xCA) /* (b & c) | (~b & d) */
#define AVX512_G(b, c, d) _mm512_ternarylogic_epi32(b, c, d, 0xE4) /* (b & d) | (c & ~d) */
#define AVX512_H(b, c, d) _mm512_ternarylogic_epi32(b, c, d, 0x96) /* b ^ c ^ d */
#define AVX512_I(b, c, d) _mm512_ternarylogic_epi32(b, c, d, 0x39) /* c ^ (b | ~d) */

#define AVX512_STEP(g, f, a, b, c, d, w, s, k) \
    a##g = _mm512_add_epi32(a##g, _mm512_add_epi32(m##g[w], _mm512_set1_epi32((int)(k)))); \
    a##g = _mm512_add_epi32(a##g, AVX512_##f(b##g, c##g, d##g)); \
    a##g = _mm512_add_epi32(_mm512_rol_epi32(a##g, s), b##g);

/* 16x16 transpose of 32-bit words: m[j] = word j of every lane's block. */
__attribute__((target("avx512f"), always_inline)) static inline void avx512_load(__m512i *m, const uint8_t *const *p, size_t off)
{
    __m512i r[16], t[16], u[16];
    for (int i = 0; i < 16; i++)
        r[i] = _mm512_loadu_si512((const void *)(p[i] + off));
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    /* u[4 * g + e]: rows 4g..4g+3, element 4k+e in 128-bit chunk k */
    for (int g = 0; g < 4; g++) {
        u[4 * g + 0] = _mm512_unpacklo_epi64(t[4 * g], t[4 * g + 2]);
        u[4 * g + 1] = _mm512_unpackhi_epi64(t[4 * g], t[4 * g + 2]);
        u[4 * g + 2] = _mm512_unpacklo_epi64(t[4 * g + 1], t[4 * g + 3]);
        u[4 * g + 3] = _mm512_unpackhi_epi64(t[4 * g + 1], t[4 * g + 3]);
    }
    /* 4x4 transpose of 128-bit chunks across the four row groups */
    for (int e = 0; e < 4; e++) {
        __m512i v0 = _mm512_shuffle_i32x4(u[e], u[4 + e], 0x44);
        __m512i v1 = _mm512_shuffle_i32x4(u[e], u[4 + e], 0xEE);
        __m512i v2 = _mm512_shuffle_i32x4(u[8 + e], u[12 + e], 0x44);
        __m512i v3 = _mm512_shuffle_i32x4(u[8 + e], u[12 + e], 0xEE);
        m[e] = _mm512_shuffle_i32x4(v0, v2, 0x88);
        m[4 + e] = _mm512_shuffle_i32x4(v0, v2, 0xDD);
        m[8 + e] = _mm512_shuffle_i32x4(v1, v3, 0x88);
        m[12 + e] = _mm512_shuffle_i32x4(v1, v3, 0xDD);
    }
}

#define AVX512_LOAD_STATE(g, base) \
    __m512i a##g = _mm512_load_si512((const void *)&st->abcd[0][base]); \
    __m512i b##g = _mm512_load_si512((const void *)&st->abcd[1][base]); \
    __m512i c##g = _mm512_load_si512((const void *)&st->abcd[2][base]); \
    __m512i d##g = _mm512_load_si512((const void *)&st->abcd[3][base]);
#define AVX512_STORE_STATE(g, base) \
    _mm512_store_si512((void *)&st->abcd[0][base], a##g); \
    _mm512_store_si512((void *)&st->abcd[1][base], b##g); \
    _mm512_store_si512((void *)&st->abcd[2][base], c##g); \
    _mm512_store_si512((void *)&st->abcd[3][base], d##g);
#define AVX512_SAVE(g) __m512i aa##g = a##g, bb##g = b##g, cc##g = c##g, dd##g = d##g;
#define AVX512_ADD(g) \
    a##g = _mm512_add_epi32(a##g, aa##g); b##g = _mm512_add_epi32(b##g, bb##g); \
    c##g = _mm512_add_epi32(c##g, cc##g); d##g = _mm512_add_epi32(d##g, dd##g);

#define AVX512_S0(f, a, b, c, d, w, s, k) AVX512_STEP(0, f, a, b, c, d, w, s, k)
#define AVX512_S01(f, a, b, c, d, w, s, k) AVX512_STEP(0, f, a, b, c, d, w, s, k) AVX512_STEP(1, f, a, b, c, d, w, s, k)

__attribute__((target("avx512f"))) static void md5_avx512_x16(md5mb_state *st, const uint8_t *const *p, size_t n)
{
    __m512i m0[16];
    AVX512_LOAD_STATE(0, 0)
    for (size_t k = 0; k < n; k++) {
        avx512_load(m0, p, 64 * k);
        AVX512_SAVE(0)
        MD5_STEPS(AVX512_S0)
        AVX512_ADD(0)
    }
    AVX512_STORE_STATE(0, 0)
}

__attribute__((target("avx512f"))) static void md5_avx512_x32(md5mb_state *st, const uint8_t *const *p, size_t n)
{
    __m512i m0[16], m1[16];
    AVX512_LOAD_STATE(0, 0)
    AVX512_LOAD_STATE(1, 16)
    for (size_t k = 0; k < n; k++) {
        avx512_load(m0, p, 64 * k);
        avx512_load(m1, p + 16, 64 * k);
        AVX512_SAVE(0)
        AVX512_SAVE(1)
        MD5_STEPS(AVX512_S01)
        AVX512_ADD(0)
        AVX512_ADD(1)
    }
    AVX512_STORE_STATE(0, 0)
    AVX512_STORE_STATE(1, 16)
}

static int supported(int id)
{
    __builtin_cpu_init();
    switch (id) {
    case MD5MB_AVX2_X8:
    case MD5MB_AVX2_X16:
        return __builtin_cpu_supports("avx2");
    case MD5MB_AVX512_X16:
    case MD5MB_AVX512_X32:
        return __builtin_cpu_supports("avx512f");
    default:
        return 0;
    }
}

md5mb_kernel md5mb_get(int id)
{
    static const md5mb_kernel KERNELS[MD5MB_KERNELS] = {NULL, md5_avx2_x8, md5_avx2_x16, md5_avx512_x16, md5_avx512_x32};
    return supported(id) ? KERNELS[id] : NULL;
}

#else /* no SIMD kernel on this architecture: the caller keeps its scalar path */

md5mb_kernel md5mb_get(int id)
{
    (void)id;
    return NULL;
}

#endif

int md5mb_lanes(int id)
{
    return md5mb_get(id) != NULL ? LANES[id] : 0;
}

int md5mb_best(void)
{
    /* Measured choice, see _hasher.pyx: BEST_ORDER is tried first to last. */
    static const int BEST_ORDER[] = {MD5MB_AVX512_X16, MD5MB_AVX2_X8};
    for (size_t i = 0; i < sizeof(BEST_ORDER) / sizeof(BEST_ORDER[0]); i++)
        if (md5mb_get(BEST_ORDER[i]) != NULL)
            return BEST_ORDER[i];
    return MD5MB_NONE;
}
