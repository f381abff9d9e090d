/*
 * Ferry test guest workload: writes numbered, checksummed 4 KiB blocks to every virtio-blk
 * disk (/sys/block/vd*), re-reads earlier ones, and reports once per second on stdout
 * (the serial console).
 *
 *   ferry-workload [-r RATE] [-s SPAN_MB] [-f SYNC_EVERY]
 *
 * Block layout (4096 bytes, integers little endian; testkit/verify.py reads the same):
 *   0..7       magic "FERRYBLK"
 *   8..27      first 20 bytes of the disk serial, NUL padded
 *   28..31     reserved, 0
 *   32..39     u64 block index (position of the block in the span: offset / 4096)
 *   40..47     u64 seq (1, 2, 3, ... per disk; index == seq % nblocks)
 *   48..4091   payload: x = seq * 0x9E3779B97F4A7C15 ^ (index + 1) * 0xC2B2AE3D27D4EB4F
 *              (x = 1 if that is 0); then for each 8-byte word: x = xorshift64(x)
 *              (x ^= x << 13; x ^= x >> 7; x ^= x << 17) and store x; the last 4 bytes
 *              hold the low half of the 506th x.
 *   4092..4095 u32 CRC32 (IEEE, zlib.crc32) of bytes 0..4091
 *
 * nblocks = min(span, disk size) / 4096. Seq s goes to index s % nblocks. On first sight of a
 * disk the span is scanned and the sequence continues after the highest valid seq found, so
 * it keeps growing across guest reboots. One thread per disk does the I/O; the main thread
 * rescans /sys/block and prints every second.
 *
 * Console lines (one FERRY-STATUS per disk per second):
 *   FERRY-READY {"rate":R,"span_mb":S,"sync_every":F}
 *   FERRY-DISK-ADDED vdb <serial>
 *   FERRY-STATUS {"t":..,"dev":"vdb","serial":"..","seq":N,"synced_seq":N,"first_seq":N,
 *                 "nblocks":N,"wps":N,"verified":N,"max_write_ms":X,"max_flush_ms":X,
 *                 "win_max_write_ms":X,"io_errors":N,"verify_failures":N}
 *                 (and "size":BYTES, the disk's capacity as the guest last read it)
 *   FERRY-GROWN {"dev":"vdb","serial":"..","old":BYTES,"new":BYTES,"tail_ok":0|1}
 *                 the disk grew under the guest (a live extend): its last 4 KiB block past
 *                 the old end was written, flushed and read back (tail_ok 1 if it matched)
 *   FERRY-DISK-REMOVED vdb <serial>     (preceded by a final FERRY-STATUS of that disk)
 *   FERRY-IO-ERROR / FERRY-VERIFY-FAIL / FERRY-ERROR  free-form diagnostics
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#define BLK 4096
#define SCAN_CHUNK (1 << 20)
#define VERIFY_EVERY 4          /* re-read one earlier block every N writes */
#define GONE_WAIT_MS 2000       /* after an I/O error, how long to wait for sysfs to drop it */
#define GROW_CHECK_EVERY 32     /* re-read the capacity every N writes */

static unsigned cfg_rate = 200, cfg_span_mb = 64, cfg_sync_every = 16;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER; /* guards the stats of every disk */

struct disk {
    struct disk *next;
    char dev[32];
    char serial[21];          /* as the guest sees it: at most 20 bytes */
    uint8_t serial20[20];     /* NUL padded, as stored in blocks */
    ino_t sys_ino;            /* identity of /sys/block/<dev>: a re-plugged disk gets a new one */
    int fd;
    uint64_t nblocks;
    uint64_t bytes;           /* capacity (BLKGETSIZE64), re-read by the worker: it can grow */
    pthread_t thread;
    atomic_int stop;          /* main -> worker: the disk is gone, exit */
    atomic_int done;          /* worker -> main: thread has finished */
    /* stats, under mu */
    uint64_t seq, synced_seq, first_seq, win_writes, verified, io_errors, verify_failures;
    double max_write_ms, max_flush_ms, win_max_write_ms;
};

