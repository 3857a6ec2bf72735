/*
 * kiln's binfmt_misc handler for another architecture's binaries in a build
 * chroot (src/chroot/emulation.rs): runs the host's build of the same
 * program when kiln has one (a "native twin"), else QEMU's user-mode
 * emulator.
 *
 * Registered with the flags F (the kernel opens this file at registration,
 * so it need not be in the tree) and P (the program's own argv[0] is kept),
 * so it is started as
 *
 *     dispatch <file> <argv0> <args...>
 *
 * inside the chroot, where kiln has bind-mounted its emulation directory at
 * KILN_EMULATION_DIR:
 *
 *     qemu                  QEMU's user-mode emulator (static)
 *     twins                 "<path> <size> <mtime> <twin> <check>" lines:
 *                           the target's file at that canonical path, of
 *                           that size and mtime, has the twin at <twin> (a
 *                           path below this directory); <check> is kiln's
 *     native/lib/x86_64-linux-gnu/ (loader, libraries), native/usr/lib/…:
 *                           the twins' loader and libraries
 *
 * A twin runs through its own loader, so nothing of the host is needed in
 * the tree and the environment its children see is unchanged. Static and
 * small, in C: it runs on every exec of a foreign binary.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef KILN_EMULATION_DIR
#define KILN_EMULATION_DIR "/dev/.kiln-emulation"
#endif

#define TWINS_MAX_BYTES (1 << 20)

static char twins[TWINS_MAX_BYTES + 1];
static char arguments[TWINS_MAX_BYTES + 1];

/* Reads the file `name` of the emulation directory into `buffer`; returns
 * whether it could be opened. */
static int read_file(const char *name, char *buffer) {
    int fd = open(name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    size_t used = 0;
    for (;;) {
        ssize_t got = read(fd, buffer + used, TWINS_MAX_BYTES - used);
        if (got <= 0)
            break;
        used += (size_t)got;
    }
    close(fd);
    buffer[used] = '\0';
    return 1;
}

static void say(const char *a, const char *b) {
    write(2, "kiln-binfmt-dispatch: ", 22);
    write(2, a, strlen(a));
    write(2, b, strlen(b));
    write(2, "\n", 1);
}

/* The twin of the file at `real` (a canonical path) that `st` describes,
 * or NULL. */
static const char *twin_of(const char *real, const struct stat *st) {
    if (!read_file(KILN_EMULATION_DIR "/twins", twins))
        return NULL;
    char *line = twins;
    while (*line) {
        char *end = strchr(line, '\n');
        if (end)
            *end = '\0';
        char *space = strchr(line, ' ');
        if (space) {
            *space = '\0';
            unsigned long long size;
            long long mtime;
            int at = 0;
            if (strcmp(line, real) == 0 &&
                sscanf(space + 1, "%llu %lld %n", &size, &mtime, &at) == 2 && at > 0 &&
                size == (unsigned long long)st->st_size && mtime == (long long)st->st_mtime) {
                char *twin = space + 1 + at;
                char *twin_end = strchr(twin, ' ');
                if (twin_end)
                    *twin_end = '\0';
                return twin;
            }
        }
        if (!end)
            break;
        line = end + 1;
    }
    return NULL;
}

#define INSERTED_MAX 8
#define FIELDS_MAX 64

/* Splits `line` at its tabs, in place, into at most FIELDS_MAX `fields`;
 * returns how many. */
static int split_fields(char *line, char **fields) {
    int count = 0;
    while (line && count < FIELDS_MAX) {
        char *next = strchr(line, '\t');
        if (next)
            *next++ = '\0';
        fields[count++] = line;
        line = next;
    }
    return count;
}

/* Reads twin-arguments once for `twin`: puts the arguments to insert before
 * the program's own into `inserted` (at most INSERTED_MAX), setting
 * `*inserted_count`, and returns whether the twin may run with the
 * program's arguments `args` (`count` of them): it has no rule lines, or
 * the arguments begin with those of one of them. */
static int twin_arguments(const char *twin, char **args, int count, char **inserted,
                          int *inserted_count) {
    *inserted_count = 0;
    if (!read_file(KILN_EMULATION_DIR "/twin-arguments", arguments))
        return 1;
    int restricted = 0, allowed = 0;
    static char *fields[FIELDS_MAX];
    char *line = arguments;
    while (*line) {
        char *end = strchr(line, '\n');
        if (end)
            *end = '\0';
        int n = split_fields(line, fields);
        if (n > 1 && fields[0][0] == '+' && strcmp(fields[0] + 1, twin) == 0) {
            for (int i = 1; i < n && *inserted_count < INSERTED_MAX; i++)
                inserted[(*inserted_count)++] = fields[i];
        } else if (n > 1 && strcmp(fields[0], twin) == 0) {
            restricted = 1;
            int same = n - 1 <= count;
            for (int i = 1; same && i < n; i++)
                same = strcmp(args[i - 1], fields[i]) == 0;
            allowed |= same;
        }
        if (!end)
            break;
        line = end + 1;
    }
    return allowed || !restricted;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        say("started without a program: ", "it runs only as kiln's binfmt_misc handler");
        return 126;
    }
    const char *file = argv[1];
    const char *argv0 = argv[2];
    int rest = argc - 3;
    char **new_argv = malloc(((size_t)rest + 8 + INSERTED_MAX) * sizeof(char *));
    if (!new_argv) {
        say("out of memory starting ", file);
        return 126;
    }
    struct stat st;
    static char real[4096];
    const char *twin =
        realpath(file, real) && stat(real, &st) == 0 ? twin_of(real, &st) : NULL;
    static char *inserted[INSERTED_MAX];
    int inserted_count = 0;
    if (twin && !twin_arguments(twin, &argv[3], rest, inserted, &inserted_count))
        twin = NULL;
    if (twin) {
        static char path[4096];
        snprintf(path, sizeof path, "%s/%s", KILN_EMULATION_DIR, twin);
        int n = 0;
        new_argv[n++] = KILN_EMULATION_DIR "/native/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2";
        new_argv[n++] = "--inhibit-cache";
        new_argv[n++] = "--library-path";
        new_argv[n++] = KILN_EMULATION_DIR "/native/lib/x86_64-linux-gnu:" KILN_EMULATION_DIR
                                           "/native/usr/lib/x86_64-linux-gnu";
        new_argv[n++] = "--argv0";
        new_argv[n++] = (char *)argv0;
        new_argv[n++] = path;
        memcpy(&new_argv[n], inserted, (size_t)inserted_count * sizeof(char *));
        n += inserted_count;
        memcpy(&new_argv[n], &argv[3], (size_t)rest * sizeof(char *));
        new_argv[n + rest] = NULL;
        execv(new_argv[0], new_argv);
        say("cannot start the native twin; emulating ", file);
    }
    int n = 0;
    new_argv[n++] = KILN_EMULATION_DIR "/qemu";
    new_argv[n++] = "-0";
    new_argv[n++] = (char *)argv0;
    new_argv[n++] = (char *)file;
    memcpy(&new_argv[n], &argv[3], (size_t)rest * sizeof(char *));
    new_argv[n + rest] = NULL;
    execv(new_argv[0], new_argv);
    say("cannot start QEMU for ", file);
    return 126;
}
