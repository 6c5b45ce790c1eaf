/* A one-shot wake-up for the group commit's waiters (Log.sync_to; docs/design.md, "Group
 * commit"): chl_baton_wait sleeps until chl_baton_post or a timeout. Both run without the GIL,
 * so a thread can hand the baton on after it has given the GIL up: the woken thread then finds
 * the GIL free instead of sleeping a second time on it.
 *
 * A baton is posted at most once and waited on by one thread; init before use, destroy after
 * (once no thread can post or wait any more: a poster must keep it alive until
 * chl_baton_post returns).
 */
#ifndef CHL_BATON_H
#define CHL_BATON_H
#include <errno.h>
#include <pthread.h>
#include <time.h>

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int posted;   /* guarded by mu */
    int ready;    /* mu and cv were made */
    int monotonic; /* cv times out on CLOCK_MONOTONIC */
} chl_baton;

/* 0, or -1 when the mutex or condition cannot be made. */
static inline int chl_baton_init(chl_baton *b) {
    pthread_condattr_t attr;
    b->posted = 0;
    b->ready = 0;
    b->monotonic = 0;
    if (pthread_mutex_init(&b->mu, NULL) != 0) return -1;
    if (pthread_condattr_init(&attr) != 0) {
        pthread_mutex_destroy(&b->mu);
        return -1;
    }
#if defined(__linux__)
    b->monotonic = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) == 0;
#endif
    int rc = pthread_cond_init(&b->cv, &attr);
    pthread_condattr_destroy(&attr);
    if (rc != 0) {
        pthread_mutex_destroy(&b->mu);
        return -1;
    }
    b->ready = 1;
    return 0;
}

static inline void chl_baton_destroy(chl_baton *b) {
    if (!b->ready) return;
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->mu);
    b->ready = 0;
}

/* The signal goes after the unlock, so the woken waiter does not sleep again on the mutex
 * (the caller keeps the baton alive until this returns). */
static inline void chl_baton_post(chl_baton *b) {
    pthread_mutex_lock(&b->mu);
    b->posted = 1;
    pthread_mutex_unlock(&b->mu);
    pthread_cond_signal(&b->cv);
}

/* 1 once posted, 0 after timeout_ns without a post. */
static inline int chl_baton_wait(chl_baton *b, long long timeout_ns) {
    struct timespec t;
    clock_gettime(b->monotonic ? CLOCK_MONOTONIC : CLOCK_REALTIME, &t);
    long long ns = (long long)t.tv_nsec + timeout_ns;
    t.tv_sec += (time_t)(ns / 1000000000LL);
    t.tv_nsec = (long)(ns % 1000000000LL);
    pthread_mutex_lock(&b->mu);
    int rc = 0;
    while (!b->posted && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&b->cv, &b->mu, &t);
    int posted = b->posted;
    pthread_mutex_unlock(&b->mu);
    return posted;
}

#endif