static struct disk *disks;

/* ---- helpers ------------------------------------------------------------------------- */

static uint32_t crc_table[256];

static void crc32_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc32(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    while (n--)
        c = crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

static uint64_t xorshift64(uint64_t x)
{
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
}

/* Read a small sysfs file into buf (trailing newline stripped); -1 if it cannot be read. */
static int read_sysfs(const char *dev, const char *attr, char *buf, size_t size)
{
    char path[96];
    snprintf(path, sizeof path, "/sys/block/%s/%s", dev, attr);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, size - 1);
    close(fd);
    if (n < 0)
        return -1;
    buf[n] = 0;
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = 0;
    return 0;
}

static ino_t sysfs_ino(const char *dev)
{
    char path[64];
    struct stat st;
    snprintf(path, sizeof path, "/sys/block/%.31s", dev);
    return stat(path, &st) ? 0 : st.st_ino;
}

/* ---- blocks -------------------------------------------------------------------------- */

static void make_block(uint8_t *b, const struct disk *d, uint64_t index, uint64_t seq)
{
    memset(b, 0, 48);
    memcpy(b, "FERRYBLK", 8);
    memcpy(b + 8, d->serial20, 20);
    put_le(b + 32, index, 8);
    put_le(b + 40, seq, 8);
    uint64_t x = seq * 0x9E3779B97F4A7C15ull ^ (index + 1) * 0xC2B2AE3D27D4EB4Full;
    if (!x)
        x = 1;
    for (int off = 48; off < BLK - 4; off += 8) {
        x = xorshift64(x);
        put_le(b + off, x, off + 8 <= BLK - 4 ? 8 : 4);
    }
    put_le(b + BLK - 4, crc32(b, BLK - 4), 4);
}

/* Header checks only: returns the block's seq, 0 for an all-zero block, -1 if invalid. */
static int64_t block_seq(const uint8_t *b, const struct disk *d, uint64_t index)
{
    if (memcmp(b, "FERRYBLK", 8)) {
        for (int i = 0; i < BLK; i++)
            if (b[i])
                return -1;
        return 0;
    }
    if (memcmp(b + 8, d->serial20, 20) || get_le(b + 32, 8) != index ||
        get_le(b + BLK - 4, 4) != crc32(b, BLK - 4))
        return -1;
    uint64_t seq = get_le(b + 40, 8);
    return seq && seq % d->nblocks == index ? (int64_t)seq : -1;
}

/* ---- per-disk worker ----------------------------------------------------------------- */

/* Decide what an I/O error means. Returns 1 if the disk went away (worker must exit; not
 * counted), 0 if it is a real error on a present disk (counted). Unplugging fails I/O
 * slightly before the sysfs entry disappears, hence the bounded wait. */
static int io_failed(struct disk *d, const char *op, uint64_t seq, int err)
{
    for (int waited = 0; waited <= GONE_WAIT_MS; waited += 50) {
        if (atomic_load(&d->stop) || sysfs_ino(d->dev) != d->sys_ino)
            return 1;
        sleep_ms(50);
    }
    pthread_mutex_lock(&mu);
    d->io_errors++;
    pthread_mutex_unlock(&mu);
    printf("FERRY-IO-ERROR %s %s %s seq=%llu: %s\n", d->dev, d->serial, op,
           (unsigned long long)seq, strerror(err));
    return 0;
}

/* The capacity grew (a live extend): write the last block past the old end, flush it and read
 * it back; report once per growth. The workload's span itself does not move. */
