// Which functions of a program run, in the order they first run: one breakpoint (int3) on the
// first byte of every function, each removed the first time it is hit.
//
//   entry-trace FUNCTIONS OUT -- PROGRAM [ARGS...]
//
// FUNCTIONS holds lines "ADDRESS NAME" (the address in hex, as `nm` prints it for a
// position-independent binary); OUT receives the names hit, one per line, first hit first.
// Threads and forked children are followed (a fork's memory holds the same breakpoints); a
// child that executes another program is let go. Exits with the program's status.
//
// Used by bench/startup-order.sh. Needs ptrace over the program (root, or the same user).
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/user.h>
#include <sys/wait.h>
#include <unistd.h>

static unsigned long *addrs;
static char **names;
static unsigned char *original;
static char *hit;
static int count;

static int lookup(unsigned long address) {
    int lo = 0, hi = count - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (addrs[mid] == address) return mid;
        if (addrs[mid] < address) lo = mid + 1; else hi = mid - 1;
    }
    return -1;
}

static int by_address(const void *a, const void *b) {
    unsigned long x = addrs[*(const int *)a], y = addrs[*(const int *)b];
    return (x > y) - (x < y);
}

// Where the program's first segment (file offset 0) is mapped.
static unsigned long load_base(pid_t pid, const char *exe) {
    char path[64], line[8192];
    snprintf(path, sizeof path, "/proc/%d/maps", pid);
    FILE *maps = fopen(path, "r");
    unsigned long base = 0;
    while (maps && fgets(line, sizeof line, maps)) {
        unsigned long lo, offset;
        char file[4096] = "";
        if (sscanf(line, "%lx-%*x %*s %lx %*s %*s %4095s", &lo, &offset, file) == 3 &&
            offset == 0 && strcmp(file, exe) == 0) {
            base = lo;
            break;
        }
    }
    if (maps) fclose(maps);
    return base;
}

static int poke(pid_t pid, unsigned long address, const unsigned char *byte, unsigned char *was) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/mem", pid);
    int mem = open(path, O_RDWR);
    if (mem < 0) return -1;
    int ok = (!was || pread(mem, was, 1, address) == 1) && pwrite(mem, byte, 1, address) == 1;
    close(mem);
    return ok ? 0 : -1;
}

int main(int argc, char **argv) {
    if (argc < 5 || strcmp(argv[3], "--") != 0) {
        fprintf(stderr, "usage: entry-trace FUNCTIONS OUT -- PROGRAM [ARGS...]\n");
        return 2;
    }
    FILE *list = fopen(argv[1], "r");
    FILE *out = fopen(argv[2], "w");
    if (!list || !out) { perror("entry-trace"); return 2; }
    int capacity = 1024;
    addrs = malloc(capacity * sizeof *addrs);
    names = malloc(capacity * sizeof *names);
    char line[65536];
    while (fgets(line, sizeof line, list)) {
        char *space = strchr(line, ' ');
        if (!space) continue;
        *space = 0;
        space[1 + strcspn(space + 1, "\n")] = 0;
        if (count == capacity) {
            capacity *= 2;
            addrs = realloc(addrs, capacity * sizeof *addrs);
            names = realloc(names, capacity * sizeof *names);
        }
        addrs[count] = strtoul(line, NULL, 16);
        names[count] = strdup(space + 1);
        count++;
    }
    // Sorted by address, one name per address.
    int *index = malloc(count * sizeof *index);
    for (int i = 0; i < count; i++) index[i] = i;
    qsort(index, count, sizeof *index, by_address);
    unsigned long *sorted_addrs = malloc(count * sizeof *sorted_addrs);
    char **sorted_names = malloc(count * sizeof *sorted_names);
    int kept = 0;
    for (int i = 0; i < count; i++) {
        if (kept && sorted_addrs[kept - 1] == addrs[index[i]]) continue;
        sorted_addrs[kept] = addrs[index[i]];
        sorted_names[kept] = names[index[i]];
        kept++;
    }
    addrs = sorted_addrs;
    names = sorted_names;
    count = kept;
    original = malloc(count);
    hit = calloc(count, 1);

    char **program = argv + 4;
    char exe[4096];
    if (!realpath(program[0], exe)) { perror(program[0]); return 2; }
    pid_t root = fork();
    if (root == 0) {
        ptrace(PTRACE_TRACEME, 0, NULL, NULL);
        raise(SIGSTOP);
        execv(program[0], program);
        _exit(127);
    }
    int status;
    waitpid(root, &status, 0);
    ptrace(PTRACE_SETOPTIONS, root, NULL,
           (void *)(PTRACE_O_TRACECLONE | PTRACE_O_TRACEFORK | PTRACE_O_TRACEVFORK |
                    PTRACE_O_TRACEEXEC | PTRACE_O_EXITKILL));
    ptrace(PTRACE_CONT, root, NULL, NULL);
    waitpid(root, &status, 0); // stopped at its exec: the program is mapped, nothing has run
    unsigned long base = load_base(root, exe);
    if (!base) { fprintf(stderr, "entry-trace: %s is not mapped\n", exe); return 2; }
    const unsigned char trap = 0xcc;
    int set = 0;
    for (int i = 0; i < count; i++)
        if (poke(root, base + addrs[i], &trap, &original[i]) == 0) set++;
    fprintf(stderr, "entry-trace: %d breakpoints\n", set);
    ptrace(PTRACE_CONT, root, NULL, NULL);

    int result = 0;
    for (;;) {
        pid_t pid = waitpid(-1, &status, __WALL);
        if (pid < 0) break;
        if (WIFEXITED(status) || WIFSIGNALED(status)) {
            if (pid == root)
                result = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            continue;
        }
        if (!WIFSTOPPED(status)) continue;
        int signal = WSTOPSIG(status), event = status >> 16;
        if (event == PTRACE_EVENT_EXEC && pid != root) {
            ptrace(PTRACE_DETACH, pid, NULL, NULL);
            continue;
        }
        // Event stops, and the stop each new thread or child starts with. (A SIGSTOP sent to
        // the program by someone else is dropped too: the programs traced here get none.)
        if (event || signal == SIGSTOP) {
            ptrace(PTRACE_CONT, pid, NULL, NULL);
            continue;
        }
        if (signal == SIGTRAP) {
            struct user_regs_struct regs;
            if (ptrace(PTRACE_GETREGS, pid, NULL, &regs) == -1) continue; // gone meanwhile
            int i = lookup(regs.rip - 1 - base);
            if (i >= 0) {
                // Put the byte back in this process's memory and run the instruction.
                poke(pid, regs.rip - 1, &original[i], NULL);
                if (!hit[i]) {
                    hit[i] = 1;
                    fprintf(out, "%s\n", names[i]);
                }
                regs.rip -= 1;
                ptrace(PTRACE_SETREGS, pid, NULL, &regs);
                ptrace(PTRACE_CONT, pid, NULL, NULL);
                continue;
            }
        }
        ptrace(PTRACE_CONT, pid, NULL, (void *)(long)signal);
    }
    fclose(out);
    return result;
}
