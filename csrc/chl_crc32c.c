/* CRC32C with a hardware path and a portable slicing-by-8 fallback. See chl_crc32c.h.
 *
 * The hardware path (SSE4.2 crc32 on x86-64, the CRC extension on ARMv8) runs three
 * independent CRC chains on all but short buffers. One crc32 instruction on 8 bytes has a
 * latency of about 3 cycles but a throughput of one per cycle, so a single dependent chain
 * uses a third of the unit. A block of 3*N bytes is split into three streams of N bytes, A, B
 * and C, whose raw CRC registers a, b, c are computed side by side (a continuing from the
 * running register, b and c from 0); the register after A||B||C is then
 *
 *     shift_2N(a) ^ shift_N(b) ^ c
 *
 * because the raw register (before the final inversion) is linear in the register it starts
 * from and in the data: shift_M(r) is r carried over M zero bytes, r * x^(8M) mod P in
 * GF(2)[x]. shift_M is linear in r too, so it is a table of four 256-entry slices (one per
 * byte of r), built once at first use from the polynomial. Three block sizes are used, longest
 * first (CHL_CRC_LONG, _MID, _SHORT bytes per stream); the last < 3*CHL_CRC_SHORT bytes run
 * on one chain.
 */
#include "chl_crc32c.h"
#include <string.h>

#define CHL_CRC32C_POLY 0x82F63B78u

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "chronolog's on-disk format and CRC code assume a little-endian host"
#endif

/* Lazily built tables are published with release/acquire so that a thread which sees the
 * flag set also sees the entries. Racing initialisers write the same bytes (the tables are a
 * pure function of the polynomial), so no lock is needed. */
#if defined(__GNUC__) || defined(__clang__)
#define CHL_LOAD_ACQUIRE(x) __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define CHL_STORE_RELEASE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)
#else
#define CHL_LOAD_ACQUIRE(x) (x)
#define CHL_STORE_RELEASE(x, v) ((x) = (v))
#endif

static uint32_t chl_crc_table[8][256];
static int chl_crc_table_ready = 0;

static void chl_crc_init_table(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ CHL_CRC32C_POLY : c >> 1;
        chl_crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = chl_crc_table[0][i];
        for (int t = 1; t < 8; t++) {
            c = chl_crc_table[0][c & 0xff] ^ (c >> 8);
            chl_crc_table[t][i] = c;
        }
    }
    CHL_STORE_RELEASE(chl_crc_table_ready, 1);
}

uint32_t chl_crc32c_portable(uint32_t crc, const void *buf, size_t n) {
    const unsigned char *p = (const unsigned char *)buf;
    if (!CHL_LOAD_ACQUIRE(chl_crc_table_ready)) chl_crc_init_table();
    crc = ~crc;
    while (n && ((uintptr_t)p & 7)) {
        crc = chl_crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
        n--;
    }
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w ^= crc;  /* little-endian hosts only: guarded above */
        crc = chl_crc_table[7][w & 0xff] ^ chl_crc_table[6][(w >> 8) & 0xff] ^
              chl_crc_table[5][(w >> 16) & 0xff] ^ chl_crc_table[4][(w >> 24) & 0xff] ^
              chl_crc_table[3][(w >> 32) & 0xff] ^ chl_crc_table[2][(w >> 40) & 0xff] ^
              chl_crc_table[1][(w >> 48) & 0xff] ^ chl_crc_table[0][w >> 56];
        p += 8;
        n -= 8;
    }
    while (n--) crc = chl_crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return ~crc;
}

/* a * b mod P, both reflected (bit 31 holds x^0). */
static uint32_t chl_gf2_mul(uint32_t a, uint32_t b) {
    uint32_t product = 0;
    for (uint32_t m = 1u << 31; m; m >>= 1) {
        if (a & m) product ^= b;
        b = (b & 1) ? (b >> 1) ^ CHL_CRC32C_POLY : b >> 1;
    }
    return product;
}

