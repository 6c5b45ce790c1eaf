/* A write pipeline for one large frame: the appender encodes the frame's body in chunks and
 * hands each finished chunk to a helper thread, which pwrites it while the next chunk is
 * being encoded, so the kernel's copy into the page cache runs on the other core
 * (docs/design.md, "Pipelined writes of large frames").
 *
 * One pipeline per frame: chl_wpipe_start creates the thread, chl_wpipe_submit publishes how
 * far the buffer is ready, chl_wpipe_finish publishes the end and waits until it is written.
 * The thread writes [0, submitted) of `base` at `offset` in order; a write error stops it and
 * finish returns the errno. Then, after finish has its answer, the thread may ask the kernel
 * to start writeback of an earlier range of the file (sync_file_range, a hint: errors surface
 * at the next fdatasync), so the appender does not wait for that; chl_wpipe_reap joins it
 * (before the next start, and before the file descriptor is closed). When the thread cannot
 * be created, finish writes everything itself: same bytes, no overlap.
 *
 * Everything is static inline: the I/O layer starts and finishes pipelines, the log's
 * encoder (another extension module) submits chunks without the GIL.
 */
#ifndef CHL_WPIPE_H
#define CHL_WPIPE_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;         /* the appender -> the thread: more submitted, or final */
    pthread_cond_t done;       /* the thread -> the appender: idle (all written, or failed) */
    pthread_t tid;
    int fd;
    const unsigned char *base; /* the bytes to write start here ... */
    uint64_t offset;           /* ... and go to this file offset */
    size_t submitted;          /* [0, submitted) of base may be written (guarded by mu) */
    size_t written;            /* [0, written) of base is written (guarded by mu) */
    int final;                 /* nothing more will be submitted (guarded by mu) */
    int err;                   /* errno of the failed write, else 0 (guarded by mu) */
    int idle;                  /* the thread writes no more (guarded by mu) */
    int threaded;              /* the helper thread runs */
    int locks;                 /* mu, cv and done were made */
    uint64_t hint_from, hint_bytes;
} chl_wpipe;

/* pwrite all of [p, p + n) at off; 0 or an errno. */
static inline int chl_pwrite_all(int fd, const unsigned char *p, size_t n, uint64_t off) {
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (w == 0) return EIO;
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

static inline void chl_wpipe_hint(chl_wpipe *w) {
#ifdef SYNC_FILE_RANGE_WRITE
    if (w->hint_bytes)
        (void)sync_file_range(w->fd, (off_t)w->hint_from, (off_t)w->hint_bytes, SYNC_FILE_RANGE_WRITE);
#endif
    w->hint_bytes = 0;
}

static void *chl_wpipe_run(void *arg) {
    chl_wpipe *w = (chl_wpipe *)arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (w->written == w->submitted && !w->final) pthread_cond_wait(&w->cv, &w->mu);
        if (w->written == w->submitted) break; /* final, all written */
        size_t from = w->written, to = w->submitted;
        pthread_mutex_unlock(&w->mu);
        int err = chl_pwrite_all(w->fd, w->base + from, to - from, w->offset + from);
        pthread_mutex_lock(&w->mu);
        if (err) {
            w->err = err;
            break;
        }
        w->written = to;
    }
    w->idle = 1;
    pthread_cond_signal(&w->done);
    pthread_mutex_unlock(&w->mu);
    chl_wpipe_hint(w);
    return NULL;
}

/* Join the pipeline's thread and free its locks (no-op when there is nothing to join). */
static inline void chl_wpipe_reap(chl_wpipe *w) {
    if (w->threaded) pthread_join(w->tid, NULL);
    w->threaded = 0;
    if (w->locks) {
        pthread_cond_destroy(&w->done);
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
    }
    w->locks = 0;
}

/* Start a pipeline writing base[0, ...) at `offset` of fd (reaping w's previous one; w must
 * be zeroed before its first use); once written, hint_bytes > 0 asks for writeback of
 * [hint_from, hint_from + hint_bytes). Without a thread (it or its locks could not be made)
 * chl_wpipe_finish writes everything itself. */
static inline void chl_wpipe_start(chl_wpipe *w, int fd, const unsigned char *base, uint64_t offset,
                                  uint64_t hint_from, uint64_t hint_bytes) {
    chl_wpipe_reap(w);
    memset(w, 0, sizeof(*w));
    w->fd = fd;
    w->base = base;
    w->offset = offset;
    w->hint_from = hint_from;
    w->hint_bytes = hint_bytes;
    if (pthread_mutex_init(&w->mu, NULL) != 0) return;
    if (pthread_cond_init(&w->cv, NULL) != 0) {
        pthread_mutex_destroy(&w->mu);
        return;
    }
    if (pthread_cond_init(&w->done, NULL) != 0) {
        pthread_cond_destroy(&w->cv);
        pthread_mutex_destroy(&w->mu);
        return;
    }
    w->locks = 1;
    w->threaded = pthread_create(&w->tid, NULL, chl_wpipe_run, w) == 0;
}

/* [0, upto) of base is ready to be written. */
static inline void chl_wpipe_submit(chl_wpipe *w, size_t upto) {
    if (!w->threaded) return;
    pthread_mutex_lock(&w->mu);
    w->submitted = upto;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

/* [0, upto) is everything: wait until it is written; 0 or the errno of the failed write.
 * The thread may still be running its writeback hint: chl_wpipe_reap joins it. */
static inline int chl_wpipe_finish(chl_wpipe *w, size_t upto) {
    int err;
    if (w->threaded) {
        pthread_mutex_lock(&w->mu);
        w->submitted = upto;
        w->final = 1;
        pthread_cond_signal(&w->cv);
        while (!w->idle) pthread_cond_wait(&w->done, &w->mu);
        err = w->err;
        pthread_mutex_unlock(&w->mu);
        return err;
    }
    err = chl_pwrite_all(w->fd, w->base, upto, w->offset);
    chl_wpipe_hint(w);
    return err;
}

#endif
