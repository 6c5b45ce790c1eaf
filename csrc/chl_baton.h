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
#include <stdint.h>
#include <sched.h>
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
    __atomic_store_n(&b->posted, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&b->mu);
    pthread_cond_signal(&b->cv);
}

static inline long long chl_baton_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* The wait of chl_baton_wait, running instead of sleeping: it looks at the baton and gives
 * the CPU up (sched_yield) in turn, so a post wakes no one. 1 once posted; 0 after spin_ns;
 * 2 when, from slice_ns on (as a sleeping waiter at the end of a slice), a racy look at the
 * group commit's state says the wait is over without a post (`*synced` reached `seq`, or no
 * sync runs: a lost baton, looked at again under the lock); 3 when one sched_yield took more
 * than late_ns: another thread or process runs for whole time slices on this CPU, and a
 * spinner would see its baton a slice late (the caller sleeps instead, and stops spinning
 * for a while). */
static inline int chl_baton_spin(chl_baton *b, long long spin_ns, long long slice_ns,
                                 long long late_ns, const uint64_t *synced, uint64_t seq,
                                 const int *syncing) {
    long long t0 = chl_baton_now(), before = t0;
    for (;;) {
        if (__atomic_load_n(&b->posted, __ATOMIC_ACQUIRE)) return 1;
        long long now = chl_baton_now();
        if (now - before > late_ns) return 3;
        if (now - t0 >= slice_ns && (__atomic_load_n(synced, __ATOMIC_RELAXED) >= seq
                                     || !__atomic_load_n(syncing, __ATOMIC_RELAXED)))
            return 2;
        if (now - t0 >= spin_ns) return 0;
        sched_yield();
        before = now;
    }
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
