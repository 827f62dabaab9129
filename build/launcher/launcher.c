/*
 * The one-file taskd launcher: runs the PyInstaller one-folder build packed behind it.
 *
 * Why: PyInstaller's one-file mode extracts ~40 MB to a fresh temp dir on every call and
 * deletes it on exit (0.45-0.9 s per CLI call); its maintainers decline to cache the
 * extraction (pyinstaller/pyinstaller#7907). This launcher keeps "copy one file" deployment
 * and extracts once per build:
 *
 *   dist/taskd = [this launcher (ELF)] [zlib-compressed one-folder tree] [TOC] [trailer]
 *
 * Theory of operation (build/pack.py writes the format; build/README.md describes it):
 *  1. Read the trailer (last TRAILER_SIZE bytes of /proc/self/exe) and the TOC it points to.
 *  2. Cache directory: $XDG_CACHE_HOME/taskd/<build-id> (else $HOME/.cache/taskd/<build-id>).
 *     It is used only when it and its parent belong to this user and nobody else may write
 *     there, and when every TOC entry checks out (kind, size, mode and the fixed mtime the
 *     extraction stamps on every file: a file that was edited, truncated or removed fails).
 *     On a hit: execv() its program. The pid stays the same, so a supervisor's SIGTERM or
 *     SIGKILL reaches the node process itself and no launcher process is left around.
 *  3. On a miss: take an flock on <root>/<build-id>.lock (two first runs at once extract
 *     once), check again, extract into <root>/.<build-id>.XXXXXX, and rename() it into place
 *     (a half-extracted tree is never visible under the final name), then execv().
 *  4. When the cache cannot be used (no HOME, read-only HOME, foreign owner, noexec mount,
 *     disk full...): extract into a fresh $TMPDIR/taskd-<build-id>-XXXXXX, run the program
 *     as a child, forward the signals sent to this pid (SIGTERM, SIGINT, SIGHUP, ...), remove
 *     the directory when the child exits and exit the same way. The child has
 *     PR_SET_PDEATHSIG=SIGKILL, so a SIGKILL of this launcher leaves no orphan node.
 *
 * TASKD_LAUNCHER_DEBUG=1 prints each decision on stderr.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define MAGIC "TASKDPK1"
#define MAGIC_SIZE 8
#define BUILD_ID_SIZE 48
#define PROGRAM_SIZE 16
/* magic, toc offset, toc size, entry count, mtime, build id, program name */
#define TRAILER_SIZE (MAGIC_SIZE + 8 + 8 + 4 + 4 + BUILD_ID_SIZE + PROGRAM_SIZE)
#define ENTRY_HEADER_SIZE 32
#define CHUNK (256 * 1024)
#define MAX_TOC_SIZE (64u * 1024 * 1024)

enum kind { KIND_DIR = 'd', KIND_FILE = 'f', KIND_LINK = 'l' };

struct entry {
    char kind;
    uint32_t mode;
    uint64_t offset; /* absolute, in the launcher file */
    uint64_t stored; /* bytes stored at offset (compressed file, or the link target) */
    uint64_t size;   /* bytes once extracted (files) */
    char *path;      /* relative, NUL-terminated (points into the TOC buffer copy) */
};

struct bundle {
    int fd;
    uint32_t mtime;
    char build_id[BUILD_ID_SIZE + 1];
    char program[PROGRAM_SIZE + 1];
    uint32_t count;
    struct entry *entries;
};

static int debug_enabled;

