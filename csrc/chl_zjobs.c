/* Parallel zstd over independent blocks: see chl_zjobs.h. */
#include "chl_zjobs.h"
#include <pthread.h>

typedef struct {
    chl_zjob *jobs;
    size_t n;
    int stride, first;
    int compress;
    ZSTD_CCtx *cctx;
    ZSTD_DCtx *dctx;
    const ZSTD_CDict *cdict;
    const ZSTD_DDict *ddict;
    int level;
    int failed;
} chl_zworker;

static void *chl_zwork(void *arg) {
    chl_zworker *w = (chl_zworker *)arg;
    for (size_t i = (size_t)w->first; i < w->n; i += (size_t)w->stride) {
        chl_zjob *j = &w->jobs[i];
        if (w->compress) {
            j->result = w->cdict
                ? ZSTD_compress_usingCDict(w->cctx, j->dst, j->dst_cap, j->src, j->src_bytes, w->cdict)
                : ZSTD_compressCCtx(w->cctx, j->dst, j->dst_cap, j->src, j->src_bytes, w->level);
        } else {
            j->result = w->ddict
                ? ZSTD_decompress_usingDDict(w->dctx, j->dst, j->dst_cap, j->src, j->src_bytes, w->ddict)
                : ZSTD_decompressDCtx(w->dctx, j->dst, j->dst_cap, j->src, j->src_bytes);
        }
        if (ZSTD_isError(j->result)) w->failed = 1;
    }
    return NULL;
}

static int chl_zrun(chl_zjob *jobs, size_t n, int threads, int compress, ZSTD_CCtx **cctx,
                    ZSTD_DCtx **dctx, const ZSTD_CDict *cdict, const ZSTD_DDict *ddict,
                    int level) {
    chl_zworker w[CHL_ZJOBS_MAX_THREADS];
    pthread_t tid[CHL_ZJOBS_MAX_THREADS];
    int started[CHL_ZJOBS_MAX_THREADS] = {0};
    if (threads < 1) threads = 1;
    if (threads > CHL_ZJOBS_MAX_THREADS) threads = CHL_ZJOBS_MAX_THREADS;
    if ((size_t)threads > n) threads = (int)(n ? n : 1);
    for (int t = 0; t < threads; t++) {
        w[t].jobs = jobs; w[t].n = n; w[t].stride = threads; w[t].first = t;
        w[t].compress = compress; w[t].cctx = cctx ? cctx[t] : NULL; w[t].dctx = dctx ? dctx[t] : NULL;
        w[t].cdict = cdict; w[t].ddict = ddict; w[t].level = level; w[t].failed = 0;
    }
    /* Threads 1.. run beside this one; if one cannot start, this thread does its share. */
    for (int t = 1; t < threads; t++)
        started[t] = pthread_create(&tid[t], NULL, chl_zwork, &w[t]) == 0;
    chl_zwork(&w[0]);
    int failed = w[0].failed;
    for (int t = 1; t < threads; t++) {
        if (started[t]) pthread_join(tid[t], NULL);
        else chl_zwork(&w[t]);
        failed |= w[t].failed;
    }
    return failed ? -1 : 0;
}

int chl_zcompress_jobs(chl_zjob *jobs, size_t n, ZSTD_CCtx **cctx, int threads,
                       const ZSTD_CDict *cdict, int level) {
    return chl_zrun(jobs, n, threads, 1, cctx, NULL, cdict, NULL, level);
}

int chl_zdecompress_jobs(chl_zjob *jobs, size_t n, ZSTD_DCtx **dctx, int threads,
                         const ZSTD_DDict *ddict) {
    return chl_zrun(jobs, n, threads, 0, NULL, dctx, NULL, ddict, 0);
}
