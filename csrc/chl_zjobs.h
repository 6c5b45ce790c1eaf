/* Parallel zstd over independent blocks (the blocks of one frame body): a few threads, each
 * with its own context, take the blocks by index. The caller owns the contexts.
 */
#ifndef CHL_ZJOBS_H
#define CHL_ZJOBS_H
#include <stddef.h>
#include "zstd.h"

#define CHL_ZJOBS_MAX_THREADS 4

typedef struct {
    const void *src;
    size_t src_bytes;
    void *dst;
    size_t dst_cap;
    size_t result; /* bytes produced, or a zstd error code (ZSTD_isError) */
} chl_zjob;

/* Compress jobs[0..n) with `threads` threads (contexts cctx[0..threads)); cdict may be NULL
 * (then `level`). Returns 0 when every job succeeded, -1 otherwise (see each result). */
int chl_zcompress_jobs(chl_zjob *jobs, size_t n, ZSTD_CCtx **cctx, int threads,
                       const ZSTD_CDict *cdict, int level);
/* Decompress jobs[0..n) likewise; ddict may be NULL. */
int chl_zdecompress_jobs(chl_zjob *jobs, size_t n, ZSTD_DCtx **dctx, int threads,
                         const ZSTD_DDict *ddict);
#endif
