/* A slow disk for the overload tests, as an LD_PRELOAD shim around the
 * positioned writes capstan's audio files take (pwrite64, pwrite): each
 * write of a block or more sleeps as long as SLOWDISK_BYTES_PER_SEC takes
 * to move it. Nothing in capstan knows about it; it only makes the disk
 * slow, the way a full USB stick or a busy network share is. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

static double bytes_per_sec(void) {
    static double r = -1;
    if (r < 0) {
        const char *s = getenv("SLOWDISK_BYTES_PER_SEC");
        r = s ? atof(s) : 0;
    }
    return r;
}

static void pace(size_t n) {
    double r = bytes_per_sec();
    if (r <= 0 || n < 4096)
        return;
    double s = (double)n / r;
    struct timespec t = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&t, &t) != 0) {
    }
}

typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);

static ssize_t paced(pwrite_fn *real, const char *name, int fd, const void *buf, size_t n, off_t at) {
    if (!*real)
        *real = (pwrite_fn)dlsym(RTLD_NEXT, name);
    pace(n);
    return (*real)(fd, buf, n, at);
}

ssize_t pwrite64(int fd, const void *buf, size_t n, off_t at) {
    static pwrite_fn real;
    return paced(&real, "pwrite64", fd, buf, n, at);
}

ssize_t pwrite(int fd, const void *buf, size_t n, off_t at) {
    static pwrite_fn real;
    return paced(&real, "pwrite", fd, buf, n, at);
}