static void check_grown(struct disk *d, uint8_t *buf, uint8_t *rbuf)
{
    uint64_t now = 0;
    if (ioctl(d->fd, BLKGETSIZE64, &now) || now <= d->bytes)
        return;
    uint64_t old = d->bytes, index = now / BLK - 1;
    make_block(buf, d, index, 1);
    int ok = pwrite(d->fd, buf, BLK, (off_t)(index * BLK)) == BLK && fdatasync(d->fd) == 0 &&
             pread(d->fd, rbuf, BLK, (off_t)(index * BLK)) == BLK && !memcmp(buf, rbuf, BLK);
    pthread_mutex_lock(&mu);
    d->bytes = now;
    pthread_mutex_unlock(&mu);
    printf("FERRY-GROWN {\"dev\":\"%s\",\"serial\":\"%s\",\"old\":%llu,\"new\":%llu,\"tail_ok\":%d}\n",
           d->dev, d->serial, (unsigned long long)old, (unsigned long long)now, ok);
}

/* Highest valid seq in the span (0 if none), or -1 if the disk vanished during the scan. */
static int64_t scan_max_seq(struct disk *d, uint8_t *buf)
{
    int64_t max = 0;
    uint64_t total = d->nblocks * BLK;
    for (uint64_t off = 0; off < total;) {
        size_t len = total - off < SCAN_CHUNK ? total - off : SCAN_CHUNK;
        ssize_t n = pread(d->fd, buf, len, (off_t)off);
        if (n != (ssize_t)len) {
            if (io_failed(d, "scan", 0, n < 0 ? errno : EIO))
                return -1;
            continue;   /* retry the chunk */
        }
        for (size_t i = 0; i < len; i += BLK) {
            int64_t s = block_seq(buf + i, d, (off + i) / BLK);
            if (s > max)
                max = s;
        }
        off += len;
    }
    return max;
}

static void *worker(void *arg)
{
    struct disk *d = arg;
    uint8_t *buf, *rbuf;
    if (posix_memalign((void **)&buf, BLK, SCAN_CHUNK) || posix_memalign((void **)&rbuf, BLK, BLK)) {
        printf("FERRY-ERROR %s out of memory\n", d->dev);
        atomic_store(&d->done, 1);
        return NULL;
    }
    uint64_t rng = (uint64_t)(now_s() * 1e9) | 1;
    int64_t max = d->nblocks ? scan_max_seq(d, buf) : -1;
    if (max >= 0) {
        pthread_mutex_lock(&mu);
        d->first_seq = (uint64_t)max + 1;
        d->seq = d->synced_seq = (uint64_t)max;
        pthread_mutex_unlock(&mu);
    }
    uint64_t seq = (uint64_t)max, first = seq + 1;
    unsigned since_sync = 0;
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    while (max >= 0 && !atomic_load(&d->stop)) {
        if (cfg_rate) {   /* pace to cfg_rate; never burst to catch up more than 1 s */
            long step = 1000000000L / cfg_rate;
            struct timespec now;
            clock_gettime(CLOCK_MONOTONIC, &now);
            if (now.tv_sec - next.tv_sec > 1)
                next = now;
            next.tv_nsec += step;
            next.tv_sec += next.tv_nsec / 1000000000L;
            next.tv_nsec %= 1000000000L;
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
        }
        uint64_t s = seq + 1, index = s % d->nblocks;
        make_block(buf, d, index, s);
        double t0 = now_s();
        ssize_t n = pwrite(d->fd, buf, BLK, (off_t)(index * BLK));
        double ms = (now_s() - t0) * 1e3;
        if (n != BLK) {
            if (io_failed(d, "write", s, n < 0 ? errno : EIO))
                break;
            continue;
        }
        seq = s;
        pthread_mutex_lock(&mu);
        d->seq = seq;
        d->win_writes++;
        if (ms > d->max_write_ms)
            d->max_write_ms = ms;
        if (ms > d->win_max_write_ms)
            d->win_max_write_ms = ms;
        pthread_mutex_unlock(&mu);

        if (cfg_sync_every && ++since_sync >= cfg_sync_every) {
            t0 = now_s();
            int r = fdatasync(d->fd);
            ms = (now_s() - t0) * 1e3;
            if (r) {
                if (io_failed(d, "fdatasync", seq, errno))
                    break;
                continue;   /* retry the flush after the next write */
            }
            since_sync = 0;
            pthread_mutex_lock(&mu);
            d->synced_seq = seq;
            if (ms > d->max_flush_ms)
                d->max_flush_ms = ms;
            pthread_mutex_unlock(&mu);
        }

        if (seq % VERIFY_EVERY == 0) {
            /* A random seq written this run and not overwritten since must read back exactly. */
            uint64_t lo = seq >= d->nblocks && seq - d->nblocks + 1 > first ? seq - d->nblocks + 1 : first;
            rng = xorshift64(rng);
            uint64_t want = lo + rng % (seq - lo + 1), widx = want % d->nblocks;
            n = pread(d->fd, rbuf, BLK, (off_t)(widx * BLK));
            if (n != BLK) {
                if (io_failed(d, "read", want, n < 0 ? errno : EIO))
                    break;
                continue;
            }
            make_block(buf, d, widx, want);
            int ok = !memcmp(buf, rbuf, BLK);
            pthread_mutex_lock(&mu);
            if (ok)
                d->verified++;
            else
                d->verify_failures++;
            pthread_mutex_unlock(&mu);
            if (!ok)
                printf("FERRY-VERIFY-FAIL %s %s index=%llu expected_seq=%llu found_seq=%lld\n",
                       d->dev, d->serial, (unsigned long long)widx, (unsigned long long)want,
                       (long long)block_seq(rbuf, d, widx));
        }
        if (seq % GROW_CHECK_EVERY == 0)
            check_grown(d, buf, rbuf);
    }
    while (!d->nblocks && !atomic_load(&d->stop))   /* disk too small to use: idle */
        sleep_ms(200);
    free(buf);
    free(rbuf);
    atomic_store(&d->done, 1);
    return NULL;
}

