/*
 * The stand-in microkit.h's runtime on a Linux host, for c-host: what the
 * PD calls (debug output, notify, IRQ ack, protected calls), each a line
 * of the protocol microkit_loop.c describes and drives.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* For the compiler to hold each definition to its declaration. */
#include "microkit.h"
#include "microkit_host.h"

#define PAGE_SIZE 4096

char microkit_name[MICROKIT_PD_NAME_LENGTH];
seL4_Word microkit_standin_mrs[MICROKIT_STANDIN_MRS];

FILE *microkit_host_out;
/* The page protected calls carry. */
static volatile uint8_t *call_page;

void microkit_host_set_call_page(uintptr_t vaddr)
{
    call_page = (volatile uint8_t *)vaddr;
}

void microkit_host_fail(const char *what, const char *detail)
{
    fprintf(microkit_host_out, "error %s%s\n", what, detail);
    fflush(microkit_host_out);
    exit(3);
}

static void put_hex_bytes(const volatile uint8_t *bytes, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        fprintf(microkit_host_out, "%02x", bytes[i]);
    }
}

char *microkit_host_read_line(void)
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
    fprintf(microkit_host_out, "puts %02x\n", (unsigned)(uint8_t)c);
    fflush(microkit_host_out);
}

void microkit_dbg_puts(const char *s)
{
    fputs("puts ", microkit_host_out);
    put_hex_bytes((const volatile uint8_t *)s, strlen(s));
    fputs("\n", microkit_host_out);
    fflush(microkit_host_out);
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
    fprintf(microkit_host_out, "notify %u\n", ch);
    fflush(microkit_host_out);
}

void microkit_standin_irq_ack(microkit_channel ch)
{
    fprintf(microkit_host_out, "irq_ack %u\n", ch);
    fflush(microkit_host_out);
}

static unsigned hex_digit(char c)
{
    if (c >= '0' && c <= '9') {
        return (unsigned)(c - '0');
    }
    if (c >= 'a' && c <= 'f') {
        return (unsigned)(c - 'a' + 10);
    }
    microkit_host_fail("bad hex digit in a reply", "");
    return 0;
}

microkit_msginfo microkit_standin_ppcall(microkit_channel ch, microkit_msginfo msginfo)
{
    if (!call_page) {
        microkit_host_fail("a protected call, but the PD has no command page", "");
    }
    fprintf(microkit_host_out, "call %u %lu %lu %lu %lu ", ch, microkit_msginfo_get_label(msginfo),
            microkit_msginfo_get_count(msginfo), microkit_standin_mrs[0],
            microkit_standin_mrs[1]);
    put_hex_bytes(call_page, PAGE_SIZE);
    fputs("\n", microkit_host_out);
    fflush(microkit_host_out);

    char *line = microkit_host_read_line();
    unsigned long label, mr0;
    int used = 0;
    if (sscanf(line, "reply %lu %lu %n", &label, &mr0, &used) != 2 || used == 0 ||
        strlen(line + used) != 2 * PAGE_SIZE) {
        microkit_host_fail("expected a reply, got: ", line);
    }
    const char *hex = line + used;
    for (size_t i = 0; i < PAGE_SIZE; i++) {
        call_page[i] = (uint8_t)(hex_digit(hex[2 * i]) << 4 | hex_digit(hex[2 * i + 1]));
    }
    microkit_standin_mrs[0] = mr0;
    return microkit_msginfo_new(label, 1);
}