static void debug(const char *fmt, ...) {
    if (!debug_enabled) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("taskd launcher: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("taskd: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(127);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static uint64_t le64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

static uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int read_at(int fd, void *buf, size_t len, uint64_t offset) {
    unsigned char *p = buf;
    while (len > 0) {
        ssize_t n = pread(fd, p, len, (off_t)offset);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
        offset += (uint64_t)n;
    }
    return 0;
}

/* A TOC path must stay inside the tree: relative, no empty, "." or ".." component. */
static int safe_path(const char *path) {
    if (path[0] == '\0' || path[0] == '/') return 0;
    const char *part = path;
    for (;;) {
        const char *end = strchr(part, '/');
        size_t len = end ? (size_t)(end - part) : strlen(part);
        if (len == 0 || (len == 1 && part[0] == '.') || (len == 2 && part[0] == '.' && part[1] == '.'))
            return 0;
        if (!end) return 1;
        part = end + 1;
    }
}

static void open_bundle(struct bundle *b) {
    const char *damaged = "this binary is damaged or truncated (%s); copy or build it again";
    b->fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    if (b->fd < 0) die("cannot read its own file /proc/self/exe: %s (is /proc mounted?)", strerror(errno));
    struct stat st;
    if (fstat(b->fd, &st) != 0 || st.st_size < TRAILER_SIZE) die(damaged, "too short");
    unsigned char t[TRAILER_SIZE];
    if (read_at(b->fd, t, TRAILER_SIZE, (uint64_t)st.st_size - TRAILER_SIZE) != 0) die(damaged, "no trailer");
    if (memcmp(t, MAGIC, MAGIC_SIZE) != 0) die(damaged, "no taskd payload after the launcher");
    const unsigned char *p = t + MAGIC_SIZE;
    uint64_t toc_offset = le64(p), toc_size = le64(p + 8);
    b->count = le32(p + 16);
    b->mtime = le32(p + 20);
    memcpy(b->build_id, p + 24, BUILD_ID_SIZE);
    b->build_id[BUILD_ID_SIZE] = '\0';
    memcpy(b->program, p + 24 + BUILD_ID_SIZE, PROGRAM_SIZE);
    b->program[PROGRAM_SIZE] = '\0';
    if (toc_size > MAX_TOC_SIZE || toc_offset + toc_size > (uint64_t)st.st_size - TRAILER_SIZE)
        die(damaged, "bad table of contents");
    if (!b->build_id[0] || strchr(b->build_id, '/') || !safe_path(b->program)) die(damaged, "bad build id");
    unsigned char *toc = malloc(toc_size + 1);
    b->entries = calloc(b->count ? b->count : 1, sizeof *b->entries);
    if (!toc || !b->entries) die("out of memory");
    if (read_at(b->fd, toc, toc_size, toc_offset) != 0) die(damaged, "cannot read the table of contents");
    uint64_t at = 0;
    for (uint32_t i = 0; i < b->count; i++) {
        if (at + ENTRY_HEADER_SIZE > toc_size) die(damaged, "short table of contents");
        unsigned char *h = toc + at;
        struct entry *e = &b->entries[i];
        e->kind = (char)h[0];
        uint16_t path_len = (uint16_t)(h[2] | h[3] << 8);
        e->mode = le32(h + 4);
        e->offset = le64(h + 8);
        e->stored = le64(h + 16);
        e->size = le64(h + 24);
        at += ENTRY_HEADER_SIZE;
        if (at + path_len > toc_size) die(damaged, "short table of contents");
        /* Shift the path one byte left over the header's tail to NUL-terminate it in place. */
        e->path = (char *)toc + at - 1;
        memmove(e->path, toc + at, path_len);
        e->path[path_len] = '\0';
        at += path_len;
        if (!safe_path(e->path) || (e->kind != KIND_DIR && e->kind != KIND_FILE && e->kind != KIND_LINK) ||
            e->offset + e->stored > toc_offset)
            die(damaged, "bad table of contents entry");
    }
}

/* ---- checking an extracted tree ------------------------------------------------------- */

/* Owned by us and writable by nobody else: nobody else can have planted or changed files. */
static int private_dir(const char *path, const char **why) {
    struct stat st;
    if (lstat(path, &st) != 0) {
        *why = "missing";
        return 0;
    }
    if (!S_ISDIR(st.st_mode)) *why = "not a directory";
    else if (st.st_uid != geteuid()) *why = "owned by another user";
    else if (st.st_mode & (S_IWGRP | S_IWOTH)) *why = "writable by group or others";
    else return 1;
    return 0;
}

static int tree_ok(const struct bundle *b, const char *dir, const char **why) {
    if (!private_dir(dir, why)) return 0;
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (dfd < 0) {
        *why = "cannot open";
        return 0;
    }
    int ok = 1;
    for (uint32_t i = 0; i < b->count && ok; i++) {
        const struct entry *e = &b->entries[i];
        struct stat st;
        if (fstatat(dfd, e->path, &st, AT_SYMLINK_NOFOLLOW) != 0) ok = 0;
        else if (e->kind == KIND_DIR) ok = S_ISDIR(st.st_mode);
        else if (e->kind == KIND_LINK) ok = S_ISLNK(st.st_mode) && (uint64_t)st.st_size == e->stored;
        else
            ok = S_ISREG(st.st_mode) && (uint64_t)st.st_size == e->size && st.st_mtim.tv_sec == b->mtime &&
                 st.st_mtim.tv_nsec == 0 && (st.st_mode & 07777) == e->mode;
        if (!ok) {
            debug("%s/%s does not match the build", dir, e->path);
            *why = "a file differs from the build";
        }
    }
    close(dfd);
    return ok;
}

/* ---- extracting ----------------------------------------------------------------------- */

static int inflate_to(int in, const struct entry *e, int out) {
    static unsigned char src[CHUNK], dst[CHUNK];
    z_stream z;
    memset(&z, 0, sizeof z);
    if (inflateInit(&z) != Z_OK) return -1;
    uint64_t left = e->stored, at = e->offset, written = 0;
    int rc = Z_OK;
    while (rc != Z_STREAM_END) {
        if (z.avail_in == 0) {
            if (left == 0) break;
            size_t n = left < CHUNK ? (size_t)left : CHUNK;
            if (read_at(in, src, n, at) != 0) break;
            at += n;
            left -= n;
            z.next_in = src;
            z.avail_in = (uInt)n;
        }
        z.next_out = dst;
        z.avail_out = CHUNK;
        rc = inflate(&z, Z_NO_FLUSH);
        if (rc != Z_OK && rc != Z_STREAM_END) break;
        size_t produced = CHUNK - z.avail_out;
        for (size_t off = 0; off < produced;) {
            ssize_t n = write(out, dst + off, produced - off);
            if (n < 0 && errno == EINTR) continue;
            if (n <= 0) {
                inflateEnd(&z);
                return -1;
            }
            off += (size_t)n;
        }
        written += produced;
    }
    inflateEnd(&z);
    if (rc != Z_STREAM_END || written != e->size || left != 0 || z.avail_in != 0) {
        if (errno == 0) errno = EIO;
        return -1;
    }
    return 0;
}

/* Extract every entry under dir (which exists and is empty); -1 with errno set on failure. */
static int extract(const struct bundle *b, const char *dir, const char **failed) {
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (dfd < 0) return -1;
    for (uint32_t i = 0; i < b->count; i++) {
        const struct entry *e = &b->entries[i];
        *failed = e->path;
        errno = 0;
        if (e->kind == KIND_DIR) {
            if (mkdirat(dfd, e->path, 0700) != 0) goto fail;
        } else if (e->kind == KIND_LINK) {
            char target[PATH_MAX];
            if (e->stored >= sizeof target || read_at(b->fd, target, e->stored, e->offset) != 0) {
                errno = EIO;
                goto fail;
            }
            target[e->stored] = '\0';
            if (symlinkat(target, dfd, e->path) != 0) goto fail;
        } else {
            int fd = openat(dfd, e->path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
            if (fd < 0) goto fail;
            struct timespec times[2] = {{b->mtime, 0}, {b->mtime, 0}};
            if (inflate_to(b->fd, e, fd) != 0 || fchmod(fd, e->mode) != 0 || futimens(fd, times) != 0) {
                int saved = errno;
                close(fd);
                errno = saved;
                goto fail;
            }
            if (close(fd) != 0) goto fail;
        }
    }
    close(dfd);
    return 0;
fail: {
    int saved = errno ? errno : EIO;
    close(dfd);
    errno = saved;
    return -1;
}
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

static void remove_tree(const char *path) { nftw(path, remove_one, 16, FTW_DEPTH | FTW_PHYS); }

/* mkdir -p with mode 0700 for what it creates. */
static int make_dirs(const char *path) {
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, 0700) != 0 && errno != EEXIST) return -1;
            *p = c;
            if (c == '\0') break;
        }
    }
    struct stat st;
    if (stat(path, &st) != 0) return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    return 0;
}

