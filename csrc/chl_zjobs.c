/* Parallel zstd over independent blocks: see chl_zjobs.h. */
#include "chl_zjobs.h"
#include <pthread.h>

typedef struct {
    chl_zjob *jobs;
    size_t n;
    size_t *next;      /* the next job to take, shared by the workers (atomic) */
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
    for (;;) {
        size_t i = __atomic_fetch_add(w->next, 1, __ATOMIC_RELAXED);
        if (i >= w->n) break;
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
    size_t next = 0;
    if (threads < 1) threads = 1;
    if (threads > CHL_ZJOBS_MAX_THREADS) threads = CHL_ZJOBS_MAX_THREADS;
    if ((size_t)threads > n) threads = (int)(n ? n : 1);
    for (int t = 0; t < threads; t++) {
        w[t].jobs = jobs; w[t].n = n; w[t].next = &next;
        w[t].compress = compress; w[t].cctx = cctx ? cctx[t] : NULL; w[t].dctx = dctx ? dctx[t] : NULL;
        w[t].cdict = cdict; w[t].ddict = ddict; w[t].level = level; w[t].failed = 0;
    }
    /* Threads 1.. run beside this one, each taking the next job until none is left: a thread
     * that starts late (~0.4 ms after pthread_create on a busy 2-vCPU machine) or cannot start
     * at all leaves its share to the others. */
    for (int t = 1; t < threads; t++)
        started[t] = pthread_create(&tid[t], NULL, chl_zwork, &w[t]) == 0;
    chl_zwork(&w[0]);
    int failed = w[0].failed;
    for (int t = 1; t < threads; t++) {
        if (started[t]) pthread_join(tid[t], NULL);
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