/* ---- main loop ----------------------------------------------------------------------- */

static void print_status(struct disk *d, double t)
{
    pthread_mutex_lock(&mu);
    printf("FERRY-STATUS {\"t\":%.3f,\"dev\":\"%s\",\"serial\":\"%s\",\"seq\":%llu,"
           "\"synced_seq\":%llu,\"first_seq\":%llu,\"nblocks\":%llu,\"wps\":%llu,"
           "\"verified\":%llu,\"max_write_ms\":%.3f,\"max_flush_ms\":%.3f,"
           "\"win_max_write_ms\":%.3f,\"io_errors\":%llu,\"verify_failures\":%llu,\"size\":%llu}\n",
           t, d->dev, d->serial, (unsigned long long)d->seq, (unsigned long long)d->synced_seq,
           (unsigned long long)d->first_seq, (unsigned long long)d->nblocks,
           (unsigned long long)d->win_writes, (unsigned long long)d->verified, d->max_write_ms,
           d->max_flush_ms, d->win_max_write_ms, (unsigned long long)d->io_errors,
           (unsigned long long)d->verify_failures, (unsigned long long)d->bytes);
    d->win_writes = 0;
    d->win_max_write_ms = 0;
    pthread_mutex_unlock(&mu);
}

static int open_disk(const char *dev)
{
    char path[64], devno[32];
    unsigned maj, min;
    snprintf(path, sizeof path, "/dev/%.31s", dev);
    if (access(path, F_OK) && read_sysfs(dev, "dev", devno, sizeof devno) == 0 &&
        sscanf(devno, "%u:%u", &maj, &min) == 2)
        mknod(path, S_IFBLK | 0600, makedev(maj, min));   /* devtmpfs did not create it */
    return open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
}