/* x^k mod P, reflected. */
static uint32_t chl_gf2_xpow(uint64_t k) {
    uint32_t result = 1u << 31, square = 1u << 30;  /* x^0, x^1 */
    for (; k; k >>= 1) {
        if (k & 1) result = chl_gf2_mul(result, square);
        square = chl_gf2_mul(square, square);
    }
    return result;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <nmmintrin.h>

#define CHL_HW_TARGET __attribute__((target("sse4.2")))
typedef uint64_t chl_crc_lane;  /* crc32q reads and writes a 64-bit register */
#define CHL_CRC_U8(c, b) _mm_crc32_u8((uint32_t)(c), (b))
#define CHL_CRC_U16(c, h) _mm_crc32_u16((uint32_t)(c), (h))
#define CHL_CRC_U32(c, w) _mm_crc32_u32((uint32_t)(c), (w))
#define CHL_CRC_U64(c, w) _mm_crc32_u64((c), (w))

static int chl_detect_hw(void) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    return (c & bit_SSE4_2) != 0;
}
#define CHL_HAVE_HW 1

#elif defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
#include <sys/auxv.h>
#ifndef HWCAP_CRC32
#define HWCAP_CRC32 (1 << 7)
#endif

#define CHL_HW_TARGET __attribute__((target("+crc")))
typedef uint32_t chl_crc_lane;
#define CHL_CRC_U8(c, b) __builtin_aarch64_crc32cb((c), (b))
#define CHL_CRC_U16(c, h) __builtin_aarch64_crc32ch((c), (h))
#define CHL_CRC_U32(c, w) __builtin_aarch64_crc32cw((c), (w))
#define CHL_CRC_U64(c, w) __builtin_aarch64_crc32cx((c), (w))

