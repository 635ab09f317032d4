/* A freestanding stand-in for libmicrokit's microkit.h (Microkit 2.3.0):
 * the declarations a PD compiles against, without the SDK. It only lets
 * the example compile; linking and running need the SDK's libmicrokit. */
#ifndef MICROKIT_H
#define MICROKIT_H

#include <stdint.h>

typedef unsigned int microkit_channel;
typedef unsigned int microkit_child;
/* seL4_MessageInfo_t: one word in a struct. */
typedef struct {
    uint64_t words[1];
} microkit_msginfo;

void init(void);
void notified(microkit_channel ch);

void microkit_dbg_putc(int c);
void microkit_dbg_puts(const char *s);
void microkit_notify(microkit_channel ch);
microkit_msginfo microkit_ppcall(microkit_channel ch, microkit_msginfo msginfo);
microkit_msginfo microkit_msginfo_new(uint64_t label, uint16_t count);
uint64_t microkit_msginfo_get_label(microkit_msginfo msginfo);
void microkit_mr_set(uint8_t mr, uint64_t value);
uint64_t microkit_mr_get(uint8_t mr);

#endif
