/*
 * The stand-in microkit.h's event loop on a Linux host, for c-host: it
 * plays the Microkit loader and kernel for one C PD, driven by c-host over the
 * process's stdin and stdout, one line per message:
 *
 *   from c-host        name NAME               the PD's name (microkit_name)
 *                      map VADDR SIZE PERMS SYMBOL
 *                                              map memory at VADDR as system.xml
 *                                              does (PERMS r or rw) and set
 *                                              SYMBOL (`-`: none) to VADDR, as
 *                                              setvar_vaddr does
 *                      page VADDR              the command page protected
 *                                              calls carry
 *                      init / notified CH      run the entry point
 *                      reply LABEL MR0 PAGE    the answer to a `call`
 *   to c-host          call CH LABEL COUNT MR0 MR1 PAGE
 *                      puts HEX                debug output (bytes in hex)
 *                      notify CH / irq_ack CH
 *                      done                    the entry point returned
 *                      error TEXT              the PD cannot run as configured
 *
 * PAGE is the command page's 4096 bytes in hex: the server core reads the
 * request from it and writes its answer into it, as it does the shared
 * page on seL4. Setvar symbols are found with dlsym: link with -rdynamic.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "microkit.h"
#include "microkit_host.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

static void map(const char *args)
{
    unsigned long vaddr, size;
    char perms[3], symbol[256];
    if (sscanf(args, "%lx %lx %2s %255s", &vaddr, &size, perms, symbol) != 4) {
        microkit_host_fail("bad map line: ", args);
    }
    int prot = strcmp(perms, "rw") == 0 ? PROT_READ | PROT_WRITE : PROT_READ;
    void *at = mmap((void *)vaddr, size, prot,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (at != (void *)vaddr) {
        microkit_host_fail("cannot map memory at the configured address: ", args);
    }
    if (strcmp(symbol, "-") != 0) {
        /* The Microkit tool refuses a setvar_vaddr the image lacks. */
        uintptr_t *var = (uintptr_t *)dlsym(RTLD_DEFAULT, symbol);
        if (!var) {
            microkit_host_fail("setvar_vaddr without its variable in the program: ", symbol);
        }
        *var = (uintptr_t)vaddr;
    }
}

int main(void)
{
    int protocol = dup(STDOUT_FILENO);
    if (protocol < 0 || dup2(STDERR_FILENO, STDOUT_FILENO) < 0) {
        return 3;
    }
    microkit_host_out = fdopen(protocol, "w");
    if (!microkit_host_out) {
        return 3;
    }
    for (;;) {
        char *line = microkit_host_read_line();
        unsigned long value;
        if (strncmp(line, "name ", 5) == 0) {
            snprintf(microkit_name, sizeof(microkit_name), "%s", line + 5);
        } else if (strncmp(line, "map ", 4) == 0) {
            map(line + 4);
        } else if (sscanf(line, "page %lx", &value) == 1) {
            microkit_host_set_call_page((uintptr_t)value);
        } else if (strcmp(line, "init") == 0) {
            init();
            fputs("done\n", microkit_host_out);
            fflush(microkit_host_out);
        } else if (sscanf(line, "notified %lu", &value) == 1) {
            notified((microkit_channel)value);
            fputs("done\n", microkit_host_out);
            fflush(microkit_host_out);
        } else {
            microkit_host_fail("unknown command: ", line);
        }
    }
}
