/* A write pipeline for one large frame: the appender encodes the frame's body in chunks and
 * hands each finished chunk to a helper thread, which pwrites it while the next chunk is
 * being encoded, so the kernel's copy into the page cache runs on the other core
 * (docs/design.md, "Pipelined writes of large frames").
 *
 * One helper thread per chl_wpipe (per writing log), made at its first job and kept until
 * chl_wpipe_stop: a thread made per frame started running ~0.4 ms after pthread_create on
 * this 2-vCPU machine (placed behind the busy appender), a third of a 10,000-event append.
 * A job: chl_wpipe_start posts it (waiting for the previous job, writeback hint included),
 * chl_wpipe_submit publishes how far the buffer is ready, chl_wpipe_finish publishes the end
 * and waits until it is written. The thread writes [0, submitted) of `base` at `offset` in
 * order; a write error stops the job and finish returns the errno. Then, after finish has its
 * answer, the thread may ask the kernel to start writeback of an earlier range of the file
 * (sync_file_range, a hint: errors surface at the next fdatasync), so the appender does not
 * wait for that; chl_wpipe_reap waits for it (before the file descriptor is closed). When the
 * thread cannot be made, finish writes everything itself: same bytes, no overlap.
 *
 * After fork() the child has no helper thread, and the parent's locks may have been held at
 * the fork: a pipeline made by another process (its pid) is forgotten, never joined, and the
 * child makes its own thread at its first job. The helper blocks every signal, so they go to
 * the interpreter's threads.
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
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;         /* the appender -> the thread: a job, more submitted, final, quit */
    pthread_cond_t done;       /* the thread -> the appender: written (idle), job over (!busy) */
    pthread_t tid;
    pid_t pid;                 /* the process whose thread this is (0: none made yet) */
    int threaded;              /* the helper thread runs (in this process) */
    int quit;                  /* the thread ends once no job is left (guarded by mu) */
    int busy;                  /* a job is posted and not over, hint included (guarded by mu) */
    int fd;
    const unsigned char *base; /* the bytes to write start here ... */
    uint64_t offset;           /* ... and go to this file offset */
    size_t submitted;          /* [0, submitted) of base may be written (guarded by mu) */
    size_t written;            /* [0, written) of base is written (guarded by mu) */
    int final;                 /* nothing more will be submitted (guarded by mu) */
    int err;                   /* errno of the failed write, else 0 (guarded by mu) */
    int idle;                  /* the thread writes no more for this job (guarded by mu) */
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

static inline void chl_wpipe_hint_range(int fd, uint64_t from, uint64_t n) {
#ifdef SYNC_FILE_RANGE_WRITE
    if (n) (void)sync_file_range(fd, (off_t)from, (off_t)n, SYNC_FILE_RANGE_WRITE);
#else
    (void)fd; (void)from; (void)n;
#endif
}

static void *chl_wpipe_run(void *arg) {
    chl_wpipe *w = (chl_wpipe *)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!(w->busy && !w->idle) && !w->quit) pthread_cond_wait(&w->cv, &w->mu);
        if (!(w->busy && !w->idle)) break; /* quit, no job */
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
        pthread_cond_broadcast(&w->done);
        int fd = w->fd;
        uint64_t from = w->hint_from, n = w->hint_bytes;
        pthread_mutex_unlock(&w->mu);
        chl_wpipe_hint_range(fd, from, n);
        pthread_mutex_lock(&w->mu);
        w->busy = 0;
        pthread_cond_broadcast(&w->done);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* Whether w's thread (if any) belongs to this process; forget one inherited through fork(). */
static inline int chl_wpipe_owned(chl_wpipe *w) {
    if (w->pid == 0) return 0;
    if (w->pid == getpid()) return 1;
    memset(w, 0, sizeof(*w)); /* the parent's thread and locks: not ours to join or use */
    return 0;
}

/* Wait until w's job (its writeback hint included) is over; the thread stays for the next. */
static inline void chl_wpipe_reap(chl_wpipe *w) {
    if (!chl_wpipe_owned(w) || !w->threaded) return;
    pthread_mutex_lock(&w->mu);
    while (w->busy) pthread_cond_wait(&w->done, &w->mu);
    pthread_mutex_unlock(&w->mu);
}

/* End w's thread (after its job) and free its locks; w may be started again afterwards. */
static inline void chl_wpipe_stop(chl_wpipe *w) {
    if (!chl_wpipe_owned(w)) return;
    if (w->threaded) {
        pthread_mutex_lock(&w->mu);
        w->quit = 1;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
        pthread_join(w->tid, NULL);
    }
    pthread_cond_destroy(&w->done);
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
    memset(w, 0, sizeof(*w));
}

/* Make w's locks and thread (w zeroed); without the thread, jobs are written by finish. */
static inline void chl_wpipe_make(chl_wpipe *w) {
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
    w->pid = getpid();
    w->threaded = pthread_create(&w->tid, NULL, chl_wpipe_run, w) == 0;
}

/* Start a job writing base[0, ...) at `offset` of fd (after w's previous job is over; w must
 * be zeroed before its first use); once written, hint_bytes > 0 asks for writeback of
 * [hint_from, hint_from + hint_bytes). Without a thread (it or its locks could not be made)
 * chl_wpipe_finish writes everything itself. */
static inline void chl_wpipe_start(chl_wpipe *w, int fd, const unsigned char *base, uint64_t offset,
                                  uint64_t hint_from, uint64_t hint_bytes) {
    if (!chl_wpipe_owned(w)) chl_wpipe_make(w);
    if (w->threaded) pthread_mutex_lock(&w->mu);
    while (w->threaded && w->busy) pthread_cond_wait(&w->done, &w->mu);
    w->fd = fd;
    w->base = base;
    w->offset = offset;
    w->submitted = w->written = 0;
    w->final = w->err = w->idle = 0;
    w->hint_from = hint_from;
    w->hint_bytes = hint_bytes;
    if (w->threaded) {
        w->busy = 1;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->mu);
    }
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
 * The thread may still be running its writeback hint: chl_wpipe_reap waits for it. */
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
    chl_wpipe_hint_range(w->fd, w->hint_from, w->hint_bytes);
    w->hint_bytes = 0;
    return err;
}

#endif
