/*
 * The host runtime's side of the stand-in (microkit_host.c) that its
 * event loop (microkit_loop.c) drives; a PD never includes it.
 */
#ifndef MICROKIT_HOST_H
#define MICROKIT_HOST_H

#include <stdint.h>
#include <stdio.h>

/* The protocol's own stream: the PD's stdout is moved to stderr so that
 * nothing it prints can be taken for a message. */
extern FILE *microkit_host_out;

/* Says the PD cannot run as configured, and exits. */
void microkit_host_fail(const char *what, const char *detail);
/* The next line from c-host, without its newline; exits at the end. */
char *microkit_host_read_line(void);
/* Where the command page protected calls carry is mapped. */
void microkit_host_set_call_page(uintptr_t vaddr);

#endif
