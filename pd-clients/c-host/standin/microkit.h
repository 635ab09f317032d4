/*
 * A stand-in for libmicrokit's microkit.h (Microkit 2.3.0), for building a
 * C PD without the SDK: the same types and the same signatures for what it
 * declares (the seL4 types as libsel4 has them on aarch64). In the SDK the
 * ppcall, notify and IRQ-ack functions are system calls; here they call
 * the microkit_standin_* hooks, which microkit_host.c implements on a
 * Linux host for c-host (the PD's protected calls served by the server
 * core). Freestanding: compiling against it needs only stdint.h, so a PD
 * compiles for aarch64 against it too (tests/c_header.rs does). C99 or
 * C11 and later.
 */
#ifndef MICROKIT_H
#define MICROKIT_H

#include <stdint.h>

typedef signed char seL4_Int8;
typedef unsigned char seL4_Uint8;
typedef unsigned short seL4_Uint16;
typedef unsigned int seL4_Uint32;
typedef unsigned long seL4_Uint64;
typedef seL4_Uint64 seL4_Word;
typedef seL4_Int8 seL4_Bool;
#define seL4_True 1
#define seL4_False 0
typedef struct seL4_MessageInfo {
    seL4_Uint64 words[1];
} seL4_MessageInfo_t;

typedef unsigned int microkit_channel;
typedef unsigned int microkit_child;
typedef seL4_MessageInfo_t microkit_msginfo;

#define MICROKIT_MAX_CHANNELS 62
#define MICROKIT_MAX_CHANNEL_ID (MICROKIT_MAX_CHANNELS - 1)
#define MICROKIT_PD_NAME_LENGTH 64

/* User provided functions */
void init(void);
void notified(microkit_channel ch);
microkit_msginfo protected(microkit_channel ch, microkit_msginfo msginfo);
seL4_Bool fault(microkit_child child, microkit_msginfo msginfo, microkit_msginfo *reply_msginfo);

extern char microkit_name[MICROKIT_PD_NAME_LENGTH];

void microkit_dbg_putc(int c);
void microkit_dbg_puts(const char *s);
void microkit_dbg_put8(seL4_Uint8 x);
void microkit_dbg_put32(seL4_Uint32 x);

/* The message registers (seL4_MsgMaxLength on aarch64). */
#define MICROKIT_STANDIN_MRS 120
extern seL4_Word microkit_standin_mrs[MICROKIT_STANDIN_MRS];
/* What the kernel does for the SDK's functions of the same names. */
microkit_msginfo microkit_standin_ppcall(microkit_channel ch, microkit_msginfo msginfo);
void microkit_standin_notify(microkit_channel ch);
void microkit_standin_irq_ack(microkit_channel ch);

static inline void microkit_notify(microkit_channel ch)
{
    microkit_standin_notify(ch);
}

static inline void microkit_irq_ack(microkit_channel ch)
{
    microkit_standin_irq_ack(ch);
}

static inline microkit_msginfo microkit_ppcall(microkit_channel ch, microkit_msginfo msginfo)
{
    return microkit_standin_ppcall(ch, msginfo);
}

/* seL4_MessageInfo_new(label, 0, 0, count): the label in bits 63..12, the
 * length in bits 6..0. */
static inline microkit_msginfo microkit_msginfo_new(seL4_Word label, seL4_Uint16 count)
{
    microkit_msginfo info = { { (label << 12) | ((seL4_Word)count & 0x7f) } };
    return info;
}

static inline seL4_Word microkit_msginfo_get_label(microkit_msginfo msginfo)
{
    return msginfo.words[0] >> 12;
}

static inline seL4_Word microkit_msginfo_get_count(microkit_msginfo msginfo)
{
    return msginfo.words[0] & 0x7f;
}

static inline void microkit_mr_set(seL4_Uint8 mr, seL4_Word value)
{
    if (mr < MICROKIT_STANDIN_MRS) {
        microkit_standin_mrs[mr] = value;
    }
}

static inline seL4_Word microkit_mr_get(seL4_Uint8 mr)
{
    return mr < MICROKIT_STANDIN_MRS ? microkit_standin_mrs[mr] : 0;
}

#endif
