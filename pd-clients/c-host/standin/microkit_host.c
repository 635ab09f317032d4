/*
 * The stand-in microkit.h's runtime on a Linux host, for c-host: it plays
 * the Microkit loader and kernel for one C PD, driven by c-host over the
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
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "microkit.h"

#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000
#endif

#define PAGE_SIZE 4096

char microkit_name[MICROKIT_PD_NAME_LENGTH];
seL4_Word microkit_standin_mrs[MICROKIT_STANDIN_MRS];

/* The protocol's own stream: the PD's stdout is moved to stderr so that
 * nothing it prints can be taken for a message. */
static FILE *to_host;
static volatile uint8_t *command_page;

static void fail(const char *what, const char *detail)
{
    fprintf(to_host, "error %s%s\n", what, detail);
    fflush(to_host);
    exit(3);
}

static void put_hex_bytes(const volatile uint8_t *bytes, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        fprintf(to_host, "%02x", bytes[i]);
    }
}

static char *read_line(void)
{
    static char *line;
    static size_t room;
    if (getline(&line, &room, stdin) < 0) {
        exit(0);
    }
    line[strcspn(line, "\n")] = 0;
    return line;
}

void microkit_dbg_putc(int c)
{
    fprintf(to_host, "puts %02x\n", (unsigned)(uint8_t)c);
    fflush(to_host);
}

void microkit_dbg_puts(const char *s)
{
    fputs("puts ", to_host);
    put_hex_bytes((const volatile uint8_t *)s, strlen(s));
    fputs("\n", to_host);
    fflush(to_host);
}

void microkit_dbg_put8(seL4_Uint8 x)
{
    char text[4];
    snprintf(text, sizeof(text), "%u", (unsigned)x);
    microkit_dbg_puts(text);
}

void microkit_dbg_put32(seL4_Uint32 x)
{
    char text[11];
    snprintf(text, sizeof(text), "%u", (unsigned)x);
    microkit_dbg_puts(text);
}

void microkit_standin_notify(microkit_channel ch)
{
    fprintf(to_host, "notify %u\n", ch);
    fflush(to_host);
}

void microkit_standin_irq_ack(microkit_channel ch)
{
    fprintf(to_host, "irq_ack %u\n", ch);
    fflush(to_host);
}

static unsigned hex_digit(char c)
{
    if (c >= '0' && c <= '9') {
        return (unsigned)(c - '0');
    }
    if (c >= 'a' && c <= 'f') {
        return (unsigned)(c - 'a' + 10);
    }
    fail("bad hex digit in a reply", "");
    return 0;
}

microkit_msginfo microkit_standin_ppcall(microkit_channel ch, microkit_msginfo msginfo)
{
    if (!command_page) {
        fail("a protected call, but the PD has no command page", "");
    }
    fprintf(to_host, "call %u %lu %lu %lu %lu ", ch, microkit_msginfo_get_label(msginfo),
            microkit_msginfo_get_count(msginfo), microkit_standin_mrs[0],
            microkit_standin_mrs[1]);
    put_hex_bytes(command_page, PAGE_SIZE);
    fputs("\n", to_host);
    fflush(to_host);

    char *line = read_line();
    unsigned long label, mr0;
    int used = 0;
    if (sscanf(line, "reply %lu %lu %n", &label, &mr0, &used) != 2 || used == 0 ||
        strlen(line + used) != 2 * PAGE_SIZE) {
        fail("expected a reply, got: ", line);
    }
    const char *hex = line + used;
    for (size_t i = 0; i < PAGE_SIZE; i++) {
        command_page[i] = (uint8_t)(hex_digit(hex[2 * i]) << 4 | hex_digit(hex[2 * i + 1]));
    }
    microkit_standin_mrs[0] = mr0;
    return microkit_msginfo_new(label, 1);
}

static void map(const char *args)
{
    unsigned long vaddr, size;
    char perms[3], symbol[256];
    if (sscanf(args, "%lx %lx %2s %255s", &vaddr, &size, perms, symbol) != 4) {
        fail("bad map line: ", args);
    }
    int prot = strcmp(perms, "rw") == 0 ? PROT_READ | PROT_WRITE : PROT_READ;
    void *at = mmap((void *)vaddr, size, prot,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (at != (void *)vaddr) {
        fail("cannot map memory at the configured address: ", args);
    }
    if (strcmp(symbol, "-") != 0) {
        /* The Microkit tool refuses a setvar_vaddr the image lacks. */
        uintptr_t *var = (uintptr_t *)dlsym(RTLD_DEFAULT, symbol);
        if (!var) {
            fail("setvar_vaddr without its variable in the program: ", symbol);
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
    to_host = fdopen(protocol, "w");
    if (!to_host) {
        return 3;
    }
    for (;;) {
        char *line = read_line();
        unsigned long value;
        if (strncmp(line, "name ", 5) == 0) {
            snprintf(microkit_name, sizeof(microkit_name), "%s", line + 5);
        } else if (strncmp(line, "map ", 4) == 0) {
            map(line + 4);
        } else if (sscanf(line, "page %lx", &value) == 1) {
            command_page = (volatile uint8_t *)value;
        } else if (strcmp(line, "init") == 0) {
            init();
            fputs("done\n", to_host);
            fflush(to_host);
        } else if (sscanf(line, "notified %lu", &value) == 1) {
            notified((microkit_channel)value);
            fputs("done\n", to_host);
            fflush(to_host);
        } else {
            fail("unknown command: ", line);
        }
    }
}
