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

static inline uint32_t chl_crc32c(const void *buf, size_t n) {
    return chl_crc32c_extend(0, buf, n);
}
#endif
