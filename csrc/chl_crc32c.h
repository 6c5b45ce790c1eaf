/* CRC32C (Castagnoli, reflected polynomial 0x82F63B78), as used by iSCSI, ext4 and LevelDB.
 *
 * chl_crc32c_extend(crc, buf, n) continues a running CRC: start with crc = 0.
 * The hardware path (SSE4.2 crc32 on x86-64, the CRC extension on ARMv8) is chosen once, at
 * first use, by asking the CPU; it runs three interleaved streams on buffers of 192 bytes and
 * more (see chl_crc32c.c). The portable slicing-by-8 table is the fallback.
 */
#ifndef CHL_CRC32C_H
#define CHL_CRC32C_H
#include <stddef.h>
#include <stdint.h>

uint32_t chl_crc32c_extend(uint32_t crc, const void *buf, size_t n);
uint32_t chl_crc32c_portable(uint32_t crc, const void *buf, size_t n);
/* 1 when the hardware path is in use, 0 for the table. */
int chl_crc32c_is_hardware(void);
/* The CRC32C of three buffers at once (out[0..3)), in about the time of one on the hardware
 * path: for records, each too short for the three-stream split of one buffer. */
void chl_crc32c_3(const unsigned char *a, size_t na, const unsigned char *b, size_t nb,
                  const unsigned char *c, size_t nc, uint32_t out[3]);
/* CRC32C of A||B from crc1 = CRC32C(A), crc2 = CRC32C(B) and len2 = |B|, without reading B:
 * crc1 * x^(8 len2) mod P, xor crc2 (the ~0 conditioning of both cancels). */
uint32_t chl_crc32c_combine(uint32_t crc1, uint32_t crc2, size_t len2);
/* Continue the running CRC `crc` over one record of n >= 8 bytes whose bytes 4..8 hold the
 * CRC32C of its bytes 8..n (the record format): reads 8 bytes, not n, when the CPU can combine
 * CRCs fast (x86-64 with SSE4.2 and PCLMULQDQ); else reads them all. Equal to
 * chl_crc32c_extend(crc, rec, n) whenever that stored CRC is right. */
uint32_t chl_crc32c_extend_record(uint32_t crc, const unsigned char *rec, size_t n);

static inline uint32_t chl_crc32c(const void *buf, size_t n) {
    return chl_crc32c_extend(0, buf, n);
}
#endif