static void add_disk(const char *dev, ino_t ino)
{
    int fd = open_disk(dev);
    if (fd < 0)
        return;   /* read-only or already going away: try again at the next rescan */
    struct disk *d = calloc(1, sizeof *d);
    snprintf(d->dev, sizeof d->dev, "%.31s", dev);
    char raw[64] = "";
    read_sysfs(dev, "serial", raw, sizeof raw);   /* no serial: stays "" */
    memcpy(d->serial20, raw, strnlen(raw, 20));
    for (int i = 0; i < 20 && raw[i]; i++)         /* keep the JSON line valid */
        d->serial[i] = raw[i] >= ' ' && raw[i] < 127 && raw[i] != '"' && raw[i] != '\\' ? raw[i] : '?';
    d->sys_ino = ino;
    d->fd = fd;
    uint64_t bytes = 0, span = (uint64_t)cfg_span_mb << 20;
    ioctl(fd, BLKGETSIZE64, &bytes);
    d->nblocks = (bytes < span ? bytes : span) / BLK;
    d->bytes = bytes;
    d->next = disks;
    disks = d;
    printf("FERRY-DISK-ADDED %s %s\n", d->dev, d->serial);
    if (pthread_create(&d->thread, NULL, worker, d)) {
        printf("FERRY-ERROR %s cannot start a thread\n", dev);
        atomic_store(&d->done, 1);
    }
}

static void rescan(double t)
{
    /* Gone disks: tell their worker; report once the worker has finished. */
    for (struct disk *d = disks; d; d = d->next)
        if (sysfs_ino(d->dev) != d->sys_ino)
            atomic_store(&d->stop, 1);
    DIR *dir = opendir("/sys/block");
    struct dirent *e;
    while (dir && (e = readdir(dir))) {
        if (strncmp(e->d_name, "vd", 2))
            continue;
        ino_t ino = sysfs_ino(e->d_name);
        struct disk *d = disks;
        while (d && !(d->sys_ino == ino && !strcmp(d->dev, e->d_name)))
            d = d->next;
        if (!d && ino)
            add_disk(e->d_name, ino);
    }
    if (dir)
        closedir(dir);
    for (struct disk **pp = &disks; *pp;) {
        struct disk *d = *pp;
        if (!atomic_load(&d->done)) {
            pp = &d->next;
            continue;
        }
        pthread_join(d->thread, NULL);
        print_status(d, t);
        printf("FERRY-DISK-REMOVED %s %s\n", d->dev, d->serial);
        close(d->fd);
        *pp = d->next;
        free(d);
    }
}

static unsigned parse_opt(const char *s, const char *name, unsigned dflt)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *end || end == s || v > 1000000) {
        printf("FERRY-ERROR bad %s '%s', using %u\n", name, s, dflt);
        return dflt;
    }
    return (unsigned)v;
}

int main(int argc, char **argv)
{
    int c;
    setvbuf(stdout, NULL, _IOLBF, 0);
    while ((c = getopt(argc, argv, "r:s:f:")) != -1) {
        if (c == 'r')
            cfg_rate = parse_opt(optarg, "rate", 200);
        else if (c == 's')
            cfg_span_mb = parse_opt(optarg, "span_mb", 64);
        else if (c == 'f')
            cfg_sync_every = parse_opt(optarg, "sync_every", 16);
    }
    if (!cfg_span_mb)
        cfg_span_mb = 64;
    crc32_init();
    printf("FERRY-READY {\"rate\":%u,\"span_mb\":%u,\"sync_every\":%u}\n", cfg_rate, cfg_span_mb,
           cfg_sync_every);
    struct timespec tick;
    clock_gettime(CLOCK_MONOTONIC, &tick);
    for (;;) {
        double t = now_s();
        rescan(t);
        for (struct disk *d = disks; d; d = d->next)
            print_status(d, t);
        tick.tv_sec += 1;   /* absolute ticks: one status per second without drift */
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &tick, NULL);
    }
}
