/* CRC32C with a hardware path and a portable slicing-by-8 fallback. See chl_crc32c.h. */
#include "chl_crc32c.h"
#include <string.h>

#define CHL_CRC32C_POLY 0x82F63B78u

static uint32_t chl_crc_table[8][256];
static volatile int chl_crc_table_ready = 0;

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
    /* The table is a pure function of the polynomial: racing initialisers write the same
     * bytes, so no lock is needed. */
    chl_crc_table_ready = 1;
}

uint32_t chl_crc32c_portable(uint32_t crc, const void *buf, size_t n) {
    const unsigned char *p = (const unsigned char *)buf;
    if (!chl_crc_table_ready) chl_crc_init_table();
    crc = ~crc;
    while (n && ((uintptr_t)p & 7)) {
        crc = chl_crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
        n--;
    }
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w ^= crc;  /* little-endian hosts only: guarded below */
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

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "chronolog's on-disk format and CRC code assume a little-endian host"
#endif

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <nmmintrin.h>

__attribute__((target("sse4.2")))
static uint32_t chl_crc32c_hw(uint32_t crc, const void *buf, size_t n) {
    const unsigned char *p = (const unsigned char *)buf;
    uint64_t c = ~crc;
    while (n && ((uintptr_t)p & 7)) { c = _mm_crc32_u8((uint32_t)c, *p++); n--; }
    while (n >= 32) {
        uint64_t a, b, d, e;
        memcpy(&a, p, 8); memcpy(&b, p + 8, 8); memcpy(&d, p + 16, 8); memcpy(&e, p + 24, 8);
        c = _mm_crc32_u64(c, a); c = _mm_crc32_u64(c, b);
        c = _mm_crc32_u64(c, d); c = _mm_crc32_u64(c, e);
        p += 32; n -= 32;
    }
    while (n >= 8) { uint64_t a; memcpy(&a, p, 8); c = _mm_crc32_u64(c, a); p += 8; n -= 8; }
    while (n--) c = _mm_crc32_u8((uint32_t)c, *p++);
    return ~(uint32_t)c;
}

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

__attribute__((target("+crc")))
static uint32_t chl_crc32c_hw(uint32_t crc, const void *buf, size_t n) {
    const unsigned char *p = (const unsigned char *)buf;
    uint32_t c = ~crc;
    while (n && ((uintptr_t)p & 7)) { c = __builtin_aarch64_crc32cb(c, *p++); n--; }
    while (n >= 8) { uint64_t a; memcpy(&a, p, 8); c = __builtin_aarch64_crc32cx(c, a); p += 8; n -= 8; }
    while (n--) c = __builtin_aarch64_crc32cb(c, *p++);
    return ~c;
}

static int chl_detect_hw(void) { return (getauxval(AT_HWCAP) & HWCAP_CRC32) != 0; }
#define CHL_HAVE_HW 1
#endif

/* -1 unknown, 0 table, 1 hardware. Detection is idempotent, so a race is harmless. */
static volatile int chl_crc_mode = -1;

int chl_crc32c_is_hardware(void) {
#ifdef CHL_HAVE_HW
    if (chl_crc_mode < 0) chl_crc_mode = chl_detect_hw();
    return chl_crc_mode;
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