static int chl_detect_hw(void) { return (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0; }
#define CHL_HAVE_HW 1
#endif

#ifdef CHL_HAVE_HW

/* Bytes per stream in a three-stream block, one size per level, longest first (multiples of
 * 64: the loop takes 64 bytes per stream per turn). The combine costs two independent table
 * shifts (8 loads); a level pays off from about 3*64 bytes. */
#ifndef CHL_CRC_LONG
#define CHL_CRC_LONG 32768
#endif
#ifndef CHL_CRC_MID
#define CHL_CRC_MID 256
#endif
#ifndef CHL_CRC_SHORT
#define CHL_CRC_SHORT 64
#endif
/* Long buffers stream from memory, and three streams CHL_CRC_LONG apart get less from the
 * hardware prefetcher than one does: each stream asks for the line this far ahead (measured:
 * 100 MB buffer ~20% faster on Zen 5, see BENCHMARKS.md). */
#ifndef CHL_CRC_PREFETCH_BYTES
#define CHL_CRC_PREFETCH_BYTES 2048
#endif
#define CHL_CRC_PREFETCH_MIN_STRIDE 4096
enum { CHL_CRC_LEVEL_LONG, CHL_CRC_LEVEL_MID, CHL_CRC_LEVEL_SHORT, CHL_CRC_LEVELS };

/* chl_crc_zeros[level][s] carries a raw register over (s + 1) * stride(level) zero bytes. */
static uint32_t chl_crc_zeros[CHL_CRC_LEVELS][2][4][256];

/* zeros[k][b] = (b << 8k) * x^(8 * nbytes) mod P: the shift over nbytes, one byte at a time.
 * The product is linear in b, so each entry is the XOR of its lowest bit's entry and the rest's. */
static void chl_crc_zeros_fill(uint32_t zeros[4][256], size_t nbytes) {
    uint32_t op = chl_gf2_xpow((uint64_t)nbytes * 8);
    for (int k = 0; k < 4; k++) {
        zeros[k][0] = 0;
        for (uint32_t b = 1; b < 256; b++) {
            uint32_t low = b & (0u - b);
            zeros[k][b] = b == low ? chl_gf2_mul(op, b << (8 * k)) : zeros[k][low] ^ zeros[k][b ^ low];
        }
    }
}

static void chl_crc_init_zeros(void) {
    static const size_t stride[CHL_CRC_LEVELS] = {CHL_CRC_LONG, CHL_CRC_MID, CHL_CRC_SHORT};
    for (int level = 0; level < CHL_CRC_LEVELS; level++) {
        chl_crc_zeros_fill(chl_crc_zeros[level][0], stride[level]);
        chl_crc_zeros_fill(chl_crc_zeros[level][1], 2 * stride[level]);
    }
}

static inline uint32_t chl_crc_shift(uint32_t zeros[4][256], uint32_t crc) {
    return zeros[0][crc & 0xff] ^ zeros[1][(crc >> 8) & 0xff] ^
           zeros[2][(crc >> 16) & 0xff] ^ zeros[3][crc >> 24];
}

static inline uint64_t chl_ld64(const unsigned char *p) {
    uint64_t w;
    memcpy(&w, p, 8);
    return w;
}

/* Carries the raw register crc over the 3*stride bytes at p: three streams side by side,
 * then shift_2N(c0) ^ shift_N(c1) ^ c2. Inlined into chl_crc32c_hw with a constant stride. */
CHL_HW_TARGET __attribute__((always_inline))
static inline chl_crc_lane chl_crc_three_way(chl_crc_lane crc, const unsigned char *p,
                                             size_t stride, int level) {
    chl_crc_lane c0 = crc, c1 = 0, c2 = 0;
    const unsigned char *end = p + stride;
    do {
        if (stride >= CHL_CRC_PREFETCH_MIN_STRIDE) {
            __builtin_prefetch(p + CHL_CRC_PREFETCH_BYTES);
            __builtin_prefetch(p + stride + CHL_CRC_PREFETCH_BYTES);
            __builtin_prefetch(p + 2 * stride + CHL_CRC_PREFETCH_BYTES);
        }
        for (int k = 0; k < 64; k += 8) {
            c0 = CHL_CRC_U64(c0, chl_ld64(p + k));
            c1 = CHL_CRC_U64(c1, chl_ld64(p + stride + k));
            c2 = CHL_CRC_U64(c2, chl_ld64(p + 2 * stride + k));
        }
        p += 64;
    } while (p < end);
    return chl_crc_shift(chl_crc_zeros[level][1], (uint32_t)c0) ^
           chl_crc_shift(chl_crc_zeros[level][0], (uint32_t)c1) ^ (uint32_t)c2;
}

CHL_HW_TARGET
static uint32_t chl_crc32c_hw(uint32_t crc, const void *buf, size_t n) {
    const unsigned char *p = (const unsigned char *)buf;
    chl_crc_lane c = (uint32_t)~crc;
    while (n && ((uintptr_t)p & 7)) { c = CHL_CRC_U8(c, *p++); n--; }
    for (; n >= 3 * CHL_CRC_LONG; p += 3 * CHL_CRC_LONG, n -= 3 * CHL_CRC_LONG)
        c = chl_crc_three_way(c, p, CHL_CRC_LONG, CHL_CRC_LEVEL_LONG);
    for (; n >= 3 * CHL_CRC_MID; p += 3 * CHL_CRC_MID, n -= 3 * CHL_CRC_MID)
        c = chl_crc_three_way(c, p, CHL_CRC_MID, CHL_CRC_LEVEL_MID);
    for (; n >= 3 * CHL_CRC_SHORT; p += 3 * CHL_CRC_SHORT, n -= 3 * CHL_CRC_SHORT)
        c = chl_crc_three_way(c, p, CHL_CRC_SHORT, CHL_CRC_LEVEL_SHORT);
    for (; n >= 8; p += 8, n -= 8) c = CHL_CRC_U64(c, chl_ld64(p));
    while (n--) c = CHL_CRC_U8(c, *p++);
    return ~(uint32_t)c;
}
#endif /* CHL_HAVE_HW */

/* ---- combining CRCs: shift_n(c) = c * x^(8n) mod P ----
 * Portable: a GF(2) multiply by x^(8n) (chl_gf2_xpow, O(log n) multiplies). x86-64 with
 * PCLMULQDQ: one carry-less multiply by K(n) = x^(8n - 33) mod P and one crc32 instruction,
 * which multiplies by x^32 and reduces (the 33rd power is the product's reflected shift);
 * K(n) is tabled for n < CHL_COMBINE_TABLE (each entry the previous times x^8). */
#define CHL_COMBINE_TABLE 4096

uint32_t chl_crc32c_combine(uint32_t crc1, uint32_t crc2, size_t len2) {
    return chl_gf2_mul(crc1, chl_gf2_xpow((uint64_t)len2 * 8)) ^ crc2;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <wmmintrin.h>
static uint32_t chl_combine_k[CHL_COMBINE_TABLE];
static int chl_combine_mode = -1; /* -1 unknown, 0 portable, 1 PCLMULQDQ (table ready) */

static int chl_combine_ready(void) {
    int mode = CHL_LOAD_ACQUIRE(chl_combine_mode);
    if (mode >= 0) return mode;
    unsigned int a, b, c, d;
    mode = chl_crc32c_is_hardware() && __get_cpuid(1, &a, &b, &c, &d) && (c & bit_PCLMUL);
    if (mode) {
        uint32_t x8 = chl_gf2_xpow(8), k = chl_gf2_xpow(8 * 5 - 33);
        for (size_t n = 0; n < CHL_COMBINE_TABLE; n++) {
            if (n >= 5) {
                chl_combine_k[n] = k;
                k = chl_gf2_mul(k, x8);
            }
        }
    }
    CHL_STORE_RELEASE(chl_combine_mode, mode);
    return mode;
}

__attribute__((target("sse4.2,pclmul")))
static inline uint32_t chl_shift_hw(uint32_t c, uint32_t k) {
    __m128i p = _mm_clmulepi64_si128(_mm_cvtsi32_si128((int)c), _mm_cvtsi32_si128((int)k), 0);
    return (uint32_t)_mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(p));
}

__attribute__((target("sse4.2,pclmul")))
static uint32_t chl_extend_record_hw(uint32_t crc, const unsigned char *rec, size_t n) {
    uint32_t stored;
    memcpy(&stored, rec + 4, 4);
    uint32_t c = ~(uint32_t)_mm_crc32_u64(~crc, chl_ld64(rec));
    size_t len2 = n - 8;
    uint32_t k = len2 < CHL_COMBINE_TABLE ? chl_combine_k[len2] : chl_gf2_xpow((uint64_t)len2 * 8 - 33);
    return chl_shift_hw(c, k) ^ stored;
}

uint32_t chl_crc32c_extend_record(uint32_t crc, const unsigned char *rec, size_t n) {
    if (n >= 8 + 5 && chl_combine_ready()) return chl_extend_record_hw(crc, rec, n);
    return chl_crc32c_extend(crc, rec, n);
}
#else
uint32_t chl_crc32c_extend_record(uint32_t crc, const unsigned char *rec, size_t n) {
    return chl_crc32c_extend(crc, rec, n);
}
#endif

#ifdef CHL_HAVE_HW
/* Three independent CRCs side by side: one crc32 instruction has a latency of ~3 cycles and a
 * throughput of one per cycle, so three chains over short buffers (records of a few hundred
 * bytes, too short for chl_crc_three_way to pay) run in about the time of one. The buffers
 * are taken shortest first: all three go in lockstep (unaligned 8-byte loads) to the
 * shortest's last whole word, the other two to the middle one's, the longest alone to its
 * own; then each one's last 0-7 bytes in at most three steps (4, 2, 1 bytes), three
 * independent chains again. */
CHL_HW_TARGET
static inline chl_crc_lane chl_crc_tail7(chl_crc_lane c, const unsigned char *p, size_t n) {
    uint32_t w;
    uint16_t h;
    if (n & 4) { memcpy(&w, p, 4); c = CHL_CRC_U32(c, w); p += 4; }
    if (n & 2) { memcpy(&h, p, 2); c = CHL_CRC_U16(c, h); p += 2; }
    if (n & 1) c = CHL_CRC_U8(c, *p);
    return c;
}

CHL_HW_TARGET
static void chl_crc32c_3_hw(const unsigned char *a, size_t na, const unsigned char *b, size_t nb,
                            const unsigned char *c, size_t nc, uint32_t out[3]) {
    const unsigned char *p[3] = {a, b, c};
    size_t n[3] = {na, nb, nc};
    int o[3] = {0, 1, 2};
    /* Sort the three by length (o: which output each one is). */
#define CHL_CRC_SWAP(i, j) do { \
        const unsigned char *tp = p[i]; p[i] = p[j]; p[j] = tp; \
        size_t tn = n[i]; n[i] = n[j]; n[j] = tn; \
        int to = o[i]; o[i] = o[j]; o[j] = to; \
    } while (0)
    if (n[0] > n[1]) CHL_CRC_SWAP(0, 1);
    if (n[1] > n[2]) CHL_CRC_SWAP(1, 2);
    if (n[0] > n[1]) CHL_CRC_SWAP(0, 1);
#undef CHL_CRC_SWAP
    const unsigned char *p0 = p[0], *p1 = p[1], *p2 = p[2];
    size_t e0 = n[0] & ~(size_t)7, e1 = n[1] & ~(size_t)7, e2 = n[2] & ~(size_t)7, i = 0;
    chl_crc_lane x = 0xFFFFFFFFu, y = 0xFFFFFFFFu, z = 0xFFFFFFFFu;
    for (; i < e0; i += 8) {
        x = CHL_CRC_U64(x, chl_ld64(p0 + i));
        y = CHL_CRC_U64(y, chl_ld64(p1 + i));
        z = CHL_CRC_U64(z, chl_ld64(p2 + i));
    }
    for (; i < e1; i += 8) {
        y = CHL_CRC_U64(y, chl_ld64(p1 + i));
        z = CHL_CRC_U64(z, chl_ld64(p2 + i));
    }
    for (; i < e2; i += 8) z = CHL_CRC_U64(z, chl_ld64(p2 + i));
    x = chl_crc_tail7(x, p0 + e0, n[0] - e0);
    y = chl_crc_tail7(y, p1 + e1, n[1] - e1);
    z = chl_crc_tail7(z, p2 + e2, n[2] - e2);
    out[o[0]] = ~(uint32_t)x;
    out[o[1]] = ~(uint32_t)y;
    out[o[2]] = ~(uint32_t)z;
}
#endif