static int join(char *out, size_t size, const char *a, const char *b) {
    if (snprintf(out, size, "%s/%s", a, b) >= (int)size) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

/* ---- the cached path ------------------------------------------------------------------ */

static int cache_root(char *root, size_t size) {
    const char *xdg = getenv("XDG_CACHE_HOME");
    if (xdg && xdg[0] == '/') return join(root, size, xdg, "taskd");
    const char *home = getenv("HOME");
    if (!home || home[0] != '/') return -1;
    if (snprintf(root, size, "%s/.cache/taskd", home) >= (int)size) return -1;
    return 0;
}

static void exec_program(const struct bundle *b, const char *dir, char **argv) {
    char program[PATH_MAX];
    if (join(program, sizeof program, dir, b->program) != 0) return;
    execv(program, argv);
}

/* Runs the cached build (never returns) or returns why it could not. */
static const char *run_cached(const struct bundle *b, char **argv) {
    static char why[3 * PATH_MAX];
    char root[PATH_MAX], final[PATH_MAX], lock[PATH_MAX], tmp[PATH_MAX];
    const char *reason = NULL;
    if (cache_root(root, sizeof root) != 0) return "neither XDG_CACHE_HOME nor HOME is an absolute path";
    if (join(final, sizeof final, root, b->build_id) != 0) return "the cache path is too long";
    double t0 = now_ms();
    if (tree_ok(b, final, &reason)) {
        debug("cache hit: %s (%u entries checked in %.1f ms)", final, b->count, now_ms() - t0);
        exec_program(b, final, argv);
        snprintf(why, sizeof why, "cannot run %s/%s: %s", final, b->program, strerror(errno));
        return why;
    }
    debug("cache miss: %s (%s)", final, reason);
    if (make_dirs(root) != 0) {
        snprintf(why, sizeof why, "cannot create %s: %s", root, strerror(errno));
        return why;
    }
    if (!private_dir(root, &reason)) {
        snprintf(why, sizeof why, "%s is %s", root, reason);
        return why;
    }
    if (snprintf(lock, sizeof lock, "%s.lock", final) >= (int)sizeof lock) return "the cache path is too long";
    int lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (lock_fd < 0) {
        snprintf(why, sizeof why, "cannot open %s: %s", lock, strerror(errno));
        return why;
    }
    while (flock(lock_fd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            snprintf(why, sizeof why, "cannot lock %s: %s", lock, strerror(errno));
            close(lock_fd);
            return why;
        }
    }
    if (!tree_ok(b, final, &reason)) { /* nobody extracted it while we waited: our turn */
        t0 = now_ms();
        const char *failed = "";
        if (snprintf(tmp, sizeof tmp, "%s/.%s.XXXXXX", root, b->build_id) >= (int)sizeof tmp || !mkdtemp(tmp)) {
            snprintf(why, sizeof why, "cannot create a directory in %s: %s", root, strerror(errno));
            close(lock_fd);
            return why;
        }
        if (extract(b, tmp, &failed) != 0) {
            snprintf(why, sizeof why, "cannot extract %s into %s: %s", failed, tmp, strerror(errno));
            remove_tree(tmp);
            close(lock_fd);
            return why;
        }
        struct stat st;
        if (lstat(final, &st) == 0) { /* a damaged or altered copy: move it away, then delete it */
            char old[PATH_MAX];
            int made = snprintf(old, sizeof old, "%s/.%s.old.XXXXXX", root, b->build_id) < (int)sizeof old &&
                       mkdtemp(old) != NULL;
            if (made && rename(final, old) == 0) {
                remove_tree(old);
            } else { /* not a directory (a file, a symlink): remove it where it is */
                if (made) rmdir(old);
                remove_tree(final);
            }
        }
        if (rename(tmp, final) != 0) {
            snprintf(why, sizeof why, "cannot rename %s to %s: %s", tmp, final, strerror(errno));
            remove_tree(tmp);
            close(lock_fd);
            return why;
        }
        debug("extracted %u entries into %s in %.0f ms", b->count, final, now_ms() - t0);
    } else {
        debug("cache filled by another process meanwhile: %s", final);
    }
    close(lock_fd);
    exec_program(b, final, argv);
    snprintf(why, sizeof why, "cannot run %s/%s: %s", final, b->program, strerror(errno));
    return why;
}

/* ---- the per-run fallback ------------------------------------------------------------- */

static volatile sig_atomic_t child_pid;
static const int forwarded[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGALRM, SIGWINCH};
#define FORWARDED_COUNT (sizeof forwarded / sizeof forwarded[0])

/* Forward what was sent to this pid (kill, sigqueue). Signals the kernel raises for a terminal
 * (Ctrl-C, hangup) already reach the child, which is in the same process group. */
static void forward(int sig, siginfo_t *info, void *context) {
    (void)context;
    if (child_pid > 0 && info->si_code <= 0) kill(child_pid, sig);
}

static int run_in_temp(const struct bundle *b, char **argv) {
    const char *base = getenv("TMPDIR");
    if (!base || base[0] != '/') base = "/tmp";
    char dir[PATH_MAX];
    const char *failed = "";
    if (snprintf(dir, sizeof dir, "%s/taskd-%s-XXXXXX", base, b->build_id) >= (int)sizeof dir || !mkdtemp(dir))
        die("cannot create a temporary directory in %s: %s; set TMPDIR to a writable directory", base,
            strerror(errno));
    if (extract(b, dir, &failed) != 0) {
        int saved = errno;
        remove_tree(dir);
        die("cannot extract %s into %s: %s; set TMPDIR to a directory with ~60 MB free", failed, dir,
            strerror(saved));
    }
    debug("extracted into %s; running it as a child", dir);

    sigset_t block, old;
    sigemptyset(&block);
    for (size_t i = 0; i < FORWARDED_COUNT; i++) sigaddset(&block, forwarded[i]);
    sigprocmask(SIG_BLOCK, &block, &old);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int saved = errno;
        remove_tree(dir);
        die("cannot start the program: %s", strerror(saved));
    }
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* the launcher SIGKILLed: the node goes too */
        if (getppid() != parent) _exit(127);
        sigprocmask(SIG_SETMASK, &old, NULL);
        char program[PATH_MAX];
        if (join(program, sizeof program, dir, b->program) == 0) execv(program, argv);
        fprintf(stderr, "taskd: cannot run %s/%s: %s; set TMPDIR to a directory where programs may run\n", dir,
                b->program, strerror(errno));
        _exit(127);
    }
    child_pid = pid;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = forward;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < FORWARDED_COUNT; i++) sigaction(forwarded[i], &sa, NULL);
    sigprocmask(SIG_SETMASK, &old, NULL);

    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR) {
            status = 127 << 8;
            break;
        }
    }
    remove_tree(dir);
    if (WIFSIGNALED(status)) { /* die the same way, so our parent sees what the child saw */
        int sig = WTERMSIG(status);
        signal(sig, SIG_DFL);
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, sig);
        sigprocmask(SIG_UNBLOCK, &one, NULL);
        raise(sig);
        return 128 + sig;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 127;
}

int main(int argc, char **argv) {
    (void)argc;
    const char *flag = getenv("TASKD_LAUNCHER_DEBUG");
    debug_enabled = flag && flag[0] && strcmp(flag, "0") != 0;
    struct bundle b;
    open_bundle(&b);
    const char *why = run_cached(&b, argv);
    debug("not using the cache: %s; extracting for this run only", why);
    return run_in_temp(&b, argv);
}
