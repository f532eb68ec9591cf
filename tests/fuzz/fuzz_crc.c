/*
 * The fuzz targets' crc32c(): the real one, or 0 while fuzz_crc_off is set
 * (fuzz.h says why).  The real implementation is compiled in under another
 * name; nothing else of craft_util is linked twice.
 */
#define crc32c crc32c_real
#include "util/crc32c.c"
#undef crc32c

#include <stdio.h>
#include <sys/stat.h>

#include "fuzz.h"

bool fuzz_crc_off;

uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
    return fuzz_crc_off ? 0 : crc32c_real(crc, buf, len);
}

void fuzz_fail(const char *what, const char *file, int line)
{
    fprintf(stderr, "fuzz check failed: %s (%s:%d)\n", what, file, line);
    abort();
}

void fuzz_seed(const char *dir, unsigned i, uint8_t mode, const void *p,
               size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/seed-%02x-%03u", dir, mode, i);
    FILE *f = fopen(path, "wb");
    if (f == NULL || fwrite(&mode, 1, 1, f) != 1 ||
        (n > 0 && fwrite(p, 1, n, f) != n) || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
}

void fuzz_maybe_write_seeds(void (*write_seeds)(const char *dir, uint8_t mode))
{
    const char *dir = getenv("CRAFT_FUZZ_SEEDS");
    if (dir == NULL) {
        return;
    }
    mkdir(dir, 0700);
    fuzz_crc_off = false;
    write_seeds(dir, 0);
    fuzz_crc_off = true;
    write_seeds(dir, 1);
    exit(0);
}