void chl_crc32c_3(const unsigned char *a, size_t na, const unsigned char *b, size_t nb,
                  const unsigned char *c, size_t nc, uint32_t out[3]) {
#ifdef CHL_HAVE_HW
    if (chl_crc32c_is_hardware()) {
        chl_crc32c_3_hw(a, na, b, nb, c, nc, out);
        return;
    }
#endif
    out[0] = chl_crc32c_portable(0, a, na);
    out[1] = chl_crc32c_portable(0, b, nb);
    out[2] = chl_crc32c_portable(0, c, nc);
}

/* -1 unknown, 0 table, 1 hardware. Detection (and the hardware path's zeros tables) is
 * idempotent, so a race is harmless; the mode is published after the tables. */
static int chl_crc_mode = -1;

int chl_crc32c_is_hardware(void) {
#ifdef CHL_HAVE_HW
    int mode = CHL_LOAD_ACQUIRE(chl_crc_mode);
    if (mode < 0) {
        mode = chl_detect_hw();
        if (mode) chl_crc_init_zeros();
        CHL_STORE_RELEASE(chl_crc_mode, mode);
    }
    return mode;
#else
    return 0;
#endif
}

uint32_t chl_crc32c_extend(uint32_t crc, const void *buf, size_t n) {
#ifdef CHL_HAVE_HW
    if (chl_crc32c_is_hardware()) return chl_crc32c_hw(crc, buf, n);
#endif
    return chl_crc32c_portable(crc, buf, n);
}
