/* Whether this is still the process that opened a store handle, for the check each write
 * makes (docs/design.md, "After fork(): an inherited writer never writes"): a page mapped
 * with MADV_WIPEONFORK (Linux 4.14+) holds a 1, and the kernel gives a forked child that page
 * zeroed, so the check is one load instead of a getpid() system call (~0.1 us, twice per
 * append). Where the flag is missing, chl_fork_page_new returns NULL and chl_forked compares
 * pids. */
#ifndef CHL_FORK_H
#define CHL_FORK_H
#include <sys/mman.h>
#include <unistd.h>

static inline unsigned char *chl_fork_page_new(void) {
#ifdef MADV_WIPEONFORK
    void *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    if (madvise(p, 4096, MADV_WIPEONFORK) != 0) {
        munmap(p, 4096);
        return NULL;
    }
    *(volatile unsigned char *)p = 1;
    return (unsigned char *)p;
#else
    return NULL;
#endif
}

static inline void chl_fork_page_free(unsigned char *p) {
    if (p) munmap(p, 4096);
}

/* The handle whose page is `page` (or, without one, that process `owner` opened) is used in
 * a process forked from its opener. */
static inline int chl_forked(const unsigned char *page, long owner) {
    return page ? *(const volatile unsigned char *)page == 0 : (long)getpid() != owner;
}

#endif
